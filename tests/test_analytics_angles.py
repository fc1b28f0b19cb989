"""Joint angles: exact on known geometry, None (never a made-up number) when a keypoint is not seen."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.analytics import Moment, build_analytics
from edge.analytics.angles import JOINTS, angle_deg, joint_angle
from edge.config import validate
from edge.types import BLAZEPOSE33_NAMES, BLAZEPOSE_TO_COCO17, COCO17_NAMES, Pose

K = {n: i for i, n in enumerate(COCO17_NAMES)}
KNEE = JOINTS["left_knee"]


def knee_pose(deg: float, rotate: float = 0.0, length: tuple[float, float] = (100.0, 80.0),
              vertex=(320.0, 240.0), score: float = 0.9) -> np.ndarray:
    """A COCO-17 pose whose left knee angle is ``deg``: hip and ankle rays from the knee, rotated as a whole."""
    kp = np.zeros((17, 3), np.float32)
    kp[:, 2] = score
    r1, r2 = math.radians(rotate), math.radians(rotate + deg)
    kp[K["left_knee"], :2] = vertex
    kp[K["left_hip"], :2] = (vertex[0] + length[0] * math.cos(r1), vertex[1] + length[0] * math.sin(r1))
    kp[K["left_ankle"], :2] = (vertex[0] + length[1] * math.cos(r2), vertex[1] + length[1] * math.sin(r2))
    return kp


@pytest.mark.parametrize("deg", [0.0, 1.0, 30.0, 45.0, 60.0, 90.0, 120.0, 135.0, 179.0, 180.0])
@pytest.mark.parametrize("rotate", [0.0, 37.0, -90.0, 200.0])
def test_known_geometry_gives_the_exact_angle(deg, rotate):
    assert joint_angle(knee_pose(deg, rotate), KNEE, 0.2) == pytest.approx(deg, abs=0.01)


@pytest.mark.parametrize("a, vertex, c, expected", [
    ((1, 0), (0, 0), (0, 1), 90.0),
    ((3, 4), (0, 0), (-4, 3), 90.0),  # a 3-4-5 pair at a right angle
    ((2, 0), (0, 0), (1, math.sqrt(3)), 60.0),
    ((1, 0), (0, 0), (-1, 0), 180.0),
    ((1, 1), (0, 0), (5, 5), 0.0),
    ((10, 10), (5, 5), (10, 5), 45.0),  # the vertex need not be the origin
])
def test_angle_deg_table(a, vertex, c, expected):
    assert angle_deg(*(np.array(p, float) for p in (a, vertex, c))) == pytest.approx(expected, abs=1e-9)


def test_angle_is_none_for_a_zero_length_ray():
    z = np.zeros(2)
    assert angle_deg(z, z, np.array([1.0, 0.0])) is None


@pytest.mark.parametrize("missing", ["left_hip", "left_knee", "left_ankle"])
def test_a_keypoint_below_the_threshold_gives_none(missing):
    kp = knee_pose(90.0)
    kp[K[missing], 2] = 0.19
    assert joint_angle(kp, KNEE, 0.2) is None
    kp[K[missing], 2] = 0.2  # at the threshold it counts as seen
    assert joint_angle(kp, KNEE, 0.2) == pytest.approx(90.0)
    kp[K[missing], 0] = np.nan  # a non-finite coordinate is not seen either
    assert joint_angle(kp, KNEE, 0.2) is None


def _analytics(**extra):
    return build_analytics(validate({"analytics": [{"type": "angles", **extra}]})).analyses[0]


def _moment(i: int, t_s: float) -> Moment:
    return Moment(i, int(t_s * 1e9), 1.7e9 + t_s, 640, 480)


def test_range_of_motion_per_track_ignores_frames_without_the_angle_and_events_are_throttled():
    a = _analytics(joints=["left_knee"], interval_s=0.5)
    events = []
    sweep = [170, 150, None, 95, 80, None, 120, 175, 100]
    for i, deg in enumerate(sweep):
        kp = knee_pose(deg if deg is not None else 10.0)
        if deg is None:
            kp[K["left_ankle"], 2] = 0.05  # the 10 degrees here must never show up
        other = knee_pose(60.0 + i, vertex=(100.0, 100.0))
        events += a.update([Pose(kp, 0.9, track_id=1), Pose(other, 0.9, track_id=2)], _moment(i, i * 0.2))
    lo, hi = a.range_of_motion(1)["left_knee"]
    assert (lo, hi) == (pytest.approx(80.0, abs=0.01), pytest.approx(175.0, abs=0.01))
    assert a.range_of_motion(2)["left_knee"] == (pytest.approx(60.0, abs=0.01), pytest.approx(68.0, abs=0.01))
    assert a.angles(1)["left_knee"] == pytest.approx(100.0, abs=0.01)
    mine = [e for e in events if e.track_id == 1]
    assert all(e.type == "angle_update" and e.analysis == "angles" for e in mine)
    # at most one per 0.5 s of capture time: frames 0, 3 (0.6 s), 6 (1.2 s)
    assert [e.frame for e in mine] == [0, 3, 6]
    assert [e.data["angles"]["left_knee"] for e in mine] == [170.0, 95.0, 120.0]
    assert mine[-1].data["range"]["left_knee"] == {"min": 80.0, "max": 170.0}
    assert mine[0].t_wall_ms == int(1.7e12) and mine[1].t_capture_ns == int(0.6e9)


def test_a_missing_angle_is_null_in_the_event_not_a_number():
    a = _analytics(joints=["left_knee", "right_elbow"])
    kp = knee_pose(90.0)
    kp[K["right_wrist"], 2] = 0.0
    (event,) = a.update([Pose(kp, 0.9, track_id=4)], _moment(0, 0.0))
    assert event.data["angles"] == {"left_knee": 90.0, "right_elbow": None}
    assert event.data["range"] == {"left_knee": {"min": 90.0, "max": 90.0}}
    assert event.to_dict()["angles"]["right_elbow"] is None


def test_view_has_the_three_points_of_every_visible_angle():
    a = _analytics(joints=["left_knee", "right_knee"], interval_s=None)
    kp = knee_pose(90.0)
    assert a.update([Pose(kp, 0.9, track_id=1)], _moment(0, 0.0)) == []
    (item,) = a.view()["angles"]  # the right knee is at (0, 0) three times: no angle, not drawn
    assert item["name"] == "left_knee" and item["track_id"] == 1 and item["deg"] == 90.0
    assert item["points"] == [[420.0, 240.0], [320.0, 240.0], [320.0, 320.0]]


def test_untracked_poses_are_skipped_by_the_pipeline_stage():
    analytics = build_analytics(validate({"analytics": [{"type": "angles", "joints": ["left_knee"]}]}))
    events = analytics([Pose(knee_pose(90.0), 0.9)], _moment(0, 0.0))
    assert events == [] and analytics.view() == {"angles": []}


def test_custom_angle_from_config():
    a = _analytics(joints=[], custom={"trunk_lean": ["left_knee", "left_hip", "left_ankle"]})
    (event,) = a.update([Pose(knee_pose(90.0, length=(100.0, 100.0)), 0.9, track_id=1)], _moment(0, 0.0))
    assert event.data["angles"] == {"trunk_lean": 45.0}  # the right isosceles triangle's angle at the hip


def test_blazepose_landmarks_use_their_coco17_view():
    coco = knee_pose(120.0)
    blaze = np.zeros((len(BLAZEPOSE33_NAMES), 3), np.float32)
    blaze[list(BLAZEPOSE_TO_COCO17)] = coco
    analytics = build_analytics(validate({"analytics": [{"type": "angles", "joints": ["left_knee"]}]}))
    (event,) = analytics([Pose(blaze, 0.9, track_id=1)], _moment(0, 0.0))
    assert event.data["angles"]["left_knee"] == pytest.approx(120.0, abs=0.05)


def test_unknown_angle_names_are_config_errors():
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="analytics.0.joints.*left_toe"):
        validate({"analytics": [{"type": "angles", "joints": ["left_toe"]}]})
    with pytest.raises(ConfigError, match="analytics.0.custom.*chin"):
        validate({"analytics": [{"type": "angles", "custom": {"x": ["chin", "left_hip", "left_knee"]}}]})
