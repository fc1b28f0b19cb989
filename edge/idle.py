"""Idle gating: nearly free when nobody is there.

A camera watching a room all day spends most frames on nobody. When nobody has been seen for
``idle.after_s``, the model runs only at ``idle.fps`` (0 = never on a timer) or when a cheap motion
detector fires; full rate resumes at the first motion or detection. A refused frame is not a drop:
the pipeline counts it as idle.

The capture thread asks ``IdleGate.admit(image, t_ns)`` before it prepares a frame; the post thread
reports ``IdleGate.saw(people, t_ns)`` for each processed one. All timing comes from the frames' own
stream times (a file's media time, a camera's monotonic capture time), never the wall clock, so a
file or a test gives the same decisions on every run. Measurements on
``../shared/data/video/intel_one-by-one-person-detection.mp4`` are in ``MotionDetector``.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from edge.configbase import Strict as _Strict

# Sources that watch a place (gating on under auto) and sources that replay one (off): SourceConfig.type,
# resolved (edge.capture.base.auto_type for type: auto).
CAMERA_TYPES = frozenset({"device", "picamera", "network", "gstreamer"})
FILE_TYPES = frozenset({"file", "images", "sample"})

REF_GAP_NS = 100_000_000  # motion is judged against the newest picture at least 0.1 s older
WARM_NS = 1_000_000_000  # the gate starts feeding the detector this long before it may go idle
HISTORY = 128  # small pictures kept; at 60 fps 0.1 s needs 7


class IdleConfig(_Strict):
    """When nobody is there, run the model rarely; wake on motion or on a detection."""

    enabled: Literal["auto"] | bool = Field(
        "auto", description="auto = on for cameras (device, picamera, network, gstreamer), off for files and "
        "images: a file is a benchmark or a test and must see every frame, a camera watches an empty room most "
        "of the day")
    after_s: float = Field(10.0, gt=0, le=86400, description="seconds without a person before going idle")
    fps: float = Field(0.5, ge=0, le=60, description="model rate while idle; 0 = only on motion. One look every "
                       "2 s: the gate only idles after after_s without a person, so the look adds little to that "
                       "wait, and on a heavy model it is most of the idle CPU (docs/BENCHMARKS.md, Idle gating)")
    motion: bool = Field(True, description="wake on motion (a cheap frame difference on a small grey picture)")
    motion_threshold: int = Field(
        25, ge=1, le=255, description="grey-level difference (after a 5x5 blur of the small picture) above which "
        "a pixel counts as changed; well above sensor noise at night, which the downscale averages away")
    motion_min_area: float = Field(0.003, gt=0, le=1, description="fraction of the small picture that must "
                                   "change to count as motion (0.003 of 64x36 = 7 pixels)")
    motion_hold_s: float = Field(
        2.0, ge=0, description="after motion without a person, keep the full rate this long after the last "
        "motion, so that a person walking in is posed on several consecutive frames; then idle again")
    motion_width: int = Field(64, ge=16, le=640, description="width of the small grey picture motion is judged "
                              "on (height keeps the frame's aspect)")

    @model_validator(mode="after")
    def _can_wake(self) -> "IdleConfig":
        if self.fps == 0 and not self.motion:
            raise ValueError("fps: 0 with motion: false would never run the model again once idle; "
                             "set fps above 0 or motion: true")
        return self


def gating_on(cfg: IdleConfig, source_type: str, live: bool) -> bool:
    """Whether idle gating applies to this source: ``enabled``, or under auto, cameras yes and files no.

    ``source_type`` is the resolved SourceConfig.type. A file played in real time (``live``) is still a
    file: off. A type neither list knows (a plugin, an unresolved ``auto``) follows ``live``.
    """
    if cfg.enabled != "auto":
        return bool(cfg.enabled)
    if source_type in CAMERA_TYPES:
        return True
    if source_type in FILE_TYPES:
        return False
    return bool(live)


class MotionDetector:
    """The fraction of a small, blurred grey picture that changed since about 0.1 s ago.

    Picture: the frame resized to ``motion_width`` wide (aspect kept), grey, GaussianBlur 5x5. A wide
    frame first goes to 4x that width with INTER_LINEAR (2x2 samples), then INTER_AREA does the rest:
    INTER_AREA straight from 1080p cost 9.6 ms on RGB (3.7 ms on grey plus 1.0 ms to make it grey);
    the two steps cost 0.35 ms per call on 1920x1080 and 0.34 ms on 768x432 (medians of 300 calls,
    x86_64 VM, 2 busy cores; expect a few times that on a Pi 4). The averaging kills sensor noise:
    Gaussian noise of sigma 40 grey levels on every pixel of an empty frame changed no pixel of the
    small picture at ``motion_threshold`` 25.

    Reference: the newest picture at least 0.1 s older (none yet: 0.0). That is the previous frame
    at 10 fps and three frames back at 30 fps, so a walker changes as much per comparison whatever the
    camera's rate. On intel_one-by-one-person-detection.mp4 (10 fps, YOLO11n-pose as the judge of who
    is there): 0 of 208 empty frames 10 or more frames from a person reached ``motion_min_area`` (max
    0.0000); empty frames right next to a person (half out of the picture, a shadow) reach 2.3 %; each
    of the 6 people fired 2 frames to 0 frames before YOLO first saw them, at 0.8-1.7 % changed.
    Why not a running average (accumulateWeighted, alpha 0.05): on the same clip it kept a ghost of
    each person who had stood at the table, up to 6.7 % changed on empty frames 1-2 s after they left
    (75 of those 208 frames fired); and it lags a slow light change by 1/alpha frames, so brightening
    1 % a frame changed 40 % of its picture, and none of this one's. Without ``t_ns`` the reference is
    the previous call's picture. A new frame size or a timestamp going back restarts it.
    """

    def __init__(self, cfg: IdleConfig):
        self.width = cfg.motion_width
        self.threshold = cfg.motion_threshold
        self._history: deque[tuple[int | None, np.ndarray]] = deque(maxlen=HISTORY)

    def small(self, image: np.ndarray) -> np.ndarray:
        """The small blurred grey picture of an RGB (HxWx3) or grey (HxW) uint8 image."""
        h, w = image.shape[:2]
        out_w = self.width
        out_h = max(1, round(h * out_w / w))
        if w > 4 * out_w:
            image = cv2.resize(image, (4 * out_w, max(1, round(h * 4 * out_w / w))), interpolation=cv2.INTER_LINEAR)
        image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        return cv2.GaussianBlur(image, (5, 5), 0)

    def reset(self) -> None:
        self._history.clear()

    def changed(self, image: np.ndarray, t_ns: int | None = None) -> float:
        """Fraction of pixels (0..1) that changed by more than ``motion_threshold`` against the reference."""
        pic = self.small(image)
        ref = self._reference(pic, t_ns)
        self._history.append((t_ns, pic))
        if ref is None:
            return 0.0
        _, mask = cv2.threshold(cv2.absdiff(pic, ref), self.threshold, 255, cv2.THRESH_BINARY)
        return cv2.countNonZero(mask) / mask.size

    def _reference(self, pic: np.ndarray, t_ns: int | None) -> np.ndarray | None:
        hist = self._history
        if hist and (hist[-1][1].shape != pic.shape or (t_ns is None) != (hist[-1][0] is None)
                     or (t_ns is not None and t_ns < hist[-1][0])):
            hist.clear()  # another frame size, or the timeline started again
        if t_ns is None:
            ref = hist[-1][1] if hist else None
            hist.clear()
            return ref
        while len(hist) > 1 and t_ns - hist[1][0] >= REF_GAP_NS:
            hist.popleft()  # hist[1] is old enough and newer: hist[0] is never the reference again
        if not hist or t_ns - hist[0][0] < REF_GAP_NS:
            return None  # nothing 0.1 s old yet
        return hist[0][1]


class IdleGate:
    """Decides per frame whether the model runs: always while someone was seen lately, rarely when not.

    States: active (a person within ``after_s``, or motion within ``motion_hold_s``) and idle. Idle
    admits a frame when it moves (and holds the full rate ``motion_hold_s`` after the last motion) or
    every 1/``fps`` seconds of stream time; a detection reported by ``saw`` makes it active again.
    At start it is active, as if a person had been seen on the first frame. The motion detector runs
    only while idle, in a hold, or in the last second before going idle (so its reference is warm):
    a busy room costs nothing extra. One lock: ``admit`` (capture thread) and ``saw`` (post thread)
    may be called concurrently. A timestamp earlier than the last one starts afresh (a new timeline).
    """

    def __init__(self, cfg: IdleConfig):
        self.cfg = cfg
        self.motion = MotionDetector(cfg)
        self._after_ns = int(round(cfg.after_s * 1e9))
        self._hold_ns = int(round(cfg.motion_hold_s * 1e9))
        self._period_ns = int(round(1e9 / cfg.fps)) if cfg.fps > 0 else None
        self._lock = threading.Lock()
        self._idle = False
        self._last_t: int | None = None  # the last frame admit() saw
        self._last_seen = 0  # the last frame with a person (or the first frame)
        self._hold_until = 0  # full rate until then: motion was seen
        self._last_admitted: int | None = None
        self._fed = False  # the detector saw the previous frame
        self.idle_frames = 0  # frames refused (admit False): idle, not dropped
        self.wakes = 0  # idle -> active, by motion or by a detection
        self.last_changed = 0.0  # the motion detector's last fraction (for status and tuning)

    @property
    def state(self) -> str:
        return "idle" if self._idle else "active"

    def admit(self, image: np.ndarray, t_ns: int) -> bool:
        """Whether the model should run on this frame (``t_ns``: its stream time)."""
        with self._lock:
            if self._last_t is None or t_ns < self._last_t:
                self._start(t_ns)
            self._last_t = t_ns
            person_until = self._last_seen + self._after_ns
            if not self._idle and t_ns >= person_until and t_ns >= self._hold_until:
                self._idle = True
            feed = self.cfg.motion and (self._idle or t_ns >= person_until - WARM_NS)
            if feed:
                if not self._fed:
                    self.motion.reset()  # its last picture is from before a busy spell: stale
                self.last_changed = self.motion.changed(image, t_ns)
                if self.last_changed >= self.cfg.motion_min_area:
                    self._hold_until = max(self._hold_until, t_ns + self._hold_ns)
                    if self._idle:
                        self._idle = False
                        self.wakes += 1
            self._fed = feed
            if self._idle and not (self._period_ns is not None and (
                    self._last_admitted is None or t_ns - self._last_admitted >= self._period_ns)):
                self.idle_frames += 1
                return False
            self._last_admitted = t_ns
            return True

    def saw(self, people: int, t_ns: int) -> None:
        """The post thread's report for a processed frame: a person keeps (or makes) the gate active."""
        if people <= 0:
            return
        with self._lock:
            if self._last_t is not None:
                t_ns = min(t_ns, self._last_t)  # never ahead of the frames admitted (a timeline restart)
            self._last_seen = max(self._last_seen, t_ns)
            if self._idle and (self._last_t is None or self._last_seen + self._after_ns > self._last_t):
                self._idle = False
                self.wakes += 1

    def _start(self, t_ns: int) -> None:
        self._idle = False
        self._last_seen = t_ns
        self._hold_until = t_ns
        self._last_admitted = None
        self._fed = False
