"""Joint angles per tracked person, with their range of motion over the session.

An angle is the one at the vertex keypoint between the rays to the two others, 0..180 degrees, from
the smoothed keypoints. It is None when any of the three keypoints is below the keypoint threshold:
a physiotherapist must never read a made-up number. ``angle_update`` events are throttled per person.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge.analytics.base import FORGET_S, Event, Moment, PerTrack, point, register
from edge.analytics.config import AnglesAnalytics
from edge.types import Pose

# name -> (a, vertex, c), COCO-17 keypoint names; "left" is the person's left
JOINTS: dict[str, tuple[str, str, str]] = {
    f"{side}_{joint}": tuple(f"{side}_{k}" for k in keys)  # type: ignore[misc]
    for side in ("left", "right")
    for joint, keys in (("elbow", ("shoulder", "elbow", "wrist")), ("shoulder", ("hip", "shoulder", "elbow")),
                        ("hip", ("shoulder", "hip", "knee")), ("knee", ("hip", "knee", "ankle")))
}


def angle_deg(a: np.ndarray, vertex: np.ndarray, c: np.ndarray) -> float | None:
    """The angle at ``vertex`` between the rays to ``a`` and ``c``, in degrees; None for a zero-length ray."""
    u, v = a - vertex, c - vertex
    nu, nv = math.hypot(*u), math.hypot(*v)
    if nu < 1e-9 or nv < 1e-9:
        return None
    # atan2 of the cross and dot products: exact near 0 and 180 where acos loses precision
    return math.degrees(math.atan2(abs(u[0] * v[1] - u[1] * v[0]), u[0] * v[0] + u[1] * v[1]))


def joint_points(kp: np.ndarray, triple: tuple[str, str, str], threshold: float) -> list[np.ndarray] | None:
    pts = [point(kp, name, threshold) for name in triple]
    return None if any(p is None for p in pts) else pts  # type: ignore[return-value]


def joint_angle(kp: np.ndarray, triple: tuple[str, str, str], threshold: float) -> float | None:
    """The angle of ``triple`` (a, vertex, c keypoint names) in a COCO-17 (K,3) array, or None."""
    pts = joint_points(kp, triple, threshold)
    return None if pts is None else angle_deg(*pts)


def resolve(item: str | tuple[str, str, str]) -> tuple[str, str, str]:
    """A named angle (left_knee) or an explicit [a, vertex, c] triple."""
    return JOINTS[item] if isinstance(item, str) else tuple(item)  # type: ignore[return-value]


@dataclass
class _Person:
    angles: dict[str, float | None] = field(default_factory=dict)
    points: dict[str, list[np.ndarray]] = field(default_factory=dict)
    rom: dict[str, list[float]] = field(default_factory=dict)  # name -> [min, max]
    last_event_ns: int | None = None


class AngleAnalysis:
    def __init__(self, cfg: AnglesAnalytics, keypoint_threshold: float):
        self.cfg = cfg
        self.name = cfg.name
        self.threshold = keypoint_threshold if cfg.keypoint_threshold is None else cfg.keypoint_threshold
        self.joints = {**{n: JOINTS[n] for n in cfg.joints}, **{n: tuple(t) for n, t in cfg.custom.items()}}
        self.people: PerTrack[_Person] = PerTrack(_Person)
        self._visible: list[int] = []

    def update(self, people: list[Pose], now: Moment) -> list[Event]:
        events = []
        self._visible = []
        for pose in people:
            st = self.people.get(pose.track_id, now.t_capture_ns)
            self._visible.append(pose.track_id)
            st.points = {}
            for name, triple in self.joints.items():
                pts = joint_points(pose.keypoints, triple, self.threshold)
                value = None if pts is None else angle_deg(*pts)
                st.angles[name] = value
                if value is not None:
                    st.points[name] = pts
                    lo_hi = st.rom.setdefault(name, [value, value])
                    lo_hi[0], lo_hi[1] = min(lo_hi[0], value), max(lo_hi[1], value)
            interval = self.cfg.interval_s
            if interval and (st.last_event_ns is None or now.t_capture_ns - st.last_event_ns >= interval * 1e9):
                st.last_event_ns = now.t_capture_ns
                events.append(Event.at("angle_update", self.name, pose.track_id, now, angles=_rounded(st.angles),
                                       range={n: {"min": round(v[0], 1), "max": round(v[1], 1)}
                                              for n, v in st.rom.items()}))
        for tid in self.people.stale(now.t_capture_ns, FORGET_S):
            self.people.drop(tid)
        return events

    def angles(self, track_id: int) -> dict[str, float | None]:
        """The latest angles of a person (None where a keypoint was not seen)."""
        st = self.people.states.get(track_id)
        return dict(st.angles) if st else {}

    def range_of_motion(self, track_id: int) -> dict[str, tuple[float, float]]:
        st = self.people.states.get(track_id)
        return {n: (v[0], v[1]) for n, v in st.rom.items()} if st else {}

    def reset(self) -> None:
        self.people.clear()
        self._visible = []

    def view(self) -> dict[str, list]:
        if not self.cfg.draw:
            return {"angles": []}
        items = []
        for tid in self._visible:
            st = self.people.states[tid]
            for name, pts in st.points.items():
                items.append({"analysis": self.name, "track_id": tid, "name": name, "deg": round(st.angles[name], 1),
                              "points": [[round(float(p[0]), 1), round(float(p[1]), 1)] for p in pts]})
        return {"angles": items}

    def describe(self) -> dict:
        return {"type": "angles", "name": self.name, "joints": list(self.joints)}


def _rounded(angles: dict[str, float | None]) -> dict[str, float | None]:
    return {n: None if v is None else round(v, 1) for n, v in angles.items()}



@register("angles")
def make_angles(cfg: AnglesAnalytics, keypoint_threshold: float) -> AngleAnalysis:
    return AngleAnalysis(cfg, keypoint_threshold)
