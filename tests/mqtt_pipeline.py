"""Shared by the MQTT tests: the tools they need, a pipeline config with an MQTT output, and what it wrote."""

from __future__ import annotations

import importlib.util
import json

from conftest import need
from mqtt_broker import mosquitto_binary, passwd_binary
from mqtt_subscriber import Subscriber

from edge.config import validate

PREFIX = "edgepose/dev"


def require_mqtt_tools() -> None:
    need(mosquitto_binary() is not None and passwd_binary() is not None,
         "mosquitto (apt-get install mosquitto mosquitto-clients)")
    need(importlib.util.find_spec("paho") is not None, "paho-mqtt (pip install 'edgepose[mqtt]')")
    need(importlib.util.find_spec("jsonschema") is not None, "jsonschema (pip install 'edgepose[dev]')")


def make_config(tmp_path, movenet, clip, mqtt: dict, max_frames: int | None = None, **source):
    out = {"type": "mqtt", "device_id": "dev", "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **mqtt}
    return validate({
        "source": {"type": "file", "path": str(clip), "realtime": False, **source},
        "model": {"path": str(movenet)},
        "pipeline": {"sink_queue": 1000, "max_frames": max_frames},
        "outputs": [{"type": "jsonl", "path": str(tmp_path / "poses.jsonl")}, out],
    })


def mqtt_sink(pipeline):
    return next(s for s in pipeline.sinks if s.name.startswith("mqtt:"))


def jsonl(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "poses.jsonl").read_text().splitlines()]


def wait_offline(sub: Subscriber, timeout: float = 15.0) -> None:
    """'offline' is published last on a clean stop: once it arrived, everything before it has."""
    sub.wait_for(lambda: sub.texts(f"{PREFIX}/status")[-1:] == ["offline"], timeout, "status 'offline'")
