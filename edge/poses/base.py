"""PoseFamily protocol and registry. A family is ``prepare`` plus ``decode``.

A family knows its tensors, never the runtime: it gets the backend's TensorSpecs and
metadata at construction, and turns a Frame into input arrays and raw outputs into Poses.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from edge.post.geometry import AffineTransform, Transform, crop_square, letterbox
from edge.runtime.base import BackendOptions, TensorSpec
from edge.types import Frame, Pose

log = logging.getLogger(__name__)
LORES_ROUNDING_PX = 2  # the camera rounds the lores size down to even numbers: up to 2 px short per axis


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


class CropBatch(list):
    """Several model inputs for one frame (top-down: one input list per person crop).

    The runner runs the model once per entry and hands decode the list of their outputs; an
    empty batch (nobody found) runs nothing.
    """


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


# -- where a prepare step reads its pixels: the camera's lores image when it is big enough ------
def model_view(frame: Frame, region: tuple[float, float], out: tuple[float, float]) -> tuple[np.ndarray, float, float]:
    """The image to resample a ``region`` (w, h frame pixels) of the frame into ``out`` (w, h model pixels).

    That is ``frame.model_image`` (the ISP already resized it, so resampling it is cheap) when it has
    the frame's aspect ratio and at least as many pixels across the region as the model gets (within
    the camera's even-size rounding); otherwise the frame's own image, because a crop from the lores
    would be upsampled and lose detail. Returns (image, kx, ky): frame pixel = image pixel * (kx, ky).
    """
    lores = frame.model_image
    if lores is None:
        return frame.image, 1.0, 1.0
    (h, w), (lh, lw) = frame.image.shape[:2], lores.shape[:2]
    zx, zy = lw / w, lh / h  # lores pixels per frame pixel
    slack = LORES_ROUNDING_PX / min(lw, lh)
    if abs(zx - zy) > slack * max(zx, zy):
        _aspect_mismatch((w, h), (lw, lh))
        return frame.image, 1.0, 1.0
    if region[0] * zx < out[0] * (1 - slack) or region[1] * zy < out[1] * (1 - slack):
        return frame.image, 1.0, 1.0
    _lores_used((w, h), (lw, lh))
    return lores, w / lw, h / lh


@functools.lru_cache(maxsize=16)
def _lores_used(main: tuple[int, int], lores: tuple[int, int]) -> None:
    log.info("the model reads the camera's %dx%d lores stream (main %dx%d): the ISP did the resize; "
             "crops that would be upsampled from it still come from main", *lores, *main)


@functools.lru_cache(maxsize=16)
def _aspect_mismatch(main: tuple[int, int], lores: tuple[int, int]) -> None:
    log.warning("the %dx%d lores stream does not have the %dx%d main stream's aspect ratio: the model resizes "
                "main instead (slower). Set source.lores to true (sized for the model) or to a size with main's "
                "aspect ratio", *lores, *main)


def letterbox_frame(frame: Frame, size: tuple[int, int], pad_value: int = 114) -> tuple[np.ndarray, Transform]:
    """letterbox() of the whole frame, from the lores image when it is big enough; maps back to frame pixels."""
    w, h = frame.width, frame.height
    r = min(size[0] / w, size[1] / h)
    image, kx, ky = model_view(frame, (w, h), (w * r, h * r))
    canvas, t = letterbox(image, size, pad_value)
    return canvas, t.rescaled(kx, ky, w, h)


def crop_frame(frame: Frame, box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[np.ndarray, Transform]:
    """crop_square() of ``box`` (frame pixels), from the lores image unless that would upsample it."""
    x1, y1, x2, y2 = box
    image, kx, ky = model_view(frame, (x2 - x1, y2 - y1), size)
    patch, t = crop_square(image, (x1 / kx, y1 / ky, x2 / kx, y2 / ky), size)
    return patch, t.rescaled(kx, ky, frame.width, frame.height)
