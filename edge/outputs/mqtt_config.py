"""MQTT output config: broker, topics, delivery, TLS, credentials and Home Assistant discovery.

Declared beside the output it configures (Frigate-style: each plugin owns its config); edge.config
composes it into the ``outputs:`` union. The password is never part of the model's data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge.configbase import Strict as _Strict
from edge.errors import ConfigError


class MqttTls(_Strict):
    """TLS to the broker: verified against ``ca_file`` (the system CAs when unset); optional client certificate."""

    ca_file: str | None = Field(None, description="CA certificate (PEM) that signed the broker's certificate")
    cert_file: str | None = Field(None, description="client certificate (PEM), for brokers that require one")
    key_file: str | None = Field(None, description="the client certificate's private key (PEM)")
    insecure: bool = Field(False, description="skip the hostname check (the certificate chain is still verified)")


class MqttHass(_Strict):
    """Home Assistant MQTT discovery: one device with people count, FPS and 'person present'."""

    enabled: bool = False
    prefix: str = Field("homeassistant", min_length=1, description="Home Assistant's discovery prefix")
    name: str | None = Field(None, description="device name in Home Assistant (default: edgepose <device_id>)")


class MqttOutput(_Strict):
    """MQTT: availability with a Last Will, retained meta, per-frame poses, stats; an offline buffer. See docs/MQTT.md."""

    type: Literal["mqtt"]
    host: str = Field("localhost", min_length=1)
    port: int | None = Field(None, ge=1, le=65535, description="default 1883, or 8883 with tls")
    device_id: str | None = Field(None, description="default: the hostname")
    topic_prefix: str | None = Field(None, description="default: edgepose/<device_id>")
    client_id: str | None = Field(None, description="default: edgepose-<device_id>")
    username: str | None = None
    password_file: str | None = Field(None, description="file holding the password (first line)")
    password_env: str | None = Field(None, description="environment variable holding the password")
    password_credential: str | None = Field(
        None, description="systemd credential name (LoadCredential=), read from $CREDENTIALS_DIRECTORY")
    tls: MqttTls | None = None
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(30, ge=5, le=3600)
    mode: Literal["frames", "events"] = Field(
        "frames", description="frames: every processed frame; events: when the person count changes, or at heartbeat_s")
    max_rate_hz: float | None = Field(None, gt=0, description="frames mode: at most this many poses messages per second")
    heartbeat_s: float = Field(10.0, gt=0, description="events mode: publish at least this often")
    stats_interval_s: float = Field(10.0, gt=0)
    buffer: int = Field(1000, ge=0, le=1_000_000, description="messages kept while disconnected; then the oldest is dropped")
    max_inflight: int = Field(20, ge=1, le=10000, description="unacknowledged messages before new ones wait in the buffer")
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0, description="the reconnect back-off doubles up to this")
    connect_timeout_s: float = Field(5.0, gt=0, description="required: how long start-up waits for the broker")
    drain_timeout_s: float = Field(2.0, ge=0, description="on stop: how long to wait for unacknowledged messages")
    required: bool = Field(False, description="refuse to start (exit 2) when the broker rejects the credentials or TLS")
    hass: MqttHass = Field(default_factory=MqttHass)

    @model_validator(mode="after")
    def _check(self) -> "MqttOutput":
        sources = [k for k in ("password_file", "password_env", "password_credential") if getattr(self, k)]
        if len(sources) > 1:
            raise ValueError(f"set only one of {', '.join(sources)}")
        if sources and not self.username:
            raise ValueError(f"{sources[0]} is set but username is not; MQTT sends a password only with a username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    def read_password(self) -> str | None:
        """The password from its file (first line), environment variable or systemd credential; never logged."""
        key = "outputs[type=mqtt]"
        if self.password_env:
            if self.password_env not in os.environ:
                raise ConfigError(f"{key}.password_env: the environment variable {self.password_env} is not set; "
                                  "set it (systemd: Environment= or EnvironmentFile=) or use password_file")
            return os.environ[self.password_env]
        if self.password_credential:
            base = os.environ.get("CREDENTIALS_DIRECTORY")
            if not base:
                raise ConfigError(f"{key}.password_credential: $CREDENTIALS_DIRECTORY is not set (not started by "
                                  f"systemd with credentials); add LoadCredential={self.password_credential}:/path/to/"
                                  "secret to the unit, or use password_file")
            path, key = Path(base) / self.password_credential, f"{key}.password_credential"
        elif self.password_file:
            path, key = Path(self.password_file), f"{key}.password_file"
        else:
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {path} ({exc.strerror}); create it or change {key}") from None
        return text.splitlines()[0] if text else ""
