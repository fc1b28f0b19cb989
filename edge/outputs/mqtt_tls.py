"""MQTT connection set-up: the TLS context from config, and plain-words reasons a connection failed.

Kept out of mqtt.py so the sink itself stays about publishing and buffering. Each reason names its
fix, and a wrong fix is never suggested: a certificate that names another host is not a CA problem,
an expired one is not a name problem, and a broker that rejects our client certificate is neither.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import re
import socket
import ssl

from edge.errors import ConfigError
from edge.outputs.mqtt_config import MqttOutput, MqttTls

log = logging.getLogger(__name__)

KEY = "outputs[type=mqtt]"  # how messages name this config section

# OpenSSL X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code)
_NOT_YET_VALID, _EXPIRED, _SELF_SIGNED, _INVALID_PURPOSE = 9, 10, 18, 26
_UNTRUSTED = {2, 7, 19, 20, 21, 27, 28}  # no trusted issuer, bad signature, untrusted root, rejected
_NAME_MISMATCH = {62, 64}  # host name, IP address
_NO_CHECK_TIME = 0x200000  # X509_V_FLAG_NO_CHECK_TIME: read the dates of an expired certificate
_SSL_REASON = re.compile(r"\[SSL: ([A-Z0-9_]+)\]\s*([^(]*)")
_MISSING_CERT = ("CERTIFICATE_REQUIRED", "HANDSHAKE_FAILURE")  # TLS 1.3 alert 116; TLS 1.2 without a certificate
_REJECTED_CERT = ("UNKNOWN_CA", "DECRYPT_ERROR", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "UNSUPPORTED_CERTIFICATE",
                  "ACCESS_DENIED")


def tls_context(tls: MqttTls) -> ssl.SSLContext:
    """A client context that verifies the broker; each unreadable file is named."""
    ctx = _context(tls)
    if tls.insecure:
        log.warning("mqtt: %s.tls.insecure is true: the broker's host name is not checked, so any certificate "
                    "signed by %s is accepted as this broker; prefer connecting by a name in its certificate",
                    KEY, tls.ca_file or "a system CA")
    return ctx


def _context(tls: MqttTls) -> ssl.SSLContext:
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


def _utc(stamp: str | None) -> str | None:
    """'Jan  5 09:00:00 2026 GMT' (getpeercert) -> '2026-01-05 09:00 UTC'."""
    try:
        when = datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(stamp), datetime.timezone.utc)
    except (TypeError, ValueError):
        return None
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _clean(text: object, cap: int = 80) -> str:
    """A value from the broker's certificate, fit for a log line (the broker may be hostile)."""
    return re.sub(r"[^\x20-\x7e]", "?", str(text))[:cap]


class Explain:
    """(kind, message) for each way a connection attempt fails; kind is 'refused', 'tls', 'closed' or 'unreachable'.

    'unreachable' means no TCP connection was made (nothing listens, no route, no name): retrying costs the
    broker nothing. The others mean the broker answered and turned us away.
    """

    def __init__(self, cfg: MqttOutput, port: int, where: str):
        self.cfg, self.port, self.where = cfg, port, where
        self._peer: dict[int, dict | None] = {}  # verify code -> the broker's certificate, read once per cause

    # -- entry points (paho's network thread) ---------------------------------------------
    def refused(self, reason: object) -> tuple[str, str]:
        cfg, hint = self.cfg, ""
        if str(reason) in ("Bad user name or password", "Not authorized"):
            source = next((f"{k} {getattr(cfg, k)}" for k in ("password_file", "password_env", "password_credential")
                           if getattr(cfg, k)), "no password configured")
            hint = f"; check {KEY}.username ({cfg.username or 'not set'}) and the password ({source})"
        return "refused", f"{self.where} refused the connection: {reason}{hint}"

    def connect_failed(self, exc: BaseException | None) -> tuple[str, str]:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return "tls", self._broker_certificate(exc)
        if isinstance(exc, ssl.SSLError):  # TLS 1.2 brokers reject a client certificate inside the handshake
            return "tls", self._alert(exc.reason or "", "") or (
                f"TLS handshake with {self.where} failed ({exc.reason or exc}); check that this port speaks TLS "
                "(MQTT over TLS is usually on 8883, plain MQTT on 1883)")
        if isinstance(exc, ConnectionRefusedError):
            return "unreachable", (f"nothing accepts connections on {self.where} (connection refused); start the "
                                   "broker or fix host/port")
        if isinstance(exc, socket.gaierror):
            return "unreachable", f"cannot resolve the host of {self.where} ({exc.strerror}); fix host"
        return "unreachable", f"cannot connect to {self.where} ({exc or 'no answer'}); check the network, host and port"

    def closed_early(self, paho_error: str | None) -> tuple[str, str]:
        """The broker closed the connection before its CONNACK; ``paho_error``: paho's last socket error, if any.

        With TLS 1.3 a broker rejects our client certificate only after our side of the handshake is done,
        so its alert arrives here, on the first read, and not as a failed connect.
        """
        match = _SSL_REASON.search(paho_error or "")
        message = self._alert(match[1], match[2].strip()) if match else None
        if message:
            return "tls", message
        hint = ("did it accept our TLS client certificate? Its log says why" if self.cfg.tls else
                "does the port expect TLS (tls:) or a client certificate (tls.cert_file)?")
        return "closed", (f"{self.where} closed the connection before answering"
                          f"{f' ({_clean(paho_error, 200)})' if paho_error else ''}; {hint}")

    # -- the broker's certificate ---------------------------------------------------------
    def _broker_certificate(self, exc: ssl.SSLCertVerificationError) -> str:
        code, why, tls = exc.verify_code, exc.verify_message, self.cfg.tls
        head = f"TLS: the certificate of {self.where}"
        if code in _NAME_MISMATCH:
            return self._name_mismatch(code, why)
        if code in (_EXPIRED, _NOT_YET_VALID):
            return self._dates(code)
        if code == _INVALID_PURPOSE:
            return (f"{head} is not a TLS server certificate ({why}); regenerate it with extendedKeyUsage = "
                    "serverAuth (or without extendedKeyUsage)")
        if code == _SELF_SIGNED or code in _UNTRUSTED:
            what = "is self-signed" if code == _SELF_SIGNED else "is not signed by a CA this device trusts"
            trusted = (f"{KEY}.tls.ca_file ({tls.ca_file}) "
                       f"{'does not hold it' if code == _SELF_SIGNED else 'is not the CA that signed it'}"
                       if tls and tls.ca_file else
                       f"{KEY}.tls.ca_file is not set, so only the system's CAs are trusted")
            fix = ("the broker's certificate itself (mosquitto: its certfile), or a CA that signs it"
                   if code == _SELF_SIGNED else "the CA certificate that signed it (mosquitto: its cafile)")
            return f"{head} {what} ({why}); {trusted}: set tls.ca_file to {fix}"
        return f"{head} does not verify ({why}); check tls.ca_file and the broker's certificate"

    def _name_mismatch(self, code: int, why: str) -> str:
        host = _clean(self.cfg.host)
        cert = self._peer_certificate(code) or {}
        names = [f"{'IP' if kind == 'IP Address' else kind}:{_clean(value)}"
                 for kind, value in cert.get("subjectAltName", ())]
        if not names:  # no subjectAltName: only the CN, which Python no longer matches
            names = [f"CN={_clean(v)}" for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        usable = [n.split(":", 1)[1] for n in names if n.startswith("IP:") or n.startswith("DNS:") and "*" not in n
                  and not _is_address(n[4:])]  # a DNS entry that holds an address matches nothing
        entry = "IP" if code == 64 else "DNS"
        as_name = f" ({host} is there as DNS:{host}, but an address must be an IP: entry)" if (
            code == 64 and f"DNS:{host}" in names) else ""
        return (f"TLS: the certificate of {self.where} is signed by a trusted CA, but not for the address edgepose "
                f"connects to ({why.rstrip('.')}){f'; it names {shown}' if names else ''}. Fix one of: "
                f"{f'set {KEY}.host to one it names (e.g. {usable[0]}); or ' if usable else ''}regenerate the broker's "
                f"certificate with {entry}:{host} in its subjectAltName{as_name}; last resort: tls.insecure: true, "
                "which skips the name check (then any certificate from that CA is accepted as this broker)")

    def _dates(self, code: int) -> str:
        cert = self._peer_certificate(code) or {}
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        clock = f"this device's clock says {now}"
        if code == _EXPIRED:
            after = _utc(cert.get("notAfter"))
            if not after:
                what, renew = "has expired, or a CA certificate in its chain has", "certificate (or CA)"
            elif after < now:
                what, renew = f"expired on {after}", "certificate"
            else:
                what, renew = "is valid, but a CA certificate in its chain has expired", "CA"
            return (f"TLS: the certificate of {self.where} {what}, and {clock}; renew the broker's {renew}, or, if "
                    "this clock is wrong, set it right (timedatectl; a Pi has no battery clock and needs NTP)")
        before = _utc(cert.get("notBefore"))
        return (f"TLS: the certificate of {self.where} is not valid until {before or 'a later date'}, and {clock}: "
                "this clock is probably wrong (a Pi has no battery clock: check timedatectl and NTP), or the "
                "certificate was issued with a start date in the future")

    def _peer_certificate(self, code: int) -> dict | None:
        """The broker's certificate, read over a second handshake that checks the chain but not the name (nor,
        for a date error, the dates); once per cause, so retries do not repeat it. None when that fails too."""
        if code not in self._peer:
            self._peer[code] = None
            try:
                ctx = _context(self.cfg.tls or MqttTls())
                ctx.check_hostname = False
                if code in (_EXPIRED, _NOT_YET_VALID):
                    ctx.verify_flags = ctx.verify_flags | _NO_CHECK_TIME
                with socket.create_connection((self.cfg.host, self.port), timeout=3) as raw, \
                        ctx.wrap_socket(raw, server_hostname=self.cfg.host) as sock:
                    self._peer[code] = sock.getpeercert()
            except (OSError, ValueError, ConfigError) as exc:
                log.debug("mqtt: could not read the broker's certificate for the hint: %s", exc)
        return self._peer[code]

    # -- our client certificate, as the broker judged it -----------------------------------
    def _alert(self, reason: str, text: str) -> str | None:
        """The message for a TLS alert the broker sent about our client certificate; None for other alerts."""
        tls = self.cfg.tls
        cert = tls.cert_file if tls else None
        alert = f"{_clean(reason)}: {_clean(text)}" if text else _clean(reason)
        if reason.endswith(_MISSING_CERT) and not cert:
            probably = "probably " if reason.endswith("HANDSHAKE_FAILURE") else ""
            return (f"TLS: {self.where} {probably}requires a client certificate ({alert}); set tls.cert_file and "
                    "tls.key_file to a certificate signed by a CA the broker trusts (mosquitto: require_certificate, "
                    "cafile)")
        if not cert:
            return None
        head = f"TLS: {self.where} rejected the client certificate tls.cert_file ({cert}) ({alert})"
        if reason.endswith("CERTIFICATE_EXPIRED"):
            return f"{head}: it has expired or is not valid yet (or the broker's clock is wrong); renew it"
        if reason.endswith("CERTIFICATE_REVOKED"):
            return f"{head}: the broker's CA revoked it; issue a new one"
        if reason.endswith(_REJECTED_CERT + ("CERTIFICATE_REQUIRED",)):
            return (f"{head}: it is not signed by a CA the broker trusts (mosquitto: cafile); have that CA sign it, "
                    "or add its CA to the broker")
        return None
