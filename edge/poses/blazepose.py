"""BlazePose (MediaPipe Pose): a person detector, then a landmark model on a rotated crop of the person.

"The model" is the landmark model (pose_landmark_lite/full/heavy.tflite): input [1,256,256,3]
RGB 0..1; outputs [1,195] = 39 x (x, y, z, visibility, presence) in crop pixels (33 body
landmarks, then auxiliary points: 33 = hip centre, 34 = body scale/rotation point), [1,1] pose
presence, [1,256,256,1] segmentation, [1,64,64,39] heatmap, [1,117] world landmarks.

The family owns a second backend, the detector (pose_detection.tflite): input [1,224,224,3] RGB
in [-1,1] on the letterboxed frame; outputs [1,2254,12] box + 4 keypoints per SSD anchor and
[1,2254,1] score logits (see ssd_anchors.py). The region of interest (ROI) is MediaPipe's
``pose_detection_to_roi``: a square centred on keypoint 0 (hip centre), side 2 x |kp1 - kp0|
x 1.25, turned so that kp0 -> kp1 points up in the crop.

Tracking (MediaPipe's ``pose_landmarks_to_roi``): the next frame's ROI comes from the auxiliary
landmarks 33/34 in the same way, so the detector runs only on the first frame, and again when
the presence score drops below the threshold (the person is lost). Its time shows up in the
prepare stage; ``detector_runs`` counts it. When the detector finds nobody, the landmark model
(which the pipeline runs on every frame anyway) looks at the whole frame and presence decides.
Output: one Pose with 33 landmarks [x, y, visibility] and score = presence (or their COCO-17
view with ``coco17_view``; ``Pose.coco17()`` gives that view for any pose).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.errors import ModelError
from edge.post.geometry import AffineTransform, crop_rotated
from edge.poses.base import (
    FamilyOptions, ModelSignature, image_input_layout, letterbox_frame, model_view, register,
)
from edge.poses.ssd_anchors import AnchorOptions, decode_detections, ssd_anchors
from edge.runtime.base import Backend, TensorSpec, load_backend
from edge.types import (
    BLAZEPOSE33_NAMES, BLAZEPOSE_EDGES, COCO17_EDGES, COCO17_NAMES, Frame, Pose,
)
from edge.zoo import resolve_model

log = logging.getLogger(__name__)

DETECTOR_FILE = "pose_detection.tflite"
FETCH_HINT = "fetch the BlazePose files with: python3 scripts/fetch_blazepose.py (or set model.detector)"
ROI_SCALE = 1.25  # RectTransformationCalculator scale_x/scale_y in pose_detection_to_roi / pose_landmarks_to_roi
DETECTOR_NMS_IOU = 0.3  # NonMaxSuppressionCalculator min_suppression_threshold (WEIGHTED)
HEATMAP_KERNEL = 7  # RefineLandmarksFromHeatmapCalculator kernel_size
HEATMAP_MIN_CONFIDENCE = 0.5  # ... and its default min_confidence_to_refine
BODY_LANDMARKS = 33
AUX_CENTER, AUX_SCALE = 33, 34
MIN_ROI_PX = 8.0  # a smaller ROI means the track is lost
# Person detector score. MediaPipe's min_detection_confidence is 0.5, but on an empty room
# (intel_one-by-one-person-detection.mp4) the detector scores a table base up to 0.56 (people: 0.67 and
# more), and the landmark model then tracks the table with presence up to 0.99. A higher
# score_threshold raises this too.
DETECTION_MIN_SCORE = 0.6


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


@dataclass(frozen=True)
class Roi:
    """A square region of interest in frame pixels, rotated by ``angle`` radians (clockwise on screen)."""

    cx: float
    cy: float
    size: float
    angle: float

    @classmethod
    def from_points(cls, center: np.ndarray, scale_point: np.ndarray) -> "Roi":
        """MediaPipe's AlignmentPointsRectsCalculator (target angle 90 deg) + RectTransformation (x1.25)."""
        dx, dy = float(scale_point[0] - center[0]), float(scale_point[1] - center[1])
        angle = math.pi / 2 - math.atan2(-dy, dx)
        angle = angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))  # NormalizeRadians
        return cls(float(center[0]), float(center[1]), 2.0 * math.hypot(dx, dy) * ROI_SCALE, angle)

    def usable(self, width: int, height: int) -> bool:
        """Big enough and not off the frame (otherwise the track counts as lost)."""
        half = self.size / 2
        return (self.size >= MIN_ROI_PX and -half < self.cx < width + half and -half < self.cy < height + half)


def _find(outputs: list[TensorSpec], test) -> int | None:
    found = [i for i, s in enumerate(outputs) if test(tuple(s.shape))]
    return found[0] if found else None


def landmark_outputs(sig: ModelSignature) -> tuple[int, int, int | None]:
    """Indices of the landmark [1,195], pose-presence [1,1] and (optional) heatmap [1,h,w,39] outputs."""
    lm = _find(sig.outputs, lambda s: len(s) == 2 and s[1] is not None and s[1] == 195)
    flag = _find(sig.outputs, lambda s: len(s) == 2 and s[1] == 1)
    if lm is None or flag is None:
        raise ValueError("a BlazePose landmark model has a [1,195] landmark output and a [1,1] pose-presence output")
    heat = _find(sig.outputs, lambda s: len(s) == 4 and s[3] == 39)
    return lm, flag, heat


def _matches(sig: ModelSignature) -> bool:
    try:
        landmark_outputs(sig)
    except ValueError:
        return False
    return len(sig.inputs) == 1 and len(sig.inputs[0].shape) == 4


def find_detector(options: FamilyOptions) -> Path:
    """The detector file: model.detector (path or bare name), else pose_detection.tflite beside the
    landmark model or in the model search folders."""
    name = options.detector or DETECTOR_FILE
    p = Path(name).expanduser()
    if p.is_file():
        return p
    if len(p.parts) == 1 and options.model_path:
        beside = Path(options.model_path).parent / name
        if beside.is_file():
            return beside
    if len(p.parts) == 1:
        try:
            return resolve_model(name)
        except ModelError:
            pass
    where = f"beside {options.model_path} or " if options.model_path else ""
    raise ModelError(f"BlazePose needs its person detector {name}, which is not {where}in the model folders; {FETCH_HINT}")


def refine_from_heatmap(xy: np.ndarray, heatmap: np.ndarray, kernel: int = HEATMAP_KERNEL,
                        min_confidence: float = HEATMAP_MIN_CONFIDENCE) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmapCalculator: ``xy`` (N,2) normalised to the crop; ``heatmap``
    (H,W,N) logits. A landmark moves to the confidence-weighted mean cell of the window around it
    when the window's peak confidence reaches ``min_confidence``."""
    h, w, _ = heatmap.shape
    out = xy.copy()
    off = (kernel - 1) // 2
    for i, (x, y) in enumerate(xy):
        col, row = int(x * w), int(y * h)  # truncation, as the C++ cast
        if not (0 <= col < w and 0 <= row < h):
            continue
        r0, r1, c0, c1 = max(0, row - off), min(h, row + off + 1), max(0, col - off), min(w, col + off + 1)
        conf = _sigmoid(heatmap[r0:r1, c0:c1, i])
        total = float(conf.sum())
        if conf.max() >= min_confidence and total > 0:
            rows, cols = np.mgrid[r0:r1, c0:c1]
            out[i] = ((conf * cols).sum() / w / total, (conf * rows).sum() / h / total)
    return out


class BlazePose:
    name = "blazepose"
    default_score_threshold = 0.5  # minimum pose presence: MediaPipe's min_tracking_confidence

    def __init__(self, sig: ModelSignature, options: FamilyOptions, detector: Backend | None = None):
        layout, w, h = image_input_layout(sig.inputs[0], (256, 256))
        if layout != "nhwc":
            raise ValueError("BlazePose expects an NHWC input")
        self.size = (w, h)
        self.options = options
        self._lm, self._flag, self._heat = landmark_outputs(sig)
        self.score_threshold = (
            options.score_threshold if options.score_threshold is not None else self.default_score_threshold
        )
        self.detection_threshold = max(DETECTION_MIN_SCORE, self.score_threshold)
        self.keypoint_names = COCO17_NAMES if options.coco17_view else BLAZEPOSE33_NAMES
        self.edges = COCO17_EDGES if options.coco17_view else BLAZEPOSE_EDGES
        if detector is None:
            path = find_detector(options)
            detector = load_backend(path, "auto", options.backend_options)
            log.info("BlazePose person detector: %s", path)
        self.detector = detector
        self._det_size, self._det_boxes, self._det_scores = self._detector_layout(detector)
        self.anchors = ssd_anchors(AnchorOptions(input_w=self._det_size[0], input_h=self._det_size[1]))
        n = detector.outputs[self._det_boxes].shape[1]
        if n != len(self.anchors):
            raise ModelError(
                f"detector {detector.path}: {n} boxes, but MediaPipe's anchors for a {self._det_size[0]}x"
                f"{self._det_size[1]} input give {len(self.anchors)}; use MediaPipe's pose_detection.tflite ({FETCH_HINT})"
            )
        self.detector_runs = 0
        self.frames = 0
        self._roi: Roi | None = None  # from the last landmarks, for the next frame
        self._tracked = False

    @staticmethod
    def _detector_layout(det: Backend) -> tuple[tuple[int, int], int, int]:
        shapes = "; ".join(s.describe() for s in det.inputs + det.outputs)
        try:
            layout, w, h = image_input_layout(det.inputs[0], (224, 224))
        except (ValueError, IndexError):
            layout, w, h = "", 0, 0
        outs = [tuple(s.shape) for s in det.outputs]
        boxes = next((i for i, s in enumerate(outs) if len(s) == 3 and s[2] is not None and s[2] >= 12), None)
        scores = next((i for i, s in enumerate(outs) if len(s) == 3 and s[2] == 1), None)
        if len(det.inputs) != 1 or layout != "nhwc" or boxes is None or scores is None:
            raise ModelError(
                f"detector {det.path} is not a BlazePose person detector: expected input [1,224,224,3] and outputs "
                f"[1,2254,12] + [1,2254,1], got {shapes}; {FETCH_HINT}"
            )
        return (w, h), boxes, scores

    def reset(self) -> None:
        self._roi = None

    # -- stage 1: the detector (only when not tracking) -----------------------------------------
    def detect(self, frame: Frame) -> Roi | None:
        """Run the person detector on the whole frame (its lores image when there is one); the best person's ROI."""
        dw, dh = self._det_size
        canvas, t = letterbox_frame(frame, (dw, dh), pad_value=0)  # MediaPipe: keep aspect ratio, BORDER_ZERO
        outputs = self.detector.run([(canvas.astype(np.float32) / 127.5 - 1.0)[None]])
        self.detector_runs += 1
        det = decode_detections(outputs[self._det_boxes], outputs[self._det_scores], self.anchors, dw, dh,
                                self.detection_threshold, DETECTOR_NMS_IOU, max_out=1)
        if not len(det):
            return None
        kp = t.to_frame(det.keypoints[0] * np.array([dw, dh], dtype=np.float32))
        roi = Roi.from_points(kp[0], kp[1])
        return roi if roi.usable(frame.width, frame.height) else None

    # -- stage 2: the landmark model ------------------------------------------------------------
    def prepare(self, frame: Frame) -> tuple[list[np.ndarray], AffineTransform]:
        self.frames += 1
        roi = self._roi if self.options.tracking else None
        self._tracked = roi is not None
        if roi is None:
            roi = self.detect(frame)
        if roi is None:
            # No detection: the landmark model runs anyway (the pipeline always runs the model), so it looks
            # at the whole frame and its presence score decides. This finds people the detector misses in
            # small, blurred person crops (evaluation); on an empty frame presence stays near 0.
            roi = Roi(frame.width / 2, frame.height / 2, float(max(frame.width, frame.height)), 0.0)
        return self.crop_roi(frame, roi)

    def crop_roi(self, frame: Frame, roi: Roi) -> tuple[list[np.ndarray], AffineTransform]:
        """The landmark model's input for ``roi``, and its map back to frame pixels."""
        image, kx, ky = model_view(frame, (roi.size, roi.size), self.size)  # main unless the ROI is large
        patch, t = crop_rotated(image, (roi.cx / kx, roi.cy / ky), roi.size * 2 / (kx + ky), roi.angle, self.size,
                                cv2.BORDER_REPLICATE)
        return [(patch.astype(np.float32) / 255.0)[None]], t.rescaled(kx, ky, frame.width, frame.height)

    def landmarks(self, outputs: list[np.ndarray], t: AffineTransform) -> tuple[np.ndarray, float]:
        """(39,3) [x, y, visibility] in frame pixels (heatmap-refined), and the pose presence score."""
        raw = np.asarray(outputs[self._lm], dtype=np.float32).reshape(-1, 5)
        presence = float(np.asarray(outputs[self._flag]).reshape(-1)[0])
        xy = raw[:, :2] / np.array([t.input_w, t.input_h], dtype=np.float32)
        if self._heat is not None:
            xy = refine_from_heatmap(xy, np.asarray(outputs[self._heat], dtype=np.float32)[0])
        kp = np.empty((len(raw), 3), dtype=np.float32)
        kp[:, :2] = t.to_frame(xy * np.array([t.input_w, t.input_h], dtype=np.float32))
        kp[:, 2] = _sigmoid(raw[:, 3])
        return kp, presence

    def decode(self, outputs: list[np.ndarray], transform: AffineTransform) -> list[Pose]:
        # _roi is replaced in one assignment: the pipeline may prepare the next frame on another thread
        if not (np.isfinite(outputs[self._lm]).all() and np.isfinite(outputs[self._flag]).all()):
            self._roi = None  # a broken model's NaN/Inf is nobody (the pipeline counts such frames)
            return []
        kp, presence = self.landmarks(outputs, transform)
        if presence < self.score_threshold:
            self._roi = None
            return []  # lost: the next frame runs the detector
        roi = Roi.from_points(kp[AUX_CENTER, :2], kp[AUX_SCALE, :2])
        self._roi = roi if roi.usable(transform.frame_w, transform.frame_h) else None
        pose = Pose(kp[:BODY_LANDMARKS], presence)
        return [pose.coco17() if self.options.coco17_view else pose]

    @property
    def last_was_tracked(self) -> bool:
        """True when the frame just prepared used the ROI from the previous landmarks (no detector run)."""
        return self._tracked


@register("blazepose", _matches)
def make_blazepose(sig: ModelSignature, options: FamilyOptions) -> BlazePose:
    return BlazePose(sig, options)
