"""MQTT credentials and TLS against a real mosquitto: refused logins are clear errors, secrets never leak."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from mqtt_broker import Broker, make_tls, wait_until
from mqtt_pipeline import PREFIX, jsonl, make_config, mqtt_sink, require_mqtt_tools, wait_offline
from mqtt_subscriber import Subscriber

from edge.config import validate
from edge.errors import ConfigError
from edge.pipeline import Pipeline


@pytest.fixture(scope="module", autouse=True)
def _tools():
    require_mqtt_tools()


def test_wrong_password_is_a_clear_error_and_never_connected(tmp_path, monkeypatch, caplog, movenet_tflite,
                                                             walk_clip):
    secret = "wrong-secret-0xC0FFEE"
    b = Broker(tmp_path / "broker", users={"edge": "right-secret"}).start()
    try:
        watcher = Subscriber(b, ["#"], username="edge", password="right-secret").start()
        monkeypatch.setenv("EDGEPOSE_TEST_MQTT_PASSWORD", secret)
        cfg = make_config(tmp_path, movenet_tflite, walk_clip, {
            "host": b.host, "port": b.port, "username": "edge", "password_env": "EDGEPOSE_TEST_MQTT_PASSWORD",
            "buffer": 10, "drain_timeout_s": 0.2})
        caplog.set_level(logging.DEBUG)
        pipeline = Pipeline(cfg)
        sink = mqtt_sink(pipeline)
        pipeline.start()
        wait_until(lambda: sink.last_error, 10, "the refusal")
        assert pipeline.wait(30)
        pipeline.stop()
        assert pipeline.error is None, "the pipeline runs on without MQTT"
        assert sink.connects == 0 and not sink.connected
        assert "refused" in sink.last_error and "EDGEPOSE_TEST_MQTT_PASSWORD" in sink.last_error
        assert "Not authorized" in sink.last_error or "Bad user name or password" in sink.last_error
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "mqtt" in r.name]
        assert errors and "refused" in errors[0]
        assert not [r for r in caplog.records if "mqtt: connected" in r.getMessage()]
        assert secret not in caplog.text
        assert not watcher.on(f"{PREFIX}/status"), "no status was ever published for this device"
        assert pipeline.stats.snapshot()["drops"]["mqtt"] == pipeline.stats.frames_processed
        watcher.stop()
    finally:
        b.stop()


def _cli(args, cwd, timeout=120, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "edge", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def test_required_with_wrong_password_exits_2_through_the_cli(tmp_path, movenet_tflite, walk_clip):
    secret = "wrong-secret-from-a-file"
    b = Broker(tmp_path / "broker", users={"edge": "right-secret"}).start()
    try:
        (tmp_path / "mqtt.pass").write_text(secret + "\n")
        cfg = {"source": {"type": "file", "path": str(walk_clip), "realtime": False},
               "model": {"path": str(movenet_tflite)},
               "outputs": [{"type": "mqtt", "host": b.host, "port": b.port, "username": "edge",
                            "password_file": str(tmp_path / "mqtt.pass"), "required": True}]}
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        run = _cli(["run", str(tmp_path / "cfg.yaml"), "--log-level", "DEBUG"], tmp_path)
        assert run.returncode == 2, run.stderr
        assert "refused" in run.stderr and "required" in run.stderr and "password_file" in run.stderr
        assert secret not in run.stderr + run.stdout
        check = _cli(["check", str(tmp_path / "cfg.yaml")], tmp_path)
        assert check.returncode == 0, check.stderr
        assert secret not in check.stdout + check.stderr
    finally:
        b.stop()


def test_tls_with_generated_ca_client_certificate_and_systemd_credential(tmp_path, monkeypatch, movenet_tflite,
                                                                          walk_clip):
    tls = make_tls(tmp_path / "tls")
    b = Broker(tmp_path / "broker", users={"edge": "s3cret"}, tls=tls, require_certificate=True).start()
    try:
        creds = tmp_path / "credentials"
        creds.mkdir()
        (creds / "mqtt-password").write_text("s3cret")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
        sub = Subscriber(b, [f"{PREFIX}/#"], username="edge", password="s3cret", ca_file=tls.ca,
                         cert=tls.client_cert, key=tls.client_key).start()
        mqtt = {"host": "127.0.0.1", "port": b.port, "username": "edge", "password_credential": "mqtt-password",
                "tls": {"ca_file": str(tls.ca), "cert_file": str(tls.client_cert), "key_file": str(tls.client_key)},
                "required": True}
        pipeline = Pipeline(make_config(tmp_path, movenet_tflite, walk_clip, mqtt))
        pipeline.run()
        wait_offline(sub)
        assert [m["frame"] for m in sub.jsons(f"{PREFIX}/poses")] == [line["frame"] for line in jsonl(tmp_path)]
        sub.stop()

        other_ca = make_tls(tmp_path / "other").ca  # a CA that did not sign the broker's certificate
        mqtt["tls"]["ca_file"] = str(other_ca)
        pipeline = Pipeline(make_config(tmp_path, movenet_tflite, walk_clip, mqtt))
        with pytest.raises(ConfigError, match="certificate.*tls.ca_file") as err:
            pipeline.start()
        assert err.value.exit_code == 2
    finally:
        b.stop()


@pytest.mark.parametrize("section, error", [
    ({"password_env": "X"}, "username"),
    ({"username": "u", "password_env": "X", "password_file": "/f"}, "only one"),
    ({"qos": 3}, "qos"),
    ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "reconnect_max_s"),
    ({"bogus": 1}, "bogus"),
])
def test_config_rejects_bad_mqtt_sections(section, error):
    with pytest.raises(ConfigError, match=error):
        validate({"outputs": [{"type": "mqtt", **section}]})


def test_password_sources(tmp_path, monkeypatch):
    def cfg(**kw):
        return validate({"outputs": [{"type": "mqtt", "username": "u", **kw}]}).outputs[0]

    (tmp_path / "pw").write_text("from-file\nignored second line\n")
    assert cfg(password_file=str(tmp_path / "pw")).read_password() == "from-file"
    monkeypatch.setenv("EDGEPOSE_PW", "from-env")
    assert cfg(password_env="EDGEPOSE_PW").read_password() == "from-env"
    (tmp_path / "cred").write_text("from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert cfg(password_credential="cred").read_password() == "from-credential"
    assert cfg().read_password() is None
    with pytest.raises(ConfigError, match="password_file.*missing"):
        cfg(password_file=str(tmp_path / "missing")).read_password()
    with pytest.raises(ConfigError, match="EDGEPOSE_UNSET"):
        cfg(password_env="EDGEPOSE_UNSET").read_password()
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match="LoadCredential=cred"):
        cfg(password_credential="cred").read_password()
