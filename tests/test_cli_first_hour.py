"""What a new user meets in the first hour: each wrong invocation, and the words of a plain run.

Every wrong invocation gets one paragraph on stderr, no traceback, and the exit code DESIGN.md
gives it: 2 for what the user must fix (systemd does not restart on it), 1 for what may come back
(a camera that is missing, a port in use).
"""

from __future__ import annotations

import json
import re
import socket
import time

import numpy as np
import pytest

from edge.errors import ConfigError
from edge.outputs.spec import parse_output
from edge.post.geometry import clip_to_frame
from edge.stats import Stats, drops_text, status_line, summarize
from edge.types import Pose
from test_cli import assert_user_error, edgepose


def one_paragraph(stderr: str, needle: str) -> None:
    """The message is printed once, on one line (a paragraph), with nothing like a stack after it."""
    lines = [line for line in stderr.splitlines() if needle in line]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and 'File "' not in stderr


# -- --family that does not fit the file ------------------------------------------------------------------


@pytest.mark.parametrize("family", ["yolo", "movenet_multipose", "blazepose"])
def test_wrong_family_for_a_movenet_file_is_a_model_error_before_the_run(family, movenet_tflite, walk_clip):
    proc = edgepose("run", "--source", str(walk_clip), "--model", str(movenet_tflite), "--family", family,
                    "--output", "-")
    assert_user_error(proc, 2, f"is not a {family} model", "Families that fit these tensors: movenet",
                      "remove --family")
    one_paragraph(proc.stderr, f"is not a {family} model")
    assert proc.stdout == ""  # stopped before the first frame
    assert "pipeline running" not in proc.stderr


def test_wrong_family_for_a_yolo_file_names_its_tensors(yolo_tflite, walk_clip):
    proc = edgepose("run", "--source", str(walk_clip), "--model", str(yolo_tflite), "--family", "movenet")
    assert_user_error(proc, 2, "is not a movenet model", "Its tensors:", "1x56x8400", "fit these tensors: yolo")


def test_the_right_family_named_explicitly_still_runs(movenet_tflite, data_dir):
    proc = edgepose("run", "--source", str(data_dir / "images" / "bus.jpg"), "--model", str(movenet_tflite),
                    "--family", "movenet", "--output", "-", "-q")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["people"]) >= 1


# -- --output forms -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, why", [
    ("wbe:8080", "not an output form"),
    ("results", "not an output form"),
    ("web:80800", "not a port number"),
    ("web:host:", "not a port number"),
    ("http://127.0.0.1:8080", "'http://' is not an output"),
    ("mqtt://", "host is missing"),
    ("mqtt://user:secret@broker", "password on the command line"),
    ("framebuffer:fb0", "a framebuffer is a device"),
])
def test_an_output_form_that_means_nothing_exits_2_and_lists_the_valid_forms(spec, why, movenet_tflite, tmp_path):
    proc = edgepose("run", "--source", "sample", "--model", str(movenet_tflite), "--output", spec, cwd=tmp_path)
    shown = spec.replace(":secret@", ":***@")  # a password is masked even in the echo of the argument
    assert_user_error(proc, 2, f"--output {shown!r}", why, "Valid forms:", "mqtt://[user@]host[:port]", "web:HOST:PORT")
    one_paragraph(proc.stderr, "Valid forms:")
    assert list(tmp_path.iterdir()) == []  # no file or folder named after the typo
    assert "secret" not in proc.stderr


@pytest.mark.parametrize("spec, entry", [
    ("-", {"type": "jsonl", "path": "-"}),
    ("out/poses.jsonl", {"type": "jsonl", "path": "out/poses.jsonl"}),
    ("poses.NDJSON", {"type": "jsonl", "path": "poses.NDJSON"}),
    ("jsonl:/var/log/poses.log", {"type": "jsonl", "path": "/var/log/poses.log"}),
    ("console", {"type": "console"}),
    ("window", {"type": "window"}),
    ("web", {"type": "web"}),
    ("web:9000", {"type": "web", "port": 9000}),
    ("web:0.0.0.0:8080", {"type": "web", "host": "0.0.0.0", "port": 8080}),
    ("web:[::]:8080", {"type": "web", "host": "::", "port": 8080}),
    ("framebuffer", {"type": "framebuffer"}),
    ("framebuffer:/dev/fb1", {"type": "framebuffer", "device": "/dev/fb1"}),
    ("mqtt://127.0.0.1", {"type": "mqtt", "host": "127.0.0.1"}),
    ("mqtt://pose@broker.lan:1884/home/living", {"type": "mqtt", "host": "broker.lan", "port": 1884,
                                                  "username": "pose", "topic_prefix": "home/living"}),
    ("mqtts://broker.lan", {"type": "mqtt", "host": "broker.lan", "tls": {}}),
])
def test_valid_output_forms(spec, entry):
    assert parse_output(spec) == entry


def test_an_mqtt_url_becomes_a_validated_mqtt_output():
    from edge.config import load_config, override

    cfg = override(load_config(None), outputs=[parse_output("mqtt://pose@broker.lan:1884/home/living")])
    (mqtt,) = cfg.outputs
    assert (mqtt.type, mqtt.host, mqtt.port, mqtt.username, mqtt.topic_prefix) == (
        "mqtt", "broker.lan", 1884, "pose", "home/living")
    with pytest.raises(ConfigError, match="Valid forms"):
        parse_output("mqtt://broker.lan/x?qos=2")


def test_the_live_view_warns_when_it_listens_beyond_loopback(movenet_tflite):
    proc = edgepose("run", "--source", "sample", "--model", str(movenet_tflite), "--output", "web:0.0.0.0:0", "-q")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"WARNING .*beyond this device", proc.stderr), proc.stderr
    quiet = edgepose("run", "--source", "sample", "--model", str(movenet_tflite), "--output", "web:0", "-q")
    assert quiet.returncode == 0 and "beyond this device" not in quiet.stderr


# -- sources ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source, said", [
    ("/nope/clip.mp4", "/nope/clip.mp4 does not exist"),
    ("/nope/folder/", "/nope/folder does not exist (no such file or folder)"),
    ("/nope/photo.jpg", "/nope/photo.jpg does not exist"),
    ("/nope/*.jpg", "no images found at '/nope/*.jpg'"),
])
def test_a_source_that_does_not_exist_is_a_configuration_error(source, said, movenet_tflite):
    proc = edgepose("run", "--source", source, "--model", str(movenet_tflite))
    assert_user_error(proc, 2, "configuration error", said)
    one_paragraph(proc.stderr, "configuration error")


def test_an_empty_folder_is_a_configuration_error(movenet_tflite, tmp_path):
    assert_user_error(edgepose("run", "--source", str(tmp_path), "--model", str(movenet_tflite)), 2,
                      "no images found", str(tmp_path))


def test_a_missing_camera_and_a_port_in_use_stay_exit_1(movenet_tflite):
    assert_user_error(edgepose("run", "--source", "/dev/video77", "--model", str(movenet_tflite)), 1, "/dev/video77")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = edgepose("run", "--source", "sample", "--model", str(movenet_tflite), "--output", f"web:{port}")
    assert_user_error(proc, 1, f"127.0.0.1:{port}", "Choose another port (--output web:PORT")
    one_paragraph(proc.stderr, "Choose another port")


# -- what a plain run prints ----------------------------------------------------------------------------------


def test_image_results_name_their_file_and_the_summary_lists_each_image(movenet_tflite, data_dir):
    images = data_dir / "images"
    proc = edgepose("run", "--source", str(images), "--model", str(movenet_tflite), "--output", "-")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    names = sorted(p.name for p in images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    assert sorted(r["file"].rsplit("/", 1)[-1] for r in records) == names
    for r in records:
        assert (images / r["file"].rsplit("/", 1)[-1]).is_file() and r["file"].startswith(str(images))
    found = {m[0]: m[1] for m in re.findall(r"^  (\S+): (.+)$", proc.stderr, re.M)}
    assert sorted(found) == names  # one line per image, in plain words
    for r in records:
        n, said = len(r["people"]), found[r["file"].rsplit("/", 1)[-1]]
        assert said == "nobody" if n == 0 else said.startswith("1 person (score " if n == 1 else f"{n} people (scores ")


def test_the_first_command_reads_well(shipped_movenet, tmp_path):
    """The README's first command: messages in order, plural right, no 0.0 fps, no Python dict."""
    proc = edgepose("run", "--source", "sample", "--output", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert err.index("pipeline running") < err.index("source sample ended after 2 frames")
    assert "0.0 fps" not in err and "{" not in err and "1 people" not in err
    assert "INFO: Created TensorFlow Lite" not in err  # LiteRT's own line is for --log-level debug
    summary = err[err.index("processed "):]
    assert re.match(r"processed 2 frames in [\d.]+ s \([\d.]+ fps\); median prepare", summary), summary
    assert "up to 1 person in a frame; dropped 0\n  astronaut.jpg: 1 person (score 0." in summary
    assert "\n  grace_hopper.jpg: 1 person (score 0." in summary


def test_a_single_image_has_no_rate_and_no_zero_status_line(movenet_tflite, data_dir):
    proc = edgepose("run", "--source", str(data_dir / "images" / "bus.jpg"), "--model", str(movenet_tflite),
                    "--output", "-")
    assert proc.returncode == 0, proc.stderr
    assert "fps" not in proc.stderr and "frames 1" not in proc.stderr
    assert re.search(r"^processed 1 frame in [\d.]+ s; median ", proc.stderr, re.M), proc.stderr
    assert "ended after 1 frame\n" in proc.stderr


def test_status_line_and_summary_use_the_same_words():
    stats = Stats()
    assert status_line(stats.snapshot()).startswith("- fps | ms: - | latency - | 0 people now | frames 0")
    stats.captured()
    stats.processed({"infer": 10.0}, 12.0, 1, 1_000_000_000)
    line = status_line(stats.snapshot())
    assert line.startswith("- fps |") and "1 person now" in line and "0.0 fps" not in line  # one frame: no rate yet
    stats.captured()
    stats.processed({"infer": 10.0}, 12.0, 2, 1_100_000_000)
    stats.captured()
    stats.drop("capture")
    stats.drop("sink:mqtt", 2)
    snap = stats.snapshot()
    assert status_line(snap).startswith("10.0 fps |") and "2 people now" in status_line(snap)
    assert drops_text(snap) == "dropped 3 (capture 1, sink:mqtt 2)"
    text = summarize(stats)
    assert text.startswith("processed 2 of 3 captured frames in ") and "(10.0 fps)" in text
    assert text.endswith("up to 2 people in a frame; dropped 3 (capture 1, sink:mqtt 2)")
    assert drops_text(status_snapshot_without_drops()) == "dropped 0"


def status_snapshot_without_drops() -> dict:
    return Stats().snapshot()


def test_many_images_are_counted_not_listed():
    stats = Stats()
    for i in range(25):
        stats.still(f"img{i:02d}.jpg", [0.8] * (i % 3))
    lines = summarize(stats).splitlines()[1:]
    assert len(lines) == 11 and lines[0] == "  img00.jpg: nobody" and lines[2] == "  img02.jpg: 2 people (scores 0.80, 0.80)"
    assert lines[-1] == "  ... and 15 more images: 10 with people, 5 without (every result is in the outputs)"


# -- keypoints stay inside the picture -------------------------------------------------------------------------


def test_keypoints_outside_the_frame_are_clipped_to_its_edge():
    kp = np.array([[-18.2, 456.9, 0.02], [284.3, 519.2, 0.04], [100.0, 100.0, 0.9]], np.float32)
    (pose,) = clip_to_frame([Pose(kp.copy(), 0.4, bbox=(-18.2, 90.0, 300.0, 519.2))], 437, 512)
    np.testing.assert_allclose(pose.keypoints, [[0, 456.9, 0.02], [284.3, 511, 0.04], [100, 100, 0.9]], rtol=1e-6)
    assert pose.bbox == pytest.approx((0.0, 90.0, 300.0, 511.0))


def test_a_padded_portrait_frame_gives_keypoints_inside_it(shipped_movenet):
    """grace_hopper.jpg is 437x512: MoveNet pads it square and places an ankle at x = -18 and a hip at y = 519."""
    proc = edgepose("run", "--source", "sample", "--output", "-", "-q")
    assert proc.returncode == 0, proc.stderr
    for r in map(json.loads, proc.stdout.splitlines()):
        for p in r["people"]:
            xy = np.array(p["keypoints"])[:, :2]
            assert xy.min() >= 0 and (xy[:, 0] <= r["width"] - 1).all() and (xy[:, 1] <= r["height"] - 1).all()
            norm = np.array(p["keypoints_norm"])[:, :2]
            assert norm.min() >= 0 and norm.max() <= 1


def test_an_mqtt_url_on_the_command_line_publishes_to_a_real_broker(movenet_tflite, tmp_path):
    from mqtt_broker import Broker
    from mqtt_pipeline import require_mqtt_tools
    from mqtt_subscriber import Subscriber

    require_mqtt_tools()
    broker = Broker(tmp_path / "broker").start()
    try:
        sub = Subscriber(broker, ["home/living/#"]).start()
        proc = edgepose("run", "--source", "sample", "--model", str(movenet_tflite), "-q",
                        "--output", f"mqtt://127.0.0.1:{broker.port}/home/living")
        assert proc.returncode == 0, proc.stderr
        sub.wait_for(lambda: len(sub.jsons("home/living/poses")) == 2, 10, "both pictures' poses")
        poses = sub.jsons("home/living/poses")
        assert [p["file"].rsplit("/", 1)[-1] for p in poses] == ["astronaut.jpg", "grace_hopper.jpg"]
        assert all(len(p["people"]) == 1 for p in poses)
        sub.stop()
    finally:
        broker.stop()


def test_console_prints_no_status_line_before_there_is_a_rate(capsys):
    """A slow first frame (a Pi, an emulated board, BlazePose heavy) must not print a '- fps' line."""
    from edge.config import ConsoleOutput
    from edge.outputs.console import ConsoleSink
    from edge.types import PoseResult, StreamMeta

    stats = Stats()
    sink = ConsoleSink(ConsoleOutput(type="console", interval_s=0.001))
    sink.open(StreamMeta("m", "movenet", "tflite", (), (), "test", "0", stats=stats))
    time.sleep(0.01)  # the interval has passed
    stats.captured()
    stats.processed({"infer": 1000.0}, 1200.0, 1, 1_000_000_000)
    result = PoseResult.__new__(PoseResult)
    sink.write(result)
    assert capsys.readouterr().err == ""
    stats.captured()
    stats.processed({"infer": 1000.0}, 1200.0, 1, 2_000_000_000)
    time.sleep(0.01)
    sink.write(result)
    assert capsys.readouterr().err.startswith("1.0 fps |")
