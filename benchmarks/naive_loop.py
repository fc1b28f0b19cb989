"""Variant (c): the naive single-threaded loop, written the way the TF Lite Raspberry Pi pose example is:

    while cap.isOpened():
        ok, image = cap.read()
        person = detector.detect(image)        # resize, invoke, decode
        image = visualize(image, person)       # draw the skeleton
        cv2.imshow(...)                        # publish

Each frame waits for the previous one to be drawn and published, so read, infer and output add
up. It uses edgepose's own model code (same prepare/decode/backend, same threads) so that the
only difference from the pipeline is the structure. ``DrawPublish`` is the output work both do:
draw the skeleton, encode the picture as JPEG (what a live view sends) and write a JSON line.

Run alone:  python3 benchmarks/naive_loop.py --model M --source CLIP [--threads 2] [--frames 300]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.bench import Case, case_config, summarize_ms  # noqa: E402
from edge.outputs.draw import draw_badge, draw_poses  # noqa: E402
from edge.model import load_model  # noqa: E402
from edge.types import Frame, PoseResult, StreamMeta  # noqa: E402


class DrawPublish:
    """Draw + JPEG + JSON line for one result. Also a Sink, so the pipeline can do the same work."""

    name = "draw_publish"

    def __init__(self, names=(), edges=(), path: str = os.devnull, in_place: bool = False):
        self.names, self.edges = names, edges
        self.in_place = in_place
        self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.jpeg_bytes = 0

    def open(self, meta: StreamMeta) -> None:
        self.names, self.edges = meta.keypoint_names, meta.edges

    def write(self, result: PoseResult, fps: float | None = None) -> None:
        image = draw_poses(result.frame.image, result.poses, self.names, self.edges, copy=not self.in_place)
        draw_badge(image, f"{fps or 0:.1f} fps | {len(result.poses)} people")
        ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        self.jpeg_bytes += len(jpg) if ok else 0
        self._file.write(json.dumps(result.to_dict()) + "\n")

    def close(self) -> None:
        self._file.close()


def naive_loop(model_path: Path, backend: str, threads: int, clip: str, frames: int, warmup: int = 10) -> dict:
    """Read -> infer -> draw -> publish, one frame at a time; FPS over ``frames`` after ``warmup``."""
    model = load_model(case_config(Case(Path(model_path), backend, threads)))
    out = DrawPublish(model.family.keypoint_names, model.family.edges, in_place=True)
    cap = cv2.VideoCapture(clip)
    done: list[int] = []
    fps = 0.0
    try:
        index = 0
        while cap.isOpened() and index < warmup + frames:
            ok, bgr = cap.read()
            if not ok:
                break
            t_capture = time.monotonic_ns()
            frame = Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index, t_capture, time.time())
            poses, timings = model.infer(frame)
            result = PoseResult(frame, poses, timings, time.monotonic_ns())
            out.write(result, fps)
            done.append(time.monotonic_ns())
            if len(done) > 1:
                fps = 1e9 / (done[-1] - done[-2])
            index += 1
    finally:
        cap.release()
        out.close()
        model.backend.close()
    t = np.array(done[warmup:], dtype=np.int64)
    if len(t) < 2:
        raise RuntimeError(f"{clip}: only {len(done)} frames read; need more than warmup + 1")
    return {"fps": round((len(t) - 1) * 1e9 / float(t[-1] - t[0]), 2), "frames": len(t),
            "frame_ms": summarize_ms(np.diff(t) / 1e6)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--backend", default="tflite")
    ap.add_argument("--source", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    a = ap.parse_args()
    print(json.dumps(naive_loop(Path(a.model), a.backend, a.threads, a.source, a.frames, a.warmup), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
