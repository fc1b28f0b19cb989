"""Network cameras (RTSP, HTTP MJPEG, ...) through FFmpeg, and GStreamer pipeline strings.

Every connect and every read is bounded: OpenCV's FFmpeg backend takes open and read
timeouts at open time (CAP_PROP_OPEN_TIMEOUT_MSEC / CAP_PROP_READ_TIMEOUT_MSEC) and aborts
a blocked socket through FFmpeg's interrupt callback, so a dead camera cannot hang read().
After a timeout the capture is dead, so the source raises StreamLost and the registered
source reconnects with back-off (reconnect.py). Credentials in URLs never reach a log line
or an error message: everything user-visible goes through mask_url().
"""

from __future__ import annotations

import logging
import os
import re
import time
from contextlib import contextmanager
from typing import Iterator

import cv2
import numpy as np

from edge.capture.base import Turn, register, to_rgb8
from edge.capture.opencv import Capture, reconnecting
from edge.capture.reconnect import Reconnecting, StreamLost
from edge.config import SourceConfig
from edge.errors import SourceError

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"

# The password may itself contain '@' (cameras accept it unencoded): match up to the last '@' of the authority.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s/@:?#]*)(?::(?P<pw>[^\s/?#]*))?@")
_SECRET_PARAM = re.compile(
    r"(?P<key>\b(?:pass(?:word|wd)?|pwd|user-pw|token|access_token|api[_-]?key|secret|auth|sig(?:nature)?))"
    r"(?P<eq>=)(?P<value>[^&\s!'\"]+)",
    re.IGNORECASE,
)


def mask_url(text: str) -> str:
    """``text`` with every password hidden: URL user-info, ?password=..., GStreamer user-pw=...

    rtsp://admin:s3cret@cam/stream -> rtsp://admin:***@cam/stream. A lone user-info
    (http://TOKEN@host) is hidden entirely, because cameras often put a key there.
    """

    def userinfo(m: re.Match) -> str:
        if m.group("pw") is not None:
            return f"{m.group('scheme')}{m.group('user')}:***@"
        return f"{m.group('scheme')}***@"

    text = _USERINFO.sub(userinfo, text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group('key')}=***", text)


def is_stream_url(spec: str) -> bool:
    scheme, sep, _ = spec.partition("://")
    return bool(sep) and scheme.lower() in STREAM_SCHEMES


def is_gstreamer_pipeline(spec: str) -> bool:
    """A GStreamer launch string: elements joined by '!' that end in an appsink."""
    return "!" in spec and "appsink" in spec


def has_backend(api: int) -> bool:
    try:
        return bool(cv2.videoio_registry.hasBackend(api))
    except (AttributeError, cv2.error):
        return False


@contextmanager
def _ffmpeg_options(url: str, transport: str) -> Iterator[None]:
    """Set FFmpeg's RTSP transport for one open (OpenCV reads this variable at open time)."""
    if not url.lower().startswith("rtsp") or FFMPEG_OPTIONS_ENV in os.environ:
        yield  # not RTSP, or the user set their own FFmpeg options: leave them alone
        return
    os.environ[FFMPEG_OPTIONS_ENV] = f"rtsp_transport;{transport}"
    try:
        yield
    finally:
        os.environ.pop(FFMPEG_OPTIONS_ENV, None)


class NetworkSource:
    """An RTSP/HTTP/... stream via FFmpeg. read() raises StreamLost when the stream stops."""

    continuous = True
    live = True
    api = cv2.CAP_FFMPEG
    kind = "network stream"

    def __init__(self, cfg: SourceConfig):
        self.url = cfg.path or ""
        self.display = mask_url(self.url)
        self.name = f"network:{self.display}"
        self.cfg = cfg
        self.fps: float | None = cfg.fps
        self.turn = Turn.of(cfg)
        self._cap: Capture | None = None

    def _check_backend(self) -> None:
        if not has_backend(cv2.CAP_FFMPEG):
            raise SourceError(
                f"{self.display}: this OpenCV build has no FFmpeg backend, so it cannot read network streams; "
                "install opencv-python-headless from PyPI (it bundles FFmpeg) or an OpenCV built with FFmpeg"
            )

    def _params(self) -> list[int]:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.cfg.open_timeout_s * 1000),
                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.cfg.read_timeout_s * 1000)]
        if self.api == cv2.CAP_FFMPEG and self.cfg.decode_threads:  # a live stream: FFmpeg's choice unless set
            params += [cv2.CAP_PROP_N_THREADS, self.cfg.decode_threads]
        return params

    def _connect(self) -> cv2.VideoCapture:
        with _ffmpeg_options(self.url, self.cfg.rtsp_transport):
            return cv2.VideoCapture(self.url, self.api, self._params())

    def _open_hint(self) -> str:
        other = "udp" if self.cfg.rtsp_transport == "tcp" else "tcp"
        rtsp = f"try source.rtsp_transport: {other}; " if self.url.lower().startswith("rtsp") else ""
        return (
            f"check that the camera is reachable (ping it), that the URL and path are right (try it in VLC or "
            f"ffprobe with your password), and the user name and password; {rtsp}a slow camera may need a longer "
            f"source.open_timeout_s (now {self.cfg.open_timeout_s:g} s)"
        )

    def open(self) -> None:
        self._check_backend()
        t0 = time.monotonic()
        cap = self._connect()
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self.kind} {self.display} cannot be opened (gave up after {time.monotonic() - t0:.1f} s); "
                f"{self._open_hint()}"
            )
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not self.cfg.fps and fps and 0 < fps < 1000:
            self.fps = float(fps)
        log.info("%s %s opened in %.2f s: %dx%d @ %.1f fps via %s", self.kind, self.display, time.monotonic() - t0,
                 int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                 self.fps or 0, cap.getBackendName())
        self._cap = Capture(cap)

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._cap is None:
            raise StreamLost(f"{self.kind} {self.display} is closed")
        t0 = time.monotonic()
        ok, image = self._cap.read()
        if not ok or image is None:
            raise StreamLost(
                f"no frame from {self.display} for {time.monotonic() - t0:.1f} s (read timeout "
                f"{self.cfg.read_timeout_s:g} s) or the stream ended"
            )
        return self.turn.apply(to_rgb8(image, bgr=True, what=self.name)), time.monotonic_ns()

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class GStreamerSource(NetworkSource):
    """A GStreamer launch string ending in appsink (e.g. Jetson CSI via nvarguscamerasrc)."""

    api = cv2.CAP_GSTREAMER
    kind = "GStreamer pipeline"

    def __init__(self, cfg: SourceConfig):
        super().__init__(cfg)
        self.name = f"gstreamer:{self.display}"

    def _check_backend(self) -> None:
        if not has_backend(cv2.CAP_GSTREAMER):
            raise SourceError(
                "this OpenCV build has no GStreamer support (cv2.getBuildInformation() shows 'GStreamer: NO'; "
                "the opencv-python wheels from PyPI never have it). On a Jetson use the OpenCV that JetPack installs "
                "(python3-opencv) in a venv made with `python3 -m venv --system-site-packages`, and uninstall "
                "opencv-python-headless from the venv; elsewhere `sudo apt install python3-opencv` (Debian's build "
                "has GStreamer). For an RTSP or HTTP camera, source.type: network needs no GStreamer"
            )
        if not is_gstreamer_pipeline(self.url):
            raise SourceError(
                f"source.path '{self.display}' is not a GStreamer pipeline: it must chain elements with '!' and end "
                "in appsink, e.g. '... ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1'"
            )

    def _connect(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self.url, self.api, self._params())

    def _open_hint(self) -> str:
        return ("run the same pipeline with `gst-launch-1.0` (replace appsink with fakesink) to see GStreamer's "
                "own error, and check that the camera is not held by another program (nvargus-daemon on a Jetson)")


@register("network")
def open_network(cfg: SourceConfig) -> Reconnecting:
    return reconnecting(NetworkSource(cfg), cfg)


@register("gstreamer")
def open_gstreamer(cfg: SourceConfig) -> Reconnecting:
    return reconnecting(GStreamerSource(cfg), cfg)
