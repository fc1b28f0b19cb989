"""Repetition counting per tracked person: presets (squat, push-up, jumping jack) or custom signals.

Each signal is one number per frame (an angle, or a keypoint distance scaled by a reference such as
the shoulder width, so it does not depend on how far the person stands). A frame is *high* when every
signal is at or above its ``high`` threshold, *low* when every one is at or below ``low``, and in
between otherwise. Two guards keep jitter from counting:

- hysteresis: only reaching the other threshold changes the phase, so noise around one never does;
- a minimum phase duration: the new level must hold for ``min_phase_s`` of capture time (frames where
  a keypoint was not seen neither confirm nor break it; an in-between frame breaks it).

A rep is rest -> active -> rest (``count_on`` is the rest phase: squat high = standing, jumping jack
low = closed), so a person first seen mid-movement never gets half a rep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge.analytics.angles import joint_angle, resolve
from edge.analytics.base import FORGET_S, Event, Moment, PerTrack, point, register
from edge.analytics.config import RepsAnalytics, RepSignal
from edge.types import Pose

_SHOULDERS = ("left_shoulder", "right_shoulder")
PRESETS: dict[str, tuple[str, list[dict]]] = {  # exercise -> (count_on, signals)
    "squat": ("high", [{"angle": ["left_knee", "right_knee"], "high": 150, "low": 100}]),
    "push_up": ("high", [{"angle": ["left_elbow", "right_elbow"], "high": 150, "low": 100}]),
    "jumping_jack": ("low", [
        # both wrists above the nose (head) vs hands down, in shoulder widths
        {"distance": [["left_wrist", "nose"], ["right_wrist", "nose"]], "axis": "above", "per": _SHOULDERS,
         "reduce": "min", "high": 0.2, "low": -1.0},
        # ankle spread vs feet together, in shoulder widths
        {"distance": [["left_ankle", "right_ankle"]], "axis": "x", "per": _SHOULDERS, "high": 1.5, "low": 1.2},
    ]),
}
SCALE_HOLD_S = 1.0  # a reference length (shoulder width) not seen is taken from the last this long ago
_REDUCE = {"mean": lambda v: sum(v) / len(v), "min": min, "max": max}


def _pair(kp: np.ndarray, a: str, b: str, axis: str, threshold: float) -> float | None:
    pa, pb = point(kp, a, threshold), point(kp, b, threshold)
    if pa is None or pb is None:
        return None
    d = pb - pa
    return {"xy": math.hypot(d[0], d[1]), "x": abs(d[0]), "y": abs(d[1]), "above": d[1]}[axis]


def signal_value(sig: RepSignal, kp: np.ndarray, threshold: float, scale: float | None = None) -> float | None:
    """The signal of one COCO-17 pose; None when none of its parts (or its reference length) was seen.

    ``scale``: the reference length (``per``) to use when it is not seen in this pose.
    """
    if sig.angle is not None:
        values = [joint_angle(kp, resolve(item), threshold) for item in sig.angle]
    else:
        values = [_pair(kp, a, b, sig.axis, threshold) for a, b in sig.distance]
        if sig.per is not None:
            scale = reference_length(sig, kp, threshold) or scale
            if scale is None:
                return None
            values = [None if v is None else v / scale for v in values]
    seen = [v for v in values if v is not None]
    return _REDUCE[sig.reduce](seen) if seen else None


def reference_length(sig: RepSignal, kp: np.ndarray, threshold: float) -> float | None:
    length = _pair(kp, sig.per[0], sig.per[1], "xy", threshold) if sig.per else None
    return length if length is not None and length > 1e-6 else None


@dataclass
class RepCounter:
    """The phase machine of one person; ``step`` returns the rep's duration (s) when one completes."""

    signals: list[RepSignal]
    count_on: str  # the rest phase: 'high' or 'low'
    min_phase_ns: int
    phase: str | None = None
    count: int = 0
    armed: bool = False  # the active phase was entered from the rest phase
    _cand: str | None = None
    _cand_since: int = 0
    _active_since: int = 0
    scales: dict[int, tuple[float, int]] = field(default_factory=dict)  # signal -> (reference length, seen at)

    def values(self, kp: np.ndarray, threshold: float, t_ns: int) -> list[float | None]:
        """Each signal's value; a reference length not seen now is taken from the last SCALE_HOLD_S (it changes slowly)."""
        out = []
        for i, sig in enumerate(self.signals):
            length = reference_length(sig, kp, threshold)
            if length is not None:
                self.scales[i] = (length, t_ns)
            held = self.scales.get(i)
            fresh = held[0] if held and t_ns - held[1] <= SCALE_HOLD_S * 1e9 else None
            out.append(signal_value(sig, kp, threshold, fresh))
        return out

    def level(self, values: list[float]) -> str | None:
        if all(v >= s.high for v, s in zip(values, self.signals)):
            return "high"
        if all(v <= s.low for v, s in zip(values, self.signals)):
            return "low"
        return None

    def step(self, values: list[float | None], t_ns: int) -> float | None:
        if any(v is None for v in values):
            return None  # not seen: neither confirms nor breaks a candidate phase
        lvl = self.level(values)  # type: ignore[arg-type]
        if lvl is None or lvl == self.phase:
            self._cand = None
            return None
        if self._cand != lvl:
            self._cand, self._cand_since = lvl, t_ns
        if t_ns - self._cand_since < self.min_phase_ns:
            return None
        prev, self.phase, self._cand = self.phase, lvl, None
        if lvl != self.count_on:
            self.armed, self._active_since = prev == self.count_on, self._cand_since
            return None
        if not self.armed:
            return None
        self.armed = False
        self.count += 1
        return (self._cand_since - self._active_since) / 1e9


class RepAnalysis:
    def __init__(self, cfg: RepsAnalytics, keypoint_threshold: float):
        self.cfg = cfg
        self.name = cfg.name
        self.threshold = keypoint_threshold if cfg.keypoint_threshold is None else cfg.keypoint_threshold
        preset_on, preset_signals = PRESETS.get(cfg.exercise, (None, []))
        self.count_on = cfg.count_on or preset_on
        self.signals = cfg.signals or [RepSignal(**s) for s in preset_signals]
        self.people: PerTrack[RepCounter] = PerTrack(
            lambda: RepCounter(self.signals, self.count_on, int(cfg.min_phase_s * 1e9)))
        self.total = 0
        self._visible: list[int] = []

    def update(self, people: list[Pose], now: Moment) -> list[Event]:
        events = []
        self._visible = []
        for pose in people:
            counter = self.people.get(pose.track_id, now.t_capture_ns)
            self._visible.append(pose.track_id)
            duration = counter.step(counter.values(pose.keypoints, self.threshold, now.t_capture_ns), now.t_capture_ns)
            if duration is not None:
                self.total += 1
                events.append(Event.at("rep", self.name, pose.track_id, now, exercise=self.cfg.exercise,
                                       count=counter.count, total=self.total, duration_s=round(duration, 3)))
        for tid in self.people.stale(now.t_capture_ns, FORGET_S):
            self.people.drop(tid)
        return events

    def count(self, track_id: int) -> int:
        counter = self.people.states.get(track_id)
        return counter.count if counter else 0

    def reset(self) -> None:
        self.people.clear()
        self._visible = []

    def view(self) -> dict[str, list]:
        reps = [{"analysis": self.name, "track_id": tid, "count": self.people.states[tid].count,
                 "phase": self.people.states[tid].phase} for tid in self._visible]
        return {"reps": reps, "rep_totals": [{"analysis": self.name, "total": self.total}]}

    def describe(self) -> dict:
        return {"type": "reps", "name": self.name, "exercise": self.cfg.exercise}


@register("reps")
def make_reps(cfg: RepsAnalytics, keypoint_threshold: float) -> RepAnalysis:
    return RepAnalysis(cfg, keypoint_threshold)
