"""Raspberry Pi cameras through picamera2 (libcamera); OpenCV cannot open a CSI camera.

picamera2 comes from apt (python3-picamera2), so it is imported lazily and the venv must be
made with --system-site-packages. Captures wait with a timeout so an unplugged ribbon cable
raises SourceError instead of hanging.
"""

from __future__ import annotations

import importlib.util
import logging
import time

import numpy as np

from edge.capture.base import register, to_rgb8
from edge.config import SourceConfig
from edge.errors import SourceError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "picamera2 is not importable. On Raspberry Pi OS install it with `sudo apt install python3-picamera2` "
    "and create the virtual environment with `python3 -m venv --system-site-packages` so it can see it"
)


def picamera2_available() -> bool:
    try:
        return importlib.util.find_spec("picamera2") is not None
    except (ImportError, ValueError):
        return False


class PiCameraSource:
    continuous = True
    live = True

    def __init__(self, cfg: SourceConfig):
        self.cfg = cfg
        self.index = int(cfg.path) if cfg.path and cfg.path.isdigit() else 0
        self.name = f"picamera:{self.index}"
        self.fps: float | None = cfg.fps
        self._cam = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(INSTALL_HINT) from exc
        try:
            cam = Picamera2(self.index)
        except (IndexError, RuntimeError) as exc:
            raise SourceError(
                f"Pi camera {self.index} cannot be opened ({exc}); check the ribbon cable, run `rpicam-hello "
                "--list-cameras`, and make sure no other program holds the camera"
            ) from exc
        size = (self.cfg.width or 1280, self.cfg.height or 720)
        controls = {"FrameRate": float(self.cfg.fps)} if self.cfg.fps else {}
        # 'BGR888' is R, G, B in memory order: the RGB frame the pipeline wants, with no conversion.
        config = cam.create_video_configuration(main={"size": size, "format": "BGR888"}, controls=controls)
        cam.configure(config)
        cam.start()
        self._cam = cam
        log.info("picamera2 camera %d started at %dx%d", self.index, *size)

    def read(self) -> tuple[np.ndarray, int] | None:
        assert self._cam is not None, "open() first"
        try:
            image = self._cam.capture_array("main", wait=self.cfg.read_timeout_s)
        except TimeoutError as exc:
            raise SourceError(
                f"Pi camera {self.index} delivered no frame within {self.cfg.read_timeout_s} s; check the ribbon cable"
            ) from exc
        return to_rgb8(image, bgr=False, what=self.name), time.monotonic_ns()

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
            finally:
                self._cam.close()
                self._cam = None


@register("picamera")
def open_picamera(cfg: SourceConfig) -> PiCameraSource:
    return PiCameraSource(cfg)
