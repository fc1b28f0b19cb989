"""``edgepose bench``: how fast a model runs on this device, alone and inside the whole pipeline.

Model-only is the ceiling: a bare ``backend.run`` loop on frames the model's family has already
prepared (letterboxed or cropped), with the same thread count. The pipeline run (edge/bench_pipeline.py)
is the real Pipeline with timers around its source and sinks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from edge import __version__
from edge.config import Config, SourceConfig, override
from edge.errors import SourceError
from edge.runtime.base import backend_for
from edge.types import Frame
from edge.zoo import resolve_model
from edge.bench_pipeline import (  # noqa: F401  (re-exported: the bench's public names live here)
    STAGES, Progress, pipeline_bench, summarize_ms,
)

log = logging.getLogger(__name__)

SCHEMA = "edgepose.bench/1"


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


# -- model only ------------------------------------------------------------------------------
def model_only(case: Case, frames: Sequence[Frame], iterations: int, warmup: int = 10, family: str = "auto",
               base: Config | None = None, progress: Progress | None = None) -> dict:
    """The ceiling: ``backend.run`` alone on prepared frames, after ``warmup`` untimed runs."""
    from edge.model import load_model

    model = load_model(case_config(case, base, family), topdown=False)  # the model itself, one input a frame
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
        model.close()
    ms = summarize_ms(times)
    return {
        "model": case.model.name, "path": str(case.model), "family": model.family.name,
        "backend": model.backend.runtime, "threads": case.threads,
        "input": model.backend.inputs[0].describe(), "frames": n, "warmup": warmup, "iterations": iterations,
        "ms": ms, "fps": round(1000.0 / ms["mean"], 2) if ms["mean"] else None,
    }


# -- pipeline ------------------------------------------------------------------------------
def pipeline_config(case: Case, source: str | None, opts: BenchOptions) -> Config:
    """The config a pipeline benchmark runs: the user's (or defaults) with the case and bench flags."""
    from edge.capture.base import guess_type
    from edge.config import load_config

    base = load_config(opts.config)
    # --output replaces the outputs; else a --config keeps its own (minus the console line, which would
    # print over the progress bar) so that they are timed too.
    outputs = [{"type": "jsonl", "path": p} for p in opts.outputs] or [
        o.model_dump() for o in (base.outputs if opts.config else []) if o.type != "console"]
    # idle gating off: a bench measures the model on every frame, not how empty the room is
    changes: dict = {"source.realtime": opts.realtime, "outputs": outputs, "idle.enabled": False}
    if source is not None:
        changes.update({"source.path": source, "source.type": guess_type(source)})
    kind = changes.get("source.type", base.source.type)
    if opts.loop or kind == "sample" or (kind == "auto" and not base.source.path):
        changes["source.loop"] = True
    return case_config(case, base, opts.family, **changes)


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
