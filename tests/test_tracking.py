"""Tracking: the exact assignment solver, ID lifecycle, synthetic scenes (occlusion, crossing)
and real clips with YOLO11n-pose (IDs counted against the people seen in the clip)."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest

from edge.capture.base import to_rgb8
from edge.config import validate
from edge.pipeline import Pipeline, load_model
from edge.post.assign import match, min_cost_assignment
from edge.post.tracking import Tracker, box_iou, build_post, oks
from edge.types import Frame, Pose
from conftest import need

FPS = 30.0
T0 = 1_000_000_000

# A standing COCO-17 person, x relative to the centre and y from the top, in body heights.
TEMPLATE = np.array([
    (0.0, 0.05), (0.03, 0.03), (-0.03, 0.03), (0.06, 0.05), (-0.06, 0.05),
    (0.12, 0.2), (-0.12, 0.2), (0.15, 0.35), (-0.15, 0.35), (0.16, 0.48), (-0.16, 0.48),
    (0.09, 0.52), (-0.09, 0.52), (0.09, 0.72), (-0.09, 0.72), (0.09, 0.95), (-0.09, 0.95),
])


def person(cx: float, top: float, height: float, rng: np.random.Generator, noise: float = 1.5) -> Pose:
    xy = np.column_stack([cx + TEMPLATE[:, 0] * height, top + TEMPLATE[:, 1] * height])
    xy += rng.normal(0, noise, xy.shape)
    return Pose(np.column_stack([xy, np.full(len(xy), 0.9)]), 0.9)


def t(i: int) -> int:
    return T0 + int(i * 1e9 / FPS)


# -- assignment ------------------------------------------------------------------------------

def _brute_force(cost: np.ndarray) -> float:
    r, c = cost.shape
    if r <= c:
        return min(sum(cost[i, j] for i, j in zip(range(r), p)) for p in itertools.permutations(range(c), r))
    return min(sum(cost[i, j] for i, j in zip(p, range(c))) for p in itertools.permutations(range(r), c))


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (3, 3), (4, 6), (6, 4), (7, 7), (8, 8)])
def test_assignment_is_exact(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(20 if max(shape) < 8 else 2):
        cost = rng.normal(size=shape).round(2)
        pairs = min_cost_assignment(cost)
        assert len(pairs) == min(shape)
        assert len({i for i, _ in pairs}) == len({j for _, j in pairs}) == len(pairs)
        assert sum(cost[i, j] for i, j in pairs) == pytest.approx(_brute_force(cost))


def test_match_is_optimal_where_greedy_is_not_and_respects_the_threshold():
    sim = np.array([[0.9, 0.8], [0.85, 0.1]])  # greedy takes 0.9 and leaves 0.1; optimal is 0.8 + 0.85
    assert match(sim, 0.3) == [(0, 1), (1, 0)]
    assert match(np.array([[0.25, 0.2]]), 0.3) == []
    assert match(np.zeros((0, 3)), 0.3) == []


def test_iou_and_oks_basics():
    assert box_iou(np.array([0, 0, 10, 10]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])) == \
        pytest.approx(np.array([[1.0, 1 / 3, 0.0]]))
    rng = np.random.default_rng(0)
    p = person(100, 50, 200, rng, noise=0).keypoints
    assert oks(p, 64 * 190, p, 0.2) == pytest.approx(1.0)
    far = p.copy()
    far[:, 0] += 60
    assert oks(p, 64 * 190, far, 0.2) < 0.1
    blind = p.copy()
    blind[2:, 2] = 0.0  # only two keypoints shared: OKS says nothing, the box decides
    assert oks(p, 64 * 190, blind, 0.2) is None


# -- lifecycle ---------------------------------------------------------------------------------

def test_ids_are_born_after_min_hits_and_never_reused():
    rng = np.random.default_rng(1)
    tr = Tracker(min_hits=3, max_misses=2)
    tr.update([], t(0))  # the stream has started: later people wait for min_hits
    ids = [tr.update([person(300, 100, 200, rng)], t(i))[0].track_id for i in range(1, 6)]
    assert ids == [None, None, 1, 1, 1]
    # a false detection seen twice never gets an ID, and consumes none
    ghost = [tr.update([person(300 + 5 * i, 100, 200, rng), person(600, 80, 150, rng)], t(i)) for i in (6, 7)]
    assert [p[1].track_id for p in ghost] == [None, None]
    for i in range(8, 12):  # person 1 leaves for longer than max_misses
        tr.update([], t(i))
    back = [tr.update([person(300, 100, 200, rng)], t(i))[0].track_id for i in range(12, 15)]
    assert back == [None, None, 2]  # a new ID, the next integer: 1 is never reused


def test_first_frame_after_reset_confirms_at_once():
    rng = np.random.default_rng(2)
    tr = Tracker(min_hits=3)
    first = tr.update([person(100, 50, 200, rng), person(400, 50, 200, rng)], t(0))
    assert [p.track_id for p in first] == [1, 2]
    tr.reset()
    again = tr.update([person(100, 50, 200, rng)], t(1))
    assert [p.track_id for p in again] == [3]


@pytest.mark.parametrize("order", [0, 1])
def test_keypoints_decide_when_boxes_are_the_same(order):
    """Two poses in one box (the same points, joints swapped around): IoU ties, OKS picks the person."""
    rng = np.random.default_rng(5)
    tr = Tracker(min_hits=1)
    for i in range(3):
        pid = tr.update([person(300, 100, 200, rng, noise=0.5)], t(i))[0].track_id
    same = person(300, 100, 200, rng, noise=0.5)
    other = Pose(same.keypoints[::-1].copy(), 0.9)  # identical box, every joint elsewhere
    assert other.bbox == same.bbox
    pair = [same, other] if order == 0 else [other, same]
    out = tr.update(pair, t(3))
    assert out[order].track_id == pid and out[1 - order].track_id not in (None, pid)


# -- synthetic scenes --------------------------------------------------------------------------

def _walk(tr: Tracker, scene, frames: int, rng: np.random.Generator) -> dict[str, list]:
    """Feed ``scene(i) -> {name: Pose or None}`` in shuffled order; returns each name's IDs per frame."""
    seen: dict[str, list] = {}
    for i in range(frames):
        people = {k: v for k, v in scene(i).items() if v is not None}
        names = list(people)
        rng.shuffle(names)
        out = tr.update([people[n] for n in names], t(i))
        for n, p in zip(names, out):
            seen.setdefault(n, []).append(p.track_id)
    return seen


def test_an_occlusion_of_five_frames_keeps_the_id():
    rng = np.random.default_rng(3)
    gap = 5
    speed = 220 / FPS  # px per frame: a brisk walk across a 640 px frame
    hidden = range(20, 20 + gap)

    def scene(i):
        return {
            "walker": None if i in hidden else person(80 + speed * i, 120, 200, rng),
            "stander": person(560, 140, 180, rng),
        }

    ids = _walk(Tracker(), scene, 50, rng)
    assert len(ids["walker"]) == 50 - gap and ids["walker"][0] is not None
    assert len(set(ids["walker"])) == 1 and len(set(ids["stander"])) == 1
    assert ids["walker"][0] != ids["stander"][0]
    # the same scene with max_misses below the gap: the track dies and the walker is a new person
    lost = _walk(Tracker(max_misses=gap - 1), scene, 50, rng)
    assert len(set(lost["walker"]) - {None}) == 2


@pytest.mark.parametrize("hidden_at_crossing", [0, 4])
def test_two_crossing_people_keep_their_ids(hidden_at_crossing):
    """A (near, taller) walks right, B (farther, smaller) walks left; they cross at frame 30.

    With ``hidden_at_crossing`` frames, B is behind A and not detected while they overlap.
    """
    rng = np.random.default_rng(4)
    speed = 220 / FPS
    cross = 30
    hidden = range(cross - hidden_at_crossing // 2, cross + (hidden_at_crossing + 1) // 2)

    def scene(i):
        x = speed * (i - cross)
        return {
            "A": person(320 + x, 100, 200, rng),
            "B": None if i in hidden else person(320 - x, 125, 160, rng),
        }

    ids = _walk(Tracker(), scene, 60, rng)
    overlap = box_iou(np.array(scene(cross)["A"].bbox), np.array(person(320, 125, 160, rng).bbox))[0, 0]
    assert overlap > 0.5  # they really overlap at the crossing
    assert set(ids["A"]) == {ids["A"][0]} and set(ids["B"]) == {ids["B"][0]}
    assert ids["A"][0] != ids["B"][0] and None not in ids["A"] + ids["B"]


# -- real clips --------------------------------------------------------------------------------

def _cfg(yolo, tmp_path, video, **extra):
    return validate({
        "source": {"type": "file", "path": str(video), "realtime": False},
        "model": {"path": str(yolo)},
        "outputs": [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}],
        **extra,
    })


def test_two_walkers_keep_their_ids_through_the_pipeline(yolo_tflite, data_dir, tmp_path):
    """intel_face-demographics-walking: 35 frames, two people (a woman on the left, a man on the right;
    counted by eye from frames 0, 3, ..., 33) walk towards the camera side by side and never cross."""
    video = data_dir / "video" / "intel_face-demographics-walking_transcoded.mp4"
    need(video.is_file(), str(video))
    cfg = _cfg(yolo_tflite, tmp_path, video, smoothing={"keep_raw": True})
    Pipeline(cfg).run()
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 35
    persons = 2
    by_side: dict[int, list] = {0: [], 1: []}
    for line in lines:
        assert "post" in line["timings_ms"]
        people = sorted(line["people"], key=lambda p: p["bbox"][0] + p["bbox"][2])
        if len(people) == persons:
            for side, p in enumerate(people):
                by_side[side].append(p["id"])
                raw, smooth = np.array(p["keypoints_raw"]), np.array(p["keypoints"])
                assert np.abs(raw[:, :2] - smooth[:, :2]).max() < 0.2 * (p["bbox"][3] - p["bbox"][1])
    assert min(len(v) for v in by_side.values()) >= 30  # both seen in nearly every frame
    all_ids = {i for v in by_side.values() for i in v} - {None}
    assert len(all_ids) <= 2 * persons
    for ids in by_side.values():
        assert len(set(ids) - {None}) <= 2  # at most 2 IDs per person who walks through
    assert not set(by_side[0]) & set(by_side[1]) - {None}  # never the same ID on both
    smoothed = [np.array(p["keypoints"]) != np.array(p["keypoints_raw"]) for x in lines[1:] for p in x["people"]]
    assert any(s.any() for s in smoothed)  # the smoothed keypoints, not the raw ones, reach the output


@pytest.mark.slow  # ~27 s of video
def test_one_by_one_walk_through_gets_at_most_two_ids(yolo_tflite, data_dir):
    """intel_one-by-one-person-detection, frames 722-895 (of 1394, 10 fps): one man in a black T-shirt
    walks in from the bottom left (~745), stands at the table and leaves on the right (~867); the
    frames before and after are empty (counted by eye on a contact sheet of every 20th frame).
    Only this window runs, to keep the test at ~10 s; docs/MODELS.md has the whole clip."""
    video = data_dir / "video" / "intel_one-by-one-person-detection.mp4"
    need(video.is_file(), str(video))
    cfg = validate({"model": {"path": str(yolo_tflite)}})
    model, post = load_model(cfg), build_post(cfg)
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    start, stop = 722, 895
    for _ in range(start):
        cap.grab()
    ids, frames_with_person = [], 0
    for i in range(start, stop):
        ok, image = cap.read()
        assert ok, f"frame {i} unreadable"
        t_ns = T0 + int(i * 1e9 / fps)  # the media time: what a camera's timestamps would be
        poses, _ = model.infer(Frame(to_rgb8(image), i, t_ns, 0.0))
        poses = post(poses, t_ns)
        frames_with_person += bool(poses)
        ids += [p.track_id for p in poses if p.track_id is not None]
    cap.release()
    persons = 1
    assert frames_with_person >= 100  # the walker was found
    assert 1 <= len(set(ids)) <= 2 * persons


def test_still_images_reset_the_tracker_each_frame(yolo_tflite, data_dir, tmp_path):
    """Unrelated stills: each image starts fresh, so every person gets an ID at once and none repeats."""
    images = data_dir / "images"
    need(images.is_dir(), str(images))
    cfg = validate({
        "source": {"type": "images", "path": str(images), "realtime": False},
        "model": {"path": str(yolo_tflite)},
        "outputs": [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}],
    })
    Pipeline(cfg).run()
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    ids = [p["id"] for line in lines for p in line["people"]]
    assert len(lines) >= 4 and len(ids) >= 6  # bus has 4 people, zidane 2
    assert None not in ids and len(set(ids)) == len(ids)
