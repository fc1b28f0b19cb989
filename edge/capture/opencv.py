"""Cameras through OpenCV (V4L2 on Linux): an index, /dev/videoN or /dev/v4l/by-id/....

Buffer size 1 so frames are never stale; MJPG, size and fps are requested, and what the
driver actually granted is logged. A read that times out (the camera was unplugged or its
USB hub reset) raises StreamLost, and the registered source reconnects with back-off.

Timeouts: OpenCV's V4L2 backend ignores CAP_PROP_READ_TIMEOUT_MSEC (it is FFmpeg/GStreamer
only); it waits in select() for OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT seconds (default 10),
read once per process. open() sets it from source.read_timeout_s unless the user already did.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import sys
import threading
import time

import cv2
import numpy as np

from edge.capture.base import Turn, register, to_rgb8
from edge.capture.reconnect import Backoff, Reconnecting, StreamLost
from edge.config import SourceConfig
from edge.errors import SourceError

log = logging.getLogger(__name__)

V4L_TIMEOUT_ENV = "OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT"


def first_video_device() -> str | None:
    devices = sorted(glob.glob("/dev/video[0-9]*"), key=lambda d: int(d[len("/dev/video"):]))
    return devices[0] if devices else None


def fourcc_text(code: float) -> str:
    code = int(code)
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)) if code > 0 else "?"


class Capture:
    """A cv2.VideoCapture that may be closed from another thread while a read blocks.

    Releasing a capture while FFmpeg or V4L2 is inside read() is a use-after-free in native
    code. release() waits briefly for the read; if it is still blocked (bounded by the read
    timeout), the reading thread releases the capture as soon as its read returns.
    """

    def __init__(self, cap: cv2.VideoCapture):
        self._cap: cv2.VideoCapture | None = cap
        self._lock = threading.Lock()
        self._closing = False

    def read(self) -> tuple[bool, np.ndarray | None]:
        with self._lock:
            if self._cap is None:
                return False, None
            ok, image = self._cap.read()
            if self._closing:
                self._release_locked()
            return ok, image

    def get(self, prop: int) -> float:
        with self._lock:
            return self._cap.get(prop) if self._cap is not None else 0.0

    def release(self, wait_s: float = 0.2) -> None:
        self._closing = True
        if self._lock.acquire(timeout=wait_s):
            try:
                self._release_locked()
            finally:
                self._lock.release()

    def _release_locked(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class DeviceSource:
    continuous = True
    live = True

    def __init__(self, cfg: SourceConfig):
        self.spec = cfg.path or first_video_device() or "0"
        self.path = f"/dev/video{self.spec}" if self.spec.isdigit() else self.spec
        self.name = f"device:{self.spec}"
        self.cfg = cfg
        self.fps: float | None = cfg.fps
        self.turn = Turn.of(cfg)
        self._cap: Capture | None = None

    def _hint(self) -> str:
        return (
            "check the cable and `v4l2-ctl --list-devices`; add the user to the 'video' group "
            "(sudo usermod -aG video $USER, then log in again); prefer a stable /dev/v4l/by-id/... path; "
            "a Pi CSI camera needs source.type: picamera"
        )

    def open(self) -> None:
        linux = sys.platform.startswith("linux")
        if (linux or not self.spec.isdigit()) and not os.path.exists(self.path):
            present = sorted(glob.glob("/dev/video[0-9]*"))
            found = f"present: {', '.join(present)}" if present else "no /dev/video* device is present"
            raise SourceError(f"camera {self.path} does not exist ({found}); {self._hint()}")
        if os.path.exists(self.path) and not os.access(self.path, os.R_OK | os.W_OK):
            raise SourceError(f"camera {self.path} exists but this user cannot open it; {self._hint()}")
        if linux:
            os.environ.setdefault(V4L_TIMEOUT_ENV, str(max(1, math.ceil(self.cfg.read_timeout_s))))
        target: int | str = int(self.spec) if self.spec.isdigit() else self.path
        api = cv2.CAP_V4L2 if linux else cv2.CAP_ANY
        cap = cv2.VideoCapture(target, api)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"camera {self.path} cannot be opened as a V4L2 capture device (is it a metadata node or "
                f"busy in another program? try the other /dev/video* of the same camera); {self._hint()}"
            )
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if self.cfg.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.cfg.fourcc))
        if self.cfg.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
        if self.cfg.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
        if self.cfg.fps:
            cap.set(cv2.CAP_PROP_FPS, self.cfg.fps)
        granted_fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = granted_fps if granted_fps and granted_fps > 0 else self.fps
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fourcc = fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
        asked = f"{self.cfg.width or '-'}x{self.cfg.height or '-'} @ {self.cfg.fps or '-'} fps, {self.cfg.fourcc or '-'}"
        log.info("camera %s granted %dx%d @ %.1f fps, %s (asked %s)", self.path, w, h, self.fps or 0, fourcc, asked)
        if self.cfg.fourcc and fourcc != self.cfg.fourcc:
            log.warning("camera %s did not accept fourcc %s (uses %s); list its formats with "
                        "`v4l2-ctl -d %s --list-formats-ext`", self.path, self.cfg.fourcc, fourcc, self.path)
        self._cap = Capture(cap)

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._cap is None:
            raise StreamLost(f"camera {self.path} is closed")
        t0 = time.monotonic()
        ok, image = self._cap.read()
        if not ok or image is None:
            raise StreamLost(f"camera {self.path} delivered no frame (read failed after {time.monotonic() - t0:.1f} s)")
        return self.turn.apply(to_rgb8(image, bgr=True, what=self.name)), time.monotonic_ns()

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def reconnecting(inner, cfg: SourceConfig) -> Reconnecting:
    """``inner`` wrapped so that a lost stream is reopened with back-off (see reconnect.py)."""
    return Reconnecting(inner, Backoff(cfg.reconnect_initial_s, cfg.reconnect_max_s))


@register("device")
def open_device(cfg: SourceConfig) -> Reconnecting:
    return reconnecting(DeviceSource(cfg), cfg)
