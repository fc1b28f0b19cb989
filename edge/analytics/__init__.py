"""Per-person meaning of keypoints (joint angles, repetitions, zones), emitted as typed events."""

from edge.analytics.base import Analytics, Event, Moment, build_analytics

__all__ = ["Analytics", "Event", "Moment", "build_analytics"]
