"""MoveNet MultiPose Lightning: output [1,6,56] = 6 people x (17 x (y, x, score), ymin, xmin, ymax, xmax, score).

Input is [1,H,W,3] with H and W multiples of 32 (dynamic in some exports: then the long side
is 256 and the short side is rounded up to a multiple of 32 for the frame's aspect ratio).
Coordinates are normalised to the (letterboxed) input.
"""

from __future__ import annotations

import numpy as np

from edge.post.geometry import Transform
from edge.post.nms import nms
from edge.poses.base import FamilyOptions, ModelSignature, image_input_layout, letterbox_frame, register
from edge.types import COCO17_EDGES, COCO17_NAMES, Frame, Pose


def _matches(sig: ModelSignature) -> bool:
    return (
        len(sig.inputs) == 1
        and len(sig.outputs) == 1
        and len(sig.inputs[0].shape) == 4
        and len(sig.outputs[0].shape) == 3
        and sig.outputs[0].shape[2] == 56
        and sig.outputs[0].shape[1] is not None
        and sig.outputs[0].shape[1] <= 10
    )


def dynamic_size(frame_w: int, frame_h: int, long_side: int = 256) -> tuple[int, int]:
    """(w, h): the long side is ``long_side``, the short side rounded up to a multiple of 32."""
    scale = long_side / max(frame_w, frame_h)
    w = int(np.ceil(frame_w * scale / 32) * 32)
    h = int(np.ceil(frame_h * scale / 32) * 32)
    return max(w, 32), max(h, 32)


class MoveNetMultiPose:
    name = "movenet_multipose"
    keypoint_names = COCO17_NAMES
    edges = COCO17_EDGES
    default_score_threshold = 0.2  # person score; Google's MultiPose demo default

    def __init__(self, sig: ModelSignature, options: FamilyOptions):
        spec = sig.inputs[0]
        self.dynamic = spec.shape[1] is None or spec.shape[2] is None
        _, w, h = image_input_layout(spec, (256, 256))
        self.size = (w, h)
        self.options = options
        self.score_threshold = (
            options.score_threshold if options.score_threshold is not None else self.default_score_threshold
        )

    def reset(self) -> None:
        """Stateless."""

    def prepare(self, frame: Frame) -> tuple[list[np.ndarray], Transform]:
        size = dynamic_size(frame.width, frame.height) if self.dynamic else self.size
        canvas, t = letterbox_frame(frame, size, pad_value=0)
        return [canvas[None]], t

    def decode(self, outputs: list[np.ndarray], transform: Transform) -> list[Pose]:
        people = np.asarray(outputs[0], dtype=np.float32).reshape(-1, 56)
        people = people[np.isfinite(people).all(axis=1)]  # NaN/Inf is nobody (the pipeline counts such frames)
        people = people[people[:, 55] >= self.score_threshold]
        if len(people) == 0:
            return []
        w, h = transform.input_w, transform.input_h
        kps, boxes = [], []
        for row in people:
            raw = row[:51].reshape(17, 3)
            kp = np.stack([raw[:, 1] * w, raw[:, 0] * h, raw[:, 2]], axis=1)
            kp[:, :2] = transform.to_frame(kp[:, :2])
            ymin, xmin, ymax, xmax = row[51:55]
            box = transform.to_frame(np.array([[xmin * w, ymin * h], [xmax * w, ymax * h]])).reshape(4)
            kps.append(kp)
            boxes.append(box)
        keep = nms(np.asarray(boxes), people[:, 55], self.options.iou_threshold, self.options.max_people)
        return [Pose(kps[i], float(people[i, 55]), bbox=tuple(boxes[i].tolist())) for i in keep]


@register("movenet_multipose", _matches)
def make_multipose(sig: ModelSignature, options: FamilyOptions) -> MoveNetMultiPose:
    return MoveNetMultiPose(sig, options)
