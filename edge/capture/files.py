"""Video files (anything OpenCV reads: mp4, mkv, avi, gif), still images and the bundled sample.

A file plays paced at its own fps like a camera (``realtime: true``) or as fast as the
pipeline takes frames; it plays once (then EndOfStream) or loops.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge.capture.base import SAMPLE_DIR, EndOfStream, Turn, expand_images, register, to_rgb8
from edge.config import SourceConfig
from edge.errors import FrameError, SourceError, SourceNotFoundError

log = logging.getLogger(__name__)


class _Pacer:
    """Sleeps until each frame is due at ``fps`` (monotonic); a no-op when fps is None."""

    def __init__(self, fps: float | None):
        self.period_ns = int(1e9 / fps) if fps else 0
        self.next_ns = 0

    def wait(self) -> None:
        if not self.period_ns:
            return
        now = time.monotonic_ns()
        if self.next_ns == 0 or now - self.next_ns > 5 * self.period_ns:  # start, or far behind: re-anchor
            self.next_ns = now
        elif self.next_ns > now:
            time.sleep((self.next_ns - now) / 1e9)
        self.next_ns += self.period_ns


class VideoFileSource:
    continuous = True

    def __init__(self, cfg: SourceConfig):
        self.path = Path(cfg.path or "")
        self.name = f"file:{self.path}"
        self.loop = cfg.loop
        self.realtime = cfg.realtime
        self.live = cfg.realtime  # paced like a camera: a slow pipeline drops frames (counted)
        self.fps: float | None = cfg.fps
        # FFmpeg decodes on one thread per core by default; played as fast as possible, the model is the
        # bottleneck and wants those cores (docs/BENCHMARKS.md), a paced file must keep up like a camera.
        self.decode_threads = cfg.decode_threads if cfg.decode_threads is not None else (0 if cfg.realtime else 1)
        self._cap: cv2.VideoCapture | None = None
        self._pacer = _Pacer(None)
        self.media_time_ns: int | None = None  # the last frame's time in the recording, across loops
        self._loop_offset_ns = 0
        self.turn = Turn.of(cfg)  # as the camera was mounted (source.rotate/hflip/vflip)

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceNotFoundError(f"{self.path} does not exist (no such file or folder); check --source / source.path")
        cap = None
        if self.decode_threads:
            cap = cv2.VideoCapture(str(self.path), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, self.decode_threads])
            if not cap.isOpened():  # a backend without that property: open it with its defaults
                cap.release()
                cap = None
        if cap is None:
            cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise SourceError(
                f"video file {self.path} cannot be opened by OpenCV: the file is corrupt or its codec is not "
                "supported by this OpenCV build. Convert it with: ffmpeg -i IN -c:v libx264 OUT.mp4"
            )
        self._cap = cap
        file_fps = cap.get(cv2.CAP_PROP_FPS)
        if not self.fps and file_fps and 0 < file_fps < 1000:
            self.fps = float(file_fps)
        self._pacer = _Pacer(self.fps if self.realtime else None)
        self.live = self.realtime
        log.info("opened %s (%.1f fps, %d frames)", self.path, self.fps or 0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))

    def read(self) -> tuple[np.ndarray, int] | None:
        assert self._cap is not None, "open() first"
        ok, image = self._cap.read()
        if not ok:
            if not self.loop:
                raise EndOfStream(str(self.path))
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
            if not ok:
                raise EndOfStream(str(self.path))
            self._loop_offset_ns = (self.media_time_ns or 0) + self._frame_ns()  # the timeline runs on
        self.media_time_ns = self._media_time(self._cap.get(cv2.CAP_PROP_POS_MSEC))
        self._pacer.wait()
        return self.turn.apply(to_rgb8(image, bgr=True, what=f"{self.path}")), time.monotonic_ns()

    def _frame_ns(self) -> int:
        return int(1e9 / (self.fps or 30.0))

    def _media_time(self, pos_ms: float) -> int:
        """The frame's timestamp (FFmpeg's pts) on a timeline that keeps rising when the file loops."""
        last = self.media_time_ns
        t = self._loop_offset_ns + int(round(pos_ms * 1e6)) if pos_ms >= 0 else None  # NaN: no timestamp
        if t is None or (last is not None and t <= last):  # no usable timestamp from the backend: count frames
            t = self._loop_offset_ns if last is None else max(last + self._frame_ns(), self._loop_offset_ns)
        return t

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageSource:
    """A file, a folder or a glob of still images; unrelated stills, so ``continuous`` is False.

    An image that cannot be decoded raises FrameError for that file (the pipeline skips and counts
    it); a whole pass through the files without one readable image is a SourceNotFoundError.
    """

    continuous = False

    def __init__(self, cfg: SourceConfig, files: list[Path] | None = None, name: str | None = None):
        self.spec = cfg.path or ""
        self.files = files if files is not None else expand_images(self.spec)
        self.name = name or f"images:{self.spec}"
        self.loop = cfg.loop
        self.fps = cfg.fps
        self._pacer = _Pacer(cfg.fps if cfg.realtime else None)
        self.live = bool(cfg.fps and cfg.realtime)
        self._i = 0
        self._read_in_pass = 0  # images decoded since the pass through the files began
        self.current: Path | None = None
        self.turn = Turn.of(cfg)

    def open(self) -> None:
        if not self.files:
            raise SourceNotFoundError(f"no images found at '{self.spec}'; give an image file, a folder of images or a glob")
        missing = [f for f in self.files if not f.is_file()]
        if missing:
            raise SourceNotFoundError(f"image {missing[0]} does not exist; check --source / source.path")

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._i >= len(self.files):
            if not self._read_in_pass:
                n = len(self.files)
                raise SourceNotFoundError(
                    f"none of the {n} image{'s' if n != 1 else ''} at '{self.spec}' can be decoded: "
                    f"{'they are' if n != 1 else 'it is'} corrupt or not image files; check --source / source.path")
            if not self.loop:
                raise EndOfStream(self.spec)
            self._i, self._read_in_pass = 0, 0
        path = self.files[self._i]
        self._i += 1
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise FrameError(f"image {path} cannot be decoded; it is corrupt or not an image file")
        rgb = self.turn.apply(to_rgb8(image, bgr=True, what=str(path)))
        self._read_in_pass += 1
        self.current = path
        self._pacer.wait()
        return rgb, time.monotonic_ns()

    def close(self) -> None:
        self._i, self._read_in_pass = 0, 0


@register("file")
def open_file(cfg: SourceConfig) -> VideoFileSource:
    return VideoFileSource(cfg)


@register("images")
def open_images(cfg: SourceConfig) -> ImageSource:
    return ImageSource(cfg)


@register("sample")
def open_sample(cfg: SourceConfig) -> ImageSource:
    """The bundled public-domain sample images: runs with no camera and no network."""
    files = sorted(SAMPLE_DIR.glob("*.jpg"))
    if not files:
        raise SourceError(f"the bundled sample images are missing from {SAMPLE_DIR}; reinstall edgepose")
    return ImageSource(cfg, files=files, name="sample")
