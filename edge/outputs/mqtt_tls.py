"""MQTT connection set-up: the TLS context from config, and plain-words reasons a connection failed.

Kept out of mqtt.py so the sink itself stays about publishing and buffering.
"""

from __future__ import annotations

import socket
import ssl

from edge.errors import ConfigError
from edge.outputs.mqtt_config import MqttTls

KEY = "outputs[type=mqtt]"  # how messages name this config section


def tls_context(tls: MqttTls) -> ssl.SSLContext:
    """A client context that verifies the broker; each unreadable file is named."""
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"{KEY}.tls.ca_file: cannot load {tls.ca_file} ({exc}); give a PEM CA certificate") from None
    if tls.cert_file:
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{KEY}.tls.cert_file/key_file: cannot load {tls.cert_file} / {tls.key_file} ({exc}); "
                              "give a PEM certificate and its unencrypted private key") from None
    if tls.insecure:
        ctx.check_hostname = False
    return ctx


def explain_connect_error(exc: BaseException | None, where: str) -> tuple[str, str]:
    """(kind, message) for a failed connection attempt; kind is 'tls' or 'unreachable'."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = " or set tls.insecure: true" if "hostname" in str(exc.verify_message) else ""
        return "tls", (f"TLS: the certificate of {where} does not verify ({exc.verify_message}); set tls.ca_file "
                       f"to the CA that signed it{hint}")
    if isinstance(exc, ssl.SSLError):
        return "tls", (f"TLS handshake with {where} failed ({exc.reason or exc}); check that this port speaks TLS "
                       "and that the broker accepts tls.cert_file")
    if isinstance(exc, ConnectionRefusedError):
        return "unreachable", f"nothing accepts connections on {where} (connection refused); start the broker or fix host/port"
    if isinstance(exc, socket.gaierror):
        return "unreachable", f"cannot resolve the host of {where} ({exc.strerror}); fix host"
    return "unreachable", f"cannot connect to {where} ({exc or 'no answer'}); check the network, host and port"
