"""Repetition counting on synthetic people built here: stick figures doing squats, push-ups and jumping jacks.

Each sequence has a known number of reps with random durations and rests, pixel noise, dropped frames
and keypoints that drop below the threshold. The counter must find exactly the true count at every
noise level, and jitter at a threshold must never count twice.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.analytics import Moment, build_analytics
from edge.analytics.reps import RepCounter, signal_value
from edge.config import validate
from edge.analytics.config import RepSignal
from edge.types import COCO17_NAMES, Pose

K = {n: i for i, n in enumerate(COCO17_NAMES)}
W, H = 640, 480


def _set(kp: np.ndarray, name: str, xy) -> None:
    kp[K[name], :2] = xy


def _polar(origin, length: float, deg_from_down: float, forward: float = 1.0):
    """A point ``length`` from ``origin``, ``deg_from_down`` degrees from straight down, towards +x * forward."""
    a = math.radians(deg_from_down)
    return (origin[0] + forward * length * math.sin(a), origin[1] + length * math.cos(a))


def _blank() -> np.ndarray:
    kp = np.zeros((17, 3), np.float32)
    kp[:, 2] = 0.9
    return kp


def _side_view(one_side, head_offset: tuple[float, float]) -> np.ndarray:
    """A side-view pose: ``one_side(dx)`` gives one side's joints {joint: xy}; the far side is ``dx`` px behind."""
    kp = _blank()
    for side, dx in (("left", 0.0), ("right", 6.0)):
        for joint, xy in one_side(dx).items():
            _set(kp, f"{side}_{joint}", xy)
    head = kp[K["left_shoulder"], :2] + head_offset
    for name in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"):
        _set(kp, name, head)
    return kp


def squat_pose(p: float) -> np.ndarray:
    """Side view: knee angle 175 (standing, p=0) to 70 degrees (p=1), both legs nearly on top of each other."""
    phi = (180.0 - (175.0 - 105.0 * p)) / 2.0  # the shin leans forward by phi, the thigh back by phi

    def one_side(dx: float) -> dict:
        ankle = (300.0 + dx, 420.0)
        knee = _polar(ankle, 100.0, 180.0 - phi)  # up and forward
        hip = _polar(knee, 100.0, 180.0 + phi)  # up and back: the angle at the knee is exactly 180 - 2 phi
        shoulder = _polar(hip, 150.0, 180.0 - phi)
        elbow = _polar(shoulder, 60.0, 60.0)
        return {"ankle": ankle, "knee": knee, "hip": hip, "shoulder": shoulder, "elbow": elbow,
                "wrist": _polar(elbow, 60.0, 90.0)}

    return _side_view(one_side, (15.0, -45.0))


def push_up_pose(p: float) -> np.ndarray:
    """Side view, body nearly horizontal: elbow angle 170 (arms straight, p=0) to 80 degrees (p=1)."""
    phi = (180.0 - (170.0 - 90.0 * p)) / 2.0

    def one_side(dx: float) -> dict:
        wrist = (400.0 + dx, 420.0)
        elbow = _polar(wrist, 80.0, 180.0 - phi, forward=-1.0)
        shoulder = _polar(elbow, 80.0, 180.0 + phi, forward=-1.0)
        hip = (shoulder[0] - 200.0, shoulder[1] + 20.0)
        return {"wrist": wrist, "elbow": elbow, "shoulder": shoulder, "hip": hip,
                "knee": (hip[0] - 90.0, hip[1] + 15.0), "ankle": (hip[0] - 180.0, hip[1] + 30.0)}

    return _side_view(one_side, (35.0, -5.0))


def jumping_jack_pose(p: float) -> np.ndarray:
    """Front view (the person's left on the image's right): arms from the sides (p=0) to overhead, legs apart."""
    kp = _blank()
    cx, arm = 320.0, 170.0 * p  # arm angle from straight down
    _set(kp, "nose", (cx, 160.0))
    _set(kp, "left_eye", (cx + 8, 152.0))
    _set(kp, "right_eye", (cx - 8, 152.0))
    _set(kp, "left_ear", (cx + 16, 156.0))
    _set(kp, "right_ear", (cx - 16, 156.0))
    for side, s in (("left", 1.0), ("right", -1.0)):
        shoulder = (cx + s * 30.0, 200.0)
        elbow = _polar(shoulder, 55.0, arm, forward=s)
        _set(kp, f"{side}_shoulder", shoulder)
        _set(kp, f"{side}_elbow", elbow)
        _set(kp, f"{side}_wrist", _polar(elbow, 55.0, arm, forward=s))
        _set(kp, f"{side}_hip", (cx + s * 20.0, 300.0))
        _set(kp, f"{side}_knee", (cx + s * (20.0 + 35.0 * p), 370.0))
        _set(kp, f"{side}_ankle", (cx + s * (20.0 + 70.0 * p), 440.0))
    return kp


POSES = {"squat": squat_pose, "push_up": push_up_pose, "jumping_jack": jumping_jack_pose}
PERIOD_S = {"squat": (1.5, 2.8), "push_up": (1.0, 2.0), "jumping_jack": (0.8, 1.3)}


def exercise_clip(exercise: str, reps: int, rng: np.random.Generator, fps: float):
    """(t_s, p) samples: rest, ``reps`` cycles 0 -> 1 -> 0 with random periods and rests between, rest."""
    segments = [("rest", rng.uniform(0.8, 1.5))]
    for _ in range(reps):
        segments += [("rep", rng.uniform(*PERIOD_S[exercise])), ("rest", rng.uniform(0.1, 0.8))]
    segments.append(("rest", 1.0))
    out, t0 = [], 0.0
    for kind, duration in segments:
        n = int(duration * fps)
        for i in range(n):
            u = i / n
            out.append((t0 + i / fps, 0.0 if kind == "rest" else (1.0 - math.cos(2 * math.pi * u)) / 2.0))
        t0 += n / fps
    return out


def perform(analytics, exercise: str, samples, rng, noise_px: float, drop_frames: float, drop_keypoints: float,
            track_id: int = 1) -> list:
    """Feed the samples as tracked poses; returns the events. Dropped frames are skipped; time runs on."""
    events = []
    for i, (t, p) in enumerate(samples):
        if rng.random() < drop_frames:
            continue
        kp = POSES[exercise](p)
        kp[:, :2] += rng.normal(0.0, noise_px, (17, 2)) if noise_px else 0.0
        kp[rng.random(17) < drop_keypoints, 2] = 0.05  # below the keypoint threshold: not seen
        t_ns = int(t * 1e9) + int(rng.integers(0, 2_000_000))  # capture jitter
        events += analytics([Pose(kp, 0.9, track_id=track_id)], Moment(i, t_ns, 1.7e9 + t, W, H))
    return events


def make(exercise: str, **extra):
    return build_analytics(validate({"analytics": [{"type": "reps", "exercise": exercise, **extra}]}))


@pytest.mark.parametrize("exercise", ["squat", "push_up", "jumping_jack"])
@pytest.mark.parametrize("noise_px, drop_frames, drop_keypoints, fps", [
    (0.0, 0.0, 0.0, 30.0),
    (2.0, 0.05, 0.02, 30.0),
    (4.0, 0.15, 0.05, 30.0),
    (6.0, 0.2, 0.05, 30.0),
    (3.0, 0.05, 0.01, 15.0),  # at 15 fps a fast jumping jack peaks for ~4 frames: see docs/ANALYTICS.md
])
def test_counted_reps_equal_the_true_count(exercise, noise_px, drop_frames, drop_keypoints, fps):
    for seed in range(3):
        rng = np.random.default_rng(1000 * seed + int(noise_px * 10) + int(fps))
        true_count = int(rng.integers(4, 10))
        samples = exercise_clip(exercise, true_count, rng, fps)
        analytics = make(exercise)
        events = perform(analytics, exercise, samples, rng, noise_px, drop_frames, drop_keypoints)
        reps = [e for e in events if e.type == "rep"]
        assert len(reps) == true_count, f"seed {seed}: counted {len(reps)} of {true_count} {exercise}s"
        assert [e.data["count"] for e in reps] == list(range(1, true_count + 1))
        assert all(e.analysis == exercise and e.track_id == 1 and e.data["exercise"] == exercise for e in reps)
        assert all(0.2 < e.data["duration_s"] < PERIOD_S[exercise][1] for e in reps)


def test_the_figures_have_the_angles_they_claim():
    from edge.analytics.angles import JOINTS, joint_angle

    for p in (0.0, 0.3, 1.0):
        assert joint_angle(squat_pose(p), JOINTS["left_knee"], 0.2) == pytest.approx(175 - 105 * p, abs=1e-3)
        assert joint_angle(push_up_pose(p), JOINTS["right_elbow"], 0.2) == pytest.approx(170 - 90 * p, abs=1e-3)


def _counter(min_phase_s: float = 0.1) -> RepCounter:
    return RepCounter([RepSignal(angle=["left_knee"], high=150, low=100)], "high", int(min_phase_s * 1e9))


def _run(counter: RepCounter, values, fps: float = 30.0, t0: float = 0.0) -> int:
    reps = 0
    for i, v in enumerate(values):
        reps += counter.step([v], int((t0 + i / fps) * 1e9)) is not None
    return reps


@pytest.mark.parametrize("threshold", [150.0, 100.0])
def test_jitter_at_a_threshold_never_double_counts(threshold):
    rng = np.random.default_rng(7)
    counter = _counter()
    down_up = [170.0] * 15 + [80.0] * 15 + [170.0] * 15  # one clean rep
    assert _run(counter, down_up) == 1
    # then hover at a threshold for 10 s with noise that crosses it on every other frame
    hover = threshold + rng.normal(0.0, 4.0, 300) * np.where(np.arange(300) % 2, 1, -1)
    assert _run(counter, list(hover), t0=2.0) == 0
    assert counter.count == 1


def test_a_short_spike_to_the_other_threshold_is_not_a_phase():
    counter = _counter(min_phase_s=0.1)
    # standing, with 2-frame dips (67 ms at 30 fps) to a full squat angle: never held for 0.1 s
    values = ([170.0] * 10 + [80.0] * 2) * 20 + [170.0] * 10
    assert _run(counter, values) == 0


def test_minimum_phase_is_in_seconds_not_frames():
    dip = lambda fps, seconds: [170.0] * int(fps) + [80.0] * max(1, round(seconds * fps)) + [170.0] * int(fps)  # noqa: E731
    for fps in (10.0, 30.0, 120.0):
        assert _run(_counter(0.15), dip(fps, 0.5), fps) == 1, fps  # held 0.5 s: a rep at any frame rate
        assert _run(_counter(0.15), dip(fps, 0.05), fps) == 0, fps  # 50 ms: 6 frames at 120 fps, still no rep


def test_in_between_frames_break_a_candidate_but_unseen_ones_do_not():
    counter = _counter(min_phase_s=0.1)
    # down for 2 frames, in between, down for 2 frames: each run is 33 ms, never 0.1 s
    assert _run(counter, [170.0] * 10 + [80.0, 80.0, 120.0] * 10 + [170.0] * 10) == 0
    counter = _counter(min_phase_s=0.1)
    # down with the knee unseen every other frame: the run goes on
    assert _run(counter, [170.0] * 10 + [80.0, None] * 5 + [170.0] * 10) == 1


def test_a_person_first_seen_mid_rep_gets_no_half_rep():
    counter = _counter()
    assert _run(counter, [80.0] * 15 + [170.0] * 15) == 0  # from the bottom to standing: not a rep
    assert _run(counter, [80.0] * 15 + [170.0] * 15, t0=1.0) == 1  # the next full one is


def test_reps_are_counted_per_track_and_in_total():
    rng = np.random.default_rng(3)
    analytics = make("squat", name="legs")
    events = []
    for i, (t, p) in enumerate(exercise_clip("squat", 3, rng, 30.0)):
        other = 0.0 if p < 0.5 else 0.0  # track 2 stands still
        poses = [Pose(squat_pose(p), 0.9, track_id=1), Pose(squat_pose(other) + [200, 0, 0], 0.9, track_id=2)]
        events += analytics(poses, Moment(i, int(t * 1e9), t, W, H))
    assert [(e.track_id, e.data["count"], e.data["total"]) for e in events] == [(1, 1, 1), (1, 2, 2), (1, 3, 3)]
    view = analytics.view()
    assert {(r["track_id"], r["count"]) for r in view["reps"]} == {(1, 3), (2, 0)}
    assert view["rep_totals"] == [{"analysis": "legs", "total": 3}]


def test_custom_distance_signal_from_config():
    # "arm raises": the right wrist above the nose (high) vs at the hip (low), in shoulder widths; rest is low
    analytics = make("custom", name="arm_raise", count_on="low", min_phase_s=0.1, signals=[
        {"distance": [["right_wrist", "nose"]], "axis": "above", "per": ["left_shoulder", "right_shoulder"],
         "high": 0.3, "low": -1.0}])
    rng = np.random.default_rng(5)
    samples = exercise_clip("jumping_jack", 4, rng, 30.0)  # the jumping jack figure raises both arms
    events = perform(analytics, "jumping_jack", samples, rng, 2.0, 0.1, 0.0)
    assert [e.data["count"] for e in events] == [1, 2, 3, 4]
    assert all(e.data["exercise"] == "custom" for e in events)


def test_signal_value_is_none_when_its_keypoints_are_not_seen():
    kp = jumping_jack_pose(0.0)
    sig = RepSignal(distance=[["left_ankle", "right_ankle"]], axis="x", per=["left_shoulder", "right_shoulder"],
                    high=1.6, low=1.1)
    assert signal_value(sig, kp, 0.2) == pytest.approx(40.0 / 60.0)
    kp[K["left_shoulder"], 2] = 0.1
    assert signal_value(sig, kp, 0.2) is None  # no reference length: no number
    mean = RepSignal(angle=["left_knee", "right_knee"], high=150, low=100)
    kp = squat_pose(1.0)
    kp[K["left_ankle"], 2] = 0.0
    assert signal_value(mean, kp, 0.2) == pytest.approx(70.0, abs=1e-3)  # the right knee alone
    kp[K["right_hip"], 2] = 0.0
    assert signal_value(mean, kp, 0.2) is None
