"""The MQTT output against a real mosquitto (Debian's package) started on a free port by each test.

A real model on a real clip goes through the real Pipeline with a JSONL and an MQTT output; the
JSONL lines are the ground truth for what the subscriber must receive. Broker outages are real
SIGKILLs. Every wait is on a condition with a timeout; nothing asserts on elapsed time.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml

from conftest import ROOT
from mqtt_broker import Broker, free_port, wait_until
from mqtt_subscriber import Subscriber
from mqtt_pipeline import PREFIX, jsonl, make_config, mqtt_sink, require_mqtt_tools, wait_offline

from edge.errors import OutputError
from edge.pipeline import Pipeline

SCHEMAS = ROOT / "docs" / "mqtt-schema"


@pytest.fixture(scope="module", autouse=True)
def _tools():
    require_mqtt_tools()


@pytest.fixture()
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


@pytest.fixture()
def durable_broker(tmp_path):
    """Persists sessions, so a subscriber's queue survives the broker's SIGKILL and restart."""
    b = Broker(tmp_path / "broker", persistence=True).start()
    yield b
    b.stop()


def schema(name: str):
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / f"{name}.json").read_text()))


def test_pipeline_publishes_status_meta_and_every_frame_matching_jsonl(tmp_path, broker, movenet_tflite, walk_clip):
    sub = Subscriber(broker, [f"{PREFIX}/#"]).start()
    cfg = make_config(tmp_path, movenet_tflite, walk_clip, {"host": broker.host, "port": broker.port,
                                                            "stats_interval_s": 0.05})
    pipeline = Pipeline(cfg)
    pipeline.run()
    wait_offline(sub)
    lines = jsonl(tmp_path)
    assert len(lines) == pipeline.stats.frames_processed > 0

    status = sub.texts(f"{PREFIX}/status")
    assert status[0] == "online" and status[-1] == "offline" and "offline" not in status[:-1]
    for s in status:
        schema("status").validate(s)

    poses = sub.jsons(f"{PREFIX}/poses")
    assert [m["frame"] for m in poses] == [line["frame"] for line in lines]  # one message per frame, in order
    for msg, line in zip(poses, lines):
        schema("poses").validate(msg)
        assert {k: msg[k] for k in line} == line  # the same contents as the JSONL output
        assert msg["publish_latency_ms"] >= line["latency_ms"]
    assert any(m["people"] for m in poses), "the walk clip shows a person"

    meta = sub.jsons(f"{PREFIX}/meta")[-1]
    schema("meta").validate(meta)
    assert (meta["width"], meta["height"]) == (lines[0]["width"], lines[0]["height"])
    assert meta["model"] == movenet_tflite.name and meta["family"] == "movenet"
    assert len(meta["keypoint_names"]) == len(poses[0]["people"][0]["keypoints"])
    assert meta["topics"]["poses"] == f"{PREFIX}/poses"

    stats = sub.jsons(f"{PREFIX}/stats")
    for s in stats:
        schema("stats").validate(s)
    assert stats[-1]["frames_processed"] == len(lines)
    assert stats[-1]["mqtt"]["dropped"] == 0 and stats[-1]["mqtt"]["connected"] is True

    states = sub.jsons(f"{PREFIX}/state")
    people_by_frame = {line["frame"]: len(line["people"]) for line in lines}
    for s in states:
        schema("state").validate(s)
        assert s["people"] == people_by_frame[s["frame"]] and s["present"] == (s["people"] > 0)
    sub.stop()

    late = Subscriber(broker, [f"{PREFIX}/#"]).start()  # retained: a late subscriber learns status and meta
    late.wait_for(lambda: late.on(f"{PREFIX}/meta") and late.on(f"{PREFIX}/status"), 10, "retained messages")
    assert late.on(f"{PREFIX}/status")[0].retain and late.texts(f"{PREFIX}/status") == ["offline"]
    assert late.on(f"{PREFIX}/meta")[0].retain and late.jsons(f"{PREFIX}/meta")[0]["width"] == lines[0]["width"]
    late.stop()


def _run_with_outage(tmp_path, broker, movenet, clip, buffer: int):
    """Play 90 frames at the clip's 30 fps, SIGKILL the broker mid-run, restart it after 20 more frames.

    Returns (lines, counts of frames received, t_kill_ns, t_restart_ns, pipeline, subscriber).
    """
    sub = Subscriber(broker, [f"{PREFIX}/poses", f"{PREFIX}/status", f"{PREFIX}/stats"],
                     client_id="test-durable-subscriber", clean=False).start()
    saves = broker.saves()
    cfg = make_config(tmp_path, movenet, clip, {"host": broker.host, "port": broker.port, "qos": 1,
                                                "buffer": buffer, "stats_interval_s": 0.2},
                      max_frames=90, realtime=True, loop=True)
    pipeline = Pipeline(cfg).start()
    sink = mqtt_sink(pipeline)
    try:
        # kill right after a delivery (the broker is idle), once its session file holds the subscription
        sub.wait_for(lambda: len(sub.on(f"{PREFIX}/poses")) >= 8 and broker.saves() > saves, 20,
                     "8 poses messages and a saved broker session")
        broker.kill()
        t_kill = time.monotonic_ns()
        wait_until(lambda: not sink.connected, 10, "the output to notice the broker is gone")
        n = pipeline.stats.frames_processed
        wait_until(lambda: pipeline.stats.frames_processed >= n + 20, 20, "20 frames processed during the outage")
        t_restart = time.monotonic_ns()
        broker.start()
        assert pipeline.wait(60), "the 90 frames did not finish"
    finally:
        pipeline.stop()
    assert pipeline.error is None
    wait_offline(sub, 20)
    sub.stop()
    lines = jsonl(tmp_path)
    counts = Counter(m["frame"] for m in sub.jsons(f"{PREFIX}/poses"))
    assert sink.connects >= 2, "the output reconnected"
    return lines, counts, t_kill, t_restart, pipeline, sub


def _done_ns(line: dict) -> float:
    return line["t_capture_ns"] + line["latency_ms"] * 1e6  # when processing ended (monotonic, this process)


def test_broker_killed_qos1_buffer_larger_than_outage_delivers_every_frame(tmp_path, durable_broker,
                                                                            movenet_tflite, walk_clip):
    lines, counts, t_kill, t_restart, pipeline, _ = _run_with_outage(tmp_path, durable_broker, movenet_tflite,
                                                                     walk_clip, buffer=1000)
    margin = 1e5  # latency_ms is rounded to 0.01 ms
    after_kill = [line["frame"] for line in lines if _done_ns(line) > t_kill + margin]
    during = [line["frame"] for line in lines if t_kill + margin < _done_ns(line) < t_restart]
    assert len(during) >= 20, "frames were published while the broker was down"
    assert [f for f in after_kill if counts[f] == 0] == [], "frames published during or after the outage were lost"
    # QoS 1 repeats only what was in flight when the broker died, never what was published after
    repeated = {f for f, c in counts.items() if c > 1}
    done = {line["frame"]: _done_ns(line) for line in lines}
    assert all(done[f] < t_kill for f in repeated), f"frames repeated after the outage began: {sorted(repeated)}"
    assert pipeline.stats.snapshot()["drops"].get("mqtt", 0) == 0


def test_broker_killed_buffer_smaller_than_outage_counts_every_lost_message(tmp_path, durable_broker,
                                                                             movenet_tflite, walk_clip):
    lines, counts, _, _, pipeline, sub = _run_with_outage(tmp_path, durable_broker, movenet_tflite,
                                                          walk_clip, buffer=4)
    missing = [line["frame"] for line in lines if counts[line["frame"]] == 0]
    dropped = pipeline.stats.snapshot()["drops"].get("mqtt", 0)
    assert dropped > 0, "the outage outlasted the 4-message buffer"
    assert dropped == len(missing)
    assert sub.jsons(f"{PREFIX}/stats")[-1]["mqtt"]["dropped"] == dropped
    assert set(counts) <= {line["frame"] for line in lines}


def test_sigkill_of_edgepose_makes_the_broker_publish_the_last_will(tmp_path, broker, movenet_tflite, walk_clip):
    sub = Subscriber(broker, [f"{PREFIX}/status", f"{PREFIX}/poses"]).start()
    cfg = {"source": {"type": "file", "path": str(walk_clip), "realtime": True, "loop": True},
           "model": {"path": str(movenet_tflite)},
           "outputs": [{"type": "mqtt", "host": broker.host, "port": broker.port, "device_id": "dev"}]}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", str(tmp_path / "cfg.yaml")], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        sub.wait_for(lambda: sub.texts(f"{PREFIX}/status") == ["online"] and sub.on(f"{PREFIX}/poses")
                     or proc.poll() is not None, 60, "edgepose to come online")
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_offline(sub)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    sub.stop()
    late = Subscriber(broker, [f"{PREFIX}/status"]).start()
    late.wait_for(lambda: late.texts(f"{PREFIX}/status") == ["offline"], 10, "the retained Last Will")
    late.stop()


def test_home_assistant_discovery_and_reannounce(tmp_path, broker, movenet_tflite, walk_clip):
    import jinja2

    prefix = "edgepose/hall.pi"
    sub = Subscriber(broker, ["homeassistant/#", f"{prefix}/#"]).start()
    cfg = make_config(tmp_path, movenet_tflite, walk_clip, {
        "host": broker.host, "port": broker.port, "device_id": "hall.pi", "stats_interval_s": 0.05,
        "hass": {"enabled": True, "name": "Hall"}}, realtime=True, loop=True)
    pipeline = Pipeline(cfg).start()
    try:
        def configs():
            return [m for m in sub.messages if m.topic.startswith("homeassistant/") and m.topic.endswith("/config")]

        sub.wait_for(lambda: len(configs()) == 3 and sub.on(f"{prefix}/state") and sub.on(f"{prefix}/stats"),
                     30, "3 discovery configs, a state and a stats message")
        expected = {"homeassistant/sensor/hall_pi/people/config", "homeassistant/sensor/hall_pi/fps/config",
                    "homeassistant/binary_sensor/hall_pi/person_present/config"}
        assert {m.topic for m in configs()} == expected
        payloads = {m.topic.split("/")[3]: m.json() for m in configs()}
        for p in payloads.values():
            schema("hass_discovery").validate(p)
            assert p["availability_topic"] == f"{prefix}/status"
            assert p["device"] == payloads["people"]["device"] and p["device"]["name"] == "Hall"
        assert len({p["unique_id"] for p in payloads.values()}) == 3
        assert payloads["person_present"]["device_class"] == "occupancy"
        assert payloads["fps"]["unit_of_measurement"] == "fps"

        # Home Assistant renders value_template with value_json = the state topic's JSON
        def render(entity: str) -> str:
            p = payloads[entity]
            value = sub.jsons(p["state_topic"])[-1]
            return jinja2.Environment().from_string(p["value_template"]).render(value_json=value).strip()

        state = sub.jsons(f"{prefix}/state")[-1]
        assert render("people") == str(state["people"])
        assert render("person_present") == ("ON" if state["people"] else "OFF")
        assert float(render("fps")) == sub.jsons(f"{prefix}/stats")[-1]["fps"]

        before = len(configs())
        sub.client.publish("homeassistant/status", "online", qos=1)
        sub.wait_for(lambda: len(configs()) == before + 3, 10, "discovery again after Home Assistant's 'online'")
        late = Subscriber(broker, ["homeassistant/#"]).start()
        late.wait_for(lambda: len(late.messages) == 3, 10, "3 retained discovery configs")
        assert all(m.retain for m in late.messages)
        late.stop()
    finally:
        pipeline.stop()
    sub.stop()


def test_broker_unreachable_at_start_runs_buffers_and_counts_drops(tmp_path, caplog, movenet_tflite, walk_clip):
    port = free_port()  # nothing listens here
    cfg = make_config(tmp_path, movenet_tflite, walk_clip, {"host": "127.0.0.1", "port": port, "buffer": 10,
                                                            "drain_timeout_s": 0.1})
    caplog.set_level(logging.INFO)
    pipeline = Pipeline(cfg)
    pipeline.run()
    sink = mqtt_sink(pipeline)
    assert sink.connects == 0 and "connection refused" in sink.last_error
    assert "connection refused" in caplog.text
    assert pipeline.stats.snapshot()["drops"]["mqtt"] == pipeline.stats.frames_processed > 10

    cfg = make_config(tmp_path, movenet_tflite, walk_clip, {"host": "127.0.0.1", "port": port, "required": True,
                                                            "connect_timeout_s": 0.3})
    with pytest.raises(OutputError, match="connection refused.*required") as err:
        Pipeline(cfg).start()
    assert err.value.exit_code == 1  # a broker that is away may come back: systemd restarts


def test_events_mode_and_rate_limit(tmp_path, broker, movenet_tflite, walk_clip):
    sub = Subscriber(broker, [f"{PREFIX}/poses", f"{PREFIX}/status"]).start()
    pipeline = Pipeline(make_config(tmp_path, movenet_tflite, walk_clip, {
        "host": broker.host, "port": broker.port, "mode": "events", "heartbeat_s": 3600}))
    pipeline.run()
    wait_offline(sub)
    lines = jsonl(tmp_path)
    changes = [line["frame"] for i, line in enumerate(lines)
               if i == 0 or len(line["people"]) != len(lines[i - 1]["people"])]
    assert [m["frame"] for m in sub.jsons(f"{PREFIX}/poses")] == changes
    sub.stop()

    sub = Subscriber(broker, [f"{PREFIX}/poses", f"{PREFIX}/status"]).start()
    pipeline = Pipeline(make_config(tmp_path, movenet_tflite, walk_clip, {
        "host": broker.host, "port": broker.port, "max_rate_hz": 10}))
    pipeline.run()
    wait_offline(sub)
    sent = [m["t_capture_ns"] + m["publish_latency_ms"] * 1e6 for m in sub.jsons(f"{PREFIX}/poses")]
    assert 0 < len(sent) < len(jsonl(tmp_path))
    assert all(b - a >= 1e8 - 2e4 for a, b in zip(sent, sent[1:])), "at most one message per 100 ms"
    sub.stop()
