"""One Euro keypoint smoothing: jitter cut and step lag measured on synthetic noisy trajectories,
timestamps (not frame counts), reset for a new track, low-confidence keypoints kept out.

The synthetic person is 17 fixed points spread over a 100 x 300 px box (object scale 200 px);
the noise is Gaussian, 2 px per coordinate (1% of the object scale, about what YOLO11n-pose shows
on a standing person: see docs/MODELS.md), at 30 fps.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import Config, validate
from edge.post.smoothing import (
    MEDIAPIPE_POSE_BETA, MEDIAPIPE_POSE_D_CUTOFF, MEDIAPIPE_POSE_MIN_CUTOFF, OneEuroSmoother, object_scale,
)
from edge.post.tracking import Tracker, build_post
from edge.types import Pose

K = 17
FPS = 30.0
T0 = 5_000_000_000
RNG_SEED = 7


def _base() -> np.ndarray:
    rng = np.random.default_rng(RNG_SEED)
    xy = np.column_stack([rng.uniform(200, 300, K), rng.uniform(100, 400, K)])
    xy[0] = (200, 100)  # pin the box to exactly 100 x 300 px
    xy[1] = (300, 400)
    return xy


def _t(i: int, fps: float = FPS) -> int:
    return T0 + int(round(i * 1e9 / fps))


def _filter(seq: np.ndarray, times: list[int], scores: np.ndarray | None = None, **kw) -> np.ndarray:
    """Run one track through a fresh smoother; returns the (N,K,2) smoothed positions."""
    sm = OneEuroSmoother(**kw)
    out = []
    for i, (xy, t) in enumerate(zip(seq, times)):
        s = np.full(K, 0.9) if scores is None else scores[i]
        pose = Pose(np.column_stack([xy, s]), 0.9, track_id=1)
        out.append(sm.update([pose], t)[0].keypoints[:, :2].astype(np.float64))
    return np.asarray(out)


def jitter(seq: np.ndarray) -> float:
    """Mean frame-to-frame keypoint displacement in px."""
    return float(np.linalg.norm(np.diff(seq, axis=0), axis=2).mean())


def step_lag(smoothed_offset: np.ndarray, step_at: int, size: float) -> int:
    """Frames after the step until the mean offset reaches 90% of the step (0 = at once)."""
    after = smoothed_offset[step_at:]
    reached = np.nonzero(after >= 0.9 * size)[0]
    return int(reached[0]) if len(reached) else len(after)


def test_defaults_are_mediapipes_pose_landmark_filter():
    # mediapipe/modules/pose_landmark/pose_landmark_filtering.pbtxt: min_cutoff 0.1, beta 40, derivate_cutoff 1
    assert (MEDIAPIPE_POSE_MIN_CUTOFF, MEDIAPIPE_POSE_BETA, MEDIAPIPE_POSE_D_CUTOFF) == (0.1, 40.0, 1.0)
    sm = Config().smoothing
    assert (sm.min_cutoff, sm.beta, sm.d_cutoff) == (0.1, 40.0, 1.0)
    assert object_scale(Pose(np.column_stack([_base(), np.ones(K)]), 1.0), 0.2) == pytest.approx(200.0)


def test_still_pose_jitter_is_cut_by_at_least_half():
    rng = np.random.default_rng(1)
    n = 300
    raw = _base()[None] + rng.normal(0, 2.0, (n, K, 2))
    smooth = _filter(raw, [_t(i) for i in range(n)])
    j_raw, j_smooth = jitter(raw[30:]), jitter(smooth[30:])
    cut = 1 - j_smooth / j_raw
    print(f"still pose, 2 px noise: jitter {j_raw:.2f} -> {j_smooth:.2f} px per frame, cut {cut:.0%}")
    assert cut >= 0.5
    # and it stays where the person is: no drift away from the true positions
    assert np.abs(smooth[30:] - _base()[None]).mean() < 2.0


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_a_step_lags_at_most_two_frames(fraction):
    """The whole body moves by ``fraction`` of its size between two frames (a jump, a quick turn)."""
    rng = np.random.default_rng(2)
    n, at, size = 90, 60, fraction * 200.0
    raw = _base()[None] + rng.normal(0, 2.0, (n, K, 2))
    raw[at:, :, 0] += size
    smooth = _filter(raw, [_t(i) for i in range(n)])
    offset = (smooth[:, :, 0] - _base()[None, :, 0]).mean(axis=1)
    raw_offset = (raw[:, :, 0] - _base()[None, :, 0]).mean(axis=1)
    lag = step_lag(offset, at, size)
    print(f"step of {size:.0f} px ({fraction:.0%} of the body): lag {lag} frame(s)")
    assert step_lag(raw_offset, at, size) == 0
    assert lag <= 2
    assert np.abs(offset[at + 5:] - size).max() < 0.1 * size  # settled, no overshoot


def _ramp_lag(fps: float, drop: np.ndarray | None = None) -> np.ndarray:
    """Lag (px) behind keypoints moving at 100 px/s, sampled at ``fps``, in the steady state.

    beta = 0 makes the One Euro filter a plain low-pass at min_cutoff (1 Hz here), whose steady lag
    behind a ramp is speed x time constant = 100 / (2 pi) = 15.9 px, whatever the frame rate.
    """
    n = int(3 * fps)
    keep = np.ones(n, bool) if drop is None else ~drop
    idx = np.nonzero(keep)[0]
    xy = np.repeat(_base()[None], n, axis=0)
    xy[:, :, 0] += 100.0 * np.arange(n)[:, None] / fps
    smooth = _filter(xy[idx], [_t(int(i), fps) for i in idx], min_cutoff=1.0, beta=0.0)
    lag = (xy[idx, :, 0] - smooth[:, :, 0]).mean(axis=1)
    return lag[idx >= 2 * fps]  # the third second: steady state


def test_timestamps_not_frame_counts_set_the_filter():
    """A filter that counted frames would lag a 10 fps stream 3x more (in px) than the same motion at 30 fps."""
    lag30, lag10 = _ramp_lag(30.0), _ramp_lag(10.0)
    expected = 100.0 / (2 * np.pi * 1.0)
    assert lag30.mean() == pytest.approx(expected, rel=0.1)
    assert lag10.mean() == pytest.approx(expected, rel=0.1)
    drops = np.random.default_rng(3).random(90) < 0.4  # 40% of the frames dropped at random
    drops[:2] = False
    lag_dropped = _ramp_lag(30.0, drops)
    assert np.abs(lag_dropped - expected).max() < 0.15 * expected


def test_a_new_track_starts_fresh():
    sm = OneEuroSmoother()
    a = np.column_stack([_base(), np.full(K, 0.9)])
    for i in range(10):
        sm.update([Pose(a, 0.9, track_id=1)], _t(i))
    b = a.copy()
    b[:, 0] += 40  # a different person (new ID) close by
    out = sm.update([Pose(b, 0.9, track_id=2)], _t(10))[0]
    np.testing.assert_array_equal(out.keypoints, b.astype(np.float32))
    moved = sm.update([Pose(b, 0.9, track_id=1)], _t(11))[0]  # the same ID jumping is smoothed
    assert np.abs(moved.keypoints[:, 0] - b[:, 0]).max() > 1.0


def test_reborn_track_after_tracker_death_is_not_pulled_to_the_old_place():
    """Tracker + smoother: a person lost beyond max_misses comes back elsewhere with a new ID, unsmoothed."""
    tracker, sm = Tracker(min_hits=1, max_misses=3), OneEuroSmoother()
    a = np.column_stack([_base(), np.full(K, 0.9)])
    for i in range(10):
        first = sm.update(tracker.update([Pose(a, 0.9)], _t(i)), _t(i))[0]
    for i in range(10, 15):
        assert sm.update(tracker.update([], _t(i)), _t(i)) == []
    b = a.copy()
    b[:, 0] += 30  # back, 30 px away: overlaps the old box, but the old track is dead
    back = sm.update(tracker.update([Pose(b, 0.9)], _t(15)), _t(15))[0]
    assert back.track_id != first.track_id
    np.testing.assert_array_equal(back.keypoints, b.astype(np.float32))


def test_state_older_than_stale_s_is_dropped():
    sm = OneEuroSmoother(stale_s=0.5)
    a = np.column_stack([_base(), np.full(K, 0.9)])
    sm.update([Pose(a, 0.9, track_id=1)], _t(0))
    b = a.copy()
    b[:, 0] += 25
    assert sm.tracks == 1
    out = sm.update([Pose(b, 0.9, track_id=7)], _t(0) + 600_000_000)
    assert sm.tracks == 1  # track 1 was forgotten
    out = sm.update([Pose(b, 0.9, track_id=1)], _t(0) + 700_000_000)[0]  # back after 0.7 s: fresh
    np.testing.assert_array_equal(out.keypoints, b.astype(np.float32))


def test_low_confidence_keypoints_are_not_smoothed_into_confident_ones():
    n = 40
    xy = np.repeat(_base()[None], n, axis=0)
    scores = np.full((n, K), 0.9)
    wrist = 9
    xy[20:23, wrist] = (600.0, 20.0)  # three frames of a guess far away, flagged low-confidence
    scores[20:23, wrist] = 0.05
    xy[23:, wrist] += (3.0, 0.0)  # then seen again, 3 px from where it was
    out = _filter(xy, [_t(i) for i in range(n)], scores)
    np.testing.assert_allclose(out[20:23, wrist], xy[20:23, wrist], atol=1e-3)  # passed through as it came
    assert np.abs(out[23:, wrist] - xy[23:, wrist]).max() < 3.0  # not pulled towards (600, 20)
    # a keypoint first seen with a low score, then confidently: starts exactly at the confident value
    scores2 = np.full((n, K), 0.9)
    scores2[:10, 3] = 0.0
    xy2 = np.repeat(_base()[None], n, axis=0)
    xy2[:10, 3] = (0.0, 0.0)
    out2 = _filter(xy2, [_t(i) for i in range(n)], scores2)
    np.testing.assert_allclose(out2[10, 3], xy2[10, 3], atol=1e-3)


def test_keep_raw_carries_the_models_keypoints_into_the_payload():
    rng = np.random.default_rng(4)
    sm = OneEuroSmoother(keep_raw=True)
    for i in range(5):
        kp = np.column_stack([_base() + rng.normal(0, 2, (K, 2)), np.full(K, 0.9)])
        out = sm.update([Pose(kp, 0.9, track_id=3)], _t(i))[0]
    np.testing.assert_array_equal(out.keypoints_raw, kp.astype(np.float32))
    assert not np.array_equal(out.keypoints, out.keypoints_raw)
    d = out.to_dict(640, 480)
    assert d["id"] == 3 and np.allclose(d["keypoints_raw"], kp, atol=0.01)
    assert "keypoints_raw" not in OneEuroSmoother().update([Pose(kp, 0.9, track_id=3)], _t(9))[0].to_dict(640, 480)


def test_poses_without_an_id_pass_through():
    kp = np.column_stack([_base(), np.full(K, 0.9)])
    pose = Pose(kp, 0.9)
    assert OneEuroSmoother().update([pose], _t(0))[0] is pose


def test_build_post_follows_the_config(caplog):
    cfg = validate({"smoothing": {"min_cutoff": 0.5, "beta": 2.0, "keypoint_threshold": 0.4},
                    "tracking": {"min_hits": 4, "max_misses": 7}})
    tracker, smoother = build_post(cfg).stages
    assert (tracker.min_hits, tracker.max_misses) == (4, 7)
    assert (smoother.min_cutoff, smoother.beta, smoother.keypoint_threshold) == (0.5, 2.0, 0.4)
    assert build_post(validate({"tracking": {"enabled": False}, "smoothing": {"enabled": False}})).stages == []
    only = build_post(validate({"tracking": {"enabled": False}}))
    assert "smoothing needs track IDs" in caplog.text and len(only.stages) == 1
