"""What the picamera2 lores stream saves: a family's ``prepare`` from main alone vs from main + lores.

Frames of a real 16:9 clip are scaled to the main size (1280x720 by default); the lores image is made
from each with cv2.resize INTER_AREA (on a Pi the ISP does this for free, so it is not timed). For each
model the family prepares every frame both ways, the two variants interleaved (order swapped every
round) so that machine noise hits both alike; the medians and their ratio are printed. MoveNet is
reset before every frame: the whole-frame square is the step the lores replaces (its tracked crops of
a person stay on main, unchanged).

    nice -n 19 python3 benchmarks/lores_prepare.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.capture.picamera import lores_size  # noqa: E402
from edge.poses.base import FamilyOptions, ModelSignature  # noqa: E402
from edge.poses.detect import make_family  # noqa: E402
from edge.runtime.base import load_backend  # noqa: E402
from edge.types import Frame  # noqa: E402

SHARED = ROOT.parent / "shared"
MODELS = [SHARED / "models" / "movenet_singlepose_lightning_int8_4.tflite", SHARED / "models" / "yolo11n-pose_int8.tflite"]
CLIP = SHARED / "data" / "video" / "intel_one-by-one-person-detection.mp4"  # 768x432, 16:9


def read_clip(path: Path, size: tuple[int, int], limit: int) -> list:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_LINEAR))
    cap.release()
    return frames


def bench(model: Path, images: list, rounds: int) -> dict:
    backend = load_backend(model)
    family = make_family(ModelSignature(backend.inputs, backend.outputs, backend.metadata), FamilyOptions())
    h, w = images[0].shape[:2]
    lores = lores_size((w, h), family.size)
    pairs = [(Frame(im, i, 0, 0.0), Frame(im, i, 0, 0.0, cv2.resize(im, lores, interpolation=cv2.INTER_AREA)))
             for i, im in enumerate(images)]
    ms: dict[str, list[float]] = {"main": [], "lores": []}
    for r in range(rounds):
        for main_frame, lores_frame in pairs:
            order = [("main", main_frame), ("lores", lores_frame)]
            for name, frame in order if r % 2 == 0 else order[::-1]:
                family.reset()
                t0 = time.monotonic_ns()
                family.prepare(frame)
                ms[name].append((time.monotonic_ns() - t0) / 1e6)
    main_ms, lores_ms = statistics.median(ms["main"]), statistics.median(ms["lores"])
    return {"model": model.name, "family": family.name, "input": family.size, "lores": lores,
            "main_ms": main_ms, "lores_ms": lores_ms, "samples": len(ms["main"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--main", default="1280x720", help="main stream size WxH")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cv-threads", type=int, default=1, help="cv2.setNumThreads (1: prepare has one core)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(args.cv_threads)
    size = tuple(int(v) for v in args.main.lower().split("x"))
    images = read_clip(CLIP, size, args.frames)
    print(f"main {size[0]}x{size[1]}, {len(images)} frames of {CLIP.name} x {args.rounds} rounds, "
          f"cv2 threads {cv2.getNumThreads()}")
    print("| model | input | lores | prepare from main (ms, median) | from lores | ratio |")
    print("|---|---|---|---|---|---|")
    for model in MODELS:
        r = bench(model, images, args.rounds)
        print(f"| {r['model']} | {r['input'][0]}x{r['input'][1]} | {r['lores'][0]}x{r['lores'][1]} | "
              f"{r['main_ms']:.3f} | {r['lores_ms']:.3f} | {r['main_ms'] / r['lores_ms']:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
