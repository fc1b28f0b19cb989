"""`edgepose models check` flags the broken INT8 export and passes every good model here."""

from __future__ import annotations

import json
from pathlib import Path

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
    assert_user_error(proc, 2, "degenerate")
    assert "result: DEGENERATE" in proc.stdout and "quantization" in proc.stdout
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


def _run_counts(*args: str) -> dict[str, int]:
    """People per reference image as `edgepose run` reports them (JSON lines on stdout)."""
    proc = edgepose("run", "--source", "sample", "--output", "-", "-q", *args)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return {Path(rec["file"]).name: len(rec["people"]) for rec in lines}


def _check_counts(*args: str) -> dict[str, int]:
    proc = edgepose("models", "check", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    return {im["image"]: im["people"] for im in json.loads(proc.stdout)["images"]}


@pytest.mark.parametrize("name", [None, *GOOD])
def test_people_count_is_the_pipelines(models_dir, name):
    """Every reference image shows one person: check counts what the run counts (it once said 5 and 7)."""
    model = "default" if name is None else str(models_dir / name)
    run, check = _run_counts("--model", model), _check_counts(model)
    assert check == run
    assert set(check.values()) == {1}, check


def test_people_count_follows_the_config(tmp_path, shipped_movenet):
    """--config: the run's own thresholds decide (top-down MoveNet scores 0.31 and 0.24 on the two images)."""
    cfg = tmp_path / "strict.yaml"
    cfg.write_text("model:\n  score_threshold: 0.28\n")
    run, check = _run_counts("--config", str(cfg)), _check_counts("--config", str(cfg))
    assert check == run == {"astronaut.jpg": 1, "grace_hopper.jpg": 0}
    text = edgepose("models", "check", "--config", str(cfg))
    assert text.returncode == 0, text.stderr  # below the threshold is not degenerate
    assert "grace_hopper.jpg: 0 people, best candidate 0.2" in text.stdout


@pytest.mark.parametrize("as_json", [False, True])
def test_degenerate_advice_is_printed_once(models_dir, as_json):
    broken = str(models_dir / "broken" / "yolo11n-pose_int8_dynq.onnx")
    proc = edgepose("models", "check", broken, *(["--json"] if as_json else []))
    assert_user_error(proc, 2, "degenerate")
    both = proc.stdout + proc.stderr
    assert both.count("re-quantize the model") == 1, both
    assert both.count("no person scores above") == 1
    if as_json:
        assert json.loads(proc.stdout)["problems"]
