#!/usr/bin/env python3
"""Build the bundled sample photos in edge/assets/samples/ from PyPI wheels.

The embedded default (a demo that runs with no camera) needs a person photo that the
package may ship. Two public-domain photos come inside registry packages:

* ``astronaut.png`` (NASA, Eileen Collins) in the scikit-image wheel, ``skimage/data/``;
* ``grace_hopper.jpg`` (US Navy, Grace Hopper) in the matplotlib wheel,
  ``matplotlib/mpl-data/sample_data/``.

This script ``pip download``s the pinned wheels (no install), takes the photos out,
scales them to at most 512 px on the long side and re-encodes them as JPEG quality 90
with OpenCV, so they are small. It also writes the folder's README.md. Usage::

    python3 scripts/build_samples.py [--workdir ~/.cache/edgepose-build] [--out edge/assets/samples]

Needs ``opencv-python`` (or -headless) and network access to PyPI.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
MAX_SIDE = 512
JPEG_QUALITY = 90
# (output name, wheel requirement, path inside the wheel, sha256 of that file, credit)
SAMPLES = [
    ("astronaut.jpg", "scikit-image==0.25.2", "skimage/data/astronaut.png",
     "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
     "Astronaut Eileen Collins, NASA photograph (public domain)"),
    ("grace_hopper.jpg", "matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
     "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
     "Rear Admiral Grace Hopper, US Navy photograph (public domain)"),
]


def wheel_for(req: str, wheels: Path) -> Path:
    name, version = req.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", "--dest", str(wheels), req]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        found = sorted(wheels.glob(pattern))
    if not found:
        raise SystemExit(f"pip download {req} gave no wheel matching {pattern} in {wheels}")
    return found[0]


def reencode(data: bytes) -> tuple[bytes, tuple[int, int]]:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # BGR in, BGR out
    if img is None:
        raise SystemExit("OpenCV could not decode the photo")
    h, w = img.shape[:2]
    scale = MAX_SIDE / max(h, w)
    if scale < 1:
        img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise SystemExit("OpenCV could not encode the JPEG")
    return buf.tobytes(), (img.shape[1], img.shape[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("~/.cache/edgepose-build"),
                    help="where the downloaded wheels are kept (default ~/.cache/edgepose-build)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "edge" / "assets" / "samples")
    args = ap.parse_args(argv)
    wheels = args.workdir.expanduser() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    for out_name, req, member, digest, credit in SAMPLES:
        whl = wheel_for(req, wheels)
        with zipfile.ZipFile(whl) as zf:
            data = zf.read(member)
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise SystemExit(f"{member} in {whl.name}: sha256 {actual}, expected {digest}")
        jpeg, (w, h) = reencode(data)
        (args.out / out_name).write_bytes(jpeg)
        sha = hashlib.sha256(jpeg).hexdigest()
        print(f"wrote {args.out / out_name} ({w}x{h}, {len(jpeg)} bytes) sha256 {sha}")
        rows.append(f"| `{out_name}` | {w}×{h} | {credit} | PyPI `{req}`, wheel file `{member}` | `{sha}` |")

    readme = f"""# Bundled sample photos

Person photos for the embedded default (a demo that runs without a camera) and for quick checks.
Both are **public domain** (works of the US federal government), taken from PyPI wheels and
re-encoded by OpenCV {cv2.__version__} as JPEG quality {JPEG_QUALITY}, at most {MAX_SIDE} px on the long side.

| file | size | what | source | sha256 |
|---|---|---|---|---|
{chr(10).join(rows)}

The scikit-image and matplotlib packages themselves are BSD-3-Clause and PSF-style licensed; only
these public-domain photos are taken from them. Rebuild with

    python3 scripts/build_samples.py

(the bytes can differ with another OpenCV/libjpeg version; the pictures do not).
"""
    (args.out / "README.md").write_text(readme)
    print(f"wrote {args.out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
