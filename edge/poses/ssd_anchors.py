"""SSD anchors and box decoding for MediaPipe's single-class detectors (the BlazePose person detector).

Mirrors MediaPipe's ``SsdAnchorsCalculator`` (non-multiscale branch) and
``TensorsToDetectionsCalculator`` with the options of ``pose_detection_cpu.pbtxt``, so that
anchor ``i`` here is anchor ``i`` of the model's [1, 2254, 12] output. Coordinates stay
normalised to the detector input (0..1) until the caller maps them to pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnchorOptions:
    """The subset of ``SsdAnchorsCalculatorOptions`` the pose detector uses (its values are the defaults)."""

    input_w: int = 224
    input_h: int = 224
    strides: tuple[int, ...] = (8, 16, 32, 32, 32)
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    anchor_offset: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = True


def _scale(opts: AnchorOptions, index: int) -> float:
    n = len(opts.strides)
    if n == 1:
        return (opts.min_scale + opts.max_scale) / 2
    return opts.min_scale + (opts.max_scale - opts.min_scale) * index / (n - 1)


def ssd_anchors(opts: AnchorOptions = AnchorOptions()) -> np.ndarray:
    """(N, 4) float32 anchors [x_center, y_center, w, h], normalised; N = 2254 for the pose detector.

    Layers that share a stride are merged: their anchors interleave per grid cell, as MediaPipe does.
    """
    out: list[tuple[float, float, float, float]] = []
    strides = opts.strides
    layer = 0
    while layer < len(strides):
        sizes: list[tuple[float, float]] = []  # (w, h) per anchor of one cell
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            scale = _scale(opts, last)
            for ratio in opts.aspect_ratios:
                sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
            if opts.interpolated_scale_aspect_ratio > 0:
                nxt = 1.0 if last == len(strides) - 1 else _scale(opts, last + 1)
                s, r = math.sqrt(scale * nxt), opts.interpolated_scale_aspect_ratio
                sizes.append((s * math.sqrt(r), s / math.sqrt(r)))
            last += 1
        fh = math.ceil(opts.input_h / strides[layer])
        fw = math.ceil(opts.input_w / strides[layer])
        for y in range(fh):
            for x in range(fw):
                cx, cy = (x + opts.anchor_offset) / fw, (y + opts.anchor_offset) / fh
                for w, h in sizes:
                    out.append((cx, cy, 1.0, 1.0) if opts.fixed_anchor_size else (cx, cy, w, h))
        layer = last
    return np.asarray(out, dtype=np.float32)


@dataclass(frozen=True)
class Detections:
    """Decoded detections, normalised to the detector input: boxes (N,4) x1,y1,x2,y2; keypoints (N,K,2)."""

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, input_w: int, input_h: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw regressors (N, 4 + 2K) in (x, y, w, h, kx, ky, ...) order -> boxes (N,4) and keypoints (N,K,2).

    ``x = raw_x / input_w * anchor_w + anchor_x`` (MediaPipe: reverse_output_order, x/y/w/h_scale = input size).
    """
    raw = np.asarray(raw, dtype=np.float32)
    raw = raw.reshape(len(anchors), raw.shape[-1])
    ax, ay, aw, ah = anchors[:, 0:1], anchors[:, 1:2], anchors[:, 2:3], anchors[:, 3:4]
    cx = raw[:, 0:1] / input_w * aw + ax
    cy = raw[:, 1:2] / input_h * ah + ay
    w = raw[:, 2:3] / input_w * aw
    h = raw[:, 3:4] / input_h * ah
    boxes = np.concatenate([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kp = raw[:, 4:].reshape(len(anchors), (raw.shape[1] - 4) // 2, 2).copy()
    kp[..., 0] = kp[..., 0] / input_w * aw + ax
    kp[..., 1] = kp[..., 1] / input_h * ah + ay
    return boxes, kp


def scores_from_logits(logits: np.ndarray, clip: float = 100.0) -> np.ndarray:
    """Sigmoid of the clipped raw scores (MediaPipe: sigmoid_score, score_clipping_thresh 100)."""
    x = np.clip(np.asarray(logits, dtype=np.float64).reshape(-1), -clip, clip)
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    w = np.maximum(0.0, np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]))
    h = np.maximum(0.0, np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]))
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def weighted_nms(det: Detections, iou_threshold: float = 0.3, max_out: int = 1) -> Detections:
    """MediaPipe's WEIGHTED non-max suppression: each kept detection is the score-weighted mean of
    the candidates overlapping the best remaining one (IoU > threshold); it keeps the best score."""
    order = np.argsort(-det.scores, kind="stable")
    boxes, kps, scores = [], [], []
    while order.size and len(scores) < max_out:
        best = order[0]
        overlap = iou_one_to_many(det.boxes[best], det.boxes[order]) > iou_threshold
        overlap[0] = True
        group = order[overlap]
        w = det.scores[group][:, None]
        boxes.append((det.boxes[group] * w).sum(0) / w.sum())
        kps.append((det.keypoints[group] * w[:, :, None]).sum(0) / w.sum())
        scores.append(det.scores[best])
        order = order[~overlap]
    k = det.keypoints.shape[1]
    return Detections(
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(kps, dtype=np.float32).reshape(-1, k, 2),
        np.asarray(scores, dtype=np.float32),
    )


def decode_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, input_w: int,
                      input_h: int, min_score: float, iou_threshold: float = 0.3, max_out: int = 1) -> Detections:
    """The detector's two outputs -> detections above ``min_score`` after weighted NMS, best first."""
    scores = scores_from_logits(raw_scores)
    keep = scores >= min_score
    raw = np.asarray(raw_boxes, dtype=np.float32)
    raw = raw.reshape(len(anchors), raw.shape[-1])[keep]
    boxes, kps = decode_boxes(raw, anchors[keep], input_w, input_h)
    return weighted_nms(Detections(boxes, kps, scores[keep]), iou_threshold, max_out)
