"""Zones: per-person enter/exit, dwell time and reaching, from polygons in normalised frame coordinates.

Membership is decided by one anchor point per person: the midpoint of the visible ankles (where the
person stands), of the visible hips, or the bottom centre of the box. When the anchor is not seen
(ankles below the keypoint threshold), membership stays as it was: a missing keypoint is not a move.
A person first seen inside a zone enters it. A person unseen for ``lost_after_s`` exits with reason
"lost", dwell counted to the last time they were seen.

Reaching: a wrist above its shoulder (both seen), while the person is in the zone or with the wrist
itself inside it (a shelf drawn on the image), held for ``reach_min_s``; one event per reach.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.analytics.base import Event, Moment, PerTrack, point, register
from edge.analytics.config import ZonesAnalytics
from edge.types import Pose


def contains(polygon: np.ndarray, x: float, y: float) -> bool:
    """Even-odd ray casting: is (x, y) inside the (N,2) polygon? (A point exactly on an edge may go either way.)"""
    px, py = polygon[:, 0], polygon[:, 1]
    qx, qy = np.roll(px, -1), np.roll(py, -1)
    crosses = (py > y) != (qy > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = px + (y - py) * (qx - px) / (qy - py)
    return bool(np.count_nonzero(crosses & (x < x_at)) % 2)


def anchor(pose: Pose, kind: str, threshold: float, width: int, height: int) -> tuple[float, float] | None:
    """The person's anchor point, normalised to the frame, or None when its keypoints are not seen."""
    if kind == "box_bottom":
        x1, _, x2, y2 = pose.bbox
        return (x1 + x2) / 2.0 / width, y2 / height
    names = ("left_ankle", "right_ankle") if kind == "ankles" else ("left_hip", "right_hip")
    seen = [p for p in (point(pose.keypoints, n, threshold) for n in names) if p is not None]
    if not seen:
        return None
    x, y = np.mean(seen, axis=0)
    return float(x) / width, float(y) / height


@dataclass
class _Person:
    entered_ns: dict[str, int] = field(default_factory=dict)  # zone -> when the person entered it
    last_dwell_ns: dict[str, int] = field(default_factory=dict)
    reach_since: dict[tuple[str, str], int] = field(default_factory=dict)  # (zone, side) -> start of the reach
    reached: set[tuple[str, str]] = field(default_factory=set)  # reaches already reported


class ZoneAnalysis:
    def __init__(self, cfg: ZonesAnalytics, keypoint_threshold: float):
        self.cfg = cfg
        self.name = cfg.name
        self.threshold = keypoint_threshold if cfg.keypoint_threshold is None else cfg.keypoint_threshold
        self.polygons = {z.name: np.asarray(z.polygon, dtype=np.float64) for z in cfg.zones}
        self.people: PerTrack[_Person] = PerTrack(_Person)
        self._now_ns = 0

    def update(self, people: list[Pose], now: Moment) -> list[Event]:
        events: list[Event] = []
        t = self._now_ns = now.t_capture_ns
        for pose in people:
            tid, st = pose.track_id, self.people.get(pose.track_id, t)
            a = anchor(pose, self.cfg.anchor, self.threshold, now.width, now.height)
            if a is not None:  # exits first: a person moving from one zone to the next leaves, then enters
                moves = [e for zone, poly in self.polygons.items()
                         for e in self._membership(tid, st, zone, contains(poly, *a), a, now)]
                events += sorted(moves, key=lambda e: e.type != "zone_exit")
            for zone, poly in self.polygons.items():
                interval = self.cfg.dwell_interval_s
                if zone in st.entered_ns and interval and t - st.last_dwell_ns[zone] >= interval * 1e9:
                    st.last_dwell_ns[zone] = t
                    events.append(Event.at("dwell", self.name, tid, now, zone=zone,
                                           dwell_s=round((t - st.entered_ns[zone]) / 1e9, 3)))
                if self.cfg.reach:
                    events += self._reach(pose, st, zone, poly, now)
        for tid in self.people.stale(t, self.cfg.lost_after_s):
            last_seen = self.people.last_seen_ns[tid]
            for zone, since in self.people.drop(tid).entered_ns.items():
                events.append(Event.at("zone_exit", self.name, tid, now, zone=zone, reason="lost",
                                       dwell_s=round((last_seen - since) / 1e9, 3)))
        return events

    def _membership(self, tid: int, st: _Person, zone: str, inside: bool, a, now: Moment) -> list[Event]:
        t = now.t_capture_ns
        where = [round(a[0], 4), round(a[1], 4)]
        if inside and zone not in st.entered_ns:
            st.entered_ns[zone] = st.last_dwell_ns[zone] = t
            return [Event.at("zone_enter", self.name, tid, now, zone=zone, anchor=where)]
        if not inside and zone in st.entered_ns:
            since = st.entered_ns.pop(zone)
            st.last_dwell_ns.pop(zone, None)
            return [Event.at("zone_exit", self.name, tid, now, zone=zone, reason="left", anchor=where,
                             dwell_s=round((t - since) / 1e9, 3))]
        return []

    def _reach(self, pose: Pose, st: _Person, zone: str, poly: np.ndarray, now: Moment) -> list[Event]:
        events = []
        for side in ("left", "right"):
            wrist = point(pose.keypoints, f"{side}_wrist", self.threshold)
            shoulder = point(pose.keypoints, f"{side}_shoulder", self.threshold)
            if wrist is None or shoulder is None:
                continue  # not seen: the reach neither starts nor ends
            w = (wrist[0] / now.width, wrist[1] / now.height)
            key = (zone, side)
            if wrist[1] < shoulder[1] and (zone in st.entered_ns or contains(poly, *w)):
                since = st.reach_since.setdefault(key, now.t_capture_ns)
                if key not in st.reached and now.t_capture_ns - since >= self.cfg.reach_min_s * 1e9:
                    st.reached.add(key)
                    events.append(Event.at("reach", self.name, pose.track_id, now, zone=zone, side=side,
                                           wrist=[round(w[0], 4), round(w[1], 4)]))
            else:
                st.reach_since.pop(key, None)
                st.reached.discard(key)
        return events

    def occupants(self, zone: str) -> list[int]:
        return sorted(tid for tid, st in self.people.states.items() if zone in st.entered_ns)

    def reset(self) -> None:
        self.people.clear()

    def view(self) -> dict[str, list]:
        out = []
        for zone, poly in self.polygons.items():
            inside = [{"track_id": tid, "dwell_s": round((self._now_ns - st.entered_ns[zone]) / 1e9, 1)}
                      for tid, st in sorted(self.people.states.items()) if zone in st.entered_ns]
            reaching = sorted({tid for tid, st in self.people.states.items() for z, _ in st.reached if z == zone})
            out.append({"analysis": self.name, "name": zone, "polygon": poly.round(4).tolist(), "inside": inside,
                        "reaching": reaching})
        return {"zones": out}

    def describe(self) -> dict:
        return {"type": "zones", "name": self.name, "zones": list(self.polygons)}


@register("zones")
def make_zones(cfg: ZonesAnalytics, keypoint_threshold: float) -> ZoneAnalysis:
    return ZoneAnalysis(cfg, keypoint_threshold)
