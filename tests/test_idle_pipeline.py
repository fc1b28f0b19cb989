"""Idle gating inside the pipeline: skipped frames are counted as idle (never as drops), the outputs say
"idle", and a person walking into a quiet room is posed from their first frames."""

from __future__ import annotations

import json

import cv2
import pytest

from edge.config import validate
from edge.outputs.base import build_sink
from edge.outputs.draw import badge_text
from edge.outputs.metrics import format_metrics
from edge.pipeline import Pipeline
from edge.stats import Stats, status_line

EMPTY = (0, 53)  # the room before anyone comes in (YOLO finds the first person on frame 61: tests/test_idle.py)
ENTER = 61
LOOPS = 2


@pytest.fixture(scope="module")
def quiet_room(tmp_path_factory, busy_clip):
    """Frames 0-53 forwards and back twice (21 s of an empty room at 10 fps), then frames 0-130: a person enters."""
    cap = cv2.VideoCapture(str(busy_clip))
    frames = []
    for _ in range(131):
        ok, f = cap.read()
        assert ok
        frames.append(f)
    cap.release()
    loop = frames[EMPTY[0]:EMPTY[1] + 1]
    pingpong = loop + loop[-2:0:-1]
    path = tmp_path_factory.mktemp("quiet") / "quiet.avi"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for f in pingpong * LOOPS + frames:
        writer.write(f)
    writer.release()
    return path, len(pingpong) * LOOPS


def run(tmp_path, clip, model, idle: dict):
    cfg = validate({
        "source": {"type": "file", "path": str(clip), "realtime": False},
        "model": {"path": str(model)},
        "idle": idle,
        "pipeline": {"sink_queue": 10000},
        "outputs": [{"type": "jsonl", "path": str(tmp_path / "poses.jsonl")}],
    })
    pipeline = Pipeline(cfg, sinks=[build_sink(cfg.outputs[0])])
    pipeline.run()
    lines = [json.loads(x) for x in (tmp_path / "poses.jsonl").read_text().splitlines()]
    return pipeline, lines


@pytest.mark.slow
def test_a_quiet_room_is_skipped_as_idle_and_a_person_entering_is_posed_at_once(tmp_path, quiet_room, yolo_tflite):
    clip, n_empty = quiet_room
    pipeline, lines = run(tmp_path, clip, yolo_tflite, {"enabled": True, "after_s": 2.0, "fps": 0.5})
    snap = pipeline.stats.snapshot()
    total = n_empty + 131
    assert snap["frames_captured"] == total
    # 2 s at full rate, then the empty room at 0.5 fps: most of its frames are skipped, none dropped
    assert snap["idle_frames"] >= 0.8 * (n_empty - 20) and snap["dropped_total"] == 0
    assert snap["frames_processed"] + snap["idle_frames"] == total
    # the person (frame 61 of the clip) is posed on the frame where always-on first poses them, or the next
    first = min(x["frame"] for x in lines if x["people"])
    assert n_empty + ENTER - 2 <= first <= n_empty + ENTER + 1
    assert pipeline.gate.state == "active" and pipeline.gate.wakes >= 1 and snap["activity"] == "active"
    # every frame at the outputs is in order; skipped frames reach them only as "idle" (no people, no model)
    indices = [x["frame"] for x in lines]
    assert all(b > a for a, b in zip(indices, indices[1:]))
    idle = [x for x in lines if x.get("idle")]  # skipped frames once a second, and the looks that found nobody
    assert idle and all(not x["people"] for x in idle)
    assert all(x["frame"] < n_empty + ENTER for x in idle)
    skipped = [x for x in idle if "infer" not in x["timings_ms"]]
    assert skipped and sum(1 for x in lines if "infer" in x["timings_ms"]) == snap["frames_processed"]
    metrics = format_metrics(snap, pipeline.meta.to_dict(), 0.0, {}, {})
    assert f"edgepose_idle_frames_total {snap['idle_frames']}" in metrics


def test_gating_is_off_for_a_file_by_default_and_on_when_asked(tmp_path, busy_clip, movenet_tflite):
    base = {"source": {"type": "file", "path": str(busy_clip), "realtime": False}, "model": {"path": str(movenet_tflite)},
            "outputs": []}
    assert Pipeline(validate(base), sinks=[]).gate is None  # a file is a test or a benchmark: every frame is posed
    on = Pipeline(validate({**base, "idle": {"enabled": True}}), sinks=[])
    assert on.gate is not None and on.gate.state == "active"


def test_stills_are_never_gated(tmp_path, data_dir, movenet_tflite):
    cfg = validate({"source": {"type": "images", "path": str(data_dir / "images")}, "model": {"path": str(movenet_tflite)},
                    "idle": {"enabled": True}, "outputs": []})
    assert Pipeline(cfg, sinks=[]).gate is None  # unrelated pictures: no "nobody for 10 s", every image is posed


def test_a_gate_that_could_never_wake_is_a_config_error():
    from edge.config import ConfigError
    with pytest.raises(ConfigError, match="never run the model again"):
        validate({"idle": {"fps": 0, "motion": False}})


def test_idle_says_so_on_the_console_badge_and_keeps_the_watchdog_fed():
    stats = Stats()
    stats.activity = "idle"
    stats.idle_frame(__import__("time").monotonic_ns())
    snap = stats.snapshot()
    assert "idle: nobody seen, 1 frames skipped" in status_line(snap)
    assert stats.since_last_frame_s() < 5  # /healthz stays ok while the model rests
    assert badge_text(3.0, 20.0, 0, idle=True) == "idle: nobody seen"
    assert 'edgepose_idle 1' in format_metrics(snap, {}, 0.0, {}, {})
