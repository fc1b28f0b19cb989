"""Stable person IDs across frames: box IoU plus keypoint similarity (OKS), assigned optimally.

Each frame, every live track is moved to where its constant velocity puts it at the new capture
time (so a person walking behind a pillar is looked for where they will be, and two people
crossing keep their directions); then poses and tracks are paired by the Hungarian method on
``iou_weight * IoU + oks_weight * OKS`` (weights normalised to sum 1; IoU alone when the two
poses share too few confident keypoints for OKS to mean anything). IoU alone confuses people who
overlap; OKS (the COCO keypoint similarity) tells them apart by where their joints are. Confirmed
tracks are matched first, so a short-lived duplicate detection cannot steal a person's ID.

Lifecycle, as in SORT/ByteTrack: a new track is tentative (``track_id`` None) until it has
matched ``min_hits`` frames in a row, then it gets the next integer ID (never reused in a run);
a tentative track that misses once is dropped; a confirmed one survives ``max_misses`` missed
frames. In the first frame after a reset, tracks are confirmed at once: there is no earlier
frame to wait for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

from edge.post.assign import match
from edge.post.smoothing import OneEuroSmoother
from edge.types import Pose

if TYPE_CHECKING:
    from edge.config import Config

log = logging.getLogger(__name__)

# COCO keypoint sigmas (cocoapi: person_keypoints OKS); other skeletons use their mean.
COCO17_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0
PREDICT_HORIZON_S = 1.0  # extrapolate a lost track's motion at most this far
VELOCITY_TAU_S = 0.1  # time constant of the velocity estimate
MIN_SHARED_KEYPOINTS = 3  # OKS needs this many keypoints confident in both poses; else IoU alone decides


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (N,4) and (M,4) x1, y1, x2, y2 boxes -> (N,M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def oks(ref: np.ndarray, area: float, other: np.ndarray, threshold: float) -> float | None:
    """COCO object keypoint similarity of two (K,3) poses over the keypoints confident in both.

    ``area`` is the reference object's area in px^2 (its box). None when fewer than
    MIN_SHARED_KEYPOINTS are shared: one ear seen twice says little, and the box must decide.
    """
    k = len(ref)
    if len(other) != k:
        return None
    sigmas = COCO17_SIGMAS if k == len(COCO17_SIGMAS) else np.full(k, COCO17_SIGMAS.mean())
    both = (ref[:, 2] >= threshold) & (other[:, 2] >= threshold)
    if int(both.sum()) < MIN_SHARED_KEYPOINTS:
        return None
    d2 = ((ref[both, :2].astype(np.float64) - other[both, :2]) ** 2).sum(axis=1)
    var = (2.0 * sigmas[both]) ** 2 * max(area, 1.0)
    return float(np.exp(-d2 / (2.0 * var)).mean())


def _center(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])


@dataclass
class Track:
    """One person over time: last observation, velocity (px/s) and lifecycle counters."""

    keypoints: np.ndarray  # (K,3) last observed
    box: np.ndarray  # (4,) last observed
    t_ns: int  # capture time of the last observation
    track_id: int | None = None  # None while tentative
    velocity: np.ndarray | None = None  # px/s of the box centre, low-passed; None until two observations
    hits: int = 1
    misses: int = 0

    def predicted(self, t_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Box and keypoints moved by the velocity to time ``t_ns``."""
        if self.velocity is None:
            return self.box, self.keypoints
        dt = min(max(t_ns - self.t_ns, 0) / 1e9, PREDICT_HORIZON_S)
        dx, dy = self.velocity * dt
        kp = self.keypoints.copy()
        kp[:, 0] += dx
        kp[:, 1] += dy
        return self.box + np.array([dx, dy, dx, dy]), kp

    def observe(self, pose: Pose, t_ns: int) -> None:
        box = np.asarray(pose.bbox, dtype=np.float64)
        dt = (t_ns - self.t_ns) / 1e9
        if dt > 0:  # low-pass in time: a step's weight grows with the time it spans, so 2 ms adds ~nothing
            v = (_center(box) - _center(self.box)) / dt
            prev = np.zeros(2) if self.velocity is None else self.velocity
            self.velocity = prev + dt / (dt + VELOCITY_TAU_S) * (v - prev)
        self.keypoints, self.box, self.t_ns = pose.keypoints, box, t_ns
        self.hits += 1
        self.misses = 0


class Tracker:
    """``update(poses, t_ns) -> poses`` with ``track_id`` set; no global state, one per stream."""

    def __init__(self, iou_weight: float = 0.5, oks_weight: float = 0.5, match_threshold: float = 0.2,
                 min_hits: int = 3, max_misses: int = 30, keypoint_threshold: float = 0.2):
        if iou_weight < 0 or oks_weight < 0 or iou_weight + oks_weight <= 0:
            raise ValueError("iou_weight and oks_weight must be >= 0 and not both 0")
        self.iou_weight = iou_weight / (iou_weight + oks_weight)
        self.oks_weight = oks_weight / (iou_weight + oks_weight)
        self.match_threshold = match_threshold
        self.min_hits = max(1, min_hits)
        self.max_misses = max(0, max_misses)
        self.keypoint_threshold = keypoint_threshold
        self.tracks: list[Track] = []
        self._next_id = 1
        self._fresh = True

    def reset(self) -> None:
        """Forget every track (the source is not continuous); IDs keep counting up."""
        self.tracks = []
        self._fresh = True

    def similarity(self, tracks: list[Track], poses: list[Pose], t_ns: int) -> np.ndarray:
        """(tracks, poses) weighted IoU + OKS in 0..1, the better of the predicted and the last place.

        The prediction finds a person who moved while hidden; the last place covers a wrong
        prediction (a velocity spoiled by uneven timestamps, a sudden stop).
        """
        if not tracks or not poses:
            return np.zeros((len(tracks), len(poses)))
        predicted = self._similarity([t.predicted(t_ns) for t in tracks], poses)
        last = self._similarity([(t.box, t.keypoints) for t in tracks], poses)
        return np.maximum(predicted, last)

    def _similarity(self, places: list[tuple[np.ndarray, np.ndarray]], poses: list[Pose]) -> np.ndarray:
        boxes = np.array([p.bbox for p in poses], dtype=np.float64)
        sim = box_iou(np.array([b for b, _ in places]), boxes)
        if self.oks_weight:
            for i, (box, kp) in enumerate(places):
                area = float((box[2] - box[0]) * (box[3] - box[1]))
                for j, pose in enumerate(poses):
                    o = oks(kp, area, pose.keypoints, self.keypoint_threshold)
                    if o is not None:
                        sim[i, j] = self.iou_weight * sim[i, j] + self.oks_weight * o
        return sim

    def _match(self, poses: list[Pose], t_ns: int) -> list[tuple[int, int]]:
        """Confirmed tracks pick first (optimally), tentative ones share the rest, as in DeepSORT's cascade."""
        pairs: list[tuple[int, int]] = []
        free = list(range(len(poses)))
        for confirmed in (True, False):
            rows = [i for i, t in enumerate(self.tracks) if (t.track_id is not None) == confirmed]
            sim = self.similarity([self.tracks[i] for i in rows], [poses[j] for j in free], t_ns)
            got = [(rows[r], free[c]) for r, c in match(sim, self.match_threshold)]
            pairs += got
            taken = {j for _, j in got}
            free = [j for j in free if j not in taken]
        return pairs

    def update(self, poses: list[Pose], t_ns: int) -> list[Pose]:
        pairs = self._match(poses, t_ns)
        owner: dict[int, Track] = {}
        for ti, pi in pairs:
            track = self.tracks[ti]
            track.observe(poses[pi], t_ns)
            owner[pi] = track
        matched = {ti for ti, _ in pairs}
        survivors = []
        for ti, track in enumerate(self.tracks):
            if ti not in matched:
                track.misses += 1
                if track.track_id is None or track.misses > self.max_misses:
                    continue
            survivors.append(track)
        for pi, pose in enumerate(poses):
            if pi not in owner:
                track = Track(pose.keypoints, np.asarray(pose.bbox, dtype=np.float64), t_ns)
                survivors.append(track)
                owner[pi] = track
                if self._fresh:
                    self._confirm(track)
        for track in survivors:
            if track.track_id is None and track.hits >= self.min_hits:
                self._confirm(track)
        self.tracks = survivors
        self._fresh = False
        return [replace(p, track_id=owner[i].track_id) for i, p in enumerate(poses)]

    def _confirm(self, track: Track) -> None:
        track.track_id = self._next_id
        self._next_id += 1


class PostStage(Protocol):
    def update(self, poses: list[Pose], t_ns: int) -> list[Pose]: ...

    def reset(self) -> None: ...


class PostChain:
    """The per-frame post-processing the pipeline runs after decode: tracker, then smoother."""

    def __init__(self, stages: list[PostStage]):
        self.stages = stages

    def __call__(self, poses: list[Pose], t_ns: int) -> list[Pose]:
        for stage in self.stages:
            poses = stage.update(poses, t_ns)
        return poses

    def reset(self) -> None:
        for stage in self.stages:
            stage.reset()


def build_post(cfg: Config) -> PostChain:
    """Tracker and smoother from a Config's ``tracking`` and ``smoothing`` sections (each may be off)."""
    tr, sm = cfg.tracking, cfg.smoothing
    kp_thr = cfg.model.keypoint_threshold
    stages: list[PostStage] = []
    if tr.enabled:
        stages.append(Tracker(tr.iou_weight, tr.oks_weight, tr.match_threshold, tr.min_hits, tr.max_misses, kp_thr))
    if sm.enabled and not tr.enabled:
        log.warning("smoothing needs track IDs: with tracking.enabled false, keypoints are not smoothed")
    if sm.enabled:
        thr = kp_thr if sm.keypoint_threshold is None else sm.keypoint_threshold
        stages.append(OneEuroSmoother(sm.min_cutoff, sm.beta, sm.d_cutoff, thr, sm.keep_raw))
    return PostChain(stages)


__all__ = ["Tracker", "Track", "PostChain", "build_post", "box_iou", "oks"]
