"""Build untrained YOLO11n-pose and YOLO26n-pose ONNX exports, to test decoders on real tensor layouts.

No trained YOLO26-pose file is available here, and the decoders must be checked against what
Ultralytics really exports (shapes, metadata, end-to-end head). Untrained weights are enough for
that: the layout, the metadata and the coordinate scale are the same as for a trained model.

Runs in its own virtualenv (torch 2.13.0 CPU + ultralytics), never in edgepose's dependencies:

    python3 scripts/export_untrained_yolo.py --out ~/.cache/edgepose/untrained-yolo

The exports are never committed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

TORCH = "torch==2.13.0"  # the CPU build on this machine's disk; any other spec pulls a CUDA build
PACKAGES = ["ultralytics==8.4.190", "ultralytics-thop==2.2.3", "torchvision==0.28.0"]  # installed --no-deps
LIGHT_DEPS = ["numpy", "opencv-python-headless", "pyyaml", "pillow", "requests", "psutil", "matplotlib", "scipy",
              "polars", "onnx>=1.12,<2", "onnxslim"]
MODELS = {"yolo11n-pose": "yolo11n-pose.yaml", "yolo26n-pose": "yolo26n-pose.yaml"}


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import ultralytics, onnx"], capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [TORCH], check=True)
    subprocess.run(pip + ["--no-deps"] + PACKAGES, check=True)
    subprocess.run(pip + LIGHT_DEPS + [TORCH], check=True)  # torch pinned again so nothing upgrades it
    return python


EXPORT = r"""
import sys
from pathlib import Path

import yaml
from ultralytics import YOLO
from ultralytics.nn.tasks import yaml_model_load

out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
for stem, cfg in {models!r}.items():
    spec = yaml_model_load(cfg)  # the packaged architecture, scale 'n' from the name
    spec["nc"] = 1  # one class, 'person', like the released pose models
    spec.pop("yaml_file", None)
    local = Path(cfg)
    local.write_text(yaml.safe_dump(spec))
    model = YOLO(str(local))
    # nms=False keeps YOLO26's NMS-free end-to-end head ([1,300,57]); the default falls back to [1,56,N]
    for suffix, extra in (("", {{}}), ("-e2e", {{"nms": False}})) if "26" in stem else (("", {{}}),):
        f = Path(model.export(format="onnx", imgsz=320, simplify=False, dynamic=False, opset=17, **extra))
        target = out / f"{{stem}}-untrained-320{{suffix}}.onnx"
        f.rename(target)
        print(target)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/edgepose/untrained-yolo"))
    ap.add_argument("--venv", default=os.path.expanduser("~/.cache/edgepose/ultralytics-venv"))
    args = ap.parse_args()
    python = ensure_venv(Path(args.venv))
    out = Path(args.out)
    workdir = out / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(workdir))
    subprocess.run([str(python), "-c", EXPORT.format(models=MODELS), str(out)], cwd=workdir, env=env, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
