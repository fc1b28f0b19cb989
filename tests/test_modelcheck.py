"""`edgepose models check` flags the broken INT8 export and passes every good model here."""

from __future__ import annotations

import json

import pytest

from test_cli import assert_user_error, edgepose

GOOD = ["movenet_singlepose_lightning_int8_4.tflite", "yolo11n-pose_int8.tflite",
        "onnx/movenet_singlepose_lightning_int8_4_qdq.onnx", "onnx/yolo11n-pose_int8_nhwc.onnx"]


@pytest.mark.parametrize("name", GOOD)
def test_good_models_pass(models_dir, name):
    proc = edgepose("models", "check", str(models_dir / name), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and not report["problems"]
    assert report["quantization"]["kind"] != "float"  # every model here is INT8 or mixed
    assert all(im["max_score"] > 0.05 for im in report["images"])


def test_broken_quantized_model_is_flagged(models_dir):
    proc = edgepose("models", "check", str(models_dir / "broken" / "yolo11n-pose_int8_dynq.onnx"))
    assert_user_error(proc, 2, "degenerate", "quantization")
    assert "result: DEGENERATE" in proc.stdout
    assert "[1x3x640x640]" in proc.stdout and "family: yolo" in proc.stdout


def test_check_reports_tensors_and_quantization_parameters(models_dir):
    proc = edgepose("models", "check", str(models_dir / GOOD[0]))
    assert proc.returncode == 0
    assert "serving_default_input:0 [1x192x192x3] uint8" in proc.stdout
    assert "scale=" in proc.stdout and "zero_point=" in proc.stdout


def test_models_list_and_info():
    proc = edgepose("models", "list")
    assert proc.returncode == 0 and "movenet-lightning-int8-google" in proc.stdout
    info = edgepose("models", "info", "movenet-lightning-int8-google")
    assert "sha256: cd7cc22f" in info.stdout
    assert_user_error(edgepose("models", "info", "nope"), 2, "unknown zoo id")
