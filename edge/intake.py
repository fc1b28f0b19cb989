"""What a source yields -> a Frame with its model inputs, or a counted bad frame; the pipeline goes on.

A source promises HxWx3 uint8 RGB, but a camera driver, a decoder or a plugin can still hand over
anything: a grayscale or 16-bit image, a 10000x1 strip, an empty array, float pixels holding NaN.
``Intake.admit`` converts what it can (``to_rgb8``), lets the family prepare it, and counts
whatever cannot be used as a drop (``bad_frame``), logged rate-limited. A frame the source itself
could not read (a corrupt image in a folder) is counted as ``unreadable`` and named once.
No threads here: the pipeline calls this on its capture thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from edge.capture.base import to_rgb8
from edge.errors import FrameError
from edge.poses.base import PoseFamily
from edge.stats import Stats
from edge.types import Frame

log = logging.getLogger("edge.pipeline")  # the name users already filter on
LOG_INTERVAL_S = 10.0  # at most one bad-frame warning per interval; the count is in the stats
NAMED_MAX = 1000  # distinct unreadable inputs named one by one (once each); beyond that, rate-limited


@dataclass
class Prepared:
    """A frame with its model inputs (made on the capture thread), later its raw outputs."""

    frame: Frame
    inputs: list
    transform: object
    timings: dict[str, float]
    outputs: list | None = None
    ticket: int = 0  # the order the model workers took it in (edge/handoff.py)


def as_rgb8(image: object, index: int) -> np.ndarray:
    """What a source yielded as a C-contiguous HxWx3 uint8 RGB image, or FrameError saying what it is."""
    if not isinstance(image, np.ndarray):
        raise FrameError(f"frame {index}: the source gave a {type(image).__name__}, not an image array")
    if not (image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        image = to_rgb8(image, bgr=False, what=f"frame {index}")  # a source's frames are RGB already
    if image.size == 0:
        raise FrameError(f"frame {index}: the image is empty (shape {image.shape})")
    return image if image.flags.c_contiguous else np.ascontiguousarray(image)


class BadFrames:
    """Counts unusable frames in ``stats.drops`` and says so in the log without flooding it."""

    def __init__(self, stats: Stats, interval_s: float = LOG_INTERVAL_S):
        self.stats = stats
        self._interval_ns = int(interval_s * 1e9)
        self._last_ns: int | None = None
        self._quiet = 0  # counted since the last warning
        self._named: set[str] = set()

    def count(self, where: str, exc: BaseException) -> None:
        """Count one frame dropped at ``where`` ('bad_frame', 'unreadable') because of ``exc``."""
        self.stats.drop(where)
        text = str(exc) or type(exc).__name__
        if where == "unreadable" and len(self._named) < NAMED_MAX:  # a corrupt file: named once, however often read
            if text not in self._named:
                self._named.add(text)
                log.warning("skipped: %s (counted as dropped '%s'; the run goes on)", text, where)
            return
        now = time.monotonic_ns()
        if self._last_ns is not None and now - self._last_ns < self._interval_ns:
            self._quiet += 1
            return
        more = f"; {self._quiet} more since the last warning" if self._quiet else ""
        log.warning("dropped a bad frame: %s (%s: %s%s). Bad frames are counted as dropped '%s'; the run goes on",
                    text, type(exc).__name__, where, more, where)
        self._last_ns, self._quiet = now, 0


class Intake:
    """Turns what a source yields into a Prepared frame for ``family``, or counts it as a bad frame."""

    def __init__(self, family: PoseFamily, stats: Stats, continuous: bool = True):
        self.family = family
        self.continuous = continuous  # False: unrelated stills, no family state carried across them
        self.bad = BadFrames(stats)

    def admit(self, image: object, index: int, t_capture_ns: int, t_wall: float, **meta) -> Prepared | None:
        """The frame prepared for the model, or None when it cannot be used (counted and logged)."""
        frame = self.frame(image, index, t_capture_ns, t_wall, **meta)
        return self.prepared(frame) if frame is not None else None

    def frame(self, image: object, index: int, t_capture_ns: int, t_wall: float, **meta) -> Frame | None:
        """The source's image as a checked RGB Frame, or None when it is no usable picture (counted and logged)."""
        try:
            return Frame(as_rgb8(image, index), index, t_capture_ns, t_wall, **meta)
        except Exception as exc:  # any frame a source yields is processed or counted, never the end of the run
            self._bad(index, exc)
            return None

    def prepared(self, frame: Frame) -> Prepared | None:
        """``prepare``, with a failure counted as a bad frame instead of ending the run."""
        try:
            return self.prepare(frame)
        except Exception as exc:
            self._bad(frame.index, exc)
            return None

    def _bad(self, index: int, exc: BaseException) -> None:
        if not isinstance(exc, FrameError):
            log.debug("frame %d could not be prepared", index, exc_info=exc)
        self.bad.count("bad_frame", exc)

    def prepare(self, frame: Frame) -> Prepared:
        """Resize/crop on the capture thread, so that it overlaps the model's run on the previous frame.

        Stateful families (MoveNet's crop, BlazePose's region) then use the state their decode left
        one or two frames earlier; each replaces that state in one assignment.
        """
        if not self.continuous:
            self.family.reset()
        t0 = time.perf_counter_ns()
        inputs, transform = self.family.prepare(frame)
        return Prepared(frame, inputs, transform, {"prepare": (time.perf_counter_ns() - t0) / 1e6})
