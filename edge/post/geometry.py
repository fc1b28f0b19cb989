"""Model-input <-> original-frame geometry: letterbox, square and rotated crops, and their exact inverse.

Every prepare step returns a Transform; decode maps keypoints back with it, so keypoints are
always in original-frame pixels no matter how the frame was resized.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Transform:
    """x_orig = x_in * sx + tx,  y_orig = y_in * sy + ty  (x_in, y_in in model-input pixels)."""

    sx: float
    sy: float
    tx: float
    ty: float
    input_w: int
    input_h: int
    frame_w: int
    frame_h: int

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) model-input pixel coordinates to original-frame pixels."""
        out = np.asarray(xy, dtype=np.float32).copy()
        out[..., 0] = out[..., 0] * self.sx + self.tx
        out[..., 1] = out[..., 1] * self.sy + self.ty
        return out

    def matrix(self) -> np.ndarray:
        """The 2x3 affine matrix from original-frame pixels to model-input pixels."""
        return np.array(
            [[1.0 / self.sx, 0.0, -self.tx / self.sx], [0.0, 1.0 / self.sy, -self.ty / self.sy]], dtype=np.float64
        )

    def rescaled(self, kx: float, ky: float, frame_w: int, frame_h: int) -> "Transform":
        """This map, then ``x * kx, y * ky``: from a downscaled copy of the frame (lores) to the frame itself."""
        return Transform(self.sx * kx, self.sy * ky, self.tx * kx, self.ty * ky, self.input_w, self.input_h,
                         frame_w, frame_h)


def clip_to_frame(poses: list, width: int, height: int) -> list:
    """Keypoints and boxes moved inside the frame, in place: x in [0, width-1], y in [0, height-1].

    A model may place a joint in the padding around a non-square frame (MoveNet pads to a square)
    or past the edge (y = 519 on a 512-pixel image). Consumers get coordinates that index the
    picture; the score is kept, so a clipped joint is still known by its (usually low) score.
    """
    hi = np.array([max(width - 1, 0), max(height - 1, 0)], dtype=np.float32)
    for pose in poses:
        np.clip(pose.keypoints[:, :2], 0.0, hi, out=pose.keypoints[:, :2])
        if pose.bbox is not None:
            x1, y1, x2, y2 = pose.bbox
            pose.bbox = (min(max(x1, 0.0), float(hi[0])), min(max(y1, 0.0), float(hi[1])),
                         min(max(x2, 0.0), float(hi[0])), min(max(y2, 0.0), float(hi[1])))
    return poses


def letterbox(image: np.ndarray, size: tuple[int, int], pad_value: int = 114) -> tuple[np.ndarray, Transform]:
    """Resize keeping the aspect ratio and pad to ``size`` (w, h), centred, as Ultralytics does."""
    h, w = image.shape[:2]
    out_w, out_h = size
    r = min(out_w / w, out_h / h)
    # at least one pixel each way: a 10000x1 frame is a 640x1 strip in a 640x640 canvas, not a 0-pixel resize
    new_w, new_h = min(max(1, int(round(w * r))), out_w), min(max(1, int(round(h * r))), out_h)
    dw, dh = (out_w - new_w) / 2, (out_h - new_h) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    bottom, right = out_h - new_h - top, out_w - new_w - left
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    sx, sy = w / new_w, h / new_h
    return canvas, Transform(sx, sy, -left * sx, -top * sy, out_w, out_h, w, h)


def crop_square(
    image: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int]
) -> tuple[np.ndarray, Transform]:
    """Cut ``box`` (x1, y1, x2, y2 in pixels, may extend past the image) and resize it to ``size``.

    Outside the image is filled with zeros, as MoveNet's reference crop does.
    """
    x1, y1, x2, y2 = box
    out_w, out_h = size
    sx, sy = (x2 - x1) / out_w, (y2 - y1) / out_h
    t = Transform(sx, sy, x1, y1, out_w, out_h, image.shape[1], image.shape[0])
    # Sample pixel centres: the model pixel centre (i + 0.5) maps to frame coordinate (i + 0.5) * s + t.
    m = t.matrix()
    m[:, 2] += 0.5 * (m[0, 0] - 1.0), 0.5 * (m[1, 1] - 1.0)
    out = cv2.warpAffine(image, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out, t


def square_around(image_w: int, image_h: int) -> tuple[float, float, float, float]:
    """The square box that holds the whole frame, centred (MoveNet's initial crop region)."""
    side = max(image_w, image_h)
    x1 = (image_w - side) / 2
    y1 = (image_h - side) / 2
    return (x1, y1, x1 + side, y1 + side)


@dataclass(frozen=True)
class AffineTransform:
    """A general model-input -> frame map (rotated crops): ``[x_orig, y_orig] = m @ [x_in, y_in, 1]``.

    Same interface as Transform (``to_frame``, ``matrix``, sizes), so decode code works with either.
    """

    m: tuple[tuple[float, float, float], tuple[float, float, float]]
    input_w: int
    input_h: int
    frame_w: int
    frame_h: int

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) model-input pixel coordinates to original-frame pixels."""
        xy = np.asarray(xy, dtype=np.float32)
        m = np.asarray(self.m, dtype=np.float32)
        return (xy @ m[:, :2].T + m[:, 2]).astype(np.float32)

    def matrix(self) -> np.ndarray:
        """The 2x3 affine matrix from original-frame pixels to model-input pixels."""
        return cv2.invertAffineTransform(np.asarray(self.m, dtype=np.float64))

    def rescaled(self, kx: float, ky: float, frame_w: int, frame_h: int) -> "AffineTransform":
        """This map, then ``x * kx, y * ky``: from a downscaled copy of the frame (lores) to the frame itself."""
        m = np.asarray(self.m, dtype=np.float64) * np.array([[kx], [ky]])
        return AffineTransform(tuple(map(tuple, m)), self.input_w, self.input_h, frame_w, frame_h)  # type: ignore[arg-type]


def crop_rotated(
    image: np.ndarray, center: tuple[float, float], size: float, angle: float, out_size: tuple[int, int],
    border: int = cv2.BORDER_REPLICATE,
) -> tuple[np.ndarray, AffineTransform]:
    """Cut the square of side ``size`` px centred at ``center``, rotated by ``angle`` radians
    (clockwise on screen, y down), and resize it to ``out_size`` (w, h). The square's top edge
    becomes the output's top edge. Pixels outside the frame follow ``border`` (MediaPipe replicates)."""
    out_w, out_h = out_size
    c, s = float(np.cos(angle)), float(np.sin(angle))
    ax, ay = size / out_w, size / out_h
    # frame = center + R(angle) @ ((u / out - 0.5) * size), u in continuous output pixels
    m = np.array([[c * ax, -s * ay, 0.0], [s * ax, c * ay, 0.0]])
    m[:, 2] = np.asarray(center, dtype=np.float64) - m[:, :2] @ np.array([out_w / 2, out_h / 2])
    t = AffineTransform(tuple(map(tuple, m)), out_w, out_h, image.shape[1], image.shape[0])  # type: ignore[arg-type]
    # Sample pixel centres: output pixel i is continuous i + 0.5; frame pixel j is continuous j + 0.5.
    mi = m.copy()
    mi[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    out = cv2.warpAffine(image, mi, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border)
    return out, t
