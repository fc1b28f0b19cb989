"""Overlay drawing: golden images on synthetic canvases, plus pixel-level properties.

Regenerate the goldens after an intended change with:
    EDGEPOSE_UPDATE_GOLDEN=1 python3 -m pytest -q tests/test_draw.py
and look at them before committing.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.outputs.draw import (CENTER, LEFT, RIGHT, DrawStyle, annotate, badge_text, confidence_color, draw_badge,
                               draw_poses, edge_colors, label_box)
from edge.stats import Stats
from edge.types import COCO17_EDGES, COCO17_NAMES, Frame, Pose, PoseResult, StreamMeta

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("EDGEPOSE_UPDATE_GOLDEN") == "1"

# A standing figure in COCO-17 order, (x, y) on a 320x240 canvas.
FIGURE = np.array([
    (100, 40), (106, 35), (94, 35), (112, 38), (88, 38),  # nose, eyes, ears
    (122, 70), (78, 70), (132, 105), (68, 105), (138, 138), (62, 138),  # shoulders, elbows, wrists
    (114, 140), (86, 140), (116, 180), (84, 180), (118, 220), (82, 220),  # hips, knees, ankles
], np.float32)


def canvas(w: int = 320, h: int = 240) -> np.ndarray:
    """A deterministic background: horizontal and vertical gradients in different channels."""
    x = np.linspace(30, 90, w, dtype=np.float32)[None, :]
    y = np.linspace(40, 120, h, dtype=np.float32)[:, None]
    img = np.stack([np.broadcast_to(x, (h, w)), np.broadcast_to(y, (h, w)), np.full((h, w), 60, np.float32)], -1)
    return img.astype(np.uint8)


def person(offset_x: float = 0.0, scores=None, track_id=None, scale: float = 1.0) -> Pose:
    kp = np.zeros((17, 3), np.float32)
    kp[:, :2] = FIGURE * scale
    kp[:, 0] += offset_x
    kp[:, 2] = np.linspace(0.95, 0.3, 17) if scores is None else scores
    return Pose(kp, 0.9, track_id=track_id)


def two_people() -> list[Pose]:
    low = np.linspace(0.95, 0.3, 17)
    low[[9, 15]] = 0.05  # left wrist and left ankle: below the threshold, not drawn
    return [person(0, track_id=3), person(130, scores=low, track_id=12)]


def check_golden(name: str, image: np.ndarray, tmp_path: Path) -> None:
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert path.is_file(), f"{path} is missing: run EDGEPOSE_UPDATE_GOLDEN=1 python3 -m pytest tests/test_draw.py"
    want = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert want.shape == image.shape
    diff = np.abs(want.astype(np.int16) - image.astype(np.int16)).max(axis=2)
    # Anti-aliased edges may move by a level between OpenCV builds; anything visible may not.
    changed = np.count_nonzero(diff > 24)
    if changed > 0.002 * diff.size:
        out = tmp_path / name
        cv2.imwrite(str(out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        pytest.fail(f"{name}: {changed} pixels differ from the golden image; the new drawing is {out}")


def pinned_opencv() -> str | None:
    """The OpenCV release the constraints for this Python pin (the goldens were drawn with it)."""
    scripts = Path(__file__).parents[1] / "scripts"
    pins = scripts / f"constraints-py{sys.version_info[0]}.{sys.version_info[1]}.txt"
    pins = pins if pins.is_file() else scripts / "constraints.txt"
    for line in pins.read_text().splitlines():
        if line.lower().startswith("opencv-python-headless=="):
            return line.split("==", 1)[1].strip()
    return None


def installed_opencv() -> str | None:
    for dist in ("opencv-python-headless", "opencv-python"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def test_golden_two_people_skeleton(tmp_path):
    """Lines and dots only: drawn alike by every OpenCV release (4.14 and 5.1 checked), so compared everywhere."""
    image = draw_poses(canvas(), two_people(), COCO17_NAMES, COCO17_EDGES, DrawStyle(ids=False))
    check_golden("two_people_skeleton.png", image, tmp_path)


def test_labels_and_badge_stay_in_their_boxes_and_leave_the_skeleton_alone():
    """Text glyphs and font metrics change between OpenCV releases; where the text goes and what it covers may not."""
    poses = two_people()
    skeleton = draw_poses(canvas(), poses, COCO17_NAMES, COCO17_EDGES, DrawStyle(ids=False))
    image = draw_poses(canvas(), poses, COCO17_NAMES, COCO17_EDGES)
    draw_badge(image, badge_text(29.97, 12.3, 2))
    radius = DrawStyle().sizes(image)[1]
    ids = [label_box(image.shape, f"#{p.track_id}", (int(round(p.bbox[0])), int(round(p.bbox[1])) - radius - 2))[0]
           for p in poses]
    margin = max(4, min(image.shape[:2]) // 60)
    badge = label_box(image.shape, badge_text(29.97, 12.3, 2), (margin, margin + 1))[0]
    inside = np.zeros(image.shape[:2], bool)
    for x1, y1, x2, y2 in [*ids, badge]:
        inside[y1:y2, x1:x2] = True
    assert np.array_equal(image[~inside], skeleton[~inside])  # nothing drawn outside the boxes
    for (x1, y1, x2, y2), p in zip(ids, poses):
        box = image[y1:y2, x1:x2]
        assert x1 <= p.bbox[0] + 1 and y2 <= p.bbox[1]  # above the person, at their left edge
        ink = (box.min(axis=2) > 128).sum()
        assert ink > 10 and (box.max(axis=2) < 40).mean() > 0.5  # white text on the dark box
    x1, y1, x2, y2 = badge
    box, behind = image[y1:y2, x1:x2].astype(int), canvas()[y1:y2, x1:x2].astype(int)
    assert (box.min(axis=2) > 128).sum() > 40  # the badge's text
    dimmed = (np.abs(box - (behind * 0.4).astype(int)) <= 1).all(axis=2)
    assert dimmed.mean() > 0.6  # translucent: around the text, the video shows through, dimmed


@pytest.mark.skipif(installed_opencv() != pinned_opencv(),
                    reason="byte-exact glyphs are checked with the pinned OpenCV only (scripts/constraints.txt)")
def test_golden_two_people_with_ids_and_badge(tmp_path):
    image = draw_poses(canvas(), two_people(), COCO17_NAMES, COCO17_EDGES)
    draw_badge(image, badge_text(29.97, 12.3, 2))
    check_golden("two_people_ids_badge.png", image, tmp_path)


def test_golden_thin_style_without_ids(tmp_path):
    style = DrawStyle(min_score=0.5, thickness=1, radius=2, ids=False)
    image = draw_poses(canvas(160, 120), [person(0, track_id=4, scale=0.5)], COCO17_NAMES, COCO17_EDGES, style)
    check_golden("thin_min_score_0_5.png", image, tmp_path)


def test_golden_images_differ_from_each_other_and_from_the_canvas():
    a = cv2.imread(str(GOLDEN / "two_people_ids_badge.png"))
    assert a is not None and a.shape == (240, 320, 3)
    bg = cv2.cvtColor(canvas(), cv2.COLOR_RGB2BGR)
    assert np.count_nonzero(np.abs(a.astype(int) - bg).max(axis=2) > 24) > 2000  # something was drawn


def test_dots_have_their_confidence_colour_and_low_scores_are_hidden():
    base = canvas()
    poses = two_people()
    image = draw_poses(base, poses, COCO17_NAMES, COCO17_EDGES, DrawStyle(ids=False))
    for pose in poses:
        for x, y, s in pose.keypoints:
            px = tuple(int(v) for v in image[int(y), int(x)])
            if s >= 0.2:
                assert px == confidence_color(float(s), 0.2), (x, y, s, px)
    hidden = poses[1].keypoints[[9, 15]]
    for x, y, _ in hidden:  # nothing drawn there: no dot, no edge ending there
        assert np.array_equal(image[int(y), int(x)], base[int(y), int(x)])


def test_input_is_not_modified_unless_asked():
    base = canvas()
    before = base.copy()
    out = draw_poses(base, two_people(), COCO17_NAMES, COCO17_EDGES)
    assert np.array_equal(base, before) and not np.array_equal(out, before)
    same = draw_poses(base, two_people(), COCO17_NAMES, COCO17_EDGES, copy=False)
    assert same is base and not np.array_equal(base, before)


def test_limbs_are_coloured_by_side():
    colors = edge_colors(COCO17_NAMES, COCO17_EDGES)
    by_edge = dict(zip(COCO17_EDGES, colors))
    assert by_edge[(13, 15)] == LEFT  # left knee - left ankle
    assert by_edge[(14, 16)] == RIGHT
    assert by_edge[(5, 6)] == CENTER  # shoulder to shoulder
    image = draw_poses(np.zeros((240, 320, 3), np.uint8), [person(0, scores=np.ones(17))], COCO17_NAMES,
                       COCO17_EDGES, DrawStyle(ids=False, thickness=5))
    mid = ((FIGURE[13] + FIGURE[15]) / 2).astype(int)  # middle of the left shin
    assert tuple(int(v) for v in image[mid[1], mid[0]]) == LEFT


@pytest.mark.parametrize("score,expected", [(0.2, (255, 0, 0)), (0.6, (255, 255, 0)), (1.0, (0, 255, 0))])
def test_confidence_ramp(score, expected):
    assert confidence_color(score, 0.2) == expected


def test_track_id_label_only_when_tracking_gave_one():
    with_id = draw_poses(canvas(), [person(0, track_id=5)], COCO17_NAMES, COCO17_EDGES)
    without = draw_poses(canvas(), [person(0)], COCO17_NAMES, COCO17_EDGES)
    above_head = (slice(0, 30), slice(50, 150))  # the eye dots start at row 31
    assert not np.array_equal(with_id[above_head], without[above_head])
    assert np.array_equal(without[above_head], canvas()[above_head])


def test_nan_and_out_of_frame_keypoints_do_not_break_drawing():
    kp = np.zeros((17, 3), np.float32)
    kp[:, :2] = FIGURE
    kp[:, 2] = 0.9
    kp[0] = (np.nan, np.nan, 0.9)
    kp[1] = (-500, 9000, 0.9)
    out = draw_poses(canvas(), [Pose(kp, 0.9)], COCO17_NAMES, COCO17_EDGES)
    assert out.shape == (240, 320, 3)


def test_annotate_draws_the_badge_from_live_stats():
    stats = Stats()
    for i in range(5):
        stats.processed({"infer": 5.0}, 10.0, 1, 1_000_000_000 + i * 33_333_333)
    meta = StreamMeta("m", "movenet", "tflite", COCO17_NAMES, COCO17_EDGES, "test", "0", stats)
    frame = Frame(canvas(), 0, 1_000, 0.0)
    result = PoseResult(frame, [person(0)], {"infer": 5.0}, 1_000 + 12_000_000)
    with_badge = annotate(result, meta)
    without = annotate(result, meta, DrawStyle(badge=False))
    corner = (slice(0, 30), slice(0, 200))
    assert not np.array_equal(with_badge[corner], without[corner])
    assert badge_text(stats.fps(), result.latency_ms, 1) == "30.0 fps | 12 ms | 1 person"
    assert np.array_equal(frame.image, canvas())  # the frame itself is untouched
