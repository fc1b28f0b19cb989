"""Cameras through OpenCV (V4L2 on Linux): an index, /dev/videoN or /dev/v4l/by-id/....

Buffer size 1 so frames are never stale; MJPG, size and fps are requested, and what the
driver actually granted is logged.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import time

import cv2
import numpy as np

from edge.capture.base import register, to_rgb8
from edge.config import SourceConfig
from edge.errors import SourceError

log = logging.getLogger(__name__)


def first_video_device() -> str | None:
    devices = sorted(glob.glob("/dev/video[0-9]*"), key=lambda d: int(d[len("/dev/video"):]))
    return devices[0] if devices else None


class DeviceSource:
    continuous = True
    live = True

    def __init__(self, cfg: SourceConfig):
        self.spec = cfg.path or first_video_device() or "0"
        self.name = f"device:{self.spec}"
        self.cfg = cfg
        self.fps: float | None = cfg.fps
        self._cap: cv2.VideoCapture | None = None

    def _hint(self) -> str:
        return (
            "check the cable and `v4l2-ctl --list-devices`; add the user to the 'video' group "
            "(sudo usermod -aG video $USER, then log in again); a Pi CSI camera needs source.type: picamera"
        )

    def open(self) -> None:
        target: int | str = int(self.spec) if self.spec.isdigit() else self.spec
        if isinstance(target, str):
            if not os.path.exists(target):
                raise SourceError(f"camera {target} does not exist; {self._hint()}")
            if not os.access(target, os.R_OK | os.W_OK):
                raise SourceError(f"camera {target} exists but this user cannot open it; {self._hint()}")
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(target, api)
        if not cap.isOpened():
            raise SourceError(f"camera {self.spec} cannot be opened; {self._hint()}")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if self.cfg.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.cfg.fourcc))
        if self.cfg.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
        if self.cfg.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
        if self.cfg.fps:
            cap.set(cv2.CAP_PROP_FPS, self.cfg.fps)
        if hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
            cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.cfg.read_timeout_s * 1000)
        granted_fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = granted_fps if granted_fps and granted_fps > 0 else self.fps
        code = int(cap.get(cv2.CAP_PROP_FOURCC))
        fourcc = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)) if code else "?"
        log.info(
            "camera %s granted %dx%d @ %.1f fps, %s", self.spec,
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), self.fps or 0, fourcc,
        )
        self._cap = cap

    def read(self) -> tuple[np.ndarray, int] | None:
        assert self._cap is not None, "open() first"
        t0 = time.monotonic()
        ok, image = self._cap.read()
        if not ok or image is None:
            waited = time.monotonic() - t0
            raise SourceError(f"camera {self.spec} stopped delivering frames (read failed after {waited:.1f} s); {self._hint()}")
        return to_rgb8(image, bgr=True, what=self.name), time.monotonic_ns()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


@register("device")
def open_device(cfg: SourceConfig) -> DeviceSource:
    return DeviceSource(cfg)
