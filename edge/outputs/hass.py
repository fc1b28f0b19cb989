"""Home Assistant MQTT discovery: the retained config messages that make edgepose one HA device.

Topics follow HA's ``<prefix>/<component>/<node_id>/<object_id>/config`` convention; each entity
has a ``unique_id``, the shared ``device`` block, and availability on edgepose's status topic, so
HA shows it unavailable when the Last Will fires. Fields are documented in docs/MQTT.md.
"""

from __future__ import annotations

import re
from typing import Sequence

from edge.outputs.mqtt_config import MqttHass
from edge.types import StreamMeta


def node_id(device_id: str) -> str:
    """HA allows only [a-zA-Z0-9_-] in the node and object ids of a discovery topic."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", device_id)


def discovery(cfg: MqttHass, device_id: str, topics: dict[str, str], meta: StreamMeta,
              reps: Sequence[str] = ()) -> list[tuple[str, dict]]:
    """(topic, payload) for the people-count and FPS sensors, the 'person present' binary sensor, and one
    rep-count sensor per configured exercise (``reps``: the rep analyses' names, read from the retained reps topic)."""
    node = node_id(device_id)
    uid = f"edgepose_{node}"
    device = {
        "identifiers": [uid],
        "name": cfg.name or f"edgepose {device_id}",
        "manufacturer": "edgepose",
        "model": f"{meta.model} ({meta.family}, {meta.runtime})",
        "sw_version": meta.version,
    }
    common = {
        "availability_topic": topics["status"],
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
        "origin": {"name": "edgepose", "sw_version": meta.version},
    }
    entities = [
        ("sensor", "people", {
            "name": "People", "state_topic": topics["state"], "value_template": "{{ value_json.people }}",
            "state_class": "measurement", "icon": "mdi:account-multiple",
        }),
        ("binary_sensor", "person_present", {
            "name": "Person present", "state_topic": topics["state"], "device_class": "occupancy",
            "value_template": "{{ 'ON' if value_json.present else 'OFF' }}", "payload_on": "ON", "payload_off": "OFF",
        }),
        ("sensor", "fps", {
            "name": "FPS", "state_topic": topics["stats"], "value_template": "{{ value_json.fps }}",
            "unit_of_measurement": "fps", "state_class": "measurement", "entity_category": "diagnostic",
            "icon": "mdi:speedometer",
        }),
    ]
    entities += [("sensor", f"reps_{node_id(name)}", {
        "name": f"{name.replace('_', ' ').capitalize()} reps", "state_topic": topics["reps"],
        "value_template": f"{{{{ value_json.reps['{name}'] | default(0) }}}}", "state_class": "total_increasing",
        "icon": "mdi:counter",
    }) for name in reps]
    return [
        (f"{cfg.prefix}/{component}/{node}/{object_id}/config", {**fields, "unique_id": f"{uid}_{object_id}", **common})
        for component, object_id, fields in entities
    ]
