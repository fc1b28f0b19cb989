"""A real mosquitto for tests: Debian's broker on a free loopback port with a generated config.

Plain, password-file (``mosquitto_passwd``) and TLS listeners; TLS material (a CA, a server
certificate for localhost/127.0.0.1 and a client certificate; or a broken variant: other names, expired,
not yet valid, self-signed) is generated with ``cryptography``.
``kill()`` is a real SIGKILL and ``start()`` again reuses the same port, so clients reconnect.
"""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def mosquitto_binary() -> str | None:
    """mosquitto lives in /usr/sbin, which a non-root PATH often lacks."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def passwd_binary() -> str | None:
    return shutil.which("mosquitto_passwd") or (
        "/usr/bin/mosquitto_passwd" if os.access("/usr/bin/mosquitto_passwd", os.X_OK) else None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout: float, what: str, poll: float = 0.02):
    """Poll ``cond`` until it returns a truthy value; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


@dataclass
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


DAY = datetime.timedelta(days=1)
VALID = (-datetime.timedelta(minutes=5), 2 * DAY)  # not_before, not_after relative to now


def make_tls(folder: Path, *, ca_name: str = "edgepose test CA", server_names=("localhost", "127.0.0.1"),
             server_valid=VALID, client_valid=VALID, self_signed: bool = False) -> TlsFiles:
    """A CA, a server certificate for ``server_names`` (DNS names or IP addresses, as subjectAltName entries;
    ``dns:`` forces a DNS entry) and a client certificate, as PEM files. ``*_valid`` shift the validity
    window (expired, not yet valid); ``self_signed`` makes the server certificate sign itself."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    def san(text: str):
        if text.startswith("dns:"):  # a DNS entry even for an address: the mistake a name check rejects
            return x509.DNSName(text[4:])
        try:
            return x509.IPAddress(ipaddress.ip_address(text))
        except ValueError:
            return x509.DNSName(text)

    def cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, usage=None, sans=None, valid=VALID):
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now + valid[0]).not_valid_after(now + valid[1])
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                              content_commitment=False, key_encipherment=False,
                                              data_encipherment=False, key_agreement=False,
                                              encipher_only=False, decipher_only=False), critical=True)
            b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key",
                     folder / "client.pem", folder / "client.key")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    cn = server_names[0].removeprefix("dns:") if server_names else "edgepose test broker"
    issuer, issuer_key = (cn, server_key) if self_signed else (ca_name, ca_key)
    server = cert(cn, server_key, issuer, issuer_key, ca=False, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                  sans=[san(n) for n in server_names], valid=server_valid)
    files.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    write_key(server_key, files.server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = cert("edgepose-client", client_key, ca_name, ca_key, ca=False,
                  usage=ExtendedKeyUsageOID.CLIENT_AUTH, valid=client_valid)
    files.client_cert.write_bytes(client.public_bytes(serialization.Encoding.PEM))
    write_key(client_key, files.client_key)
    return files


class Broker:
    """One mosquitto process. ``users`` enables a password file; ``tls`` a TLS listener."""

    def __init__(self, workdir: Path, *, users: dict[str, str] | None = None, tls: TlsFiles | None = None,
                 require_certificate: bool = False, persistence: bool = False):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.dir / "mosquitto.log"
        self.conf = self.dir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"user {getpass.getuser()}",  # as root, mosquitto would otherwise switch to user 'mosquitto'
            f"allow_anonymous {'false' if users else 'true'}",
            "log_dest stderr",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
        ]
        if users:
            pw = self.dir / "passwd"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run([passwd_binary(), "-b", str(pw), user, password], check=True,
                               capture_output=True, timeout=30)
            os.chmod(pw, 0o600)
            lines.append(f"password_file {pw}")
        if tls:
            lines += [f"cafile {tls.ca}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}",
                      f"require_certificate {'true' if require_certificate else 'false'}"]
        if persistence:
            # save after every change, so that a SIGKILL keeps persistent sessions (a subscriber's queue)
            lines += ["persistence true", f"persistence_location {self.dir}/",
                      "autosave_on_changes true", "autosave_interval 1"]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)
        log.close()
        wait_until(self._ready, timeout, f"mosquitto to listen on port {self.port}; its log:\n{self.log()}")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited with {self.proc.returncode}; its log:\n{self.log()}")
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no persistence save, no Last Wills."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def saves(self) -> int:
        """How often the broker wrote its persistence file (persistent sessions survive a SIGKILL after one)."""
        return self.log().count("Saving in-memory database")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
