"""PoseFamily protocol and registry. A family is ``prepare`` plus ``decode``.

A family knows its tensors, never the runtime: it gets the backend's TensorSpecs and
metadata at construction, and turns a Frame into input arrays and raw outputs into Poses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from edge.post.geometry import AffineTransform, Transform
from edge.runtime.base import BackendOptions, TensorSpec
from edge.types import Frame, Pose


@dataclass
class FamilyOptions:
    score_threshold: float | None = None  # None = the family's own default
    keypoint_threshold: float = 0.2
    iou_threshold: float = 0.7
    max_people: int = 10
    tracking: bool = True
    # Two-stage families (BlazePose) open a second model (the detector) in the main model's runtime settings.
    model_path: str | None = None  # the main model's file: companions are looked for beside it
    detector: str | None = None  # None = the family's default file name
    backend: str = "auto"
    backend_options: BackendOptions | None = None
    coco17_view: bool = False  # 33-point families emit the COCO-17 subset instead


class PoseFamily(Protocol):
    name: str
    keypoint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]

    def prepare(self, frame: Frame) -> tuple[list[np.ndarray], Transform | AffineTransform]: ...

    def decode(self, outputs: list[np.ndarray], transform: Transform | AffineTransform) -> list[Pose]: ...

    def reset(self) -> None:
        """Forget state carried between frames (e.g. MoveNet's crop region)."""


@dataclass(frozen=True)
class ModelSignature:
    """What a family sees of a model: its tensors and embedded metadata."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metadata: dict[str, str]


FamilyFactory = Callable[[ModelSignature, FamilyOptions], PoseFamily]
Matcher = Callable[[ModelSignature], bool]
REGISTRY: dict[str, tuple[Matcher, FamilyFactory]] = {}


def register(name: str, matches: Matcher) -> Callable[[FamilyFactory], FamilyFactory]:
    def deco(factory: FamilyFactory) -> FamilyFactory:
        REGISTRY[name] = (matches, factory)
        return factory

    return deco


def image_input_layout(spec: TensorSpec, default_size: tuple[int, int]) -> tuple[str, int, int]:
    """('nhwc'|'nchw', width, height) of a 4-D image input; dynamic sizes fall back to ``default_size``."""
    shape = spec.shape
    if len(shape) != 4:
        raise ValueError(f"expected a 4-D image input, got {spec.describe()}")
    if shape[3] == 3:
        layout, h, w = "nhwc", shape[1], shape[2]
    elif shape[1] == 3:
        layout, h, w = "nchw", shape[2], shape[3]
    else:
        raise ValueError(f"input {spec.describe()} has no 3-channel axis")
    return layout, int(w or default_size[0]), int(h or default_size[1])
