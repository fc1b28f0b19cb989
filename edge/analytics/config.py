"""Analytics config: one typed entry per analysis (``angles``, ``reps``, ``zones``).

Declared beside the analyses; edge.config composes them into the ``analytics:`` list.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from edge.configbase import Strict as _Strict
from edge.types import COCO17_NAMES


_NAME = r"^[A-Za-z0-9_-]+$"  # analysis and zone names become MQTT fields and Home Assistant object ids


def _keypoint_names(names) -> None:
    bad = [n for n in names if n not in COCO17_NAMES]
    if bad:
        raise ValueError(f"unknown keypoint(s) {bad}; use COCO-17 names: {', '.join(COCO17_NAMES)}")


def _joint_names(names) -> None:
    from edge.analytics.angles import JOINTS  # the named angles live beside the code that computes them

    bad = [n for n in names if isinstance(n, str) and n not in JOINTS]
    if bad:
        raise ValueError(f"unknown angle(s) {bad}; choose from {', '.join(JOINTS)} or give [a, vertex, c] keypoints")


class AnglesAnalytics(_Strict):
    """Joint angles per tracked person, their range of motion, and throttled angle_update events."""

    type: Literal["angles"]
    name: str = Field("angles", pattern=_NAME)
    joints: list[str] = Field(
        default_factory=lambda: ["left_elbow", "right_elbow", "left_shoulder", "right_shoulder",
                                 "left_hip", "right_hip", "left_knee", "right_knee"],
        description="named angles: {left,right}_{elbow,shoulder,hip,knee}")
    custom: dict[str, tuple[str, str, str]] = Field(
        default_factory=dict, description="more angles: name -> [a, vertex, c] COCO-17 keypoint names")
    keypoint_threshold: float | None = Field(None, ge=0, le=1, description="null = model.keypoint_threshold")
    interval_s: float | None = Field(1.0, gt=0, description="angle_update events per person at most this often; "
                                     "null = none (angles still drawn)")
    draw: bool = Field(True, description="draw angle arcs on the overlay")

    @field_validator("joints")
    @classmethod
    def _joints(cls, v):
        _joint_names(v)
        return v

    @field_validator("custom")
    @classmethod
    def _custom(cls, v):
        for triple in v.values():
            _keypoint_names(triple)
        return v


class RepSignal(_Strict):
    """One number per frame: an angle, or a keypoint distance (optionally per a reference distance)."""

    angle: list[str | tuple[str, str, str]] | None = Field(
        None, description="named angles (left_knee) or [a, vertex, c] keypoints; reduced over the visible ones")
    distance: list[tuple[str, str]] | None = Field(None, description="keypoint pairs [a, b]")
    axis: Literal["xy", "x", "y", "above"] = Field(
        "xy", description="distance: xy = Euclidean, x/y = absolute, above = how far a is above b (signed)")
    per: tuple[str, str] | None = Field(None, description="distance: divide by the distance of this pair "
                                        "(e.g. [left_shoulder, right_shoulder]) so it does not depend on size")
    reduce: Literal["mean", "min", "max"] = "mean"
    high: float = Field(..., description="at or above: the high phase")
    low: float = Field(..., description="at or below: the low phase; the gap to high is the hysteresis")

    @model_validator(mode="after")
    def _check(self) -> "RepSignal":
        if (self.angle is None) == (self.distance is None):
            raise ValueError("give exactly one of angle or distance")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high}): the gap is the hysteresis")
        _joint_names(self.angle or [])
        _keypoint_names([n for item in (self.angle or []) if not isinstance(item, str) for n in item])
        _keypoint_names([n for pair in (self.distance or []) for n in pair] + list(self.per or ()))
        return self


class RepsAnalytics(_Strict):
    """A repetition counter per tracked person: a preset exercise or custom signals (edge/analytics/reps.py)."""

    type: Literal["reps"]
    exercise: Literal["squat", "push_up", "jumping_jack", "custom"]
    name: str = Field(..., pattern=_NAME, description="default: the exercise")
    signals: list[RepSignal] | None = Field(None, min_length=1, description="custom (or a preset's override): every "
                                            "signal must be past its threshold for a phase")
    count_on: Literal["high", "low"] | None = Field(None, description="the rest phase whose return completes a rep "
                                                    "(squat: high = standing); presets set it")
    min_phase_s: float = Field(0.1, ge=0, description="a phase counts once held this long (capture time)")
    keypoint_threshold: float | None = Field(None, ge=0, le=1, description="null = model.keypoint_threshold")

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data):
        if isinstance(data, dict) and data.get("name") is None and isinstance(data.get("exercise"), str):
            data = {**data, "name": data["exercise"]}
        return data

    @model_validator(mode="after")
    def _custom(self) -> "RepsAnalytics":
        if self.exercise == "custom" and (not self.signals or self.count_on is None):
            raise ValueError("exercise custom needs signals and count_on")
        return self


class Zone(_Strict):
    name: str = Field(..., pattern=_NAME)
    polygon: list[tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]]] = Field(
        ..., min_length=3, description="[[x, y], ...] normalised to the frame (0..1)")


class ZonesAnalytics(_Strict):
    """Zones: per-person enter/exit, dwell and reaching (edge/analytics/zones.py)."""

    type: Literal["zones"]
    name: str = Field("zones", pattern=_NAME)
    zones: list[Zone] = Field(..., min_length=1)
    anchor: Literal["ankles", "hips", "box_bottom"] = Field(
        "ankles", description="the point that decides membership: visible ankles' midpoint, hips' midpoint, or the "
        "bottom centre of the box")
    keypoint_threshold: float | None = Field(None, ge=0, le=1, description="null = model.keypoint_threshold")
    dwell_interval_s: float | None = Field(10.0, gt=0, description="a dwell event this often while inside; null = none")
    reach: bool = Field(True, description="reach events: a wrist above its shoulder, in the zone")
    reach_min_s: float = Field(0.2, ge=0, description="a reach counts once held this long")
    lost_after_s: float = Field(2.0, gt=0, description="a person unseen this long has left (zone_exit, reason lost)")

    @field_validator("zones")
    @classmethod
    def _unique(cls, v):
        names = [z.name for z in v]
        if len(set(names)) != len(names):
            raise ValueError(f"zone names must be unique, got {names}")
        return v


AnalyticsConfig = Annotated[Union[AnglesAnalytics, RepsAnalytics, ZonesAnalytics], Field(discriminator="type")]
