"""A test subscriber: records every message it receives from a real broker, with waits on conditions."""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass

from mqtt_broker import Broker, wait_until


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self):
        return json.loads(self.payload)


class Subscriber:
    """A paho client subscribed to ``topics``; ``clean=False`` keeps its session (and queue) across reconnects."""

    def __init__(self, broker: Broker, topics=("#",), *, client_id: str | None = None, clean: bool = True,
                 username: str | None = None, password: str | None = None, ca_file=None, cert=None, key=None):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.broker = broker
        self.topics = list(topics)
        self.messages: list[Received] = []
        self.connects = 0
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "", clean_session=clean)
        self.client.reconnect_delay_set(0.05, 0.2)
        if username:
            self.client.username_pw_set(username, password)
        if ca_file:
            ctx = ssl.create_default_context(cafile=str(ca_file))
            if cert:
                ctx.load_cert_chain(str(cert), str(key))
            self.client.tls_set_context(ctx)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason, properties):
        if reason.is_failure:
            return
        self.connects += 1
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def start(self, timeout: float = 10.0) -> "Subscriber":
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=10)
        self.client.loop_start()
        wait_until(self._subscribed.is_set, timeout, f"the test subscriber to subscribe on port {self.broker.port}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def texts(self, topic: str) -> list[str]:
        return [m.payload.decode() for m in self.on(topic)]

    def jsons(self, topic: str) -> list:
        return [m.json() for m in self.on(topic)]

    def wait_for(self, cond, timeout: float, what: str):
        return wait_until(cond, timeout, what)
