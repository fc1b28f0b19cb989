"""Analytics in the real pipeline: YOLO11n-pose on a real clip of a worker crossing a hazard tape.

intel_worker-zone-detection.gif (480x270, 71 frames): a worker walks from the right of the
yellow-black tape on the floor, which runs from about (0.22, 1.0) to (0.50, 0.48) in normalised
coordinates, across it, and stops to its left. Two zones: a band along the tape, which the
worker enters and leaves, and the restricted area left of it, where the worker stays. The
expected event frames are worked out here from the keypoints in the JSONL output, with OpenCV's
point-in-polygon test, not with the code under test.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import cv2
import numpy as np
import pytest

from conftest import ROOT, need
from edge.analytics.angles import JOINTS, angle_deg
from edge.config import validate
from edge.outputs.base import build_sink
from edge.outputs.draw import ARC, ZONE, ZONE_BUSY, DrawStyle, annotate, draw_analytics
from edge.pipeline import Pipeline
from edge.types import COCO17_NAMES, PoseResult

K = {n: i for i, n in enumerate(COCO17_NAMES)}
TAPE = [[0.18, 1.0], [0.46, 0.48], [0.58, 0.48], [0.30, 1.0]]  # a band along the hazard tape
RESTRICTED = [[0.0, 0.48], [0.46, 0.48], [0.18, 1.0], [0.0, 1.0]]  # the floor left of the band
KP_THR = 0.45  # keypoint threshold of the analytics (the JSONL rounds scores to 0.01: see _unambiguous)
PREFIX = "edgepose/dev"


@pytest.fixture(scope="module")
def worker_gif(data_dir):
    p = data_dir / "video" / "intel_worker-zone-detection.gif"
    need(p.is_file(), str(p))
    return p


class Recorder:
    """A sink that keeps every result (71 frames): the overlay is drawn from them."""

    name = "recorder"

    def __init__(self):
        self.results = []

    def open(self, meta):
        self.meta = meta

    def write(self, result):
        self.results.append(result)

    def close(self):
        pass


def clip_config(tmp_path, yolo, gif, outputs=(), realtime=False, loop=False):
    return validate({
        "source": {"type": "file", "path": str(gif), "realtime": realtime, "loop": loop},
        "model": {"path": str(yolo)},
        "pipeline": {"sink_queue": 1000},
        "analytics": [
            {"type": "zones", "name": "floor", "anchor": "ankles", "keypoint_threshold": KP_THR,
             "dwell_interval_s": 0.5, "zones": [{"name": "tape", "polygon": TAPE},
                                                {"name": "restricted", "polygon": RESTRICTED}]},
            {"type": "angles", "joints": ["left_knee", "right_knee", "left_elbow", "right_elbow"],
             "interval_s": 0.2, "keypoint_threshold": KP_THR},
            {"type": "reps", "exercise": "squat"},
        ],
        "outputs": [{"type": "jsonl", "path": str(tmp_path / "poses.jsonl")}, *outputs],
    })


def lines_of(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "poses.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def worker_run(tmp_path_factory, yolo_tflite, worker_gif):
    tmp = tmp_path_factory.mktemp("worker")
    cfg = clip_config(tmp, yolo_tflite, worker_gif)
    recorder = Recorder()
    pipeline = Pipeline(cfg, sinks=[build_sink(cfg.outputs[0]), recorder])
    pipeline.run()
    return lines_of(tmp), recorder, pipeline


def _unambiguous(score: float) -> None:
    assert abs(score - KP_THR) > 0.006, f"a keypoint score {score} is too close to the threshold {KP_THR} for " \
                                        "the JSONL's 2-decimal scores to say on which side it is; change KP_THR"


def ankles_anchor(line: dict, person: dict) -> tuple[float, float] | None:
    """The midpoint of the ankles at or above the threshold, normalised; None when neither is."""
    seen = []
    for name in ("left_ankle", "right_ankle"):
        x, y, s = person["keypoints"][K[name]]
        _unambiguous(s)
        if s >= KP_THR:
            seen.append((x / line["width"], y / line["height"]))
    return tuple(np.mean(seen, axis=0)) if seen else None


def inside(polygon, xy) -> bool:
    return cv2.pointPolygonTest(np.asarray(polygon, np.float32).reshape(-1, 1, 2), tuple(map(float, xy)), False) > 0


def expected_moves(lines: list[dict], zone: str, polygon) -> list[tuple[str, int, int]]:
    """(type, track, frame) of every enter and exit, from the keypoints: membership changes only when seen."""
    member: dict[int, bool] = {}
    moves = []
    for line in lines:
        for person in line["people"]:
            tid = person["id"]
            if tid is None:
                continue
            a = ankles_anchor(line, person)
            if a is None:
                continue
            now, was = inside(polygon, a), member.get(tid, False)
            if now != was:
                moves.append(("zone_enter" if now else "zone_exit", tid, line["frame"]))
            member[tid] = now
    return moves


def events_of(lines: list[dict], *types: str) -> list[dict]:
    return [e for line in lines for e in line.get("events", []) if e["type"] in types]


def test_enter_and_exit_fire_for_the_worker_on_the_frames_the_keypoints_show(worker_run):
    lines, _, _ = worker_run
    assert len(lines) == 71
    for line in lines:
        assert all(e["frame"] == line["frame"] for e in line.get("events", []))  # each in its own frame's line
        assert "analytics" in line["timings_ms"]
    for zone, polygon in (("tape", TAPE), ("restricted", RESTRICTED)):
        got = [(e["type"], e["track_id"], e["frame"]) for e in events_of(lines, "zone_enter", "zone_exit")
               if e["zone"] == zone]
        assert got == expected_moves(lines, zone, polygon), zone
    worker = max({p["id"] for line in lines for p in line["people"]} - {None},
                 key=lambda tid: sum(p["id"] == tid for line in lines for p in line["people"]))
    moves = {zone: [(e["type"], e["frame"]) for e in events_of(lines, "zone_enter", "zone_exit")
                    if e["track_id"] == worker and e["zone"] == zone] for zone in ("tape", "restricted")}
    # the worker crosses the tape: into the band, out of it into the restricted area, and stays there
    assert [t for t, _ in moves["tape"]][:2] == ["zone_enter", "zone_exit"], moves
    assert moves["restricted"][-1][0] == "zone_enter", moves
    assert moves["tape"][0][1] < moves["tape"][1][1] <= moves["restricted"][-1][1]
    # the enter frame is the first where the anchor is inside; the frame before (with ankles seen) was outside
    by_frame = {line["frame"]: line for line in lines}
    enter = moves["tape"][0][1]
    person = next(p for p in by_frame[enter]["people"] if p["id"] == worker)
    assert inside(TAPE, ankles_anchor(by_frame[enter], person))
    earlier = [ankles_anchor(by_frame[f], p) for f in range(enter) for p in by_frame[f]["people"] if p["id"] == worker]
    assert all(not inside(TAPE, a) for a in earlier if a is not None)


def test_exit_and_dwell_times_come_from_capture_timestamps(worker_run):
    lines, _, _ = worker_run
    entered = {}
    for e in events_of(lines, "zone_enter", "zone_exit", "dwell"):
        key = (e["track_id"], e["zone"])
        if e["type"] == "zone_enter":
            entered[key] = e["t_capture_ns"]
            continue
        assert e["dwell_s"] == pytest.approx((e["t_capture_ns"] - entered[key]) / 1e9, abs=1e-3)
        if e["type"] == "zone_exit":
            assert e["reason"] == "left"
            del entered[key]
    dwell = [e for e in events_of(lines, "dwell") if e["zone"] == "restricted"]
    gaps = np.diff([entered[(dwell[0]["track_id"], "restricted")]] + [e["t_capture_ns"] for e in dwell]) if dwell else []
    assert all(g >= 0.5e9 for g in gaps)  # never more often than dwell_interval_s of capture time


def test_angle_updates_match_the_keypoints_and_are_null_when_unseen(worker_run):
    lines, _, _ = worker_run
    by_frame = {line["frame"]: line for line in lines}
    updates = events_of(lines, "angle_update")
    assert len(updates) >= 3
    nulls = numbers = 0
    for e in updates:
        person = next(p for p in by_frame[e["frame"]]["people"] if p["id"] == e["track_id"])
        kp = np.asarray(person["keypoints"], dtype=np.float64)
        for name, value in e["angles"].items():
            idx = [K[n] for n in JOINTS[name]]
            if any(abs(kp[i, 2] - KP_THR) <= 0.006 for i in idx):
                continue  # the JSONL's rounded score cannot tell
            if any(kp[i, 2] < KP_THR for i in idx):
                assert value is None, (e["frame"], name)
                nulls += 1
            else:
                assert value == pytest.approx(angle_deg(*kp[idx, :2]), abs=0.15), (e["frame"], name)
                numbers += 1
        for name, rng in e["range"].items():
            assert rng["min"] <= rng["max"]
    assert nulls and numbers  # the clip starts with the legs cut off by the frame's bottom edge


def test_overlay_draws_zones_arcs_and_rep_counters(worker_run):
    _, recorder, pipeline = worker_run
    result = next(r for r in recorder.results if r.analytics["angles"] and r.poses)
    style = DrawStyle(badge=False)
    drawn = annotate(result, pipeline.meta, style)
    bare = annotate(PoseResult(result.frame, result.poses), pipeline.meta, style)  # no analytics: not drawn
    h, w = drawn.shape[:2]
    for zone in result.analytics["zones"]:
        (x0, y0), (x1, y1) = zone["polygon"][1], zone["polygon"][2]  # an edge's midpoint
        px, py = int(round((x0 + x1) / 2 * w)), int(round((y0 + y1) / 2 * h))
        color = np.array(ZONE_BUSY if zone["inside"] else ZONE)
        patch = drawn[max(0, py - 1):py + 2, max(0, px - 1):px + 2].reshape(-1, 3).astype(int)
        assert np.abs(patch - color).max(axis=1).min() <= 40, (zone["name"], patch.tolist())
    white = lambda img: int((np.abs(img.astype(int) - ARC).max(axis=2) <= 10).sum())  # noqa: E731
    assert white(drawn) > white(bare)  # the angle arcs
    # the rep counter: a label at the bottom-left corner of the person's box
    reps = bare.copy()
    draw_analytics(reps, {"reps": result.analytics["reps"]}, result.poses, style)
    ys, xs = np.nonzero(np.any(reps != bare, axis=2))
    x1, _, _, y2 = result.poses[0].bbox
    assert abs(xs.min() - max(0.0, x1)) <= 2 and abs(ys.max() - min(y2, h - 1)) <= 2
    assert result.analytics["reps"][0]["count"] == 0


@pytest.fixture()
def broker(tmp_path):
    from mqtt_broker import Broker, mosquitto_binary

    need(mosquitto_binary() is not None, "mosquitto (apt-get install mosquitto mosquitto-clients)")
    need(importlib.util.find_spec("paho") is not None, "paho-mqtt (pip install 'edgepose[mqtt]')")
    need(importlib.util.find_spec("jsonschema") is not None, "jsonschema (pip install 'edgepose[dev]')")
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def schema(name: str):
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads((ROOT / "docs" / "mqtt-schema" / f"{name}.json").read_text()))


def test_events_arrive_on_mqtt_events_and_validate_against_the_schema(tmp_path, broker, yolo_tflite, worker_gif):
    from mqtt_subscriber import Subscriber

    sub = Subscriber(broker, [f"{PREFIX}/#", "homeassistant/#"]).start()
    mqtt = {"type": "mqtt", "host": broker.host, "port": broker.port, "device_id": "dev", "hass": {"enabled": True}}
    Pipeline(clip_config(tmp_path, yolo_tflite, worker_gif, [mqtt])).run()
    sub.wait_for(lambda: sub.texts(f"{PREFIX}/status")[-1:] == ["offline"], 15, "status 'offline'")
    lines = lines_of(tmp_path)
    from_jsonl = [e for line in lines for e in line.get("events", [])]
    received = sub.jsons(f"{PREFIX}/events")
    assert received == from_jsonl and {e["type"] for e in received} >= {"zone_enter", "zone_exit", "angle_update"}
    events = schema("events")
    for e in received:
        events.validate(e)
    for msg in sub.jsons(f"{PREFIX}/poses"):
        schema("poses").validate(msg)
    assert any("events" in m for m in sub.jsons(f"{PREFIX}/poses"))
    # rep totals: retained, all 0 here (nobody squats), and a Home Assistant sensor that reads them
    (reps,) = sub.jsons(f"{PREFIX}/reps")
    schema("reps").validate(reps)
    assert reps["reps"] == {"squat": 0}
    config = sub.jsons("homeassistant/sensor/dev/reps_squat/config")[-1]
    schema("hass_discovery").validate(config)
    assert config["state_topic"] == f"{PREFIX}/reps" and config["state_class"] == "total_increasing"
    assert "reps['squat']" in config["value_template"] and config["unique_id"] == "edgepose_dev_reps_squat"
    assert sub.jsons(f"{PREFIX}/meta")[-1]["topics"]["events"] == f"{PREFIX}/events"
    sub.stop()
    late = Subscriber(broker, [f"{PREFIX}/reps"]).start()  # retained: a late subscriber (HA restarting) gets it
    late.wait_for(lambda: late.on(f"{PREFIX}/reps"), 10, "the retained reps message")
    assert late.on(f"{PREFIX}/reps")[0].retain and late.jsons(f"{PREFIX}/reps") == [reps]
    late.stop()


def test_the_events_schema_rejects_an_event_without_its_type_fields():
    import jsonschema

    need(importlib.util.find_spec("jsonschema") is not None, "jsonschema (pip install 'edgepose[dev]')")
    with pytest.raises(jsonschema.ValidationError, match="reason"):
        schema("events").validate({"type": "zone_exit", "analysis": "floor", "track_id": 1, "frame": 3,
                                   "t_wall_ms": 1, "t_capture_ns": 2, "zone": "tape", "dwell_s": 1.0})


def test_live_page_shows_zone_state_and_events(tmp_path, yolo_tflite, worker_gif):
    from test_web import Chromium, wait_for

    need(importlib.util.find_spec("websocket") is not None, "websocket-client (pip install 'edgepose[dev]')")
    need(shutil.which("chromium") is not None, "headless Chromium: apt-get install chromium")
    cfg = clip_config(tmp_path, yolo_tflite, worker_gif, [{"type": "web", "port": 0}], realtime=True, loop=True)
    pipeline = Pipeline(cfg).start()
    browser = Chromium(tmp_path / "profile")
    try:
        web = next(s for s in pipeline.sinks if s.name.startswith("web:"))
        browser.call("Page.navigate", url=web.url)
        text = wait_for(lambda: (t := browser.js("(document.getElementById('analytics') || {}).textContent || ''"))
                        and "restricted: #" in t and "zone_enter" in t and t, "the panel to show the worker in a zone")
        assert "squat: 0 reps" in text and "tape:" in text
        last = json.loads(browser.js("JSON.stringify(edgepose.last)"))
        assert [z["name"] for z in last["analytics"]["zones"]] == ["tape", "restricted"]
        assert all(e["type"] in ("zone_enter", "zone_exit", "dwell", "reach", "angle_update", "rep")
                   for e in last["recent_events"])
    finally:
        browser.close()
        pipeline.stop()


def test_analytics_reset_for_unrelated_stills(tmp_path, yolo_tflite, data_dir):
    """Still images are not a stream: every image starts afresh (like tracking), so each person enters again."""
    bus = data_dir / "images" / "bus.jpg"
    need(bus.is_file(), str(bus))
    for i in range(2):
        (tmp_path / f"img{i}.jpg").write_bytes(bus.read_bytes())
    cfg = validate({
        "source": {"type": "images", "path": str(tmp_path / "img*.jpg")},
        "model": {"path": str(yolo_tflite)},
        "analytics": [{"type": "zones", "anchor": "box_bottom", "zones": [{"name": "all", "polygon":
                       [[0, 0], [1, 0], [1, 1], [0, 1]]}]}],
        "outputs": [{"type": "jsonl", "path": str(tmp_path / "poses.jsonl")}],
    })
    Pipeline(cfg).run()
    lines = lines_of(tmp_path)
    assert len(lines) == 2
    per_image = [sorted(e["track_id"] for e in line.get("events", []) if e["type"] == "zone_enter") for line in lines]
    assert len(per_image[0]) == len(lines[0]["people"]) >= 3 and len(per_image[1]) == len(lines[1]["people"])
    assert not any(e["type"] == "zone_exit" for line in lines for e in line.get("events", []))


def test_rep_events_update_the_retained_totals_that_home_assistant_reads(broker):
    from mqtt_subscriber import Subscriber

    from edge.analytics import Event
    from edge.types import Frame, StreamMeta

    sub = Subscriber(broker, [f"{PREFIX}/#"]).start()
    sink = build_sink(validate({"outputs": [{"type": "mqtt", "host": broker.host, "port": broker.port,
                                             "device_id": "dev", "required": True}]}).outputs[0])
    sink.analytics = [{"type": "reps", "name": "squat", "exercise": "squat"},
                      {"type": "reps", "name": "jacks", "exercise": "jumping_jack"}, {"type": "zones", "name": "z"}]
    sink.open(StreamMeta("m.tflite", "yolo", "tflite", COCO17_NAMES, (), "test", "0"))
    image = np.zeros((4, 4, 3), np.uint8)
    for i, (name, total) in enumerate([("squat", 1), ("jacks", 1), ("squat", 2)]):
        frame = Frame(image, i, 1000 + i, 1.7e9 + i)
        rep = Event.at("rep", name, 3, frame, exercise="squat", count=total, total=total, duration_s=1.0)
        sink.write(PoseResult(frame, [], events=[rep]))
    sink.close()
    sub.wait_for(lambda: sub.texts(f"{PREFIX}/status")[-1:] == ["offline"], 15, "status 'offline'")
    totals = [m["reps"] for m in sub.jsons(f"{PREFIX}/reps")]
    assert totals == [{"squat": 0, "jacks": 0}, {"squat": 1, "jacks": 0}, {"squat": 1, "jacks": 1},
                      {"squat": 2, "jacks": 1}]
    assert [e["total"] for e in sub.jsons(f"{PREFIX}/events")] == [1, 1, 2]
    assert sub.jsons(f"{PREFIX}/reps")[-1]["frame"] == 2
    sub.stop()


def test_every_config_example_in_the_analytics_doc_is_valid():
    import re

    import yaml

    from edge.analytics import build_analytics

    text = (ROOT / "docs" / "ANALYTICS.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "analytics:" in b]
    assert len(blocks) == 3  # home gym, physiotherapy, retail shelf
    for block in blocks:
        cfg = validate(yaml.safe_load(block))
        assert build_analytics(cfg).describe()
