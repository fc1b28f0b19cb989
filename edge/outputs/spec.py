"""The ``--output`` forms of the command line, turned into ``outputs:`` entries of the config.

A form that means nothing is an error that lists the valid forms: a typo such as ``wbe:8080`` must
not silently become a JSON-lines file of that name.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from edge.errors import ConfigError

FORMS = (
    "FILE.jsonl (or FILE.ndjson; jsonl:ANY_PATH for another name), '-' (JSON lines on stdout), console, "
    "web[:PORT] or web:HOST:PORT (the live view; it binds 127.0.0.1 unless a host such as 0.0.0.0 is given), "
    "framebuffer[:/dev/fbN], window, mqtt://[user@]host[:port][/topic_prefix] (mqtts:// for TLS)"
)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
_PORT = re.compile(r"\d{1,5}")


def _bad(spec: str, why: str) -> ConfigError:
    return ConfigError(f"--output {spec!r}: {why}. Valid forms: {FORMS}")


def _port(spec: str, text: str) -> int:
    if not _PORT.fullmatch(text) or int(text) > 65535:
        raise _bad(spec, f"{text!r} is not a port number (0-65535; 0 = any free port)")
    return int(text)


def _web(spec: str, arg: str) -> dict:
    if not arg:
        return {"type": "web"}
    host, sep, port = arg.rpartition(":")
    if not sep:  # web:8080
        return {"type": "web", "port": _port(spec, arg)}
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # web:[::]:8080
    if not host:
        raise _bad(spec, "the host before the port is empty")
    return {"type": "web", "host": host, "port": _port(spec, port)}


def _mqtt(spec: str) -> dict:
    url = urlsplit(spec)
    if url.password is not None:
        shown = spec.replace(f":{url.password}@", ":***@", 1)  # never echo the secret, even back to its owner
        raise _bad(shown, "a password on the command line is visible to every user (ps, shell history); give only "
                         "the user here and the password through a config file's password_file, password_env or "
                         "password_credential (docs/MQTT.md)")
    if url.query or url.fragment:
        raise _bad(spec, "an MQTT URL takes no ?query or #fragment")
    try:
        port = url.port
    except ValueError:
        raise _bad(spec, "the port is not a number from 1 to 65535") from None
    if not url.hostname:
        raise _bad(spec, "the broker's host is missing, e.g. mqtt://192.168.1.10")
    out: dict = {"type": "mqtt", "host": url.hostname}
    if port is not None:
        out["port"] = port
    if url.username:
        out["username"] = unquote(url.username)
    prefix = url.path.strip("/")
    if prefix:
        out["topic_prefix"] = unquote(prefix)
    if url.scheme == "mqtts":
        out["tls"] = {}
    return out


def parse_output(spec: str) -> dict:
    """One ``--output`` form -> one ``outputs:`` entry (validated later with the rest of the config)."""
    if spec == "-":
        return {"type": "jsonl", "path": "-"}
    if spec in ("console", "window"):
        return {"type": spec}
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme in ("mqtt", "mqtts"):
        return _mqtt(spec)
    if scheme:
        raise _bad(spec, f"'{scheme}://' is not an output")
    kind, sep, arg = spec.partition(":")
    if kind == "web":
        return _web(spec, arg)
    if kind == "framebuffer":
        if sep and not arg.startswith("/dev/"):
            raise _bad(spec, "a framebuffer is a device such as /dev/fb0")
        return {"type": "framebuffer", **({"device": arg} if arg else {})}
    if kind == "jsonl" and sep:
        if not arg:
            raise _bad(spec, "jsonl: needs a file name")
        return {"type": "jsonl", "path": arg}
    if spec.lower().endswith(JSONL_SUFFIXES):
        return {"type": "jsonl", "path": spec}
    raise _bad(spec, "this is not an output form")
