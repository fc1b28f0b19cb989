"""Model families beyond the foundation: YOLO26 end-to-end, MoveNet MultiPose, and real untrained exports.

Decoders are fed tensors built from a trained model's ground-truth-checked output (YOLO11 on
bus.jpg), so a wrong decode changes the people found.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, need
from edge.poses.base import FamilyOptions, ModelSignature
from edge.poses.detect import detect_family, make_family
from edge.runtime.base import TensorSpec, load_backend
from edge.types import Frame

UNTRAINED = Path(os.environ.get("EDGEPOSE_UNTRAINED_YOLO", Path.home() / ".cache" / "edgepose" / "untrained-yolo"))
EXPORTS = {"yolo11n-pose-untrained-320.onnx": ("yolo", (1, 56, 2100)),
           "yolo26n-pose-untrained-320.onnx": ("yolo", (1, 56, 2100)),
           "yolo26n-pose-untrained-320-e2e.onnx": ("yolo_e2e", (1, 300, 57))}


@pytest.fixture(scope="module")
def reference(yolo_tflite, data_dir):
    """YOLO11 INT8 on bus.jpg: 4 people (checked against ground truth in test_accuracy)."""
    backend = load_backend(yolo_tflite)
    family = make_family(ModelSignature(backend.inputs, backend.outputs, backend.metadata), FamilyOptions())
    rgb = cv2.cvtColor(cv2.imread(str(data_dir / "images" / "bus.jpg")), cv2.COLOR_BGR2RGB)
    frame = Frame(rgb, 0, time.monotonic_ns(), time.time())
    inputs, t = family.prepare(frame)
    poses = family.decode(backend.run(inputs), t)
    assert len(poses) == 4
    return frame, t, poses


def _sig(in_shape, out_shape, meta=None, in_dtype=np.float32):
    return ModelSignature([TensorSpec("in", in_shape, np.dtype(in_dtype))],
                          [TensorSpec("out", out_shape, np.dtype(np.float32))], meta or {})


def _to_input_pixels(t, xy):
    return (np.asarray(xy, np.float32) - [t.tx, t.ty]) / [t.sx, t.sy]


@pytest.mark.parametrize("normalised", [False, True])
def test_yolo26_end_to_end_layout_decodes_known_tensors(reference, normalised):
    frame, t, poses = reference
    rows = np.zeros((1, 300, 57), np.float32)
    for i, p in enumerate(poses):
        box = _to_input_pixels(t, np.array(p.bbox).reshape(2, 2)).reshape(4)
        kp = p.keypoints.copy()
        kp[:, :2] = _to_input_pixels(t, kp[:, :2])
        if normalised:
            box /= 640
            kp[:, :2] /= 640
        rows[0, i, :4], rows[0, i, 4], rows[0, i, 5] = box, p.score, 0
        rows[0, i, 6:] = kp.reshape(-1)
    rows[0, 4:, 4] = 0.01  # the rest of the 300 slots: background
    sig = _sig((1, 640, 640, 3), (1, 300, 57), {"end2end": "True", "kpt_shape": "[17, 3]"})
    assert detect_family(sig) == "yolo_e2e"
    fam = make_family(sig, FamilyOptions())
    _, t2 = fam.prepare(frame)
    got = fam.decode([rows], t2)
    assert len(got) == 4
    for g, want in zip(got, sorted(poses, key=lambda p: -p.score)):
        np.testing.assert_allclose(g.keypoints, want.keypoints, atol=0.05)
        np.testing.assert_allclose(g.bbox, want.bbox, atol=0.05)


@pytest.mark.parametrize("dynamic", [False, True])
def test_multipose_layout_decodes_known_tensors(reference, dynamic):
    frame, _, poses = reference
    sig = _sig((1, None, None, 3) if dynamic else (1, 256, 256, 3), (1, 6, 56), in_dtype=np.int32)
    assert detect_family(sig) == "movenet_multipose"
    fam = make_family(sig, FamilyOptions())
    inputs, t = fam.prepare(frame)
    assert inputs[0].shape == ((1, 256, 192, 3) if dynamic else (1, 256, 256, 3))  # bus.jpg is portrait 810x1080
    out = np.zeros((1, 6, 56), np.float32)
    for i, p in enumerate(poses):
        kp = p.keypoints.copy()
        xy = _to_input_pixels(t, kp[:, :2]) / [t.input_w, t.input_h]
        out[0, i, :51] = np.stack([xy[:, 1], xy[:, 0], kp[:, 2]], axis=1).reshape(-1)
        b = _to_input_pixels(t, np.array(p.bbox).reshape(2, 2)) / [t.input_w, t.input_h]
        out[0, i, 51:55] = b[0, 1], b[0, 0], b[1, 1], b[1, 0]
        out[0, i, 55] = p.score
    got = fam.decode([out], t)
    assert len(got) == 4
    for g, want in zip(got, sorted(poses, key=lambda p: -p.score)):
        np.testing.assert_allclose(g.keypoints, want.keypoints, atol=0.05)


@pytest.fixture(scope="module")
def untrained_exports():
    """Untrained Ultralytics exports with real tensor layouts, built in their own venv (never committed)."""
    missing = [n for n in EXPORTS if not (UNTRAINED / n).is_file()]
    if missing:
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "export_untrained_yolo.py"), "--out", str(UNTRAINED)],
                              capture_output=True, text=True, timeout=1500)
        need(proc.returncode == 0, f"building untrained YOLO exports failed: {proc.stderr[-2000:]}")
    return UNTRAINED


@pytest.mark.slow  # builds untrained Ultralytics exports in their own venv the first time: ~160 s
@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_untrained_ultralytics_exports_are_detected_and_run(untrained_exports, data_dir, name):
    family_name, out_shape = EXPORTS[name]
    backend = load_backend(untrained_exports / name)
    assert backend.outputs[0].shape == out_shape
    assert backend.inputs[0].shape == (1, 3, 320, 320)
    sig = ModelSignature(backend.inputs, backend.outputs, backend.metadata)
    assert detect_family(sig) == family_name
    fam = make_family(sig, FamilyOptions(score_threshold=0.0, max_people=300))
    rgb = cv2.cvtColor(cv2.imread(str(data_dir / "images" / "zidane.jpg")), cv2.COLOR_BGR2RGB)
    inputs, t = fam.prepare(Frame(rgb, 0, time.monotonic_ns(), time.time()))
    assert inputs[0].shape == (1, 3, 320, 320)
    raw = backend.run(inputs)[0]
    poses = fam.decode([raw], t)
    assert poses, "score threshold 0 keeps every candidate"
    # ONNX exports keep input pixels: the decoded boxes are scaled to the 1280x720 frame, not squeezed into 0..1
    centres = np.array([np.array(p.bbox).reshape(2, 2).mean(0) for p in poses])
    assert centres[:, 0].max() > 50 and centres[:, 1].max() > 50
    for p in poses:
        assert p.keypoints.shape == (17, 3) and np.isfinite(p.keypoints).all()
