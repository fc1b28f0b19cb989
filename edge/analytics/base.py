"""Analytics: what the keypoints mean per person (angles, repetitions, zones), emitted as typed events.

Each analysis is chosen in config by its ``type`` and registers a factory here, like sinks do. Once per
frame it sees the tracked, smoothed poses (in their COCO-17 view), keeps per-track state and returns
Events. Poses without a track ID (a track not yet confirmed) are skipped: a count or a dwell time
needs a person that stays the same person. Durations come from capture timestamps, never frame counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generic, Protocol, TypeVar

import numpy as np

from edge.errors import ConfigError
from edge.types import COCO17_NAMES, Pose

if TYPE_CHECKING:
    from edge.config import Config

EVENT_TYPES = ("rep", "zone_enter", "zone_exit", "dwell", "reach", "angle_update")
KP = {name: i for i, name in enumerate(COCO17_NAMES)}  # COCO-17 keypoint name -> index
FORGET_S = 60.0  # per-track state of a person unseen this long is dropped (track IDs are never reused)


@dataclass(frozen=True)
class Moment:
    """The frame facts an analysis needs. ``t_capture_ns`` is the frame's time: when a camera took it,
    or for a video file its time in the recording (``Frame.t_stream_ns``), so that dwell times and
    rep durations are filmed seconds however fast the file is read."""

    index: int
    t_capture_ns: int
    t_wall: float
    width: int
    height: int

    @classmethod
    def of(cls, frame) -> "Moment":
        t_ns = getattr(frame, "t_stream_ns", None)  # a Frame; a Moment already holds it
        return cls(frame.index, frame.t_capture_ns if t_ns is None else t_ns, frame.t_wall, frame.width, frame.height)


@dataclass(frozen=True)
class Event:
    """One typed event about one person; ``data`` holds the fields of its type (docs/mqtt-schema/events.json)."""

    type: str
    analysis: str
    track_id: int
    frame: int
    t_wall_ms: int
    t_capture_ns: int
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"event type {self.type!r} is not one of {EVENT_TYPES}")

    @classmethod
    def at(cls, kind: str, analysis: str, track_id: int, now: Moment, **data: Any) -> "Event":
        return cls(kind, analysis, int(track_id), now.index, int(now.t_wall * 1000), now.t_capture_ns, data)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "analysis": self.analysis, "track_id": self.track_id, "frame": self.frame,
                "t_wall_ms": self.t_wall_ms, "t_capture_ns": self.t_capture_ns, **self.data}


def point(kp: np.ndarray, name: str, threshold: float) -> np.ndarray | None:
    """(x, y) of a named COCO-17 keypoint, or None when it is below ``threshold`` or not finite."""
    x, y, s = (float(v) for v in kp[KP[name]])
    if s < threshold or not (math.isfinite(x) and math.isfinite(y)):
        return None
    return np.array([x, y], dtype=np.float64)


S = TypeVar("S")


class PerTrack(Generic[S]):
    """Per-track state, made on first sight; ``stale`` finds the people not seen for a while."""

    def __init__(self, factory: Callable[[], S]):
        self._factory = factory
        self.states: dict[int, S] = {}
        self.last_seen_ns: dict[int, int] = {}

    def get(self, track_id: int, t_ns: int) -> S:
        self.last_seen_ns[track_id] = t_ns
        if track_id not in self.states:
            self.states[track_id] = self._factory()
        return self.states[track_id]

    def stale(self, t_ns: int, after_s: float) -> list[int]:
        return [tid for tid, seen in self.last_seen_ns.items() if t_ns - seen > after_s * 1e9]

    def drop(self, track_id: int) -> S | None:
        self.last_seen_ns.pop(track_id, None)
        return self.states.pop(track_id, None)

    def clear(self) -> None:
        self.states.clear()
        self.last_seen_ns.clear()


class Analysis(Protocol):
    """One configured analysis. ``view`` is its JSON-ready state for the overlay and the live view."""

    name: str

    def update(self, people: list[Pose], now: Moment) -> list[Event]: ...

    def reset(self) -> None: ...

    def view(self) -> dict[str, list]: ...

    def describe(self) -> dict[str, Any]: ...


AnalysisFactory = Callable[[Any, float], Analysis]  # (its config section, model keypoint threshold)
_REGISTRY: dict[str, AnalysisFactory] = {}


def register(name: str) -> Callable[[AnalysisFactory], AnalysisFactory]:
    def deco(factory: AnalysisFactory) -> AnalysisFactory:
        _REGISTRY[name] = factory
        return factory

    return deco


class Analytics:
    """Every configured analysis, run in order: ``events = analytics(poses, frame)``; falsy when none is configured."""

    def __init__(self, analyses: list[Analysis]):
        self.analyses = analyses

    def __bool__(self) -> bool:
        return bool(self.analyses)

    def __call__(self, poses: list[Pose], frame) -> list[Event]:
        now = Moment.of(frame)
        people = [p.coco17() for p in poses if p.track_id is not None]
        events: list[Event] = []
        for analysis in self.analyses:
            events.extend(analysis.update(people, now))
        return events

    def reset(self) -> None:
        for analysis in self.analyses:
            analysis.reset()

    def view(self) -> dict[str, list] | None:
        """The state after the last frame, merged: {"angles": [...], "reps": [...], "zones": [...]}."""
        if not self.analyses:
            return None
        out: dict[str, list] = {}
        for analysis in self.analyses:
            for key, items in analysis.view().items():
                out.setdefault(key, []).extend(items)
        return out

    def describe(self) -> list[dict[str, Any]]:
        """What is configured, for sinks that announce it up front (Home Assistant's rep-count sensors)."""
        return [analysis.describe() for analysis in self.analyses]


def build_analytics(cfg: Config) -> Analytics:
    """The analyses of a Config's ``analytics:`` list (empty: an Analytics that does nothing)."""
    from edge.analytics import angles, reps, zones  # noqa: F401  (register the built-in analyses)

    analyses = []
    for i, section in enumerate(cfg.analytics):
        try:
            factory = _REGISTRY[section.type]
        except KeyError:
            raise ConfigError(f"analytics.{i}: unknown type '{section.type}'; choose one of {sorted(_REGISTRY)}") from None
        analyses.append(factory(section, cfg.model.keypoint_threshold))
    return Analytics(analyses)
