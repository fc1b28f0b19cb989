"""Source protocol, frame conversion and the registry that turns config into a source.

A source yields Frames (HxWx3 uint8 RGB) with a monotonic capture time. It raises EndOfStream
when a file ends and SourceError when a device fails; it never hangs longer than its timeout.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from edge.config import SourceConfig
from edge.errors import ConfigError, FrameError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"


class EndOfStream(Exception):
    """The source has no more frames (end of a file played once)."""


class Source(Protocol):
    """Optional attributes the pipeline reads when present: ``state`` ('streaming', 'reconnecting', ...) and
    ``reconnects`` (copied to stats), ``model_input_size`` (set before the first read; picamera sizes its lores
    stream with it) and ``model_image`` (the last frame at the model's input size, or None)."""

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
    return _REGISTRY[kind](cfg)


def auto_type(cfg: SourceConfig) -> str:
    if cfg.path:
        return guess_type(cfg.path)
    from edge.capture.picamera import picamera2_available

    if picamera2_available():
        return "picamera"
    if sorted(glob.glob("/dev/video[0-9]*")):
        return "device"
    return "sample"
