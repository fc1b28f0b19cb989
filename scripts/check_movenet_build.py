#!/usr/bin/env python3
"""Developer check: is a MoveNet SinglePose build as good and as fast as a reference file?

Compares one or more MoveNet SinglePose TFLite files (for example ours, built by
``scripts/build_models.py``, and Google's official INT8 file) on

* their tensors: input ``uint8 [1,192,192,3]``, output ``float32 [1,1,17,3]``;
* PCK@0.1 on every labelled person of a YOLO-pose data set (for example coco8-pose):
  a square crop of side 1.25 x max(w, h) centred on the ground-truth box (zero padding
  outside the image), resized to 192 x 192 RGB; a visible keypoint (v > 0) counts as
  correct when it lies within 0.1 x the box diagonal of the ground truth;
* the median single-thread ``invoke()`` time.

It reads only the paths given on its command line and ships nothing. Example::

    python3 scripts/check_movenet_build.py --data ../shared/data/coco8-pose \\
        models/movenet-lightning-int8.tflite \\
        ../shared/models/movenet_singlepose_lightning_int8_4.tflite
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

SIZE = 192
CROP_SCALE = 1.25
PCK_ALPHA = 0.1


def load_people(data: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Return (RGB image, box cx cy w h in pixels, keypoints (17, 3) x y v in pixels) per person."""
    people = []
    for label in sorted(data.glob("labels/*/*.txt")):
        split = label.parent.name
        matches = sorted((data / "images" / split).glob(label.stem + ".*"))
        if not matches:
            raise SystemExit(f"no image for {label}")
        bgr = cv2.imread(str(matches[0]), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        for line in label.read_text().splitlines():
            vals = [float(v) for v in line.split()]
            if len(vals) != 5 + 17 * 3:
                continue
            box = np.array(vals[1:5]) * [w, h, w, h]
            kpts = np.array(vals[5:], dtype=np.float64).reshape(17, 3)
            kpts[:, 0] *= w
            kpts[:, 1] *= h
            people.append((rgb, box, kpts))
    return people


def square_crop(rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """Crop a zero-padded square around the box; return (192x192 RGB, x0, y0, side)."""
    cx, cy, bw, bh = box
    side = CROP_SCALE * max(bw, bh)
    x0, y0 = cx - side / 2, cy - side / 2
    ix0, iy0 = int(round(x0)), int(round(y0))
    iside = max(1, int(round(side)))
    canvas = np.zeros((iside, iside, 3), np.uint8)
    h, w = rgb.shape[:2]
    sx0, sy0 = max(ix0, 0), max(iy0, 0)
    sx1, sy1 = min(ix0 + iside, w), min(iy0 + iside, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - iy0:sy1 - iy0, sx0 - ix0:sx1 - ix0] = rgb[sy0:sy1, sx0:sx1]
    crop = cv2.resize(canvas, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    return crop, float(ix0), float(iy0), float(iside)


class Model:
    def __init__(self, path: Path, threads: int = 1):
        self.path = path
        self.interp = Interpreter(model_path=str(path), num_threads=threads)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]

    def describe(self) -> str:
        i, o = self.inp, self.out
        return (f"input {np.dtype(i['dtype']).name} {[int(d) for d in i['shape']]} -> "
                f"output {np.dtype(o['dtype']).name} {[int(d) for d in o['shape']]}")

    def tensors_ok(self) -> bool:
        return (self.inp["dtype"] == np.uint8 and list(self.inp["shape"]) == [1, SIZE, SIZE, 3]
                and self.out["dtype"] == np.float32 and list(self.out["shape"]) == [1, 1, 17, 3])

    def run(self, crop: np.ndarray) -> np.ndarray:
        self.interp.set_tensor(self.inp["index"], crop[None].astype(self.inp["dtype"]))
        self.interp.invoke()
        return self.interp.get_tensor(self.out["index"])[0, 0].copy()  # (17, 3) y, x, score

    def median_invoke_ms(self, runs: int) -> float:
        rng = np.random.default_rng(0)
        self.interp.set_tensor(self.inp["index"], rng.integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8))
        for _ in range(10):
            self.interp.invoke()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter_ns()
            self.interp.invoke()
            times.append(time.perf_counter_ns() - t0)
        return statistics.median(times) / 1e6


def pck(model: Model, people) -> tuple[float, int, int]:
    correct = total = 0
    for rgb, box, gt in people:
        crop, x0, y0, side = square_crop(rgb, box)
        out = model.run(crop)
        px = x0 + out[:, 1] * side
        py = y0 + out[:, 0] * side
        thr = PCK_ALPHA * float(np.hypot(box[2], box[3]))
        vis = gt[:, 2] > 0
        dist = np.hypot(px - gt[:, 0], py - gt[:, 1])
        correct += int(np.sum(dist[vis] <= thr))
        total += int(np.sum(vis))
    return (correct / total if total else float("nan")), correct, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="MoveNet SinglePose .tflite files")
    ap.add_argument("--data", type=Path, required=True, help="YOLO-pose data set (images/, labels/)")
    ap.add_argument("--runs", type=int, default=200, help="timed invokes per model (default 200)")
    ap.add_argument("--max-gap", type=float, default=0.02,
                    help="fail if a model's PCK is more than this below the first reference (last model)")
    args = ap.parse_args(argv)

    people = load_people(args.data)
    print(f"{len(people)} labelled people in {args.data}")
    results = []
    ok = True
    for path in args.models:
        m = Model(path)
        score, c, t = pck(m, people)
        ms = m.median_invoke_ms(args.runs)
        print(f"{path}: {m.describe()}  PCK@{PCK_ALPHA}={score:.3f} ({c}/{t})  "
              f"median 1-thread invoke {ms:.2f} ms over {args.runs} runs")
        if not m.tensors_ok():
            print(f"  FAIL: expected input uint8 [1,{SIZE},{SIZE},3] and output float32 [1,1,17,3]")
            ok = False
        results.append(score)
    if len(results) > 1:
        ref = results[-1]
        for path, score in zip(args.models[:-1], results[:-1]):
            gap = ref - score
            verdict = "ok" if gap <= args.max_gap else "FAIL"
            ok &= verdict == "ok"
            print(f"{path.name} vs {args.models[-1].name}: {100 * (score - ref):+.1f} points ({verdict})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
