"""A/B of the pipeline's process settings (issue 2): the ratio pipeline / model-only, paired, interleaved.

"old" is the first session's behaviour (CPython's 5 ms GIL switch interval, OpenCV and FFmpeg on one
thread per core); "new" is the default (0.5 ms, one OpenCV thread, one FFmpeg thread for a file
played as fast as possible). Each round runs model-only then the pipeline for each variant on the
same frames of the same clip, so a noisy neighbour hits both halves of a ratio alike.

    nice -n -10 python3 benchmarks/pipeline_settings_ab.py --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import edge.pipeline as pipeline_module  # noqa: E402
from edge.bench import Case, case_config, model_only, pipeline_bench, read_frames  # noqa: E402
from edge.config import SourceConfig  # noqa: E402

SHARED = ROOT.parent / "shared"
VARIANTS = {  # name -> (config overrides, GIL switch interval in s)
    "old": ({"source.decode_threads": 0, "pipeline.opencv_threads": 0}, 0.005),
    "new": ({}, pipeline_module.GIL_SWITCH_S),
}


def cpu_s() -> float:
    """User + system CPU seconds of this process, all its threads (the model's, FFmpeg's, OpenCV's)."""
    t = os.times()
    return t.user + t.system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=SHARED / "models" / "movenet_singlepose_lightning_int8_4.tflite")
    ap.add_argument("--clip", type=Path, default=SHARED / "data" / "video" / "intel_one-by-one-person-detection.mp4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=900, help="timed frames per run (default 900)")
    args = ap.parse_args()
    logging.disable(logging.INFO)
    case = Case(args.model, "tflite", args.threads)
    frames = read_frames(SourceConfig(type="file", path=str(args.clip), realtime=False), 50)
    ratios: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for name, (overrides, switch_s) in VARIANTS.items():
            pipeline_module.GIL_SWITCH_S = switch_s
            cpu0 = cpu_s()
            alone = model_only(case, frames, args.frames, 20)
            cpu1 = cpu_s()
            cfg = case_config(case, None, "auto", **{
                "source.type": "file", "source.path": str(args.clip), "source.realtime": False, "outputs": [],
                "pipeline.max_frames": args.frames + 20, "logging.level": "WARNING", **overrides})
            piped = pipeline_bench(cfg, seconds=3600, warmup=20, interval_s=1.0)
            cpu2 = cpu_s()
            ratios[name].append(piped["fps"] / alone["fps"])
            per_frame = args.frames + 20  # warm-up included: CPU is counted for the whole run, loading too
            print(f"round {r} {name}: model-only {alone['fps']:.0f} FPS, pipeline {piped['fps']:.0f} FPS, "
                  f"ratio {ratios[name][-1]:.3f}; process CPU per frame: model-only "
                  f"{1000 * (cpu1 - cpu0) / per_frame:.2f} ms, pipeline {1000 * (cpu2 - cpu1) / per_frame:.2f} ms",
                  flush=True)
    for name, values in ratios.items():
        print(f"{name}: median ratio {statistics.median(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
