"""The MQTT output when things go wrong, against a real mosquitto on a free port.

A broker that is SIGKILLed and restarted (with and without persistence): how soon edgepose is back,
and what a subscriber sees meanwhile. TLS set-ups that fail in each way a real one does (an unknown
CA, a self-signed or expired certificate, a certificate for another name, a client certificate the
broker wants or rejects): each message must name the fix that applies, and not one that does not.
The shipped reconnect back-off (1 s doubling to 30 s) is used, not the tests' fast one.
"""

from __future__ import annotations

import logging
import re
import statistics
import time

import pytest

from mqtt_broker import DAY, Broker, make_tls, wait_until
from mqtt_pipeline import PREFIX, make_config, mqtt_sink, require_mqtt_tools
from mqtt_subscriber import Received, Subscriber

from edge.config import validate
from edge.errors import ConfigError
from edge.outputs.mqtt import MqttSink
from edge.pipeline import Pipeline
from edge.types import StreamMeta

SHIPPED_BACKOFF = {"reconnect_min_s": 1.0, "reconnect_max_s": 30.0}  # edge/outputs/mqtt_config.py defaults
BACK_WITHIN_S = 2.0
OUTAGE_S = 4.0  # long enough for a doubling back-off (1, 2, 4 s) to overshoot the broker's return; plus
PHASES = (0.0, 0.33, 0.67)  # so that the broker's return falls at different points of a 1 s retry period


@pytest.fixture(scope="module", autouse=True)
def _tools():
    require_mqtt_tools()


class TimedSubscriber(Subscriber):
    """A Subscriber that also notes when (time.monotonic) each message arrived, and its DUP flag."""

    def __init__(self, *args, **kwargs):
        self.arrived: list[tuple[float, bool]] = []
        super().__init__(*args, **kwargs)

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.arrived.append((time.monotonic(), bool(msg.dup)))

    def live(self, topic: str, after: float) -> list[float]:
        """When messages on ``topic`` arrived after ``after`` as live publishes: not a retained copy, and not
        a redelivery (DUP) of one the broker had in flight to us when it died (its persistence restores those)."""
        with self._lock:
            return [t for (t, dup), m in zip(self.arrived, self.messages)
                    if m.topic == topic and t > after and not m.retain and not dup]


def _restart_after_outage(broker: Broker, sink, outage: float = OUTAGE_S) -> float:
    """SIGKILL the broker, keep it down ``outage`` s after edgepose noticed, start it again on the same port.

    Returns when it accepts connections again (Broker.start polls every 20 ms, so this is at most 20 ms late).
    """
    broker.kill()
    wait_until(lambda: not sink.connected, 10, "edgepose to notice that the broker is gone")
    time.sleep(outage)
    broker.start()
    return time.monotonic()


@pytest.mark.slow
def test_broker_sigkill_and_restart_with_persistence_edgepose_is_back_within_2_s(tmp_path, movenet_tflite,
                                                                                  walk_clip):
    """The realistic broker: persistence on, so its retained `online` survives the crash. edgepose must replace
    it with a live `online` within 2 s of the broker's return, cycle after cycle, and lose nothing meanwhile."""
    broker = Broker(tmp_path / "broker", persistence=True).start()
    status = f"{PREFIX}/status"
    sub = TimedSubscriber(broker, [status], client_id="test-status-watcher", clean=False).start()
    saves = broker.saves()
    cfg = make_config(tmp_path, movenet_tflite, walk_clip, {"host": broker.host, "port": broker.port,
                                                            "buffer": 10000, **SHIPPED_BACKOFF},
                      realtime=True, loop=True)
    pipeline = Pipeline(cfg).start()
    sink = mqtt_sink(pipeline)
    delays, connack_delays = [], []
    try:
        sub.wait_for(lambda: sub.texts(status) == ["online"] and broker.saves() > saves, 30,
                     "edgepose online, and the watcher's session saved")
        for cycle, phase in enumerate(PHASES):
            connects = sink.connects
            t_up = _restart_after_outage(broker, sink, OUTAGE_S + phase)
            wait_until(lambda: sink.connects > connects, 15, f"edgepose to reconnect (cycle {cycle})", poll=0.005)
            connack_delays.append(time.monotonic() - t_up)
            delays.append(sub.wait_for(lambda: sub.live(status, t_up), 15, "edgepose's live 'online'")[0] - t_up)
        dropped = pipeline.stats.snapshot()["drops"].get("mqtt", 0)
        # the retained `online` from before a crash is all a subscriber gets if edgepose is not there to
        # replace it: kill the broker, stop edgepose while it is down (no `offline` can reach anyone), restart
        broker.kill()
        wait_until(lambda: not sink.connected, 10, "edgepose to notice that the broker is gone")
    finally:
        pipeline.stop()
    sub.stop()
    try:
        broker.start()
        late = Subscriber(broker, [status]).start()
        late.wait_for(lambda: late.on(status), 10, "the retained status")
        assert late.texts(status) == ["online"] and late.on(status)[0].retain
        late.stop()
    finally:
        broker.stop()
    print(f"\nbroker back -> edgepose CONNACK: {[f'{d:.3f}' for d in connack_delays]} s; "
          f"-> live 'online' at a subscriber: {[f'{d:.3f}' for d in delays]} s "
          f"(median {statistics.median(delays):.3f} s)")
    assert max(delays) < BACK_WITHIN_S, f"edgepose came back {delays} s after the broker (want < {BACK_WITHIN_S} s)"
    assert pipeline.error is None and sink.connects == 1 + len(PHASES)
    assert dropped == 0, "messages published during the outages were dropped"


def test_broker_restart_without_persistence_edgepose_restores_status_meta_state_and_discovery(
        tmp_path, movenet_tflite, walk_clip):
    """A broker without persistence comes back empty: edgepose republishes its retained topics (status, meta,
    state, Home Assistant discovery) within 2 s, so a subscriber that arrives later finds them all again."""
    broker = Broker(tmp_path / "broker").start()
    cfg = make_config(tmp_path, movenet_tflite, walk_clip, {"host": broker.host, "port": broker.port,
                                                            "hass": {"enabled": True}, **SHIPPED_BACKOFF},
                      realtime=True, loop=True)
    retained = {f"{PREFIX}/status", f"{PREFIX}/meta", f"{PREFIX}/state", "homeassistant/sensor/dev/people/config",
                "homeassistant/sensor/dev/fps/config", "homeassistant/binary_sensor/dev/person_present/config"}
    pipeline = Pipeline(cfg).start()
    sink = mqtt_sink(pipeline)
    try:
        first = Subscriber(broker, ["#"]).start()
        first.wait_for(lambda: retained <= {m.topic for m in first.messages}, 30, "the retained topics")
        first.stop()
        t_up = _restart_after_outage(broker, sink)
        sub = TimedSubscriber(broker, ["#"]).start()
        sub.wait_for(lambda: retained <= {m.topic for m in sub.messages}, 15, "the retained topics again")
        first_seen: dict[str, float] = {}
        for (t, _), m in zip(list(sub.arrived), list(sub.messages)):
            first_seen.setdefault(m.topic, t)
        back = max(first_seen[topic] for topic in retained)
        assert sub.texts(f"{PREFIX}/status")[0] == "online"
        assert back - t_up < BACK_WITHIN_S, f"the retained topics were back {back - t_up:.2f} s after the broker"
        sub.stop()
        late = Subscriber(broker, ["#"]).start()
        late.wait_for(lambda: retained <= {m.topic for m in late.messages if m.retain}, 10, "retained copies")
        late.stop()
    finally:
        pipeline.stop()
        broker.stop()


# -- TLS: each failure names its own fix ---------------------------------------------------------

def _sink(host: str, port: int, tls: dict) -> MqttSink:
    out = validate({"outputs": [{"type": "mqtt", "host": host, "port": port, "device_id": "dev", "tls": tls,
                                 "required": True, "connect_timeout_s": 10, **SHIPPED_BACKOFF}]}).outputs[0]
    return MqttSink(out)


META = StreamMeta(model="m.tflite", family="movenet", runtime="tflite", keypoint_names=("nose",), edges=(),
                  source="test", version="0")

NOT_CA = ["subjectAltName", "insecure"]  # no name fix for a CA problem
NOT_NAME = ["ca_file", "expired"]  # no CA fix for a name problem
NOT_SERVER = ["ca_file", "insecure", "subjectAltName"]  # no broker-certificate fix for a date or client problem

# id, the broker's make_tls options, does it require a client certificate, the client's tls: section (ca: the
# broker's CA; other-ca: a CA that did not sign it; +client / +other-client: a client certificate from either),
# the host edgepose connects to, patterns the message must match, texts it must not contain
CASES = [
    ("unknown-ca", {}, False, "other-ca", "127.0.0.1",
     [r"not signed by a CA this device trusts", r"tls\.ca_file \(.*other.*ca\.pem\) is not the CA that signed it",
      r"set tls\.ca_file to the CA certificate"], NOT_CA + ["expired"]),
    ("system-cas-only", {}, False, "", "127.0.0.1",
     [r"tls\.ca_file is not set, so only the system's CAs are trusted"], NOT_CA),
    ("self-signed", {"self_signed": True}, False, "ca", "127.0.0.1",
     [r"is self-signed", r"tls\.ca_file \(.*\) does not hold it", r"set tls\.ca_file to the broker's certificate"],
     NOT_CA),
    ("ip-not-in-cert", {"server_names": ("broker.test", "mqtt.test")}, False, "ca", "127.0.0.1",
     [r"signed by a trusted CA, but not for the address", r"IP address mismatch.*127\.0\.0\.1",
      r"it names DNS:broker\.test, DNS:mqtt\.test", r"host to one it names \(e\.g\. broker\.test\)",
      r"IP:127\.0\.0\.1 in its subjectAltName", r"last resort: tls\.insecure: true"], NOT_NAME),
    ("ip-as-dns-name", {"server_names": ("dns:127.0.0.1",)}, False, "ca", "127.0.0.1",
     [r"Fix one of: regenerate the broker's certificate with IP:127\.0\.0\.1 in its subjectAltName "
      r"\(127\.0\.0\.1 is there as DNS:127\.0\.0\.1, but an address must be an IP: entry\)"], NOT_NAME),
    ("name-not-in-cert", {"server_names": ("127.0.0.1",)}, False, "ca", "localhost",
     [r"Hostname mismatch.*localhost", r"it names IP:127\.0\.0\.1", r"host to one it names \(e\.g\. 127\.0\.0\.1\)",
      r"DNS:localhost in its subjectAltName", r"tls\.insecure"], NOT_NAME),
    ("expired", {"server_valid": (-30 * DAY, -2 * DAY)}, False, "ca", "127.0.0.1",
     [r"expired on 20\d\d-\d\d-\d\d", r"this device's clock says", r"renew the broker's certificate"], NOT_SERVER),
    ("not-yet-valid", {"server_valid": (2 * DAY, 30 * DAY)}, False, "ca", "127.0.0.1",
     [r"not valid until 20\d\d-\d\d-\d\d", r"clock is probably wrong", r"timedatectl"], NOT_SERVER),
    ("client-cert-missing", {}, True, "ca", "127.0.0.1",
     [r"requires a client certificate", r"set tls\.cert_file and tls\.key_file"], NOT_SERVER),
    ("client-cert-unknown-ca", {}, True, "ca+other-client", "127.0.0.1",
     [r"rejected the client certificate tls\.cert_file \(.*other.*client\.pem\)", r"UNKNOWN_CA",
      r"not signed by a CA the broker trusts"], NOT_SERVER + ["expired"]),
    ("client-cert-expired", {"client_valid": (-30 * DAY, -2 * DAY)}, True, "ca+client", "127.0.0.1",
     [r"rejected the client certificate", r"CERTIFICATE_EXPIRED", r"renew it"], NOT_SERVER),
]


def _client_tls(spec: str, good, other) -> dict:
    tls = {}
    for part in filter(None, spec.split("+")):
        files = other if part.startswith("other") else good
        if part.endswith("ca"):
            tls["ca_file"] = str(files.ca)
        else:
            tls.update(cert_file=str(files.client_cert), key_file=str(files.client_key))
    return tls


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("other"), ca_name="another CA")


@pytest.mark.parametrize("options, client_cert, client, host, must, must_not",
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_tls_failure_names_its_own_fix(tmp_path, other_ca, options, client_cert, client, host, must, must_not):
    good = make_tls(tmp_path / "tls", **options)
    broker = Broker(tmp_path / "broker", tls=good, require_certificate=client_cert).start()
    try:
        sink = _sink(host, broker.port, _client_tls(client, good, other_ca))
        started = time.monotonic()
        with pytest.raises(ConfigError) as err:
            sink.open(META)
        assert time.monotonic() - started < 5, "a TLS failure is final: required must not wait for a timeout"
        message = str(err.value)
        assert err.value.exit_code == 2 and message.startswith("TLS: ")
        for pattern in must:
            assert re.search(pattern, message), f"{pattern!r} not in: {message}"
        for text in must_not:
            assert text not in message, f"{text!r} (a fix that does not apply) in: {message}"
    finally:
        broker.stop()


def test_tls_insecure_connects_despite_the_name_and_warns(tmp_path, caplog):
    """The last resort the name-mismatch message offers works, and says what it gives up."""
    good = make_tls(tmp_path / "tls", server_names=("broker.test",))
    broker = Broker(tmp_path / "broker", tls=good).start()
    try:
        caplog.set_level(logging.WARNING)
        sink = _sink("127.0.0.1", broker.port, {"ca_file": str(good.ca), "insecure": True})
        sink.open(META)
        try:
            assert sink.connected and sink.connects == 1
        finally:
            sink.close()
        assert "tls.insecure is true: the broker's host name is not checked" in caplog.text
    finally:
        broker.stop()
