"""Does Google's MoveNet MultiPose see the fourth person in bus.jpg at any input size? (docs/MODELS.md)

Runs the float SavedModel that scripts/build_models.py converts (no edgepose code in the loop) on
bus.jpg letterboxed or stretched to several sizes, and prints the best person scores of each. Run it
with the build environment's Python, after `scripts/build_models.py --models float`:

    ~/.cache/edgepose-build/venv/bin/python scripts/probe_multipose_sizes.py ../shared/data/images/bus.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tensorflow as tf

SIZES = [(256, 256, "letterbox"), (256, 192, "stretch"), (320, 320, "letterbox"), (384, 384, "letterbox"),
         (448, 448, "letterbox"), (512, 384, "stretch"), (512, 512, "letterbox")]


def fit(image: tf.Tensor, h: int, w: int, mode: str) -> np.ndarray:
    """Area-resize into (h, w): stretched, or letterboxed (aspect kept, centred on black)."""
    ih, iw = int(image.shape[0]), int(image.shape[1])
    if mode == "stretch":
        return tf.cast(tf.round(tf.image.resize(image, (h, w), method="area")), tf.int32).numpy()
    s = min(w / iw, h / ih)
    nh, nw = round(ih * s), round(iw * s)
    small = tf.cast(tf.round(tf.image.resize(image, (nh, nw), method="area")), tf.int32).numpy()
    canvas = np.zeros((h, w, 3), np.int32)
    y0, x0 = (h - nh) // 2, (w - nw) // 2
    canvas[y0:y0 + nh, x0:x0 + nw] = small
    return canvas


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("--saved-model", type=Path, default=Path("~/.cache/edgepose-build/savedmodel-multipose"))
    args = ap.parse_args()
    model = tf.saved_model.load(str(args.saved_model.expanduser()))
    sig = model.signatures["serving_default"]
    (out_name,) = sig.structured_outputs.keys()
    image = tf.io.decode_image(args.image.read_bytes(), channels=3, expand_animations=False)
    print("| input (h×w) and fit | person scores, best first |\n|---|---|")
    width = int(image.shape[1])
    pad = width // 5
    views = [(f"{h}×{w} {mode}", fit(image, h, w, mode)) for h, w, mode in SIZES] + [
        ("256×256 letterbox of the left half (2× zoom on the left edge)", fit(image[:, :width // 2], 256, 256, "letterbox")),
        ("256×256 letterbox after 20% mirror padding left and right",
         fit(tf.pad(image, [[0, 0], [pad, pad], [0, 0]], mode="REFLECT"), 256, 256, "letterbox")),
    ]
    for label, canvas in views:
        out = sig(tf.constant(canvas[None]))[out_name].numpy()[0]
        scores = sorted(out[:, 55].tolist(), reverse=True)[:4]
        print(f"| {label} | {', '.join(f'{s:.3f}' for s in scores)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
