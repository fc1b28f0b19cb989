#!/usr/bin/env python3
"""Dumps, per reference image and model, what each stage of the pipeline computes on this platform.

scripts/test-arm64.sh runs it on x86_64 first and then inside the emulated aarch64 root with
``--ref`` pointing at the x86_64 dump, so that scripts/compare_platforms.py can tell *where* two
platforms part: the decoded picture (OpenCV's image codecs), the prepared model input (OpenCV's
resize, numpy), or the model run itself (LiteRT with XNNPACK, through the pipeline's backend).
With ``--ref`` the model runs on the other platform's input, so that only inference differs.

    python3 scripts/platform_probe.py OUT IMAGES MODEL... [--ref REF]

OUT gets <image>--<model>--{rgb,input,output}.npy (the model's first output).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.capture.base import to_rgb8  # noqa: E402
from edge.config import Config, override  # noqa: E402
from edge.model import load_model  # noqa: E402
from edge.types import Frame  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def model_tag(spec: str) -> str:
    return Path(spec).stem if spec != "default" else "default"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--ref", type=Path, help="the other platform's dump: its inputs are fed to the models")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    for spec in args.models:
        model = load_model(override(Config(), **{"model.path": spec, "model.threads": 1}), topdown=False)  # the model itself
        for image in images:
            stem = f"{image.name}--{model_tag(spec)}"
            rgb = to_rgb8(cv2.imread(str(image), cv2.IMREAD_UNCHANGED), bgr=True, what=str(image))  # as ImageSource reads
            np.save(args.out / f"{stem}--rgb.npy", rgb)
            model.family.reset()
            inputs, _ = model.family.prepare(Frame(image=rgb, index=0, t_capture_ns=0, t_wall=0.0))
            np.save(args.out / f"{stem}--input.npy", inputs[0])
            if args.ref is not None:
                inputs = [np.load(args.ref / f"{stem}--input.npy")]
            np.save(args.out / f"{stem}--output.npy", model.backend.run(inputs)[0])
        print(f"platform_probe: {spec}: {len(images)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
