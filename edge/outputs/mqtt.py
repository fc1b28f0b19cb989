"""MQTT output: what a building's broker needs from a pose service it can rely on.

Topics under ``edgepose/<device_id>`` (configurable): ``status`` (online/offline, retained, and the
Last Will), ``meta`` (retained), ``poses`` (per frame, throttled, or on events), ``state`` (people
count, retained, on change), ``stats`` (every N s), ``events`` (each analytics event) and ``reps`` (rep
totals, retained). Payloads: docs/MQTT.md, docs/ANALYTICS.md and docs/mqtt-schema/.

paho runs the network on its own thread. ``write()`` (the sink thread) never waits for the network:
messages go to a bounded buffer that drops the oldest (counted as ``mqtt`` in stats) and that is
drained while connected, at most ``max_inflight`` unacknowledged at a time, so a dead TCP link
cannot grow an unbounded queue inside paho. "Connected" means a CONNACK whose reason code is
success, never just an open socket (Frigate once reported a refused connection as connected).
Reconnects are paced by what a failed attempt cost the broker (``_pace``; docs/MQTT.md, "Reconnect").
"""

from __future__ import annotations

import logging
import re
import socket
import sys
import threading
import time
from collections import deque
from typing import NamedTuple

from edge.errors import ConfigError, OutputError, missing_dependency
from edge.outputs import hass
from edge.outputs.base import register
from edge.outputs.jsonl import dumps as strict_dumps
from edge.outputs.mqtt_config import MqttOutput
from edge.outputs.mqtt_tls import KEY, Explain, tls_context
from edge.sysinfo import read_soc_temp
from edge.types import PoseResult, StreamMeta

log = logging.getLogger(__name__)

PROMPT_RETRY_S = 1.0  # while no TCP connect succeeds an attempt is one SYN: no broker work, so it costs nothing


def _json(obj) -> bytes:
    return strict_dumps(obj).encode()  # never a bare NaN or Infinity: subscribers parse strict JSON


def topic_safe(text: str) -> str:
    """One topic level from a free-form name (a hostname): no '/', '+', '#', spaces or control characters."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text.strip()) or "edgepose"


def poses_payload(result: PoseResult, now_ns: int) -> dict:
    """The JSONL line for this frame (same fields, same values) plus capture -> publish latency."""
    data = result.to_dict()
    data["publish_latency_ms"] = round((now_ns - result.frame.t_capture_ns) / 1e6, 2)
    return data


def _import_paho():
    try:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion
    except ImportError:
        raise missing_dependency("paho-mqtt", "mqtt", "the mqtt output") from None
    return paho, CallbackAPIVersion


class _Msg(NamedTuple):
    topic: str
    payload: bytes
    retain: bool = False


class MqttSink:
    def __init__(self, cfg: MqttOutput):
        self.cfg = cfg
        self.port = cfg.port or (8883 if cfg.tls else 1883)
        self.where = f"the MQTT broker {cfg.host}:{self.port}"
        self.device_id = topic_safe(cfg.device_id or socket.gethostname())
        self.prefix = (cfg.topic_prefix or f"edgepose/{self.device_id}").rstrip("/")
        self.topics = {k: f"{self.prefix}/{k}" for k in ("status", "meta", "poses", "state", "stats", "events", "reps")}
        self.analytics: list[dict] = []  # what the pipeline's analytics are (set before open): rep sensors for HA
        self._rep_totals: dict[str, int] = {}  # rep analysis -> total so far, on the retained reps topic
        self.name = f"mqtt:{cfg.host}:{self.port}"
        self.connected = False  # True only between a successful CONNACK and the next disconnect
        self.connects = 0  # successful CONNACKs so far
        self.published = self.dropped = 0  # poses and events messages acknowledged by the broker (QoS 0: written) / dropped
        self.last_error: str | None = None
        self._failure: str | None = None  # 'refused' | 'tls' | 'closed' | 'unreachable' (mqtt_tls.Explain)
        self._explain = Explain(cfg, self.port, self.where)
        self._prompt: bool | None = None  # reconnect pacing: prompt (no TCP connection) or the configured back-off
        self._paho_error: str | None = None  # paho's last socket error while not connected (a TLS alert)
        self._outcome = threading.Event()  # the first CONNACK, or a refusal or TLS failure
        self._client, self._meta, self._stats, self._closing = None, None, None, False
        self._cond = threading.Condition()  # guards the buffer, the in-flight window and counters
        self._pending: deque[_Msg] = deque()
        self._inflight: dict[int, bool] = {}  # mid -> counted in the window
        self._early: set[int] = set()  # mids acknowledged before publish() returned them to us
        self._window, self._pumping, self._drop_logged = 0, False, False
        self._latest_lock = threading.Lock()  # retained last values, re-sent on every connect
        self._latest: dict[str, _Msg] = {}
        self._size, self._t_start_ms = (0, 0), 0
        self._people_state: tuple[int, bool] | None = None  # last (count, idle) on the state topic
        self._people_sent: int | None = None  # last count in a poses message (events mode)
        self._last_poses_ns: int | None = None  # monotonic
        self._last_stats_ns: int | None = None

    # -- Sink protocol (sink thread) -------------------------------------------------------
    def open(self, meta: StreamMeta) -> None:
        paho, api = _import_paho()
        cfg = self.cfg
        password = cfg.read_password()
        ctx = tls_context(cfg.tls) if cfg.tls else None
        self._meta, self._stats = meta, meta.stats
        self._t_start_ms = int(time.time() * 1000)
        client = paho.Client(api.VERSION2, client_id=cfg.client_id or f"edgepose-{self.device_id}",
                             clean_session=True, protocol=paho.MQTTv311)
        client.will_set(self.topics["status"], "offline", qos=cfg.qos, retain=True)
        if cfg.username:
            client.username_pw_set(cfg.username, password)
        if ctx is not None:
            client.tls_set_context(ctx)
        self._pace(client, prompt=True)
        client.max_inflight_messages_set(0)  # our own window (max_inflight) bounds what paho holds
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_connect_fail, client.on_publish = self._on_connect_fail, self._on_publish
        client.on_message, client.on_log = self._on_message, self._on_log
        self._ok, self._no_conn = paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN
        self._latest["status"] = _Msg(self.topics["status"], b"online", True)
        self._latest["meta"] = _Msg(self.topics["meta"], _json(self._meta_payload()), True)
        self._rep_totals = {a["name"]: 0 for a in self.analytics if a.get("type") == "reps"}
        if self._rep_totals:
            self._latest["reps"] = _Msg(self.topics["reps"], _json(self._reps_payload(None, self._t_start_ms)), True)
        if cfg.hass.enabled:
            for topic, payload in hass.discovery(cfg.hass, self.device_id, self.topics, meta, list(self._rep_totals)):
                self._latest[f"hass:{topic}"] = _Msg(topic, _json(payload), True)
        self._client = client
        log.info("mqtt: connecting to %s:%d as %s; topics under %s/", cfg.host, self.port,
                 cfg.username or "anonymous", self.prefix)
        client.connect_async(cfg.host, self.port, keepalive=cfg.keepalive_s)
        client.loop_start()
        if cfg.required:
            self._wait_required()

    def write(self, result: PoseResult) -> None:
        now = time.monotonic_ns()
        frame = result.frame
        if (frame.width, frame.height) != self._size:
            self._size = (frame.width, frame.height)
            self._set_latest("meta", _json(self._meta_payload()))
        people = len(result.poses)
        if (people, result.idle) != self._people_state:
            self._people_state = (people, result.idle)
            self._set_latest("state", _json({"people": people, "present": people > 0, "idle": result.idle,
                                             "frame": frame.index, "t_wall_ms": int(frame.t_wall * 1000)}))
        if self._poses_due(people, now):
            self._enqueue(_Msg(self.topics["poses"], _json(poses_payload(result, now))))
        self._publish_events(result)
        if self._last_stats_ns is None or now - self._last_stats_ns >= self.cfg.stats_interval_s * 1e9:
            self._last_stats_ns = now
            self._publish_stats()

    def close(self) -> None:
        """Publish final stats and ``offline``, wait up to drain_timeout_s for acknowledgements, disconnect."""
        if self._client is None:
            return
        self._closing = True
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        self._pump()
        self._wait_drained(lambda: not self._pending, deadline)  # buffered messages first, so 'offline' is last
        self._publish_stats()
        self._set_latest("status", b"offline")
        self._wait_drained(lambda: not (self._pending or self._inflight), deadline)
        self._stop_client()
        with self._cond:
            lost = len(self._pending) + sum(1 for counted in self._inflight.values() if counted)
            self._pending.clear()
            self._inflight.clear()
        if lost:
            self._count_drops(lost)
            log.warning("mqtt: %d message(s) were not delivered before stopping; counted as dropped", lost)
        log.info("mqtt: stopped; %d message(s) published, %d dropped", self.published, self.dropped)

    # -- helpers ---------------------------------------------------------------------------
    def _wait_drained(self, done, deadline: float) -> None:
        with self._cond:  # while connected: a broker that is away now is not waited for
            while self.connected and not done() and time.monotonic() < deadline:
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))

    def _wait_required(self) -> None:
        self._outcome.wait(self.cfg.connect_timeout_s)
        if self.connects:
            return
        self._stop_client()
        if self._failure in ("refused", "tls"):
            raise ConfigError(f"{self.last_error} ({KEY}.required is true, so edgepose does not start)")
        raise OutputError(f"{self.last_error or f'{self.where} did not answer'} within {self.cfg.connect_timeout_s:g} s "
                          f"({KEY}.required is true; set it to false to run and buffer while the broker is away)")

    def _stop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self.connected = False

    def _meta_payload(self) -> dict:
        data = self._meta.to_dict()
        data.update(device_id=self.device_id, width=self._size[0] or None, height=self._size[1] or None,
                    topics=self.topics, mode=self.cfg.mode, qos=self.cfg.qos, started_ms=self._t_start_ms)
        return data

    def _poses_due(self, people: int, now: int) -> bool:
        cfg, last = self.cfg, self._last_poses_ns
        if cfg.mode == "events":
            due = last is None or people != self._people_sent or now - last >= cfg.heartbeat_s * 1e9
        else:
            due = last is None or not cfg.max_rate_hz or now - last >= 1e9 / cfg.max_rate_hz
        if due:
            self._last_poses_ns, self._people_sent = now, people
        return due

    def _publish_stats(self) -> None:
        """Stats are snapshots: sent only while connected, never buffered (the next one supersedes them)."""
        if not self.connected or self._stats is None:
            return
        snap = self._stats.snapshot()
        with self._cond:
            snap["mqtt"] = {"connected": self.connected, "connects": self.connects, "published": self.published,
                            "dropped": self.dropped, "buffered": len(self._pending), "inflight": self._window}
        snap.update(t_wall_ms=int(time.time() * 1000), cpu_temp_c=read_soc_temp().value)
        self._send(_Msg(self.topics["stats"], _json(snap)), counted=False)

    def _publish_events(self, result: PoseResult) -> None:
        """Every analytics event on ``events`` (through the offline buffer); rep totals on the retained ``reps``."""
        reps_changed = False
        for event in result.events:
            self._enqueue(_Msg(self.topics["events"], _json(event.to_dict())))
            if event.type == "rep" and event.analysis in self._rep_totals:
                self._rep_totals[event.analysis] = event.data["total"]
                reps_changed = True
        if reps_changed:
            frame = result.frame
            self._set_latest("reps", _json(self._reps_payload(frame.index, int(frame.t_wall * 1000))))

    def _reps_payload(self, frame: int | None, t_wall_ms: int) -> dict:
        return {"reps": dict(self._rep_totals), "frame": frame, "t_wall_ms": t_wall_ms}

    def _set_latest(self, key: str, payload: bytes) -> None:
        msg = _Msg(self.topics[key], payload, True)
        with self._latest_lock:
            self._latest[key] = msg
            if self.connected:
                self._send(msg, counted=False)

    def _count_drops(self, n: int) -> None:
        self.dropped += n
        if self._stats is not None:
            self._stats.drop("mqtt", n)

    def _enqueue(self, msg: _Msg) -> None:
        with self._cond:
            self._pending.append(msg)
        self._pump()
        with self._cond:
            excess = len(self._pending) - self.cfg.buffer
            for _ in range(max(0, excess)):
                self._pending.popleft()
            if excess > 0:
                self._count_drops(excess)
                if not self._drop_logged:
                    self._drop_logged = True
                    log.warning("mqtt: buffer full (%d messages) while %s; dropping the oldest (counted as 'mqtt' "
                                "in stats)", self.cfg.buffer, "disconnected" if not self.connected else "the broker lags")

    def _pump(self) -> None:
        """Hand buffered messages to paho while connected and the window has room; one pumping thread at a time."""
        with self._cond:
            if self._pumping:
                return
            self._pumping = True
        while True:
            with self._cond:
                if not (self.connected and self._pending and self._window < self.cfg.max_inflight):
                    self._pumping = False
                    return
                msg = self._pending.popleft()
                self._window += 1
            if not self._send(msg, counted=True):
                with self._cond:
                    self._window -= 1
                    self._pending.appendleft(msg)
                    self._pumping = False
                return

    def _send(self, msg: _Msg, counted: bool) -> bool:
        """publish() without holding our locks; False when paho did not take the message."""
        client = self._client
        if client is None:
            return False
        info = client.publish(msg.topic, msg.payload, qos=self.cfg.qos, retain=msg.retain)
        # QoS 1/2 messages stay with paho while it reconnects (NO_CONN); QoS 0 ones are gone
        if info.rc != self._ok and (self.cfg.qos == 0 or info.rc != self._no_conn):
            return False
        with self._cond:
            if info.mid in self._early:
                self._early.discard(info.mid)
                self._settle(counted)
            else:
                self._inflight[info.mid] = counted
        return True

    def _settle(self, counted: bool) -> None:  # caller holds self._cond
        if counted:
            self._window -= 1
            self.published += 1
        self._cond.notify_all()

    def _pace(self, client, prompt: bool) -> None:
        """Retry promptly while no TCP connection can be made (a broker restarting); back off as configured once
        it answered and turned us away (then each attempt costs it a handshake and a log line)."""
        if prompt is self._prompt:
            return
        self._prompt = prompt
        cap = PROMPT_RETRY_S if prompt else float("inf")
        client.reconnect_delay_set(min(self.cfg.reconnect_min_s, cap), min(self.cfg.reconnect_max_s, cap))

    def _fail(self, client, kind: str, message: str) -> None:
        self._pace(client, prompt=kind == "unreachable")
        first = message != self.last_error
        self.last_error, self._failure = message, kind
        if first:
            if kind in ("unreachable", "closed"):
                log.warning("mqtt: %s; buffering up to %d messages meanwhile (then the oldest are dropped and counted)",
                            message, self.cfg.buffer)
            else:
                log.error("mqtt: %s", message)
        if kind in ("refused", "tls"):
            self._outcome.set()

    # -- paho callbacks (paho's network thread) --------------------------------------------
    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._fail(client, *self._explain.refused(reason))
            return
        client.on_log = None  # it only listens for the TLS alert that ends an attempt
        self._pace(client, prompt=True)  # if this connection is lost, the broker is probably restarting
        with self._latest_lock:  # status and meta go out before any buffered message
            for msg in list(self._latest.values()):
                self._send(msg, counted=False)
            self.connected = True
        if self.cfg.hass.enabled:
            client.subscribe(f"{self.cfg.hass.prefix}/status", qos=1)
        self.connects += 1
        self.last_error = self._failure = None
        self._drop_logged = False
        log.info("mqtt: connected to %s:%d%s", self.cfg.host, self.port,
                 f" (reconnect {self.connects - 1}; {len(self._pending)} buffered)" if self.connects > 1 else "")
        self._outcome.set()
        self._pump()

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        was, self.connected = self.connected, False
        client.on_log = self._on_log
        if self._closing:
            return
        if was:
            log.warning("mqtt: lost the connection to %s:%d (%s); reconnecting, buffering up to %d messages",
                        self.cfg.host, self.port, reason, self.cfg.buffer)
        elif self._failure != "refused":  # closed before any CONNACK: a plain client on a TLS port, a rejected cert
            error, self._paho_error = self._paho_error, None
            self._fail(client, *self._explain.closed_early(error))

    def _on_connect_fail(self, client, userdata) -> None:
        exc = sys.exc_info()[1]  # paho 2 calls this inside its `except OSError:` around the connect
        self._fail(client, *self._explain.connect_failed(exc))

    def _on_log(self, client, userdata, level, buf) -> None:
        if buf.startswith("failed to receive on socket"):  # e.g. the broker's TLS alert about our certificate
            self._paho_error = buf

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        with self._cond:
            counted = self._inflight.pop(mid, None)
            if counted is None:
                self._early.add(mid)
            else:
                self._settle(counted)
        self._pump()

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == f"{self.cfg.hass.prefix}/status" and bytes(msg.payload).strip().lower() == b"online":
            log.info("mqtt: Home Assistant is online; announcing the device again")
            with self._latest_lock:
                for key, latest in list(self._latest.items()):
                    if key.startswith("hass:") or key in ("state", "reps"):
                        self._send(latest, counted=False)


@register("mqtt")
def make_mqtt(cfg: MqttOutput) -> MqttSink:
    return MqttSink(cfg)
