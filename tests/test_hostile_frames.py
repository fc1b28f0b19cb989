"""Hostile input that must never end a run or corrupt its output: odd frames, unreadable files, broken models.

Each test feeds real files made here (images, and tiny ONNX models that output NaN, a constant or
noise) through the real pipeline or CLI.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import Config
from edge.pipeline import Pipeline
from test_cli import assert_user_error, edgepose


# -- tiny ONNX models with the tensors of a real family ---------------------------------------------
def onnx_model(path: Path, in_shape, out_shape, fill: float | None = None, noise: bool = False) -> Path:
    """A model with a family's input and output shapes that outputs ``fill`` everywhere, or uniform noise."""
    import onnx  # the dev extra
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))
    if noise:  # a fresh draw on every run, whatever the image
        nodes, inits = [helper.make_node("RandomUniform", [], ["y"], shape=list(out_shape), low=0.0, high=1.0)], []
    else:  # y = mean(x) * 0 + fill: reads its input, ignores it
        inits = [numpy_helper.from_array(np.full(out_shape, fill, np.float32), "c"),
                 numpy_helper.from_array(np.zeros(out_shape, np.float32), "z")]
        nodes = [helper.make_node("ReduceMean", ["x"], ["m"], keepdims=0), helper.make_node("Mul", ["m", "z"], ["mz"]),
                 helper.make_node("Add", ["mz", "c"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


MOVENET_IO = ((1, 192, 192, 3), (1, 1, 17, 3))
YOLO_IO = ((1, 3, 320, 320), (1, 56, 2100))


def strict_json(line: str) -> dict:
    """json.loads that refuses NaN and Infinity, as every other JSON parser does."""
    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")
    return json.loads(line, parse_constant=refuse)


def _images_cfg(model: Path, folder: Path, **source) -> Config:
    return Config.model_validate({"model": {"path": str(model)}, "outputs": [],
                                  "source": {"type": "images", "path": str(folder), **source}})


class Collect:
    name = "collect"

    def __init__(self):
        self.results = []

    def open(self, meta):
        pass

    def write(self, result):
        self.results.append(result)

    def close(self):
        pass


# -- A: frame shapes the letterbox could not take -----------------------------------------------------
@pytest.mark.parametrize("model_fixture", ["yolo_tflite", "movenet_tflite"])
def test_extreme_aspect_ratio_images_are_processed(request, tmp_path, data_dir, model_fixture):
    """A 10000x1 or 1x10000 image crashed YOLO's letterbox (a 0-pixel resize, cv2.error) and ended the run."""
    model = request.getfixturevalue(model_fixture)
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_wide.png"), np.full((1, 10000, 3), 200, np.uint8))
    cv2.imwrite(str(folder / "b_tall.png"), np.full((10000, 1, 3), 50, np.uint8))
    cv2.imwrite(str(folder / "c_bus.jpg"), cv2.imread(str(data_dir / "images" / "bus.jpg")))
    sink = Collect()
    p = Pipeline(_images_cfg(model, folder), sinks=[sink])
    p.run()
    assert p.error is None and p.stats.frames_processed == 3 and not p.stats.drops
    sizes = [(r.frame.width, r.frame.height) for r in sink.results]
    assert sizes == [(10000, 1), (1, 10000), (810, 1080)]
    assert sink.results[2].poses  # the bus still has its people
    for r in sink.results:
        for pose in r.poses:
            assert np.isfinite(pose.keypoints).all()
            assert (pose.keypoints[:, 0] <= r.frame.width - 1).all() and (pose.keypoints[:, 1] <= r.frame.height - 1).all()


# -- B: an unreadable file in a folder -------------------------------------------------------------
def _folder_with_a_corrupt_image(tmp_path: Path, data_dir: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((data_dir / "images" / "bus.jpg").read_bytes())
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10)
    (folder / "c.jpg").write_bytes((data_dir / "images" / "zidane.jpg").read_bytes())
    return folder


def test_unreadable_image_is_skipped_counted_and_named_once(tmp_path, data_dir, movenet_tflite):
    folder = _folder_with_a_corrupt_image(tmp_path, data_dir)
    out = tmp_path / "o.jsonl"
    proc = edgepose("run", "--source", str(folder), "--model", str(movenet_tflite), "--output", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    assert [Path(strict_json(x)["file"]).name for x in out.read_text().splitlines()] == ["a.jpg", "c.jpg"]
    assert proc.stderr.count("b.jpg cannot be decoded") == 1, proc.stderr
    assert "dropped 1 (unreadable 1)" in proc.stderr


def test_unreadable_image_does_not_stop_a_looping_service(tmp_path, data_dir, movenet_tflite):
    folder = _folder_with_a_corrupt_image(tmp_path, data_dir)
    out = tmp_path / "o.jsonl"
    proc = edgepose("run", "--source", str(folder), "--model", str(movenet_tflite), "--output", str(out), "-q",
                    "--loop", "--max-frames", "6")
    assert proc.returncode == 0, proc.stderr
    names = [Path(strict_json(x)["file"]).name for x in out.read_text().splitlines()]
    assert names == ["a.jpg", "c.jpg"] * 3
    assert proc.stderr.count("b.jpg cannot be decoded") == 1, proc.stderr  # warned once, however often read
    assert int(re.search(r"unreadable (\d+)", proc.stderr)[1]) >= 2  # but counted each time


def test_a_folder_of_only_unreadable_images_is_a_clear_error(tmp_path, movenet_tflite):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"nope")
    (folder / "b.png").write_bytes(b"")
    for loop in ([], ["--loop"]):
        proc = edgepose("run", "--source", str(folder), "--model", str(movenet_tflite), "-q", *loop, timeout=120)
        assert_user_error(proc, 2, "none of the 2 images", str(folder), "corrupt or not image files")


# -- C: models that output NaN, a constant or noise -------------------------------------------------
@pytest.mark.parametrize("io", [MOVENET_IO, YOLO_IO], ids=["movenet", "yolo"])
def test_nan_model_writes_valid_json_finds_nobody_and_warns_once(tmp_path, data_dir, io):
    model = onnx_model(tmp_path / "nan.onnx", *io, fill=np.nan)
    out = tmp_path / "o.jsonl"
    proc = edgepose("run", "--source", str(data_dir / "images"), "--model", str(model), "--output", str(out), "-q")
    assert proc.returncode == 0, proc.stderr
    records = [strict_json(x) for x in out.read_text().splitlines()]  # NaN was written as bare NaN
    assert len(records) == 5 and all(r["people"] == [] for r in records)  # NaN once became a "person"
    assert proc.stderr.count("outputs NaN or Inf") == 1, proc.stderr
    assert "model output: 5 frames nonfinite" in proc.stderr  # the counter, in the summary
    assert "score nan" not in proc.stderr


@pytest.mark.parametrize("kind, fill, noise, warning", [
    ("constant", 0.5, False, "every output value is the same constant"),
    ("noise", None, True, "look like random noise"),
])
@pytest.mark.parametrize("io", [MOVENET_IO, YOLO_IO], ids=["movenet", "yolo"])
def test_constant_or_noise_output_is_warned_once_and_counted(tmp_path, data_dir, caplog, io, kind, fill, noise, warning):
    model = onnx_model(tmp_path / f"{kind}.onnx", *io, fill=fill, noise=noise)
    cfg = _images_cfg(model, data_dir / "images", loop=True)
    cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"max_frames": 65})})
    p = Pipeline(cfg, sinks=[])
    with caplog.at_level(logging.WARNING, logger="edge.pipeline"):
        p.run()
    warned = [r.message for r in caplog.records if warning in r.message]
    assert len(warned) == 1 and "edgepose models check" in warned[0], [r.message for r in caplog.records]
    assert p.stats.snapshot()["model_output"][kind] >= 60  # two windows of 30 frames, then the rest at stop


@pytest.mark.parametrize("model_fixture, source", [
    ("movenet_tflite", "walk"), ("yolo_tflite", "images"), ("yolo_onnx", "images"), ("movenet_tflite", "images")])
def test_real_models_raise_no_output_warning(request, caplog, data_dir, walk_clip, model_fixture, source):
    model = request.getfixturevalue(model_fixture)
    if source == "walk":
        cfg = Config.model_validate({"model": {"path": str(model)}, "outputs": [],
                                     "source": {"type": "file", "path": str(walk_clip), "realtime": False}})
    else:  # unrelated stills, looped: the same image comes back, and must give the same output
        cfg = _images_cfg(model, data_dir / "images", loop=True)
        cfg = cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(update={"max_frames": 40})})
    p = Pipeline(cfg, sinks=[])
    with caplog.at_level(logging.WARNING, logger="edge.pipeline"):
        p.run()
    assert p.stats.frames_processed >= 40
    assert p.stats.snapshot()["model_output"] == {}
    assert not [r for r in caplog.records if "model" in r.message and "check" in r.message]


def test_models_check_flags_a_noise_model(tmp_path):
    """`models check` passed a model that outputs random numbers (10 'people' scoring 1.00 in each image)."""
    model = onnx_model(tmp_path / "noise.onnx", *YOLO_IO, noise=True)
    proc = edgepose("models", "check", str(model))
    assert_user_error(proc, 2, "degenerate")
    assert "look like random noise" in proc.stdout


def test_jsonl_is_strict_json_even_when_a_value_is_not_finite(tmp_path):
    from edge.config import JsonlOutput
    from edge.outputs.jsonl import JsonlSink
    from edge.types import Frame, Pose, PoseResult

    sink = JsonlSink(JsonlOutput(type="jsonl", path=str(tmp_path / "o.jsonl")))
    sink.open(None)
    kp = np.full((17, 3), 5.0, np.float32)
    kp[3] = np.nan
    frame = Frame(np.zeros((8, 8, 3), np.uint8), 0, 1, 0.0)
    sink.write(PoseResult(frame, [Pose(kp, float("inf"), bbox=(0, 0, 1, float("nan")))], {"decode": float("nan")}, 2))
    sink.close()
    rec = strict_json((tmp_path / "o.jsonl").read_text())
    person = rec["people"][0]
    assert person["score"] is None and person["bbox"][3] is None and person["keypoints"][3] == [None, None, None]
    assert rec["timings_ms"]["decode"] is None and person["keypoints"][0] == [5.0, 5.0, 5.0]


class StillScene:
    """One camera frame, over and over, with a little sensor noise: an INT8 model may answer exactly the same."""

    name, continuous, live, fps = "still", True, False, None

    def __init__(self, image: np.ndarray, frames: int):
        self.image, self.left, self.rng = image.astype(np.int16), frames, np.random.RandomState(0)

    def open(self):
        pass

    def read(self):
        from edge.capture.base import EndOfStream

        if self.left == 0:
            raise EndOfStream("done")
        self.left -= 1
        noisy = np.clip(self.image + self.rng.randint(-2, 3, self.image.shape), 0, 255).astype(np.uint8)
        return noisy, time.monotonic_ns()

    def close(self):
        pass


def test_a_still_scene_is_not_mistaken_for_a_model_that_ignores_its_input(caplog, movenet_tflite, walk_clip):
    cap = cv2.VideoCapture(str(walk_clip))
    image = cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB)
    cap.release()
    cfg = Config.model_validate({"model": {"path": str(movenet_tflite)}, "outputs": []})
    p = Pipeline(cfg, source=StillScene(image, 65), sinks=[])
    with caplog.at_level(logging.WARNING, logger="edge.pipeline"):
        p.run()
    assert p.stats.frames_processed == 65 and p.stats.snapshot()["model_output"] == {}
    assert not [r for r in caplog.records if "edgepose models check" in r.message]


def test_model_output_problems_and_web_drop_reasons_reach_the_metrics():
    """What the summary counts is what Prometheus sees: broken model output by kind, closed connections by reason."""
    from edge.outputs.metrics import format_metrics
    from edge.stats import Stats

    stats = Stats()
    stats.model_output("nonfinite", 3)
    text = format_metrics(stats.snapshot(), {}, 0.0, {}, {"stalled": 2, "request_timeout": 1})
    assert 'edgepose_model_output_frames_total{kind="nonfinite"} 3' in text
    assert 'edgepose_web_connections_dropped_total{reason="stalled"} 2' in text
    assert "edgepose_web_clients_dropped_total 3" in text
