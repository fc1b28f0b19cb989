"""Top-down multi-person: a person detector finds each person, a single-person model poses each crop.

A single-person model (MoveNet Lightning or Thunder) looks at one person; on a frame with several
it blends them into one pose. Top-down puts a person detector in front of it: the detector's boxes
become square crops (``CROP_SCALE`` x the box's long side, as the evaluation's ground-truth crops),
the model runs once per crop (``CropBatch``: the runner runs each), and each crop's keypoints are
mapped back to the frame.

Between frames each person's crop follows their own keypoints (the box of the confident keypoints,
as MoveNet's and BlazePose's reference code re-crop from the last pose), so the detector runs only
when someone may have appeared or been lost:

- on the first frame, and on every frame while nobody is tracked;
- on the frame after a tracked person is lost (their crop's pose score fell below the threshold);
- every ``redetect_s`` of the stream's time while people are tracked, to find newcomers.

A detection whose crop shares most of a tracked crop is the same person and keeps the tracked crop.
Two crops that converge on one person are merged (their shared joints lie close: ``same_person``).
Track IDs, smoothing and analytics see ordinary multi-person poses.

The detector is handed in (the model loader opens it): the family knows no runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.poses.base import CropBatch, crop_frame
from edge.poses.movenet import next_crop_region, torso_visible
from edge.types import Frame, Pose

CROP_SCALE = 1.25  # square side / the box's long side (the ground-truth crop the model is evaluated on)
TRACK_KEYPOINT_SCORE = 0.2  # keypoints that place the next crop (MoveNet reference: MIN_CROP_KEYPOINT_SCORE)
TRACK_SCALE = 1.5  # square side / the confident keypoints' box: joints sit inside the body's outline
MIN_CROP_PX = 16.0
# A new person (not yet tracked) is reported when the pose model is sure of them, or when both models agree
# somewhat. On the empty room of intel_one-by-one-person-detection.mp4 (frames 0-53) the detector proposes
# boxes up to 0.16 whose crops the model poses at up to 0.22; on coco8-pose real people reach 0.3 with a
# detector score as low as 0.057, and a half-hidden one 0.245 at 0.33 (zidane.jpg). A tracked person stays
# until their pose falls below score_threshold (hysteresis).
SURE_POSE = 0.3
SURE_DETECTION = 0.2
SAME_PERSON_OVERLAP = 0.6  # a detection whose crop and a tracked crop share this much of the smaller is that person
DUPLICATE_IOU = 0.6  # two poses with too few joints seen to compare, whose boxes overlap this much, are one person
SAME_JOINTS = 0.1  # two poses whose shared joints lie this close (x the box diagonal) are one person
MAX_SHRINK = 0.8  # a tracked crop's side shrinks at most to this fraction of the last one, a frame


class PersonDetector(Protocol):
    """Finds people in a whole frame: (N,4) x1, y1, x2, y2 boxes in frame pixels and (N,) scores."""

    name: str
    runs: int

    def detect(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]: ...


class CropModel(Protocol):
    """What top-down needs of a single-person family (MoveNetSinglePose has it)."""

    name: str
    keypoint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    size: tuple[int, int]
    score_threshold: float

    def keypoints(self, outputs: list[np.ndarray], transform) -> np.ndarray: ...


def square_box(box: np.ndarray | tuple, scale: float) -> tuple[float, float, float, float]:
    """A square centred on ``box`` with side ``scale`` x its long side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    half = max(x2 - x1, y2 - y1, MIN_CROP_PX) * scale / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return (cx - half, cy - half, cx + half, cy + half)


def box_iou(a: tuple, b: tuple) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


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


def same_person(a: Pose, b: Pose) -> bool:
    """Two poses of one person: their joints seen in both lie close (a tenth of the larger box's diagonal)."""
    both = (a.keypoints[:, 2] >= TRACK_KEYPOINT_SCORE) & (b.keypoints[:, 2] >= TRACK_KEYPOINT_SCORE)
    if both.sum() < 5:
        return box_iou(a.bbox, b.bbox) >= DUPLICATE_IOU
    diag = max(np.hypot(p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1]) for p in (a, b))
    dist = np.linalg.norm(a.keypoints[both, :2] - b.keypoints[both, :2], axis=1)
    return float(np.median(dist)) <= SAME_JOINTS * max(diag, 1.0)


def overlap_of_smaller(a: tuple, b: tuple) -> float:
    """Intersection over the smaller box: 1 when one holds the other (a shrunken crop inside a detection)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return w * h / smaller if smaller > 0 else 0.0


@dataclass
class DetectorSchedule:
    """When the detector runs (see the module docstring); counts what it did for the logs and the bench."""

    redetect_s: float
    runs: int = 0
    frames: int = 0
    _last_ns: int | None = None

    def due(self, t_ns: int, tracked: int, lost: bool) -> bool:
        self.frames += 1
        if tracked == 0 or lost or self._last_ns is None or t_ns < self._last_ns:
            return True
        return self.redetect_s >= 0 and (t_ns - self._last_ns) >= self.redetect_s * 1e9

    def ran(self, t_ns: int) -> None:
        self.runs += 1
        self._last_ns = t_ns

    def reset(self) -> None:
        self._last_ns = None


class TopDown:
    """A PoseFamily: ``detector`` finds people, ``inner`` poses each crop. Multi-person output."""

    def __init__(self, inner: CropModel, detector: PersonDetector, redetect_s: float = 1.0,
                 max_people: int = 10, tracking: bool = True):
        self.inner = inner
        self.detector = detector
        self.name = inner.name  # the pose model's family; ``topdown`` says how it is used
        self.topdown = detector.name
        self.keypoint_names = inner.keypoint_names
        self.edges = inner.edges
        self.max_people = max_people
        self.tracking = tracking
        self.schedule = DetectorSchedule(redetect_s)
        self._crops: list[tuple[float, float, float, float]] = []  # from the last decode, for the next frame
        self._lost = False
        self._tracked = False

    @property
    def default_score_threshold(self) -> float:
        return getattr(self.inner, "default_score_threshold", self.inner.score_threshold)

    @property
    def size(self) -> tuple[int, int]:
        """The pose model's input (what a picamera lores stream is sized for)."""
        return self.inner.size

    @property
    def score_threshold(self) -> float:
        return self.inner.score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.inner.score_threshold = value

    def reset(self) -> None:
        self._crops, self._lost = [], False
        self.schedule.reset()
        reset = getattr(self.inner, "reset", None)
        if reset:
            reset()

    def crops_for(self, frame: Frame) -> list[tuple[tuple[float, float, float, float], float | None]]:
        """This frame's person crops with their detector score (None = tracked): the tracked ones, plus
        the detector's newcomers when it is due."""
        tracked = list(self._crops) if self.tracking else []  # one read: decode replaces the list
        self._tracked = bool(tracked)
        crops: list[tuple[tuple[float, float, float, float], float | None]] = [(c, None) for c in tracked]
        if not self.schedule.due(frame.t_stream_ns, len(tracked), self._lost or not self.tracking):
            return crops
        boxes, scores = self.detector.detect(frame)
        self.schedule.ran(frame.t_stream_ns)
        for i in np.argsort(-scores, kind="stable"):  # the detector's own NMS already split its people
            crop = square_box(boxes[i], CROP_SCALE)
            if all(overlap_of_smaller(crop, c) < SAME_PERSON_OVERLAP for c in tracked):
                crops.append((crop, float(scores[i])))
        return crops[: self.max_people]

    def prepare(self, frame: Frame) -> tuple[CropBatch, list]:
        inputs, transforms = CropBatch(), []
        for crop, detection in self.crops_for(frame):
            patch, t = crop_frame(frame, crop, self.inner.size)
            inputs.append([patch[None]])
            transforms.append((t, detection))
        return inputs, transforms

    def accepts(self, pose_score: float, detection: float | None) -> bool:
        """Is this crop's pose a person? (see SURE_POSE)"""
        if pose_score < self.inner.score_threshold:
            return False
        return detection is None or pose_score >= SURE_POSE or detection >= SURE_DETECTION

    def decode(self, outputs: list[list[np.ndarray]], transforms: list) -> list[Pose]:
        poses, crops, lost = [], [], False
        for out, (t, detection) in zip(outputs, transforms):
            kp = self.inner.keypoints(out, t)
            if not np.isfinite(kp).all():  # a broken model's NaN/Inf is nobody (the pipeline counts such frames)
                lost = True
                continue
            score = float(kp[:, 2].mean())
            if not self.accepts(score, detection):
                lost = lost or detection is None  # a tracked person lost; a rejected proposal is nobody
                continue
            poses.append(Pose(kp, score))
            side = t.sx * t.input_w  # this crop's side in frame pixels
            crops.append(crop_from_keypoints(kp, t.frame_w, t.frame_h, side))  # None: posed, but not followed
        keep: list[int] = []
        for i in sorted(range(len(poses)), key=lambda i: -poses[i].score):  # two crops on one person: the better
            if len(keep) < self.max_people and not any(same_person(poses[i], poses[k]) for k in keep):
                keep.append(i)
        poses, crops = [poses[i] for i in keep], [crops[i] for i in keep]
        lost = lost or any(c is None for c in crops)
        self._crops, self._lost = [c for c in crops if c is not None], lost
        return poses

    @property
    def last_was_tracked(self) -> bool:
        """True when the frame just prepared started from crops tracked from the previous poses."""
        return self._tracked


class MultiPoseDetector:
    """MoveNet MultiPose as a person detector: its people's boxes (the pose model then refines each)."""

    name = "movenet_multipose"

    def __init__(self, family, backend, min_score: float):
        self.family = family  # a MoveNetMultiPose
        self.backend = backend
        self.family.score_threshold = min_score
        self.runs = 0

    def detect(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        inputs, t = self.family.prepare(frame)
        poses = self.family.decode(self.backend.run(inputs), t)
        self.runs += 1
        if not poses:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        return (np.asarray([p.bbox for p in poses], dtype=np.float32),
                np.asarray([p.score for p in poses], dtype=np.float32))

    def close(self) -> None:
        self.backend.close()
