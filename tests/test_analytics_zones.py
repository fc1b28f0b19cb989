"""Zones on synthetic people: membership from the anchor, enter/exit/dwell/reach events with capture times."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.analytics import Moment, build_analytics
from edge.analytics.zones import anchor, contains
from edge.config import validate
from edge.types import COCO17_NAMES, Pose

K = {n: i for i, n in enumerate(COCO17_NAMES)}
W, H = 640, 480
LEFT_HALF = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]


def person(x: float, y: float, score: float = 0.9, raise_wrist: str | None = None) -> np.ndarray:
    """A standing COCO-17 person whose ankles' midpoint is at normalised (x, y); 200 px tall."""
    px, py = x * W, y * H
    kp = np.zeros((17, 3), np.float32)
    kp[:, 2] = score
    rows = {"nose": -190, "left_eye": -195, "right_eye": -195, "left_ear": -192, "right_ear": -192,
            "left_shoulder": -160, "right_shoulder": -160, "left_elbow": -120, "right_elbow": -120,
            "left_wrist": -85, "right_wrist": -85, "left_hip": -100, "right_hip": -100,
            "left_knee": -50, "right_knee": -50, "left_ankle": 0, "right_ankle": 0}
    for name, dy in rows.items():
        dx = 15 if name.startswith("left") else -15 if name.startswith("right") else 0
        kp[K[name], :2] = (px + dx, py + dy)
    if raise_wrist:
        kp[K[f"{raise_wrist}_wrist"], 1] = py - 210  # above the head
    return kp


def zones(**extra):
    cfg = {"type": "zones", "zones": [{"name": "left", "polygon": LEFT_HALF}], "dwell_interval_s": None, **extra}
    return build_analytics(validate({"analytics": [cfg]}))


def at(i: int, t_s: float) -> Moment:
    return Moment(i, int(t_s * 1e9), 1.7e9 + t_s, W, H)


def walk(analytics, path, fps: float = 10.0, track_id: int = 1, **kw) -> list:
    events = []
    for i, xy in enumerate(path):
        poses = [] if xy is None else [Pose(person(*xy, **kw), 0.9, track_id=track_id)]
        events += analytics(poses, at(i, i / fps))
    return events


@pytest.mark.parametrize("polygon, inside, outside", [
    ([[0, 0], [1, 0], [1, 1], [0, 1]], [(0.5, 0.5), (0.01, 0.99)], [(1.5, 0.5), (-0.1, 0.2)]),
    ([[0, 0], [1, 0], [0, 1]], [(0.2, 0.2)], [(0.6, 0.6)]),
    # a U shape: the notch is outside
    ([[0, 0], [1, 0], [1, 1], [0.7, 1], [0.7, 0.3], [0.3, 0.3], [0.3, 1], [0, 1]],
     [(0.1, 0.9), (0.9, 0.9), (0.5, 0.1)], [(0.5, 0.8), (0.5, 0.31)]),
])
def test_contains_table(polygon, inside, outside):
    poly = np.asarray(polygon, float)
    assert all(contains(poly, *p) for p in inside)
    assert not any(contains(poly, *p) for p in outside)


def test_contains_agrees_with_opencv_on_random_polygons():
    rng = np.random.default_rng(0)
    for _ in range(50):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
        radii = rng.uniform(0.1, 0.5, 7)
        poly = np.stack([0.5 + radii * np.cos(angles), 0.5 + radii * np.sin(angles)], axis=1)
        contour = poly.astype(np.float32).reshape(-1, 1, 2)
        for x, y in rng.uniform(0, 1, (40, 2)):
            side = cv2.pointPolygonTest(contour, (float(x), float(y)), True)
            if abs(side) > 1e-6:
                assert contains(poly, x, y) == (side > 0)


@pytest.mark.parametrize("kind, expected", [
    ("ankles", (0.25, 0.5)),
    ("hips", (0.25, 0.5 - 100 / H)),
    ("box_bottom", (0.25, 0.5)),
])
def test_anchor_kinds(kind, expected):
    pose = Pose(person(0.25, 0.5), 0.9, track_id=1)
    assert anchor(pose, kind, 0.2, W, H) == pytest.approx(expected)


def test_anchor_uses_the_visible_ankle_and_is_none_without_any():
    kp = person(0.25, 0.5)
    kp[K["left_ankle"], 2] = 0.1
    assert anchor(Pose(kp, 0.9), "ankles", 0.2, W, H) == pytest.approx((0.25 - 15 / W, 0.5))
    kp[K["right_ankle"], 2] = 0.1
    assert anchor(Pose(kp, 0.9), "ankles", 0.2, W, H) is None


def test_enter_and_exit_fire_on_the_first_frame_across_with_dwell_from_capture_time():
    path = [(0.8, 0.6), (0.7, 0.6), (0.55, 0.6), (0.45, 0.6), (0.3, 0.6), (0.3, 0.6), (0.52, 0.6), (0.7, 0.6)]
    events = walk(zones(), path, fps=10.0)
    assert [(e.type, e.frame) for e in events] == [("zone_enter", 3), ("zone_exit", 6)]
    enter, leave = events
    assert enter.data == {"zone": "left", "anchor": [0.45, 0.6]}
    assert leave.data["reason"] == "left" and leave.data["dwell_s"] == pytest.approx(0.3)
    assert leave.t_wall_ms - enter.t_wall_ms == 300 and enter.track_id == 1 and enter.analysis == "zones"


def test_unseen_anchor_keeps_membership_and_first_sight_inside_is_an_enter():
    a = zones()
    events = walk(a, [(0.3, 0.6)])
    assert [e.type for e in events] == ["zone_enter"]  # first seen inside the zone
    kp = person(0.8, 0.6)
    kp[[K["left_ankle"], K["right_ankle"]], 2] = 0.05  # walked out, but the feet are not seen
    assert a([Pose(kp, 0.9, track_id=1)], at(1, 0.1)) == []
    assert a.analyses[0].occupants("left") == [1]
    assert [e.type for e in a([Pose(person(0.8, 0.6), 0.9, track_id=1)], at(2, 0.2))] == ["zone_exit"]


def test_hips_anchor_decides_differently_from_the_ankles():
    # a person standing just below the zone's bottom edge: the hips are inside, the ankles are not
    poly = [[0.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 0.5]]
    for kind, expected in (("ankles", []), ("hips", ["zone_enter"]), ("box_bottom", [])):
        a = zones(zones=[{"name": "top", "polygon": poly}], anchor=kind)
        assert [e.type for e in walk(a, [(0.5, 0.55)])] == expected, kind


def test_periodic_dwell_events_while_inside():
    events = walk(zones(dwell_interval_s=1.0), [(0.3, 0.6)] * 26, fps=10.0)
    dwell = [e for e in events if e.type == "dwell"]
    assert [e.frame for e in dwell] == [10, 20]
    assert [e.data["dwell_s"] for e in dwell] == [pytest.approx(1.0), pytest.approx(2.0)]


def test_a_person_lost_inside_exits_with_reason_lost_after_lost_after_s():
    path = [(0.3, 0.6)] * 5 + [None] * 30
    events = walk(zones(lost_after_s=2.0), path, fps=10.0)
    assert [e.type for e in events] == ["zone_enter", "zone_exit"]
    leave = events[1]
    assert leave.data["reason"] == "lost" and leave.data["dwell_s"] == pytest.approx(0.4)  # to the last sighting
    assert leave.frame == 25  # the first frame more than 2 s after the last sighting (frame 4, 0.4 s)


def test_reach_once_per_raise_held_for_reach_min_s_and_not_ended_by_an_unseen_wrist():
    a = zones(reach_min_s=0.2)
    events = []
    plan = ["down"] * 3 + ["up"] * 6 + ["unseen"] * 2 + ["up"] * 3 + ["down"] * 3 + ["up"] * 4 + ["up-out"] * 4
    for i, state in enumerate(plan):
        x = 0.8 if state == "up-out" else 0.3
        kp = person(x, 0.6, raise_wrist="left" if state.startswith("up") or state == "unseen" else None)
        if state == "unseen":
            kp[K["left_wrist"], 2] = 0.05
        events += a([Pose(kp, 0.9, track_id=7)], at(i, i / 10))
    reach = [e for e in events if e.type == "reach"]
    # raise at 3 (held 0.2 s at 5), unseen wrist keeps it, lowered at 14, raised at 17 (held at 19); outside: none
    assert [(e.frame, e.data["side"], e.data["zone"]) for e in reach] == [(5, "left", "left"), (19, "left", "left")]
    assert reach[0].data["wrist"][1] < 0.6 - 160 / H  # above the shoulder


def test_a_wrist_inside_a_shelf_zone_reaches_without_the_person_inside():
    shelf = [[0.4, 0.0], [0.6, 0.0], [0.6, 0.2], [0.4, 0.2]]
    a = zones(zones=[{"name": "top_shelf", "polygon": shelf}], reach_min_s=0.0)
    kp = person(0.3, 0.55, raise_wrist="left")
    kp[K["left_wrist"], :2] = (0.45 * W, 0.1 * H)  # the left wrist up in the shelf
    (event,) = a([Pose(kp, 0.9, track_id=2)], at(0, 0.0))
    assert event.type == "reach" and event.data["zone"] == "top_shelf" and event.data["wrist"] == [0.45, 0.1]
    assert a.analyses[0].occupants("top_shelf") == []


def test_people_are_tracked_separately_and_the_view_lists_occupants():
    a = zones(zones=[{"name": "left", "polygon": LEFT_HALF}, {"name": "right", "polygon": [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]}])
    events = a([Pose(person(0.2, 0.6), 0.9, track_id=1), Pose(person(0.8, 0.6), 0.9, track_id=2)], at(0, 0.0))
    assert {(e.track_id, e.data["zone"]) for e in events} == {(1, "left"), (2, "right")}
    events = a([Pose(person(0.2, 0.6), 0.9, track_id=1), Pose(person(0.3, 0.6), 0.9, track_id=2)], at(1, 0.5))
    assert [(e.type, e.track_id, e.data["zone"]) for e in events] == [("zone_exit", 2, "right"), ("zone_enter", 2, "left")]
    view = a.view()["zones"]
    assert [z["name"] for z in view] == ["left", "right"]
    assert view[0]["inside"] == [{"track_id": 1, "dwell_s": 0.5}, {"track_id": 2, "dwell_s": 0.0}]
    assert view[1]["inside"] == [] and view[0]["polygon"] == LEFT_HALF


def test_zone_config_errors_name_the_key():
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"analytics.0.zones.0.polygon.2.0.*1.2"):
        validate({"analytics": [{"type": "zones", "zones": [{"name": "a", "polygon": [[0, 0], [1, 0], [1.2, 1]]}]}]})
    with pytest.raises(ConfigError, match="unique"):
        validate({"analytics": [{"type": "zones", "zones": [{"name": "a", "polygon": LEFT_HALF},
                                                             {"name": "a", "polygon": LEFT_HALF}]}]})
