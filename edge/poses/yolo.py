"""Ultralytics YOLO-pose, both output layouts:

- YOLOv8/YOLO11 ``[1, 4+1+K*3, N]`` (or transposed ``[1, N, 56]``): cx, cy, w, h, person score,
  then K x (x, y, visibility); decoded with NMS.
- YOLO26 end-to-end ``[1, 300, 6+K*3]``: x1, y1, x2, y2, score, class, then K x 3; no NMS.

Coordinates are in input pixels (ONNX exports) or normalised 0..1 (TFLite exports); the input
is NCHW or NHWC. Every combination is handled: the layout comes from the tensors (and the
Ultralytics metadata embedded in the file), the scale from the values.
"""

from __future__ import annotations

import ast
import logging

import numpy as np

from edge.post.geometry import Transform
from edge.post.nms import nms
from edge.poses.base import FamilyOptions, ModelSignature, image_input_layout, letterbox_frame, register
from edge.types import COCO17_EDGES, COCO17_NAMES, Frame, Pose

log = logging.getLogger(__name__)


def _meta_literal(meta: dict[str, str], key: str):
    value = meta.get(key)
    if value is None:
        return None
    try:
        return ast.literal_eval(value) if isinstance(value, str) else value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):  # a damaged file's metadata
        return None


def _ints(value, n: int) -> tuple[int, ...] | None:
    """``value`` as ``n`` positive ints (metadata like imgsz or kpt_shape), or None."""
    if not isinstance(value, (list, tuple)) or len(value) != n:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 100_000 for v in value):
        return None
    return tuple(value)


def keypoint_count(sig: ModelSignature) -> int:
    shape = _ints(_meta_literal(sig.metadata, "kpt_shape"), 2)
    return shape[0] if shape else 17


def channel_axis(shape: tuple, channels: int) -> int | None:
    """The axis of a 3-D output that holds the 4+1+K*3 values, or None if it is not this layout."""
    if len(shape) != 3:
        return None
    if shape[1] == channels and (shape[2] is None or shape[2] > channels):
        return 1
    if shape[2] == channels and (shape[1] is None or shape[1] > channels):
        return 2
    return None


def _single_image_io(sig: ModelSignature) -> bool:
    return len(sig.inputs) == 1 and len(sig.outputs) == 1 and len(sig.inputs[0].shape) == 4


def _matches(sig: ModelSignature) -> bool:
    return _single_image_io(sig) and channel_axis(sig.outputs[0].shape, 5 + keypoint_count(sig) * 3) is not None


def _matches_end2end(sig: ModelSignature) -> bool:
    return _single_image_io(sig) and channel_axis(sig.outputs[0].shape, 6 + keypoint_count(sig) * 3) is not None


class YoloPose:
    name = "yolo"
    keypoint_names = COCO17_NAMES
    edges = COCO17_EDGES
    default_score_threshold = 0.25  # Ultralytics' predict default

    head = 5  # values before the keypoints: cx, cy, w, h, score

    def __init__(self, sig: ModelSignature, options: FamilyOptions):
        imgsz = _ints(_meta_literal(sig.metadata, "imgsz"), 2)
        default = (imgsz[1], imgsz[0]) if imgsz else (640, 640)
        self.layout, w, h = image_input_layout(sig.inputs[0], default)
        self.size = (w, h)
        self.kpts = keypoint_count(sig)
        self.channels = self.head + self.kpts * 3
        self.axis = channel_axis(sig.outputs[0].shape, self.channels)
        if self.kpts != 17:
            self.keypoint_names = tuple(f"kp{i}" for i in range(self.kpts))
            self.edges = ()
        self.options = options
        self.score_threshold = (
            options.score_threshold if options.score_threshold is not None else self.default_score_threshold
        )

    def reset(self) -> None:
        """Stateless: every frame is decoded on its own."""

    def prepare(self, frame: Frame) -> tuple[list[np.ndarray], Transform]:
        canvas, t = letterbox_frame(frame, self.size)
        x = canvas.astype(np.float32)
        x *= 1.0 / 255.0
        x = x[None] if self.layout == "nhwc" else x.transpose(2, 0, 1)[None]
        return [np.ascontiguousarray(x)], t

    def candidates(self, output: np.ndarray) -> np.ndarray:
        """(N, channels) rows scoring above the threshold, coordinates in input pixels."""
        pred = np.asarray(output, dtype=np.float32)[0]
        if self.axis == 1:
            scores = pred[4]
            rows = pred[:, scores >= self.score_threshold].T
        else:
            rows = pred[pred[:, 4] >= self.score_threshold]
        rows = rows[np.isfinite(rows).all(axis=1)]  # NaN/Inf is nobody (the pipeline counts such frames)
        if len(rows) == 0:
            return rows
        rows = rows.copy()
        # TFLite exports divide by the input size; ONNX exports keep input pixels.
        if float(np.abs(rows[:, :4]).max()) <= 2.0:
            w, h = self.size
            rows[:, [0, 2]] *= w
            rows[:, [1, 3]] *= h
            rows[:, self.head::3] *= w
            rows[:, self.head + 1::3] *= h
        return rows

    def boxes(self, rows: np.ndarray) -> np.ndarray:
        """(N,4) x1, y1, x2, y2 in input pixels."""
        cx, cy, bw, bh = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        return np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)

    def select(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return nms(boxes, scores, self.options.iou_threshold, self.options.max_people)

    def decode(self, outputs: list[np.ndarray], transform: Transform) -> list[Pose]:
        rows = self.candidates(outputs[0])
        if len(rows) == 0:
            return []
        boxes = self.boxes(rows)
        keep = self.select(boxes, rows[:, 4])
        poses = []
        for i in keep:
            kp = rows[i, self.head:].reshape(self.kpts, 3).copy()
            kp[:, :2] = transform.to_frame(kp[:, :2])
            b = transform.to_frame(boxes[i].reshape(2, 2)).reshape(4)
            b[[0, 2]] = np.clip(b[[0, 2]], 0, transform.frame_w)
            b[[1, 3]] = np.clip(b[[1, 3]], 0, transform.frame_h)
            poses.append(Pose(kp, float(rows[i, 4]), bbox=tuple(b.tolist())))
        return poses


class YoloEnd2End(YoloPose):
    """YOLO26-pose end-to-end export: boxes are already x1, y1, x2, y2 and de-duplicated."""

    name = "yolo_e2e"
    head = 6  # x1, y1, x2, y2, score, class

    def boxes(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, :4].copy()

    def select(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        return np.argsort(-scores, kind="stable")[: self.options.max_people]


@register("yolo_e2e", _matches_end2end)
def make_yolo_e2e(sig: ModelSignature, options: FamilyOptions) -> YoloEnd2End:
    return YoloEnd2End(sig, options)


@register("yolo", _matches)
def make_yolo(sig: ModelSignature, options: FamilyOptions) -> YoloPose:
    return YoloPose(sig, options)
