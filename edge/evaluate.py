"""Accuracy against ground-truth keypoints: YOLO-pose labels, person matching and PCK.

PCK@a: a visible ground-truth keypoint counts as found when the prediction lies within
a x (ground-truth box diagonal). A ground-truth person no prediction matches counts all its
visible keypoints as misses. Every model is judged on whole images, the way the pipeline runs
it (a single-person MoveNet through its top-down person detector); ``crops`` judges a
single-person model alone on ground-truth person crops (side 1.25 x max(w, h), centred on the box).
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


def detect(model, samples: list[Sample], crops: bool, progress=None) -> list[tuple[list[Pose], list[Person]]]:
    """Run ``model`` (edge.model.Model): per unit (an image, or a person crop) its poses in image pixels
    and the labelled people they are judged against."""
    units: list[tuple[list[Pose], list[Person]]] = []
    total = sum(len(s.people) for s in samples) if crops else len(samples)
    for s in samples:
        if crops:
            for person in s.people:
                box = person_crop_box(person)
                side = max(1, int(round(box[2] - box[0])))
                patch, t = crop_square(s.image, box, (side, side))  # native resolution: the model resizes
                model.family.reset()
                poses, _ = model.infer(Frame(patch, 0, time.monotonic_ns(), time.time()))
                for p in poses:
                    p.keypoints[:, :2] = t.to_frame(p.keypoints[:, :2])
                    p.bbox = Pose.box_from_keypoints(p.keypoints)
                units.append((poses[:1], [person]))
                if progress:
                    progress(len(units), total)
        else:
            model.family.reset()
            poses, _ = model.infer(Frame(s.image, 0, time.monotonic_ns(), time.time()))
            units.append((poses, s.people))
            if progress:
                progress(len(units), total)
    return units


def pair_up(units: list[tuple[list[Pose], list[Person]]]) -> list[tuple[Person, np.ndarray | None]]:
    """Every labelled person with its matched prediction (or None)."""
    pairs: list[tuple[Person, np.ndarray | None]] = []
    for poses, people in units:
        pairs.extend(zip(people, match_people(poses, people)))
    return pairs


def predictions(model, samples: list[Sample], crops: bool) -> list[tuple[Person, np.ndarray | None]]:
    return pair_up(detect(model, samples, crops))


def pck(pairs: list[tuple[Person, np.ndarray | None]], alpha: float = 0.1) -> float:
    hits = [pck_hits(pred, person, alpha) for person, pred in pairs]
    correct = sum(h[0] for h in hits)
    total = sum(h[1] for h in hits)
    return correct / total if total else 0.0


# -- COCO keypoint metrics ---------------------------------------------------------------------
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0


def load_coco_json(annotations: str | Path, images_dir: str | Path) -> list[Sample]:
    """COCO person_keypoints JSON (bbox x, y, w, h; keypoints 17 x (x, y, v) in pixels)."""
    import json

    data = json.loads(Path(annotations).read_text(encoding="utf-8"))
    by_image: dict[int, list[Person]] = {}
    for a in data.get("annotations", []):
        if a.get("iscrowd") or not a.get("num_keypoints", 1):
            continue
        x, y, w, h = a["bbox"]
        kp = np.asarray(a["keypoints"], dtype=np.float32).reshape(-1, 3)
        by_image.setdefault(a["image_id"], []).append(Person((x, y, x + w, y + h), kp))
    samples = []
    for img in data.get("images", []):
        path = Path(images_dir) / img["file_name"]
        image = to_rgb8(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), bgr=True, what=str(path))
        samples.append(Sample(path, image, by_image.get(img["id"], [])))
    return samples


def oks(pred: np.ndarray, person: Person) -> float:
    """Object keypoint similarity with the COCO sigmas; area = 0.53 x box area, as Ultralytics uses for YOLO labels."""
    vis = person.keypoints[:, 2] > 0
    if not vis.any():
        return 0.0
    x1, y1, x2, y2 = person.box
    area = max((x2 - x1) * (y2 - y1) * 0.53, 1e-6)
    d2 = ((pred[:, :2] - person.keypoints[:, :2]) ** 2).sum(axis=1)
    k2 = (2 * COCO_SIGMAS[: len(d2)]) ** 2
    return float(np.exp(-d2[vis] / (2 * area * k2[vis])).mean())


def average_precision(scored: list[tuple[float, float]], n_gt: int, threshold: float) -> float:
    """COCO 101-point AP from (score, best OKS of that prediction) pairs, greedy-matched per image."""
    if n_gt == 0:
        return 0.0
    scored = sorted(scored, key=lambda s: -s[0])
    tp = np.array([1.0 if o >= threshold else 0.0 for _, o in scored])
    if len(tp) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(tp) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, points, side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


def oks_ap(per_image: list[tuple[list, list[Person]]]) -> dict[str, float]:
    """AP (mean over OKS 0.50:0.95), AP50 and AP75 over images of (poses, ground truth)."""
    thresholds = np.arange(0.5, 0.96, 0.05)
    n_gt = sum(len(gt) for _, gt in per_image)
    aps = []
    for thr in thresholds:
        scored = []
        for poses, gt in per_image:
            used: set[int] = set()
            for pose in sorted(poses, key=lambda p: -p.score):
                sims = [(oks(pose.keypoints, g), gi) for gi, g in enumerate(gt) if gi not in used]
                best, gi = max(sims, default=(0.0, -1))
                if best >= thr:
                    used.add(gi)
                scored.append((pose.score, best))
        aps.append(average_precision(scored, n_gt, thr))
    return {"AP": float(np.mean(aps)), "AP50": aps[0], "AP75": aps[5]}


def per_keypoint_pck(pairs: list[tuple[Person, np.ndarray | None]], alpha: float = 0.1) -> list[float | None]:
    """PCK per keypoint index (None where no keypoint of that index is visible)."""
    k = len(pairs[0][0].keypoints) if pairs else 0
    hits, totals = np.zeros(k), np.zeros(k)
    for person, pred in pairs:
        vis = person.keypoints[:, 2] > 0
        totals += vis
        if pred is not None:
            d = np.linalg.norm(pred[:, :2] - person.keypoints[:, :2], axis=1)
            hits += vis & (d <= alpha * person.diagonal)
    return [float(h / t) if t else None for h, t in zip(hits, totals)]


def evaluate(model, samples: list[Sample], crops: bool, names: tuple[str, ...], progress=None,
             pck_min_score: float = 0.0) -> dict:
    """The full report: OKS AP/AP50/AP75, PCK@0.05/0.1 and a per-keypoint PCK@0.1 table.

    AP ranks every prediction by score; PCK only counts people the model would report at its
    operating threshold ``pck_min_score``, so low-score guesses cannot inflate it.
    """
    units = detect(model, samples, crops, progress)
    pairs = pair_up([([p for p in poses if p.score >= pck_min_score], people) for poses, people in units])
    per_kp = per_keypoint_pck(pairs, 0.1)
    return {
        "protocol": ("ground-truth person crops (side 1.25 x max(w, h), centred on each labelled box): the model "
                     "alone, a path the pipeline never takes") if crops else
                    "whole images, as `edgepose run` poses them; predictions matched to the labelled people",
        "images": len(samples),
        "people": sum(len(s.people) for s in samples),
        **{k: round(v, 4) for k, v in oks_ap(units).items()},
        "PCK@0.05": round(pck(pairs, 0.05), 4),
        "PCK@0.1": round(pck(pairs, 0.1), 4),
        "per_keypoint_PCK@0.1": {names[i] if i < len(names) else str(i): (round(v, 4) if v is not None else None)
                                 for i, v in enumerate(per_kp)},
    }
