"""What top-down (edge/poses/topdown.py) asks of a single-person family: its crops, read back and followed.

A region is where a person's crop is cut: an upright square box for MoveNet, a rotated square
(BlazePose's ``Roi``) for BlazePose's landmark model. Each adapter turns a detector box into a
region, cuts it, reads the model's outputs into a Pose, and gives the region for the next frame
(from the pose itself, as each model's reference tracking does).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edge.poses.base import crop_frame
from edge.poses.blazepose import AUX_CENTER, AUX_SCALE, BODY_LANDMARKS, BlazePose, Roi
from edge.poses.movenet import MoveNetSinglePose, next_crop_region, torso_visible
from edge.types import Frame, Pose

CROP_SCALE = 1.25  # square side / the box's long side (the ground-truth crop the model is evaluated on)
TRACK_KEYPOINT_SCORE = 0.2  # keypoints that place the next crop (MoveNet reference: MIN_CROP_KEYPOINT_SCORE)
TRACK_SCALE = 1.5  # square side / the confident keypoints' box: joints sit inside the body's outline
MIN_CROP_PX = 16.0
MAX_SHRINK = 0.8  # a tracked crop's side shrinks at most to this fraction of the last one, a frame
SURE_POSE = 0.3  # MoveNet: a new person's mean keypoint score that needs no detector agreement (edge/poses/topdown.py)


class CropModel(Protocol):
    name: str
    keypoint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    size: tuple[int, int]
    score_threshold: float
    default_score_threshold: float
    sure_score: float  # a new person this sure needs no detector agreement (topdown.SURE_DETECTION)

    def region(self, box) -> object: ...

    def box(self, region) -> tuple[float, float, float, float]: ...

    def crop(self, frame: Frame, region) -> tuple[list[np.ndarray], object]: ...

    def read(self, outputs: list[np.ndarray], transform) -> tuple[Pose, object | None] | None: ...

    def reset(self) -> None: ...


def square_box(box, scale: float) -> tuple[float, float, float, float]:
    """A square centred on ``box`` with side ``scale`` x its long side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    half = max(x2 - x1, y2 - y1, MIN_CROP_PX) * scale / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return (cx - half, cy - half, cx + half, cy + half)


def crop_from_keypoints(kp: np.ndarray, width: int, height: int,
                        previous_side: float | None = None) -> tuple[float, float, float, float] | None:
    """The next frame's crop for a tracked person, from their keypoints; None = lost.

    With the torso seen it is MoveNet's reference ``determine_crop_region`` (centred on the hips, sized
    by the torso and the confident joints), which does not shrink when limbs leave a tight crop;
    otherwise a square around the confident keypoints. It never shrinks by more than MAX_SHRINK a
    frame: a crop that cut off part of the body would otherwise see less of it each frame, until lost.
    """
    ok = kp[:, 2] >= TRACK_KEYPOINT_SCORE
    if ok.sum() < 3:
        return None
    if torso_visible(kp):
        box = next_crop_region(kp, width, height)
    else:
        xs, ys = kp[ok, 0], kp[ok, 1]
        box = square_box((xs.min(), ys.min(), xs.max(), ys.max()), TRACK_SCALE)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    if not (0 <= cx < width and 0 <= cy < height):
        return None
    half = (box[2] - box[0]) / 2
    if previous_side:
        half = max(half, previous_side * MAX_SHRINK / 2)
    return (cx - half, cy - half, cx + half, cy + half)


class _Family:
    """The family's own names and thresholds, seen through the adapter."""

    def __init__(self, family):
        self.family = family
        self.name = family.name
        self.keypoint_names = family.keypoint_names
        self.edges = family.edges
        self.size = family.size
        self.default_score_threshold = getattr(family, "default_score_threshold", family.score_threshold)

    @property
    def score_threshold(self) -> float:
        return self.family.score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.family.score_threshold = value

    def reset(self) -> None:
        self.family.reset()


class MoveNetCrops(_Family):
    """MoveNet SinglePose (Lightning, Thunder): upright square crops; score = mean keypoint score."""

    sure_score = SURE_POSE

    def region(self, box) -> tuple[float, float, float, float]:
        return square_box(box, CROP_SCALE)

    def box(self, region) -> tuple[float, float, float, float]:
        return region

    def crop(self, frame: Frame, region) -> tuple[list[np.ndarray], object]:
        patch, t = crop_frame(frame, region, self.size)
        return [patch[None]], t

    def read(self, outputs, t):
        kp = self.family.keypoints(outputs, t)
        if not np.isfinite(kp).all():  # a broken model's NaN/Inf is nobody (the pipeline counts such frames)
            return None
        side = t.sx * t.input_w  # this crop's side in frame pixels
        return Pose(kp, float(kp[:, 2].mean())), crop_from_keypoints(kp, t.frame_w, t.frame_h, side)


class BlazePoseCrops(_Family):
    """BlazePose's landmark model: a detector box becomes an upright ROI; after that the ROI follows the
    auxiliary landmarks, rotated with the body (MediaPipe's pose_landmarks_to_roi). Score = presence."""

    sure_score = 0.9  # presence: MediaPipe tracks from 0.5; a new person on a weak box must be near certain

    def region(self, box) -> Roi:
        x1, y1, x2, y2 = (float(v) for v in box)
        return Roi((x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1, MIN_CROP_PX) * CROP_SCALE, 0.0)

    def box(self, region: Roi) -> tuple[float, float, float, float]:
        half = region.size / 2  # the rotated square's upright bounds are close enough to compare crops
        return (region.cx - half, region.cy - half, region.cx + half, region.cy + half)

    def crop(self, frame: Frame, region: Roi):
        return self.family.crop_roi(frame, region)

    def read(self, outputs, t):
        fam: BlazePose = self.family
        if not (np.isfinite(outputs[fam._lm]).all() and np.isfinite(outputs[fam._flag]).all()):
            return None
        kp, presence = fam.landmarks(outputs, t)
        roi = Roi.from_points(kp[AUX_CENTER, :2], kp[AUX_SCALE, :2])
        pose = Pose(kp[:BODY_LANDMARKS], presence)
        return (pose.coco17() if fam.options.coco17_view else pose), (roi if roi.usable(t.frame_w, t.frame_h) else None)


def crop_model(family) -> CropModel | None:
    """The top-down adapter for a single-person family, or None when it has none."""
    if isinstance(family, MoveNetSinglePose):
        return MoveNetCrops(family)
    if isinstance(family, BlazePose):
        return BlazePoseCrops(family)
    return None
