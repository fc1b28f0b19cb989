"""Variant (b): Ultralytics ``YOLO(file, task="pose").predict(source=clip, stream=True)``.

Runs in its OWN virtual environment (never the project's), made once with:

    python3 -m venv ~/.cache/edgepose-bench/ultra-venv
    V=~/.cache/edgepose-bench/ultra-venv/bin/pip
    $V install torch==2.13.0                      # the CPU build on this machine's disk
    $V install --no-deps ultralytics ultralytics-thop "torchvision==0.28.*"
    $V install numpy opencv-python-headless pillow pyyaml requests psutil matplotlib ai-edge-litert

torchvision is there for its metadata only: Ultralytics reads its version at import, but the PyPI
wheel is built against CUDA torch and cannot load next to the CPU build. Ultralytics imports it for
video sources only to use its NMS, so a stub module routes ``torchvision.ops.nms`` to Ultralytics'
own pure-torch NMS (the one it uses for still images). Ultralytics gives LiteRT
min(8, cores - 1) threads; ``--threads`` sets that and torch's to the same count as ours.

Prints one JSON object: FPS over ``--frames`` frames after ``--warmup`` (edgepose's imports
are not used here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types


def stub_torchvision() -> None:
    from ultralytics.utils.nms import TorchNMS

    tv = types.ModuleType("torchvision")
    tv.ops = types.SimpleNamespace(nms=TorchNMS.nms)
    tv.__version__ = "stub"
    sys.modules["torchvision"] = tv


def main() -> int:
    ap = argparse.ArgumentParser(description="Ultralytics predict(stream=True) FPS")
    ap.add_argument("--model", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    a = ap.parse_args()

    import numpy as np
    import torch
    import ultralytics
    from ultralytics import YOLO
    from ultralytics.nn.backends import litert

    torch.set_num_threads(a.threads)
    litert.NUM_THREADS = a.threads
    stub_torchvision()
    model = YOLO(a.model, task="pose")
    done: list[int] = []
    people = 0
    for r in model.predict(source=a.source, stream=True, verbose=False):
        done.append(time.monotonic_ns())
        people += len(r.keypoints) if r.keypoints is not None else 0
        if len(done) >= a.warmup + a.frames:
            break
    t = np.array(done[a.warmup:], dtype=np.int64)
    ms = np.diff(t) / 1e6
    print(json.dumps({
        "fps": round((len(t) - 1) * 1e9 / float(t[-1] - t[0]), 2), "frames": len(t),
        "frame_ms": {"mean": round(float(ms.mean()), 3), "p50": round(float(np.median(ms)), 3)},
        "people_total": int(people), "threads": a.threads, "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
