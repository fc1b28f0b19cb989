"""MoveNet SinglePose (Lightning 192, Thunder 256): output [1,1,17,3] = (y, x, score), normalised.

Between frames it crops around the previous pose, as Google's reference MoveNet code does
(``determine_crop_region``): the model then sees the person large, which is where its accuracy
comes from on wide camera frames.
"""

from __future__ import annotations

import numpy as np

from edge.post.geometry import Transform, square_around
from edge.poses.base import FamilyOptions, ModelSignature, crop_frame, image_input_layout, register
from edge.types import COCO17_EDGES, COCO17_NAMES, Frame, Pose

MIN_CROP_KEYPOINT_SCORE = 0.2  # Google's reference constant
_TORSO = (5, 6, 11, 12)  # shoulders, hips


def _matches(sig: ModelSignature) -> bool:
    return (
        len(sig.inputs) == 1
        and len(sig.outputs) == 1
        and tuple(sig.outputs[0].shape[-3:]) == (1, 17, 3)
        and len(sig.inputs[0].shape) == 4
    )


def torso_visible(kp: np.ndarray) -> bool:
    s = kp[:, 2]
    return bool((s[11] > MIN_CROP_KEYPOINT_SCORE or s[12] > MIN_CROP_KEYPOINT_SCORE)
                and (s[5] > MIN_CROP_KEYPOINT_SCORE or s[6] > MIN_CROP_KEYPOINT_SCORE))


def next_crop_region(kp: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    """Google's determine_crop_region, in frame pixels. ``kp`` is (17,3) [x, y, score] in frame pixels."""
    if not torso_visible(kp):
        return square_around(width, height)
    cx = (kp[11, 0] + kp[12, 0]) / 2
    cy = (kp[11, 1] + kp[12, 1]) / 2
    dx = np.abs(kp[:, 0] - cx)
    dy = np.abs(kp[:, 1] - cy)
    torso = list(_TORSO)
    body = kp[:, 2] >= MIN_CROP_KEYPOINT_SCORE
    half = max(
        dx[torso].max() * 1.9, dy[torso].max() * 1.9,
        (dy[body].max() if body.any() else 0.0) * 1.2, (dx[body].max() if body.any() else 0.0) * 1.2,
    )
    half = min(half, max(cx, width - cx, cy, height - cy))
    if half > max(width, height) / 2:
        return square_around(width, height)
    return (float(cx - half), float(cy - half), float(cx + half), float(cy + half))


class MoveNetSinglePose:
    name = "movenet"
    keypoint_names = COCO17_NAMES
    edges = COCO17_EDGES
    default_score_threshold = 0.15  # mean keypoint score; Google's demos draw points above ~0.11

    def __init__(self, sig: ModelSignature, options: FamilyOptions):
        layout, w, h = image_input_layout(sig.inputs[0], (192, 192))
        if layout != "nhwc":
            raise ValueError("MoveNet expects an NHWC input")
        self.size = (w, h)
        self.options = options
        self.score_threshold = (
            options.score_threshold if options.score_threshold is not None else self.default_score_threshold
        )
        self._crop: tuple[float, float, float, float] | None = None
        self._tracked = False

    def reset(self) -> None:
        self._crop = None

    def prepare(self, frame: Frame) -> tuple[list[np.ndarray], Transform]:
        box = self._crop if (self.options.tracking and self._crop is not None) else square_around(frame.width, frame.height)
        self._tracked = self._crop is not None and self.options.tracking
        patch, t = crop_frame(frame, box, self.size)  # the whole-frame square reads the lores; small crops, main
        # 0..255 values; the backend casts or quantizes to the input's dtype.
        return [patch[None]], t

    def keypoints(self, outputs: list[np.ndarray], t: Transform) -> np.ndarray:
        """(17,3) [x, y, score] in frame pixels."""
        raw = np.asarray(outputs[0], dtype=np.float32).reshape(17, 3)
        kp = np.empty((17, 3), dtype=np.float32)
        kp[:, 0] = raw[:, 1] * t.input_w
        kp[:, 1] = raw[:, 0] * t.input_h
        kp[:, :2] = t.to_frame(kp[:, :2])
        kp[:, 2] = raw[:, 2]
        return kp

    def decode(self, outputs: list[np.ndarray], transform: Transform) -> list[Pose]:
        kp = self.keypoints(outputs, transform)
        if not np.isfinite(kp).all():  # a broken model's NaN/Inf is nobody (the pipeline counts such frames)
            self._crop = None
            return []
        if self.options.tracking:
            self._crop = next_crop_region(kp, transform.frame_w, transform.frame_h)
        score = float(kp[:, 2].mean())
        if score < self.score_threshold:
            return []
        return [Pose(kp, score)]

    @property
    def last_was_tracked(self) -> bool:
        """True when the frame just prepared used a crop from the previous pose."""
        return self._tracked


@register("movenet", _matches)
def make_movenet(sig: ModelSignature, options: FamilyOptions) -> MoveNetSinglePose:
    return MoveNetSinglePose(sig, options)
