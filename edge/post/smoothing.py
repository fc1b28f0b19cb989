"""One Euro keypoint smoothing, one filter per track and per keypoint coordinate.

The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a low-pass filter whose cutoff rises
with speed: a still joint is smoothed hard (no jitter), a fast one barely (little lag). This follows
MediaPipe's ``LandmarksSmoothingCalculator`` (mediapipe/util/filtering/one_euro_filter.cc):

- The defaults are MediaPipe's for pose landmarks, from
  ``mediapipe/modules/pose_landmark/pose_landmark_filtering.pbtxt`` (google-ai-edge/mediapipe):
  ``one_euro_filter { min_cutoff: 0.1  beta: 40.0  derivate_cutoff: 1.0 }``
  ("min_cutoff 0.1 results into ~0.02 alpha when the landmark is static; beta 40 ... ~0.8 alpha
  when it is moving fast; derivative cutoff 1.0 ... ~0.17 alpha in the velocity filter").
- As there, the speed is measured in object sizes per second (the pixel speed times
  1 / object scale, the mean of the keypoints' box width and height), so ``beta`` means the same
  for a person near the camera and one far away. That is what makes MediaPipe's beta of 40 right.
- The period comes from capture timestamps, not frame counts: a dropped frame is a longer step,
  not a faster joint.

What MediaPipe does not need but a multi-person detector does:

- State is keyed by track ID. A new ID (a track is born or reborn) starts a fresh filter, and the
  state of an ID not seen for ``stale_s`` is forgotten.
- A keypoint below ``keypoint_threshold`` is passed through as it came (its score says it is
  unreliable) and never enters the filter, so a guessed position is not blended into the smoothed
  one. When it is confident again, it continues from its last confident state, or starts afresh
  when that is older than ``stale_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from edge.types import Pose

MEDIAPIPE_POSE_MIN_CUTOFF = 0.1  # Hz, pose_landmark_filtering.pbtxt
MEDIAPIPE_POSE_BETA = 40.0  # per (object sizes per second), same file
MEDIAPIPE_POSE_D_CUTOFF = 1.0  # Hz, same file ("derivate_cutoff")
MIN_OBJECT_SCALE_PX = 1e-6  # MediaPipe's min_allowed_object_scale: smaller objects are not smoothed


def alpha(cutoff_hz: np.ndarray | float, dt_s: np.ndarray | float) -> np.ndarray:
    """Exponential smoothing factor of a first-order low-pass at ``cutoff_hz`` for a step of ``dt_s``."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, dtype=np.float64))
    return 1.0 / (1.0 + tau / np.asarray(dt_s, dtype=np.float64))


def object_scale(pose: Pose, threshold: float) -> float:
    """Mean of the width and height of the confident keypoints' box (the pose box if < 2 are confident)."""
    kp = pose.keypoints
    sel = kp[kp[:, 2] >= threshold, :2]
    if len(sel) >= 2:
        w, h = sel.max(axis=0) - sel.min(axis=0)
    else:
        x1, y1, x2, y2 = pose.bbox  # type: ignore[misc]
        w, h = x2 - x1, y2 - y1
    return float(w + h) / 2.0


@dataclass
class _TrackState:
    """Per-keypoint filter state of one track: (K,2) arrays, one filter per coordinate."""

    t_ns: np.ndarray  # (K,) last confident update; only meaningful where ``seen``
    seen: np.ndarray  # (K,) bool
    raw: np.ndarray  # last raw confident value (MediaPipe differentiates raw values)
    smooth: np.ndarray  # filtered value
    speed: np.ndarray  # filtered speed, object sizes per second

    @classmethod
    def empty(cls, k: int) -> "_TrackState":
        z = np.zeros((k, 2), dtype=np.float64)
        return cls(np.zeros(k, dtype=np.int64), np.zeros(k, dtype=bool), z.copy(), z.copy(), z.copy())


class OneEuroSmoother:
    """``update(poses, t_ns) -> poses`` with smoothed keypoints for every pose that has a track ID."""

    def __init__(self, min_cutoff: float = MEDIAPIPE_POSE_MIN_CUTOFF, beta: float = MEDIAPIPE_POSE_BETA,
                 d_cutoff: float = MEDIAPIPE_POSE_D_CUTOFF, keypoint_threshold: float = 0.2,
                 keep_raw: bool = False, stale_s: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0 or stale_s <= 0:
            raise ValueError("min_cutoff, d_cutoff and stale_s must be > 0 and beta >= 0")
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self.keypoint_threshold = keypoint_threshold
        self.keep_raw = keep_raw
        self.stale_ns = int(stale_s * 1e9)
        self._states: dict[int, _TrackState] = {}

    def reset(self) -> None:
        """Forget every track (the source jumped: a new still image, a new clip)."""
        self._states.clear()

    @property
    def tracks(self) -> int:
        """How many tracks have filter state (for tests and stats)."""
        return len(self._states)

    def update(self, poses: list[Pose], t_ns: int) -> list[Pose]:
        out = [self._one(p, t_ns) for p in poses]
        stale = [tid for tid, s in self._states.items() if not (s.seen & (t_ns - s.t_ns <= self.stale_ns)).any()]
        for tid in stale:
            del self._states[tid]
        return out

    def _one(self, pose: Pose, t_ns: int) -> Pose:
        kp = pose.keypoints
        extra = {"keypoints_raw": kp.copy()} if self.keep_raw else {}
        scale = object_scale(pose, self.keypoint_threshold)
        if pose.track_id is None or scale < MIN_OBJECT_SCALE_PX:
            return replace(pose, **extra) if extra else pose
        st = self._states.get(pose.track_id)
        if st is None or len(st.seen) != len(kp):
            st = self._states[pose.track_id] = _TrackState.empty(len(kp))
        x = kp[:, :2].astype(np.float64)
        conf = kp[:, 2] >= self.keypoint_threshold
        dt_ns = t_ns - st.t_ns
        cont = conf & st.seen & (dt_ns > 0) & (dt_ns <= self.stale_ns)
        fresh = conf & ~cont
        if cont.any():
            dt = (dt_ns[cont] / 1e9)[:, None]
            speed = (x[cont] - st.raw[cont]) / scale / dt
            speed = st.speed[cont] + alpha(self.d_cutoff, dt) * (speed - st.speed[cont])
            cutoff = self.min_cutoff + self.beta * np.abs(speed)
            st.smooth[cont] += alpha(cutoff, dt) * (x[cont] - st.smooth[cont])
            st.speed[cont] = speed
        st.smooth[fresh] = x[fresh]
        st.speed[fresh] = 0.0
        st.raw[conf] = x[conf]
        st.t_ns[conf] = t_ns
        st.seen |= conf
        new = kp.copy()
        new[conf, :2] = st.smooth[conf]
        return replace(pose, keypoints=new, **extra)


__all__ = ["OneEuroSmoother", "alpha", "object_scale",
           "MEDIAPIPE_POSE_MIN_CUTOFF", "MEDIAPIPE_POSE_BETA", "MEDIAPIPE_POSE_D_CUTOFF"]
