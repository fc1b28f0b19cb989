"""Source protocol, frame conversion and the registry that turns config into a source.

A source yields Frames (HxWx3 uint8 RGB) with a monotonic capture time. It raises EndOfStream
when a file ends and SourceError when a device fails; it never hangs longer than its timeout.
"""

from __future__ import annotations

import glob
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from edge.config import SourceConfig
from edge.errors import ConfigError, FrameError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"


class EndOfStream(Exception):
    """The source has no more frames (end of a file played once)."""


class Source(Protocol):
    """Optional attributes the pipeline reads when present: ``state`` ('streaming', 'reconnecting', ...) and
    ``reconnects`` (copied to stats), ``model_input_size`` (set before the first read; picamera sizes its lores
    stream with it) and ``model_image`` (the last frame at the model's input size, or None).

    read() returns the picture already turned as the camera is mounted (source.rotate/hflip/vflip, see Turn),
    and model_image turned the same way: every later stage sees only the turned picture."""

    name: str
    continuous: bool  # False for unrelated stills: per-frame state (tracking) must reset
    fps: float | None  # the source's own rate, when known
    live: bool  # True: frames come at the source's pace and an unread one is replaced (a counted drop)

    def open(self) -> None: ...

    def read(self) -> tuple[np.ndarray, int] | None:
        """The next RGB image and its monotonic capture time; None when nothing came in time."""

    def close(self) -> None: ...


def to_rgb8(image: np.ndarray, bgr: bool = True, what: str = "frame") -> np.ndarray:
    """Convert grayscale, BGRA, 16-bit or float images to HxWx3 uint8 RGB, or raise FrameError."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise FrameError(f"{what}: expected an image array, got shape {getattr(image, 'shape', None)}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        if not np.isfinite(image).all():
            raise FrameError(f"{what}: the float image holds NaN or infinite pixel values")
        peak = float(image.max())
        image = np.clip(image * (255.0 if peak <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise FrameError(f"{what}: pixel type {image.dtype} is not supported; use 8-bit, 16-bit or float images")
    if image.ndim == 2 or image.shape[2] == 1:
        gray = image if image.ndim == 2 else image[:, :, 0]
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(image)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
    raise FrameError(f"{what}: {channels} channels cannot be converted to RGB; use a 1-, 3- or 4-channel image")


_ROTATE_CODES = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


@dataclass(frozen=True)
class Turn:
    """How a camera is mounted: turn the picture ``rotate`` degrees clockwise first, then mirror it left-right
    (``hflip``), then upside down (``vflip``). In a W x H picture, pixel (x, y) goes to

        rotate 90: (H-1-y, x), the picture becomes H x W    rotate 180: (W-1-x, H-1-y)
        rotate 270: (y, W-1-x), the picture becomes H x W   then hflip: x -> W'-1-x, vflip: y -> H'-1-y

    (W' x H' the size after the rotation). apply() makes at most one new array: a rotation, then a flip in place.
    """

    rotate: int = 0  # 0, 90, 180 or 270 degrees clockwise
    hflip: bool = False
    vflip: bool = False

    @classmethod
    def of(cls, cfg: SourceConfig) -> "Turn":
        return cls(cfg.rotate, cfg.hflip, cfg.vflip)

    def __bool__(self) -> bool:
        return bool(self.rotate or self.hflip or self.vflip)

    def __str__(self) -> str:
        return ", ".join([f"rotate {self.rotate}"] * bool(self.rotate) + ["hflip"] * self.hflip
                         + ["vflip"] * self.vflip) or "no turn"

    @property
    def swaps(self) -> bool:
        """True when width and height trade places (a quarter turn)."""
        return self.rotate in (90, 270)

    def _one_mirror(self) -> tuple[int, bool, bool]:
        """(rotate, hflip, vflip) with at most one mirror: both mirrors are a half turn."""
        if self.hflip and self.vflip:
            return (self.rotate + 180) % 360, False, False
        return self.rotate, self.hflip, self.vflip

    def _plan(self) -> tuple[int | None, int | None]:
        """(cv2.rotate code or None, cv2.flip code or None): the same turn in at most one rotation and one flip."""
        rotate, h, v = self._one_mirror()
        flip = 1 if h else 0 if v else None
        if rotate == 180:  # a half turn is both mirrors: with one of them, it is the other alone
            rotate, flip = 0, {None: -1, 1: 0, 0: 1}[flip]
        return _ROTATE_CODES.get(rotate), flip

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` turned; the same array when there is nothing to do."""
        rotate, flip = self._plan()
        if rotate is not None:
            image = cv2.rotate(image, rotate)
            if flip is not None:
                cv2.flip(image, flip, dst=image)  # in place: the rotation's array is ours
            return image
        return image if flip is None else cv2.flip(image, flip)

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The turned picture's (width, height)."""
        return (height, width) if self.swaps else (width, height)

    def points(self, xy: np.ndarray, width: int, height: int) -> np.ndarray:
        """(..., 2) pixel coordinates in the width x height picture -> the same points in the turned picture."""
        xy = np.asarray(xy, dtype=np.float32)
        x, y, w, h = xy[..., 0], xy[..., 1], width, height
        if self.rotate == 90:
            x, y, w, h = h - 1 - y, x, h, w
        elif self.rotate == 180:
            x, y = w - 1 - x, h - 1 - y
        elif self.rotate == 270:
            x, y, w, h = y, w - 1 - x, h, w
        if self.hflip:
            x = w - 1 - x
        if self.vflip:
            y = h - 1 - y
        return np.stack([x, y], axis=-1)

    def flips_then_rotation(self) -> tuple["Turn", "Turn"]:
        """(flips, rotation): mirroring by ``flips`` first (a camera's ISP can), then turning by ``rotation``
        (0, 90 or 270 and no mirror: done in software) gives this turn. A half turn is both mirrors."""
        rotate, h, v = self._one_mirror()
        if rotate in (0, 180):
            half = rotate == 180
            return Turn(0, h != half, v != half), Turn()
        # a mirror before a quarter turn mirrors it: flip o rotate(r) = rotate(-r) o flip
        return Turn(0, h, v), Turn(rotate if not (h or v) else 360 - rotate)


def guess_type(spec: str) -> str:
    """The source type a --source string means: device, network, gstreamer, images or file."""
    if spec.isdigit() or spec.startswith("/dev/video") or spec.startswith("/dev/v4l/"):
        return "device"
    from edge.capture.network import is_gstreamer_pipeline, is_stream_url

    if is_stream_url(spec):
        return "network"
    if is_gstreamer_pipeline(spec):
        return "gstreamer"
    if spec == "sample":
        return "sample"
    if spec == "auto":
        return "auto"
    if any(c in spec for c in "*?[") or os.path.isdir(spec) or Path(spec).suffix.lower() in IMAGE_SUFFIXES:
        return "images"
    return "file"


def expand_images(spec: str) -> list[Path]:
    """A file, a folder (sorted, images only) or a glob -> image paths."""
    p = Path(spec)
    if p.is_dir():
        files = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
    elif any(c in spec for c in "*?["):
        files = sorted(Path(q) for q in glob.glob(spec, recursive=True) if Path(q).suffix.lower() in IMAGE_SUFFIXES)
    else:
        files = [p]
    return files


SourceFactory = Callable[[SourceConfig], Source]
_REGISTRY: dict[str, SourceFactory] = {}


def register(name: str) -> Callable[[SourceFactory], SourceFactory]:
    def deco(factory: SourceFactory) -> SourceFactory:
        _REGISTRY[name] = factory
        return factory

    return deco


def build_source(cfg: SourceConfig) -> Source:
    """The source for ``cfg`` (type 'auto': picamera2, then /dev/video*, then the bundled sample)."""
    from edge.capture import files, network, opencv, picamera  # noqa: F401  (register built-in sources)

    kind = cfg.type
    if kind == "auto":
        kind = auto_type(cfg)
    if kind not in _REGISTRY:
        raise ConfigError(f"source.type: unknown source '{kind}'; choose one of auto, {', '.join(sorted(_REGISTRY))}")
    if kind in ("file", "images", "network", "gstreamer") or (kind == "device" and cfg.type != "auto"):
        if not cfg.path:
            raise ConfigError(f"source.path: a '{kind}' source needs a path (e.g. --source clip.mp4 or --source 0)")
    source = _REGISTRY[kind](cfg)
    turn = Turn.of(cfg)
    if turn:
        log.info("%s: every frame is turned as the camera is mounted: %s", source.name, turn)
    return source


def auto_type(cfg: SourceConfig) -> str:
    if cfg.path:
        return guess_type(cfg.path)
    from edge.capture.picamera import picamera2_available

    if picamera2_available():
        return "picamera"
    if sorted(glob.glob("/dev/video[0-9]*")):
        return "device"
    return "sample"
