"""``edgepose bench``: how fast a model runs on this device, alone and inside the whole pipeline.

Model-only is the ceiling: a bare ``backend.run`` loop on frames the model's family has already
prepared (letterboxed or cropped), with the same thread count. The pipeline run wraps the source
and every sink with timers (no extra threads), so capture and output time sit beside the
prepare/infer/decode timings the pipeline records, and it samples CPU, memory and thermals from
the calling thread while the pipeline runs.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edge import __version__
from edge.config import Config, SourceConfig, override
from edge.errors import SourceError
from edge.runtime.base import backend_for
from edge.types import Frame, PoseResult, StreamMeta
from edge.zoo import resolve_model

log = logging.getLogger(__name__)

SCHEMA = "edgepose.bench/1"
STAGES = ("capture", "prepare", "infer", "decode", "post", "outputs")
MODEL_STAGES = ("prepare", "infer", "decode")
Progress = Callable[[int, int, str], None]  # (done, total, label)


@dataclass(frozen=True)
class Case:
    """One combination to measure: a model file in one runtime with one thread count."""

    model: Path
    backend: str
    threads: int

    @property
    def label(self) -> str:
        return f"{self.model.name} {self.backend} {self.threads}t"


@dataclass
class BenchOptions:
    models: list[str]
    backends: list[str] = field(default_factory=lambda: ["auto"])
    threads: list[int] = field(default_factory=lambda: [2])
    iterations: int = 100
    warmup: int = 10
    frames: int = 16  # distinct prepared frames the model-only loop cycles through
    source: str | None = None
    pipeline: bool = False
    seconds: float = 20.0
    realtime: bool = False
    loop: bool = False
    outputs: list[str] = field(default_factory=list)  # jsonl paths for the pipeline run
    family: str = "auto"
    config: str | None = None
    sample_interval_s: float = 1.0


# -- planning --------------------------------------------------------------------------------
def twin(path: Path, backend: str) -> Path | None:
    """The same model in another runtime's format: same stem (or a stem that extends the other's)
    in the same folder, a ``<backend>/`` subfolder or the parent folder."""
    suffix = ".tflite" if backend == "tflite" else ".onnx"
    for d in (path.parent, path.parent / backend, path.parent.parent):
        if not d.is_dir():
            continue
        exact = d / (path.stem + suffix)
        if exact.is_file():
            return exact
        for q in sorted(d.glob(f"*{suffix}")):
            if q.stem.startswith(path.stem) or path.stem.startswith(q.stem):
                return q
    return None


def plan_cases(models: Sequence[str], backends: Sequence[str], threads: Sequence[int]) -> tuple[list[Case], list[str]]:
    """Every model x backend x threads combination; a backend a file cannot run is skipped with a note."""
    cases: list[Case] = []
    notes: list[str] = []
    for spec in models:
        path = resolve_model(spec)
        for backend in backends:
            kind = backend_for(path) if backend == "auto" else backend
            file = path if backend_for(path) == kind else twin(path, kind)
            if file is None:
                notes.append(f"skipped {path.name} on {kind}: no {kind} file of this model next to it")
                continue
            cases.extend(Case(file, kind, t) for t in threads)
    return cases, notes


def case_config(case: Case, base: Config | None = None, family: str = "auto", **changes) -> Config:
    return override(base or Config(), **{
        "model.path": str(case.model), "model.backend": case.backend, "model.threads": case.threads,
        "model.family": family, **changes,
    })


def read_frames(source: SourceConfig, count: int) -> list[Frame]:
    """Up to ``count`` frames from a source, read as fast as it gives them."""
    from edge.capture.base import EndOfStream, build_source

    src = build_source(source.model_copy(update={"realtime": False, "loop": False}))
    src.open()
    frames: list[Frame] = []
    try:
        for _ in range(count + 50):  # a camera may give None now and then
            try:
                got = src.read()
            except EndOfStream:
                break
            if got is not None:
                frames.append(Frame(got[0], len(frames), got[1], time.time()))
            if len(frames) >= count:
                break
    finally:
        src.close()
    if not frames:
        raise SourceError(f"source {src.name} gave no frames to benchmark on; check --source")
    return frames


def summarize_ms(values: Sequence[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return dict.fromkeys(("mean", "p50", "p90", "p99", "min", "max"))
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {k: round(float(v), 3) for k, v in
            (("mean", a.mean()), ("p50", p50), ("p90", p90), ("p99", p99), ("min", a.min()), ("max", a.max()))}


# -- model only ------------------------------------------------------------------------------
def model_only(case: Case, frames: Sequence[Frame], iterations: int, warmup: int = 10, family: str = "auto",
               base: Config | None = None, progress: Progress | None = None) -> dict:
    """The ceiling: ``backend.run`` alone on prepared frames, after ``warmup`` untimed runs."""
    from edge.model import load_model

    model = load_model(case_config(case, base, family))
    try:
        inputs = []
        for f in frames:
            model.family.reset()
            inputs.append(model.family.prepare(f)[0])
        run, n = model.backend.run, len(inputs)
        for i in range(warmup):
            run(inputs[i % n])
        times = np.empty(iterations, dtype=np.float64)
        step = max(1, iterations // 50)
        for i in range(iterations):
            t0 = time.monotonic_ns()
            run(inputs[i % n])
            times[i] = (time.monotonic_ns() - t0) / 1e6
            if progress and (i % step == 0 or i == iterations - 1):
                progress(i + 1, iterations, f"model-only {case.label}")
    finally:
        model.backend.close()
    ms = summarize_ms(times)
    return {
        "model": case.model.name, "path": str(case.model), "family": model.family.name,
        "backend": model.backend.runtime, "threads": case.threads,
        "input": model.backend.inputs[0].describe(), "frames": n, "warmup": warmup, "iterations": iterations,
        "ms": ms, "fps": round(1000.0 / ms["mean"], 2) if ms["mean"] else None,
    }


# -- pipeline --------------------------------------------------------------------------------
class Recorder:
    """Per-frame times written by the capture and sink threads; read after the run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.read_ms: list[float] = []  # capture read time by frame index
        self.results: list[tuple[int, int, int, dict, int]] = []  # index, t_capture, t_done, timings, t_recv
        self.output_ms: dict[int, float] = {}
        self.t_out: dict[int, int] = {}

    def read(self, ms: float) -> None:
        self.read_ms.append(ms)  # capture thread only

    def output(self, index: int, ms: float, t_ns: int) -> None:
        with self._lock:
            self.output_ms[index] = self.output_ms.get(index, 0.0) + ms
            self.t_out[index] = max(self.t_out.get(index, 0), t_ns)

    def result(self, r: PoseResult, t_ns: int) -> None:
        with self._lock:
            self.results.append((r.frame.index, r.frame.t_capture_ns, r.t_done_ns, dict(r.timings_ms), t_ns))

    def count(self) -> int:
        with self._lock:
            return len(self.results)


class TimedSource:
    """Forwards to a source and records how long each read took (decode, conversion, pacing)."""

    def __init__(self, inner, rec: Recorder):
        self._inner = inner
        self._rec = rec

    def __getattr__(self, name):  # open, close, name, live, continuous, fps, model_image: read through
        return getattr(self._inner, name)

    def __setattr__(self, name, value):  # e.g. the pipeline sets model_input_size (picamera sizes its lores)
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    def read(self):
        t0 = time.monotonic_ns()
        got = self._inner.read()
        if got is not None:
            self._rec.read((time.monotonic_ns() - t0) / 1e6)
        return got


class TimedSink:
    """Forwards to a sink and records its write time and when the result was out."""

    def __init__(self, inner, rec: Recorder):
        self._inner = inner
        self._rec = rec
        self.name = inner.name
        self.open, self.close = inner.open, inner.close

    def write(self, result: PoseResult) -> None:
        t0 = time.monotonic_ns()
        self._inner.write(result)
        t1 = time.monotonic_ns()
        self._rec.output(result.frame.index, (t1 - t0) / 1e6, t1)


class RecorderSink:
    """The benchmark's own sink: sees every result (it never blocks, so its queue never fills)."""

    name = "bench"

    def __init__(self, rec: Recorder):
        self._rec = rec

    def open(self, meta: StreamMeta) -> None:
        pass

    def write(self, result: PoseResult) -> None:
        self._rec.result(result, time.monotonic_ns())

    def close(self) -> None:
        pass


def pipeline_config(case: Case, source: str | None, opts: BenchOptions) -> Config:
    """The config a pipeline benchmark runs: the user's (or defaults) with the case and bench flags."""
    from edge.capture.base import guess_type
    from edge.config import load_config

    base = load_config(opts.config)
    # --output replaces the outputs; else a --config keeps its own (minus the console line, which would
    # print over the progress bar) so that they are timed too.
    outputs = [{"type": "jsonl", "path": p} for p in opts.outputs] or [
        o.model_dump() for o in (base.outputs if opts.config else []) if o.type != "console"]
    changes: dict = {"source.realtime": opts.realtime, "outputs": outputs}
    if source is not None:
        changes.update({"source.path": source, "source.type": guess_type(source)})
    kind = changes.get("source.type", base.source.type)
    if opts.loop or kind == "sample" or (kind == "auto" and not base.source.path):
        changes["source.loop"] = True
    return case_config(case, base, opts.family, **changes)


def _stage_values(rec: Recorder, rows: list) -> tuple[dict, dict[str, str]]:
    per: dict[str, list[float]] = {s: [] for s in STAGES}
    for index, _, _, timings, _ in rows:
        if index < len(rec.read_ms):
            per["capture"].append(rec.read_ms[index])
        for s in MODEL_STAGES:
            if s in timings:
                per[s].append(timings[s])
        extra = [v for k, v in timings.items() if k not in MODEL_STAGES]
        if extra:
            per["post"].append(float(sum(extra)))
        if index in rec.output_ms:
            per["outputs"].append(rec.output_ms[index])
    out, missing = {}, {}
    for s, vals in per.items():
        if vals:
            m = summarize_ms(vals)
            out[s] = {"mean": m["mean"], "p50": m["p50"], "p99": m["p99"]}
        else:
            out[s] = None
    if out["post"] is None:
        missing["stage_ms.post"] = "no post-processing stage ran (no tracker, smoother or analytics configured)"
    if out["outputs"] is None:
        missing["stage_ms.outputs"] = "no outputs configured (add --output FILE.jsonl to time one)"
    return out, missing


def pipeline_bench(cfg: Config, seconds: float, warmup: int = 10, interval_s: float = 1.0,
                   extra_sinks: Sequence = (), progress: Progress | None = None) -> dict:
    """Run the whole pipeline for ``seconds`` (or to the end of the source) and report it."""
    from edge.capture.base import build_source
    from edge.outputs.base import build_sink
    from edge.pipeline import Pipeline
    from edge.sysinfo import SystemSampler

    rec = Recorder()
    sinks = [TimedSink(build_sink(o), rec) for o in cfg.outputs] + [TimedSink(s, rec) for s in extra_sinks]
    pipe = Pipeline(cfg, source=TimedSource(build_source(cfg.source), rec), sinks=[*sinks, RecorderSink(rec)])
    sampler = SystemSampler()
    samples: list[dict] = []
    t_start = time.monotonic_ns()
    deadline = t_start + int(seconds * 1e9)
    last_count, last_ns = 0, t_start
    ended_by = "time"
    pipe.start()
    try:
        while True:
            finished = pipe.wait(max(0.0, min(interval_s, (deadline - time.monotonic_ns()) / 1e9)))
            now = time.monotonic_ns()
            if now - last_ns >= interval_s * 1e9 * 0.5 or finished:
                count = rec.count()
                row = {"t_s": round((now - t_start) / 1e9, 2),
                       "fps": round((count - last_count) * 1e9 / max(1, now - last_ns), 2), **sampler.sample()}
                samples.append(row)
                last_count, last_ns = count, now
            if progress:
                progress(min(now - t_start, deadline - t_start), deadline - t_start, f"pipeline {pipe.meta.model}")
            if finished:
                max_frames = cfg.pipeline.max_frames
                ended_by = "error" if pipe.error else (
                    "max_frames" if max_frames and pipe.stats.frames_processed >= max_frames else "source")
                break
            if now >= deadline:
                break
    finally:
        pipe.stop()
        sampler.close()
        pipe.model.backend.close()
    if pipe.error is not None:
        raise pipe.error
    return _pipeline_report(cfg, pipe, rec, samples, sampler.unavailable, warmup, ended_by)


def _pipeline_report(cfg: Config, pipe, rec: Recorder, samples: list[dict], unavailable: dict[str, str],
                     warmup: int, ended_by: str) -> dict:
    from edge.sysinfo import summarize_samples

    rows = sorted(rec.results, key=lambda r: r[0])
    skip = min(warmup, max(0, len(rows) - 2))
    rows = rows[skip:]
    if len(rows) < 2:
        raise SourceError(f"the pipeline processed only {len(rows)} frame(s) after warm-up; "
                          "benchmark a longer source or raise --seconds")
    t_done = np.array([r[2] for r in rows], dtype=np.int64)
    frame_ms = np.diff(t_done) / 1e6
    fps = (len(rows) - 1) * 1e9 / float(t_done[-1] - t_done[0])
    latencies = [((rec.t_out.get(i) or t_recv) - t_cap) / 1e6 for i, t_cap, _, _, t_recv in rows]
    stage_ms, missing = _stage_values(rec, rows)
    snap = pipe.stats.snapshot()
    system = summarize_samples(samples, unavailable)
    system["unavailable"].update(missing)
    lat = summarize_ms(latencies)
    return {
        "model": pipe.model.path.name, "path": str(pipe.model.path), "family": pipe.model.family.name,
        "backend": pipe.model.backend.runtime, "threads": cfg.model.threads, "source": pipe.source.name,
        "realtime": cfg.source.realtime, "outputs": [s.name for s in pipe.sinks if s.name != "bench"],
        "frames": len(rows), "warmup_frames": skip, "duration_s": round(float(t_done[-1] - t_done[0]) / 1e9, 3),
        "ended_by": ended_by,
        "fps": round(fps, 2), "frame_ms": summarize_ms(frame_ms), "stage_ms": stage_ms,
        "drops": snap["drops"], "dropped_total": snap["dropped_total"],
        "frames_captured": snap["frames_captured"], "frames_processed": snap["frames_processed"],
        "latency_ms": {"p50": lat["p50"], "p99": lat["p99"], "mean": lat["mean"]},
        **system, "samples": samples, "latencies_ms": [round(v, 3) for v in latencies],
    }


# -- the whole run ---------------------------------------------------------------------------
def run(opts: BenchOptions, progress: Progress | None = None, extra_sinks: Sequence = ()) -> dict:
    """Model-only for every case; with ``opts.pipeline`` also the pipeline and its ratio to the ceiling."""
    from edge.capture.base import guess_type
    from edge.sysinfo import machine_info

    cases, notes = plan_cases(opts.models, opts.backends, opts.threads)
    report = {
        "schema": SCHEMA, "version": __version__, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(), "settings": asdict(opts), "model_only": [], "pipeline": [], "notes": notes,
    }
    frames: list[Frame] = []
    if opts.iterations > 0 and cases:
        src = SourceConfig(type=guess_type(opts.source), path=opts.source) if opts.source else SourceConfig(type="sample")
        frames = read_frames(src, opts.frames)
    for case in cases:
        mo = None
        if opts.iterations > 0:
            mo = model_only(case, frames, opts.iterations, opts.warmup, opts.family, progress=progress)
            report["model_only"].append(mo)
        if opts.pipeline:
            cfg = pipeline_config(case, opts.source, opts)
            pr = pipeline_bench(cfg, opts.seconds, opts.warmup, opts.sample_interval_s, extra_sinks, progress)
            pr["model_only_fps"] = mo["fps"] if mo else None
            pr["ratio_to_model_only"] = round(pr["fps"] / mo["fps"], 3) if mo and mo["fps"] else None
            report["pipeline"].append(pr)
    return report


__all__ = ["BenchOptions", "Case", "plan_cases", "twin", "model_only", "pipeline_bench", "run", "read_frames",
           "summarize_ms", "SCHEMA", "STAGES"]
