"""The pipeline half of ``edgepose bench``: run the real Pipeline with timers around its source and sinks.

The source and every sink are wrapped (no extra threads), so capture and output time sit beside the
prepare/infer/decode timings the pipeline records; CPU, memory and thermals are sampled from the
calling thread while it runs.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Sequence

import numpy as np

from edge.config import Config
from edge.errors import SourceError
from edge.types import PoseResult, StreamMeta
from edge.workers import usable_cores

STAGES = ("capture", "prepare", "infer", "decode", "post", "outputs")
MODEL_STAGES = ("prepare", "infer", "decode")
Progress = Callable[[int, int, str], None]  # (done, total, label)


def summarize_ms(values: Sequence[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return dict.fromkeys(("mean", "p50", "p90", "p99", "min", "max"))
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {k: round(float(v), 3) for k, v in
            (("mean", a.mean()), ("p50", p50), ("p90", p90), ("p99", p99), ("min", a.min()), ("max", a.max()))}


# -- timers ----------------------------------------------------------------------------------
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
    cpu_start = _cpu_s()
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
        cpu_s, wall_s = _cpu_s() - cpu_start, (time.monotonic_ns() - t_start) / 1e9
        pipe.stop()
        sampler.close()
        pipe.model.close()
    if pipe.error is not None:
        raise pipe.error
    report = _pipeline_report(cfg, pipe, rec, samples, sampler.unavailable, warmup, ended_by)
    # the process's own CPU per frame bounds the FPS on this many cores, however the work is threaded
    frames = max(1, pipe.stats.frames_processed)
    report["cpu_ms_per_frame"] = round(cpu_s * 1000 / frames, 3)
    report["cpu_cores_used"] = round(cpu_s / wall_s, 3) if wall_s > 0 else None
    report["cpu_bound_fps"] = round(usable_cores() / (cpu_s / frames), 1) if cpu_s > 0 else None
    return report


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


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
        "backend": pipe.model.backend.runtime, "threads": pipe.placement.threads, "workers": pipe.placement.workers,
        "source": pipe.source.name,
        "realtime": cfg.source.realtime, "outputs": [s.name for s in pipe.sinks if s.name != "bench"],
        "frames": len(rows), "warmup_frames": skip, "duration_s": round(float(t_done[-1] - t_done[0]) / 1e9, 3),
        "ended_by": ended_by,
        "fps": round(fps, 2), "frame_ms": summarize_ms(frame_ms), "stage_ms": stage_ms,
        "drops": snap["drops"], "dropped_total": snap["dropped_total"],
        "frames_captured": snap["frames_captured"], "frames_processed": snap["frames_processed"],
        "latency_ms": {"p50": lat["p50"], "p99": lat["p99"], "mean": lat["mean"]},
        **system, "samples": samples, "latencies_ms": [round(v, 3) for v in latencies],
    }
