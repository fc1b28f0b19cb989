"""`edgepose eval`: OKS AP and PCK from YOLO-pose labels and from COCO keypoint JSON."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.evaluate import Person, average_precision, load_yolo_pose, oks
from test_cli import edgepose


def test_oks_is_one_for_perfect_and_falls_with_distance():
    kp = np.array([[10.0 * i, 5.0 * i, 2] for i in range(17)], np.float32)
    person = Person((0, 0, 200, 100), kp)
    assert oks(kp, person) == pytest.approx(1.0)
    shifted = kp.copy()
    shifted[:, 0] += 10
    assert 0 < oks(shifted, person) < 1


def test_average_precision_table():
    assert average_precision([(0.9, 0.9), (0.8, 0.9)], 2, 0.5) == pytest.approx(1.0)
    assert average_precision([(0.9, 0.1), (0.8, 0.9)], 2, 0.5) == pytest.approx(0.5 * 51 / 101, abs=0.01)
    assert average_precision([], 3, 0.5) == 0.0


@pytest.mark.parametrize("model, flags, floor", [
    ("movenet_singlepose_lightning_int8_4.tflite", (), 0.60),  # whole images, top-down: 0.625 (docs/MODELS.md)
    ("movenet_singlepose_lightning_int8_4.tflite", ("--crops",), 0.63),  # the model alone on labelled crops: 0.683
    ("yolo11n-pose_int8.tflite", (), 0.68)])
def test_eval_cli_on_coco8(models_dir, data_dir, model, flags, floor):
    proc = edgepose("eval", "--model", str(models_dir / model), "--data", str(data_dir / "coco8-pose"), "--json", *flags)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["images"] == 8 and r["people"] == 21
    assert r["PCK@0.1"] >= floor and r["PCK@0.05"] < r["PCK@0.1"]
    assert 0 < r["AP75"] <= r["AP50"] and 0 < r["AP"] <= r["AP50"]
    assert len(r["per_keypoint_PCK@0.1"]) == 17
    assert ("crops" in r["protocol"]) == ("--crops" in flags)
    assert (r["topdown"] == "movenet_multipose") == ("movenet" in model and not flags)


def test_eval_reads_coco_json_the_same_as_yolo_labels(tmp_path, models_dir, data_dir):
    samples = load_yolo_pose(data_dir / "coco8-pose")
    images, annotations = [], []
    for i, s in enumerate(samples):
        h, w = s.image.shape[:2]
        cv2.imwrite(str(tmp_path / s.image_path.name), cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
        images.append({"id": i, "file_name": s.image_path.name, "width": w, "height": h})
        for p in s.people:
            x1, y1, x2, y2 = p.box
            annotations.append({"id": len(annotations), "image_id": i, "category_id": 1, "iscrowd": 0,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "num_keypoints": int((p.keypoints[:, 2] > 0).sum()),
                                "keypoints": p.keypoints.reshape(-1).tolist()})
    ann = tmp_path / "person_keypoints.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}))
    model = str(models_dir / "yolo11n-pose_int8.tflite")
    a = json.loads(edgepose("eval", "--model", model, "--data", str(ann), "--images", str(tmp_path), "--json").stdout)
    b = json.loads(edgepose("eval", "--model", model, "--data", str(data_dir / "coco8-pose"), "--json").stdout)
    assert a["people"] == b["people"] == 21
    assert abs(a["PCK@0.1"] - b["PCK@0.1"]) < 0.03  # only the JPEG re-encoding differs


def test_eval_human_readable_table(models_dir, data_dir):
    proc = edgepose("eval", "--model", str(models_dir / "yolo11n-pose_int8.tflite"), "--data", str(data_dir / "coco8-pose"))
    assert proc.returncode == 0
    assert "OKS AP" in proc.stdout and "PCK@0.1" in proc.stdout and "left_knee" in proc.stdout
