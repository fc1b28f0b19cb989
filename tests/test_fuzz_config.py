"""Fuzzing the config check: whatever the file holds, it ends in OK or a ConfigError, fast, small, masked.

Two generators: any bytes, and config-shaped YAML (real section and key names, misspellings, bad
values, non-finite numbers, aliases, duplicate keys, deep nesting, alias bombs) with secrets
planted under secret-named keys and in URL user-info anywhere. The in-process properties call the
real loading and validation (edge.config.load_config); a few examples also go through the real
`edgepose check` in a child capped in address space, for the exit code. Budget: tests/fuzzing.py.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import typing
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from conftest import ROOT
from fuzzing import fuzz_settings
from edge.config import Config, load_config
from edge.configbase import Strict
from edge.errors import ConfigError

SECONDS = 3.0  # per example, in process (one config is milliseconds; the machine may be shared)
PYTHON_PEAK = 64 << 20  # bytes of Python allocations (tracemalloc) while checking one file
RSS_GROWTH = 256 << 20  # growth of the process's peak resident size (pydantic's own memory is not traced)
MESSAGE_CAP = 16_000  # an error message (the CLI's cap); in practice under ~10 KB
CHILD_MEMORY = 1 << 30  # address space of one `edgepose check`

SECRET = re.compile(r"Zq9[A-Za-z0-9]{8,16}")  # planted secrets; nothing else generated has an upper-case Z
NUMERIC_SECRETS = range(7_000_000_000, 8_000_000_000)  # numeric tokens; other generated ints are small


def _sections() -> list[type]:
    found, todo = [], [Config]
    while todo:
        t = todo.pop()
        if isinstance(t, type) and issubclass(t, Strict):
            if t not in found:
                found.append(t)
                todo += [f.annotation for f in t.model_fields.values()]
        else:
            todo += list(typing.get_args(t))
    return found


FIELDS = sorted({name for s in _sections() for name in s.model_fields})
SECTIONS = sorted(Config.model_fields)
TYPES = ["auto", "file", "images", "device", "picamera", "network", "gstreamer", "sample", "jsonl", "console",
         "web", "framebuffer", "window", "mqtt", "angles", "reps", "zones"]
SECRET_KEYS = ["password", "passwd", "token", "secret", "api_key", "client_secret", "auth_token", "pwd"]

plain_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ._-/:", max_size=20)
misspelt = st.builds(lambda k, i, c: k[:i] + c + k[i:], st.sampled_from(FIELDS + SECTIONS),
                     st.integers(0, 12), st.sampled_from("sxe_"))
keys = st.one_of(st.sampled_from(FIELDS), st.sampled_from(SECTIONS), misspelt, plain_text)
secret = st.from_regex(r"\AZq9[A-Za-z0-9]{8,16}\Z")
numeric_secret = st.integers(NUMERIC_SECRETS.start, NUMERIC_SECRETS.stop - 1)
secret_text = st.one_of(  # a secret inside an ordinary-looking string: marked by the URL's user-info or a parameter
    secret.map(lambda s: f"rtsp://admin:{s}@10.0.0.5/stream"),
    secret.map(lambda s: f"http://{s}@cam.local/video"),
    secret.map(lambda s: f"rtsps://user:{s}@cam:322/live?x=1"),
    secret.map(lambda s: f"http://cam/video.cgi?user=a&password={s}"),
)
scalars = st.one_of(
    st.integers(-1000, 1000), st.booleans(), st.none(), plain_text, st.sampled_from(TYPES), secret_text,
    st.floats(-1e6, 1e6), st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e300, -0.0, 1e-300]),
)


def _secret_entry(key: str, value) -> dict:
    return {key: value}


secret_entries = st.builds(_secret_entry, st.sampled_from(SECRET_KEYS),
                           st.one_of(secret, numeric_secret, st.lists(secret, min_size=1, max_size=2)))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
        st.builds(lambda d, s: {**d, **s}, st.dictionaries(keys, inner, max_size=3), secret_entries),
        st.builds(lambda d: [d, d], st.dictionaries(keys, inner, max_size=3)),  # dumped as an anchor and alias
    ),
    max_leaves=20,
)
output = st.builds(lambda t, d, s: {"type": t, **d, **s}, st.sampled_from(TYPES),
                   st.dictionaries(st.sampled_from(FIELDS), values, max_size=4),
                   st.one_of(st.just({}), secret_entries))
section = st.one_of(st.dictionaries(st.sampled_from(FIELDS), values, max_size=5), values)
configs = st.fixed_dictionaries({}, optional={
    **{name: section for name in SECTIONS if name not in ("outputs", "analytics")},
    "outputs": st.lists(output, max_size=3),
    "analytics": st.lists(output, max_size=2),
    "sources": section,  # the misspelt section of the issue
    "extra": values,
})

BOMB = "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
               for p, n in zip([None, *"abcdefgh"], "abcdefghi"))


@st.composite
def config_texts(draw) -> str:
    """YAML text of a config-shaped document, sometimes with a structural twist appended."""
    data = draw(configs)
    flow = draw(st.sampled_from([False, None, True]))
    text = yaml.safe_dump(data, default_flow_style=flow, sort_keys=False, allow_unicode=draw(st.booleans()),
                          width=draw(st.sampled_from([80, 10_000])))
    twists = ["none"] if flow is True or not data else ["none", "none", "duplicate", "deep", "bomb", "anchor", "bad-byte"]
    twist = draw(st.sampled_from(twists))  # appended lines: a flow document ({...}) cannot take more
    if twist == "duplicate":
        text += yaml.safe_dump({next(iter(data)): draw(scalars)}, default_flow_style=False)
    elif twist == "deep":
        n = draw(st.integers(20, 600))
        text += "deep: " + "[" * n + "]" * n + "\n"
    elif twist == "bomb":
        text += BOMB[: draw(st.integers(0, len(BOMB)))].rsplit("\n", 1)[0] + "\n"
    elif twist == "anchor":
        text += "anchored: &x {a: 1}\nagain: *x\nmerged: {<<: *x, b: 2}\n"
    elif twist == "bad-byte":
        text += draw(st.sampled_from(["\x00", "\t:", "\x85", "\ufeff", "\x1b[31m", "\udcff"])) + "\n"
    return text


def planted(text: str) -> set[str]:
    found = set(SECRET.findall(text))
    found |= {m for m in re.findall(r"(?<![\d.])\d{10}(?![\d.e])", text) if int(m) in NUMERIC_SECRETS}
    return found


def check_in_process(data: bytes) -> str:
    """Load and validate ``data`` as a config file; returns the error message ('' when valid)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.yaml"
        path.write_bytes(data)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        tracemalloc.start()
        t0 = time.monotonic()
        try:
            load_config(path)
            message = ""
        except ConfigError as exc:  # anything else fails the property
            message = str(exc)
        finally:
            elapsed = time.monotonic() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    assert elapsed < SECONDS, f"{elapsed:.1f} s"
    assert peak < PYTHON_PEAK and rss < RSS_GROWTH, (peak, rss)
    assert len(message) < MESSAGE_CAP and "Traceback" not in message
    return message


def _spliced(text: str, at: int, junk: bytes) -> bytes:
    data = text.encode("utf-8", "surrogatepass")
    at = at % (len(data) + 1)
    return data[:at] + junk + data[at:]


any_bytes = st.one_of(
    st.binary(max_size=2000),
    st.builds(_spliced, config_texts(), st.integers(0, 10_000), st.binary(min_size=1, max_size=8)),
)


@given(any_bytes)
@fuzz_settings(30)
def test_any_bytes_are_ok_or_a_bounded_config_error(data):
    check_in_process(data)


@given(config_texts())
@fuzz_settings(30)
def test_config_shaped_yaml_never_echoes_a_planted_secret(text):
    secrets = planted(text)
    message = check_in_process(text.encode("utf-8", "surrogatepass"))
    leaked = [s for s in secrets if s in message]
    assert not leaked, message


@given(config_texts())
@fuzz_settings(2)
def test_the_real_cli_exits_0_or_2_within_bounds_and_masked(text):
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        proc = subprocess.run([sys.executable, "-m", "edge", "check", str(path)], cwd=ROOT, capture_output=True,
                              text=True, errors="replace", timeout=60, preexec_fn=cap)
    output = proc.stdout + proc.stderr
    assert proc.returncode in (0, 2) and "Traceback" not in output, output[-3000:]
    assert len(output) < MESSAGE_CAP + 2000
    assert not [s for s in planted(text) if s in output], output
