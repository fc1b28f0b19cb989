"""Pick the model family from the model's tensors and metadata (or an explicit override)."""

from __future__ import annotations

from edge.errors import ModelError
from edge.poses.base import REGISTRY, FamilyOptions, ModelSignature, PoseFamily


def _load_builtin() -> None:
    from edge.poses import blazepose, movenet, multipose, yolo  # noqa: F401  (register built-in families)


def describe(sig: ModelSignature) -> str:
    ins = "; ".join(s.describe() for s in sig.inputs)
    outs = "; ".join(s.describe() for s in sig.outputs)
    return f"inputs: {ins}  outputs: {outs}"


def detect_family(sig: ModelSignature, model_name: str = "model") -> str:
    _load_builtin()
    found = [name for name, (matches, _) in REGISTRY.items() if matches(sig)]
    if not found:
        raise ModelError(
            f"{model_name}: its tensors match no supported pose family ({describe(sig)}). "
            "Supported: movenet (MoveNet SinglePose: input [1,S,S,3], output [1,1,17,3]); movenet_multipose "
            "(output [1,6,56]); yolo (YOLOv8/YOLO11-pose: output [1,56,N] or [1,N,56]); yolo_e2e (YOLO26-pose "
            "end-to-end: output [1,300,57]); blazepose (MediaPipe pose landmark model: input [1,256,256,3], outputs "
            "[1,195] + [1,1] + ...). If it is one of these with an unusual layout, pass --family."
        )
    return found[0]


def make_family(sig: ModelSignature, options: FamilyOptions, family: str = "auto", model_name: str = "model") -> PoseFamily:
    """Build the family for a model; ``family`` = 'auto' detects it from the tensors."""
    _load_builtin()
    name = detect_family(sig, model_name) if family == "auto" else family
    if name not in REGISTRY:
        raise ModelError(f"unknown model family '{name}'; choose one of: auto, {', '.join(sorted(REGISTRY))}")
    try:
        return REGISTRY[name][1](sig, options)
    except (ValueError, IndexError) as exc:
        raise ModelError(f"{model_name} cannot be read as a {name} model: {exc} ({describe(sig)})") from None
