"""Pick the model family from the model's tensors and metadata (or an explicit override)."""

from __future__ import annotations

import numpy as np

from edge.errors import ModelError
from edge.poses.base import REGISTRY, FamilyOptions, ModelSignature, PoseFamily
from edge.types import Frame


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


def fitting_families(sig: ModelSignature) -> list[str]:
    """Every family whose tensor layout this model has (first = what auto-detection picks)."""
    _load_builtin()
    return [name for name, (matches, _) in REGISTRY.items() if matches(sig)]


def _dry_run(family: PoseFamily, sig: ModelSignature) -> str | None:
    """None when a frame prepares into the model's input shapes and outputs of its shapes decode; else why not."""
    frame = Frame(np.zeros((480, 640, 3), np.uint8), 0, 0, 0.0)
    try:
        inputs, transform = family.prepare(frame)
        for array, spec in zip(inputs, sig.inputs):
            want = tuple(spec.shape)
            if len(array.shape) != len(want) or any(d is not None and d > 0 and d != a for a, d in zip(array.shape, want)):
                return f"it prepares an input of shape {list(array.shape)} for {spec.describe()}"
        outputs = [np.zeros(tuple(d if d and d > 0 else 1 for d in spec.shape), spec.dtype) for spec in sig.outputs]
        family.decode(outputs, transform)
    except Exception as exc:  # any failure here is the layout mismatch the user would otherwise meet mid-run
        return f"decoding outputs of these shapes fails ({type(exc).__name__}: {exc})"
    finally:
        family.reset()
    return None


def _wrong_family(name: str, sig: ModelSignature, model_name: str, why: str) -> ModelError:
    fits = fitting_families(sig)
    advice = (f"Families that fit these tensors: {', '.join(fits)}; remove --family (model.family: auto) to use "
              f"{fits[0]}, or pass one of those." if fits else
              f"No family fits these tensors; choose one of: {', '.join(sorted(REGISTRY))}, or export the model again.")
    return ModelError(f"{model_name} is not a {name} model: {why}. Its tensors: {describe(sig)}. {advice}")


def _check_override(family: PoseFamily, name: str, sig: ModelSignature, model_name: str) -> None:
    """An explicit family must fit the model: fail before the run, not with a traceback from the post thread."""
    if REGISTRY[name][0](sig):
        return
    problem = _dry_run(family, sig)
    if problem is None and not fitting_families(sig):  # an unusual layout the family can still read: what --family is for
        return
    raise _wrong_family(name, sig, model_name, problem or "its output layout is another family's")


def make_family(sig: ModelSignature, options: FamilyOptions, family: str = "auto", model_name: str = "model") -> PoseFamily:
    """Build the family for a model; ``family`` = 'auto' detects it from the tensors."""
    _load_builtin()
    name = detect_family(sig, model_name) if family == "auto" else family
    if name not in REGISTRY:
        raise ModelError(f"unknown model family '{name}'; choose one of: auto, {', '.join(sorted(REGISTRY))}")
    try:
        built = REGISTRY[name][1](sig, options)
    except (ValueError, IndexError, TypeError) as exc:  # a layout (or a damaged file's metadata) it cannot read
        if family != "auto":
            raise _wrong_family(name, sig, model_name, str(exc).rstrip(".")) from None
        raise ModelError(f"{model_name} cannot be read as a {name} model: {exc} ({describe(sig)})") from None
    if family != "auto":
        _check_override(built, name, sig, model_name)
    return built
