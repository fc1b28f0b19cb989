"""Where model files are found: a path, or 'default' for the shipped MoveNet Lightning INT8.

Search order for bare names: $EDGEPOSE_MODELS, the checkout's models/ folder, then
<prefix>/share/edgepose/models (where a wheel install puts the shipped files).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from edge.errors import ModelError

DEFAULT_MODEL = "movenet-lightning-int8.tflite"


def search_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("EDGEPOSE_MODELS")
    if env:
        dirs.append(Path(env))
    dirs.append(Path(__file__).resolve().parent.parent / "models")
    dirs.append(Path(sys.prefix) / "share" / "edgepose" / "models")
    return dirs


def resolve_model(spec: str) -> Path:
    """The file for a model path, a bare file name in the search dirs, or 'default'."""
    name = DEFAULT_MODEL if spec in ("", "default") else spec
    p = Path(name).expanduser()
    if p.is_file():
        return p
    if not p.is_absolute() and len(p.parts) == 1:
        for d in search_dirs():
            if (d / name).is_file():
                return d / name
    if spec in ("", "default"):
        looked = ", ".join(str(d) for d in search_dirs())
        raise ModelError(
            f"the shipped default model {DEFAULT_MODEL} was not found (looked in {looked}); reinstall edgepose "
            "or rebuild it with: python3 scripts/build_models.py"
        )
    raise ModelError(f"model file {spec} does not exist; check --model / model.path")
