"""The typed values that flow between stages: Frame -> list[Pose] -> PoseResult.

Validated once at construction so that later stages can trust their shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.errors import FrameError

COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

COCO17_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10),
    (5, 11), (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16),
)

# BlazePose (MediaPipe Pose) landmarks; "left" is the person's left, as in COCO.
BLAZEPOSE33_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky",
    "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)

BLAZEPOSE_EDGES: tuple[tuple[int, int], ...] = (  # MediaPipe's POSE_CONNECTIONS
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13),
    (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20), (16, 22),
    (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28), (27, 29), (28, 30),
    (29, 31), (30, 32), (27, 31), (28, 32),
)

# COCO17_NAMES[i] is BLAZEPOSE33_NAMES[BLAZEPOSE_TO_COCO17[i]].
BLAZEPOSE_TO_COCO17: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


def _is_rgb8(img: object) -> bool:
    return isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8


def _describe(img: object) -> str:
    return f"{getattr(img, 'shape', None)} and dtype {getattr(img, 'dtype', type(img).__name__)}"


@dataclass(frozen=True)
class Frame:
    """One captured image: HxWx3 uint8 RGB plus when it was taken.

    ``t_capture_ns`` is ``time.monotonic_ns()`` (for latency); ``t_wall`` is epoch seconds
    (for payload timestamps only). ``model_image`` is the same view, already made small by the
    camera (picamera2's lores stream), so a family can skip resizing ``image``; keypoints are
    still in ``image`` pixels. ``t_media_ns`` is a video file's own time for this frame (its
    timestamp in the recording): played as fast as possible, a file's frames are read far closer
    together than they were filmed, and filters and analytics must see the filmed time.
    ``source_file`` names the image file a still came from (image and folder sources), so that
    every result can be traced back to its picture.
    """

    image: np.ndarray
    index: int
    t_capture_ns: int
    t_wall: float
    model_image: np.ndarray | None = None
    t_media_ns: int | None = None
    source_file: str | None = None

    def __post_init__(self) -> None:
        if not _is_rgb8(self.image):
            raise FrameError(
                f"frame {self.index} has shape {_describe(self.image)}; expected HxWx3 uint8 RGB. "
                "Convert it with edge.capture.to_rgb8() before building a Frame."
            )
        if self.model_image is not None and not _is_rgb8(self.model_image):
            raise FrameError(
                f"frame {self.index}: model_image (the lores stream) has shape {_describe(self.model_image)}; "
                "expected HxWx3 uint8 RGB. The source must convert it (a YUV420 lores with "
                "edge.capture.picamera.yuv420_to_rgb), or set source.lores: false."
            )

    @property
    def t_stream_ns(self) -> int:
        """The frame's time for smoothing, tracking and analytics: the recording's time for a file, else capture time."""
        return self.t_media_ns if self.t_media_ns is not None else self.t_capture_ns

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass
class Pose:
    """One person: keypoints (K,3) float32 [x, y, score] in original-frame pixels."""

    keypoints: np.ndarray
    score: float
    bbox: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2 in pixels
    track_id: int | None = None
    keypoints_raw: np.ndarray | None = None  # the model's keypoints before smoothing (smoothing.keep_raw)

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints, dtype=np.float32)
        if kp.ndim != 2 or kp.shape[1] != 3:
            raise ValueError(f"keypoints must be (K,3) [x, y, score], got shape {kp.shape}")
        self.keypoints = kp
        if self.keypoints_raw is not None:
            raw = np.asarray(self.keypoints_raw, dtype=np.float32)
            if raw.shape != kp.shape:
                raise ValueError(f"keypoints_raw must have the keypoints' shape {kp.shape}, got {raw.shape}")
            self.keypoints_raw = raw
        self.score = float(self.score)
        if self.bbox is None:
            self.bbox = self.box_from_keypoints(kp)
        else:
            self.bbox = tuple(float(v) for v in self.bbox)  # type: ignore[assignment]

    @staticmethod
    def box_from_keypoints(kp: np.ndarray, min_score: float = 0.1) -> tuple[float, float, float, float]:
        """The tight box of the confident keypoints (all keypoints when none is confident)."""
        sel = kp[kp[:, 2] >= min_score]
        if len(sel) == 0:
            sel = kp
        return (float(sel[:, 0].min()), float(sel[:, 1].min()), float(sel[:, 0].max()), float(sel[:, 1].max()))

    def coco17(self) -> "Pose":
        """This pose in COCO-17 order: itself for 17 keypoints, the mapped subset for BlazePose's 33.

        Code that needs COCO joints (evaluation, analytics) calls this and works with every family.
        """
        k = len(self.keypoints)
        if k == len(COCO17_NAMES):
            return self
        if k != len(BLAZEPOSE33_NAMES):
            raise ValueError(f"no COCO-17 view for a pose with {k} keypoints (known: 17, 33)")
        return Pose(self.keypoints[list(BLAZEPOSE_TO_COCO17)], self.score, self.bbox, self.track_id)

    def to_dict(self, width: int, height: int) -> dict:
        """JSON-ready form with pixel and normalised (0..1) keypoints."""
        kp = self.keypoints.astype(np.float64)
        norm = kp.copy()
        norm[:, 0] /= max(width, 1)
        norm[:, 1] /= max(height, 1)
        out = {
            "id": self.track_id,
            "score": round(self.score, 4),
            "bbox": [round(v, 1) for v in self.bbox],
            "keypoints": np.round(kp, 2).tolist(),
            "keypoints_norm": np.round(norm, 4).tolist(),
        }
        if self.keypoints_raw is not None:
            out["keypoints_raw"] = np.round(self.keypoints_raw.astype(np.float64), 2).tolist()
        return out


@dataclass
class PoseResult:
    """Everything a sink needs about one processed frame."""

    frame: Frame
    poses: list[Pose]
    timings_ms: dict[str, float] = field(default_factory=dict)
    t_done_ns: int = 0
    events: list = field(default_factory=list)  # edge.analytics.Event: what the analytics saw in this frame
    analytics: dict | None = None  # the analytics' state after this frame, for drawing; not serialised
    idle: bool = False  # nobody for a while (edge/idle.py): the model skipped this frame; sent about once a second

    @property
    def latency_ms(self) -> float:
        """Capture -> end of processing, monotonic."""
        return (self.t_done_ns - self.frame.t_capture_ns) / 1e6 if self.t_done_ns else 0.0

    def to_dict(self) -> dict:
        f = self.frame
        return {
            "frame": f.index,
            **({"file": f.source_file} if f.source_file else {}),  # image and folder sources
            "t_capture_ns": f.t_capture_ns,
            "t_wall_ms": int(f.t_wall * 1000),
            **({"t_media_ms": round(f.t_media_ns / 1e6, 3)} if f.t_media_ns is not None else {}),  # video files
            "width": f.width,
            "height": f.height,
            "latency_ms": round(self.latency_ms, 2),
            "people": [p.to_dict(f.width, f.height) for p in self.poses],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            **({"events": [e.to_dict() for e in self.events]} if self.events else {}),  # only when there are some
            **({"idle": True} if self.idle else {}),
        }


@dataclass
class StreamMeta:
    """What sinks learn once at start: the model and stream, and live stats to report."""

    model: str
    family: str
    runtime: str
    keypoint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    source: str
    version: str
    stats: object = None  # edge.stats.Stats (typed loosely to keep types.py free of imports)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "family": self.family,
            "runtime": self.runtime,
            "keypoint_names": list(self.keypoint_names),
            "skeleton": [list(e) for e in self.edges],
            "source": self.source,
            "version": self.version,
        }
