"""Accuracy against ground-truth keypoints: YOLO-pose labels, person matching and PCK.

PCK@a: a visible ground-truth keypoint counts as found when the prediction lies within
a x (ground-truth box diagonal). A ground-truth person no prediction matches counts all its
visible keypoints as misses. Single-person models are evaluated on ground-truth person
crops (side 1.25 x max(w, h), centred on the box); multi-person models on whole images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.capture.base import IMAGE_SUFFIXES, to_rgb8
from edge.post.geometry import crop_square
from edge.types import Frame, Pose


@dataclass
class Person:
    """One labelled person: box (x1, y1, x2, y2) and keypoints (K,3) [x, y, visibility] in pixels."""

    box: tuple[float, float, float, float]
    keypoints: np.ndarray

    @property
    def diagonal(self) -> float:
        x1, y1, x2, y2 = self.box
        return float(np.hypot(x2 - x1, y2 - y1))


@dataclass
class Sample:
    image_path: Path
    image: np.ndarray  # RGB
    people: list[Person]


def load_yolo_pose(root: str | Path) -> list[Sample]:
    """A YOLO-pose dataset: images/**/X.jpg with labels/**/X.txt (`cls cx cy w h` + K x (x, y, v), normalised)."""
    root = Path(root)
    samples = []
    for img_path in sorted(p for p in (root / "images").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        rel = img_path.relative_to(root / "images").with_suffix(".txt")
        label = root / "labels" / rel
        image = to_rgb8(cv2.imread(str(img_path), cv2.IMREAD_UNCHANGED), bgr=True, what=str(img_path))
        h, w = image.shape[:2]
        people = []
        if label.is_file():
            for line in label.read_text().splitlines():
                vals = [float(v) for v in line.split()]
                if len(vals) < 5:
                    continue
                cx, cy, bw, bh = vals[1] * w, vals[2] * h, vals[3] * w, vals[4] * h
                kp = np.asarray(vals[5:], dtype=np.float32).reshape(-1, 3)
                kp[:, 0] *= w
                kp[:, 1] *= h
                people.append(Person((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), kp))
        samples.append(Sample(img_path, image, people))
    return samples


def person_crop_box(person: Person, scale: float = 1.25) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = person.box
    side = scale * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def pck_hits(pred: np.ndarray | None, person: Person, alpha: float) -> tuple[int, int]:
    """(correct, total) over the person's visible keypoints; ``pred`` (K,3) or None (all missed)."""
    visible = person.keypoints[:, 2] > 0
    total = int(visible.sum())
    if pred is None or total == 0:
        return 0, total
    dist = np.linalg.norm(pred[:, :2] - person.keypoints[:, :2], axis=1)
    return int(((dist <= alpha * person.diagonal) & visible).sum()), total


def match_people(poses: list[Pose], people: list[Person]) -> list[np.ndarray | None]:
    """Greedy one-to-one matching by mean normalised keypoint distance; one entry per labelled person."""
    pairs = []
    for gi, person in enumerate(people):
        vis = person.keypoints[:, 2] > 0
        for pi, pose in enumerate(poses):
            if vis.any():
                d = np.linalg.norm(pose.keypoints[vis, :2] - person.keypoints[vis, :2], axis=1).mean()
            else:
                d = np.inf
            pairs.append((d / max(person.diagonal, 1e-6), gi, pi))
    matched: list[np.ndarray | None] = [None] * len(people)
    used_g, used_p = set(), set()
    for d, gi, pi in sorted(pairs):
        if gi in used_g or pi in used_p or not np.isfinite(d):
            continue
        used_g.add(gi)
        used_p.add(pi)
        matched[gi] = poses[pi].keypoints
    return matched


def predictions(model, samples: list[Sample], crops: bool) -> list[tuple[Person, np.ndarray | None]]:
    """Run ``model`` (edge.pipeline.Model) and pair every labelled person with its prediction."""
    out: list[tuple[Person, np.ndarray | None]] = []
    for s in samples:
        if crops:
            for person in s.people:
                box = person_crop_box(person)
                side = max(1, int(round(box[2] - box[0])))
                patch, t = crop_square(s.image, box, (side, side))  # native resolution: the model resizes
                model.family.reset()
                poses, _ = model.infer(Frame(patch, 0, time.monotonic_ns(), time.time()))
                kp = None
                if poses:
                    kp = poses[0].keypoints.copy()
                    kp[:, :2] = t.to_frame(kp[:, :2])
                out.append((person, kp))
        else:
            model.family.reset()
            poses, _ = model.infer(Frame(s.image, 0, time.monotonic_ns(), time.time()))
            out.extend(zip(s.people, match_people(poses, s.people)))
    return out


def pck(pairs: list[tuple[Person, np.ndarray | None]], alpha: float = 0.1) -> float:
    hits = [pck_hits(pred, person, alpha) for person, pred in pairs]
    correct = sum(h[0] for h in hits)
    total = sum(h[1] for h in hits)
    return correct / total if total else 0.0
