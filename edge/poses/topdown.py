"""Top-down multi-person: a person detector finds each person, a single-person model poses each crop.

A single-person model (MoveNet Lightning or Thunder, BlazePose's landmark model) looks at one person; on a frame with several
it blends them into one pose. Top-down puts a person detector in front of it: the detector's boxes
become crops (edge/poses/crops.py: squares of 1.25 x the box's long side, the evaluation's ground-truth crops),
the model runs once per crop (``CropBatch``: the runner runs each), and each crop's keypoints are
mapped back to the frame.

Between frames each person's crop follows their own keypoints (MoveNet's determine_crop_region,
BlazePose's auxiliary landmarks: each model's reference code re-crops from the last pose), so the detector runs only
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

from edge.poses.base import CropBatch
from edge.poses.crops import SURE_POSE, TRACK_KEYPOINT_SCORE, CropModel  # noqa: F401  (SURE_POSE re-exported)
from edge.types import Frame, Pose

# A new person (not yet tracked) is reported when the pose model is sure of them, or when both models agree
# somewhat. On the empty room of intel_one-by-one-person-detection.mp4 (frames 0-53) the detector proposes
# boxes up to 0.16 whose crops the model poses at up to 0.22; on coco8-pose real people reach 0.3 with a
# detector score as low as 0.057, and a half-hidden one 0.245 at 0.33 (zidane.jpg). A tracked person stays
# until their pose falls below score_threshold (hysteresis).
SURE_DETECTION = 0.2
SAME_PERSON_OVERLAP = 0.6  # a detection whose crop and a tracked crop share this much of the smaller is that person
DUPLICATE_IOU = 0.6  # two poses with too few joints seen to compare, whose boxes overlap this much, are one person
SAME_JOINTS = 0.1  # two poses whose shared joints lie this close (x the box diagonal) are one person


class PersonDetector(Protocol):
    """Finds people in a whole frame: (N,4) x1, y1, x2, y2 boxes in frame pixels and (N,) scores."""

    name: str
    runs: int

    def detect(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]: ...


def box_iou(a: tuple, b: tuple) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


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
        self._crops: list = []  # regions from the last decode, for the next frame
        self._lost = False
        self._tracked = False

    @property
    def default_score_threshold(self) -> float:
        return self.inner.default_score_threshold

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
        self.inner.reset()

    def crops_for(self, frame: Frame) -> list[tuple[object, float | None]]:
        """This frame's person regions with their detector score (None = tracked): the tracked ones, plus
        the detector's newcomers when it is due."""
        tracked = list(self._crops) if self.tracking else []  # one read: decode replaces the list
        self._tracked = bool(tracked)
        crops: list[tuple[object, float | None]] = [(c, None) for c in tracked]
        if not self.schedule.due(frame.t_stream_ns, len(tracked), self._lost or not self.tracking):
            return crops
        boxes, scores = self.detector.detect(frame)
        self.schedule.ran(frame.t_stream_ns)
        held = [self.inner.box(c) for c in tracked]
        for i in np.argsort(-scores, kind="stable"):  # the detector's own NMS already split its people
            region = self.inner.region(boxes[i])
            if all(overlap_of_smaller(self.inner.box(region), h) < SAME_PERSON_OVERLAP for h in held):
                crops.append((region, float(scores[i])))
        return crops[: self.max_people]

    def prepare(self, frame: Frame) -> tuple[CropBatch, list]:
        inputs, transforms = CropBatch(), []
        for region, detection in self.crops_for(frame):
            ins, t = self.inner.crop(frame, region)
            inputs.append(ins)
            transforms.append((t, detection))
        return inputs, transforms

    def accepts(self, pose_score: float, detection: float | None) -> bool:
        """Is this crop's pose a person? (see SURE_POSE)"""
        if pose_score < self.inner.score_threshold:
            return False
        return detection is None or pose_score >= self.inner.sure_score or detection >= SURE_DETECTION

    def decode(self, outputs: list[list[np.ndarray]], transforms: list) -> list[Pose]:
        poses, crops, lost = [], [], False
        for out, (t, detection) in zip(outputs, transforms):
            read = self.inner.read(out, t)
            if read is None:  # a broken model's NaN/Inf is nobody (the pipeline counts such frames)
                lost = True
                continue
            pose, follow = read
            if not self.accepts(pose.score, detection):
                lost = lost or detection is None  # a tracked person lost; a rejected proposal is nobody
                continue
            poses.append(pose)
            crops.append(follow)  # None: posed, but not followed
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
