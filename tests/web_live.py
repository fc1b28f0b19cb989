"""Shared by the live-view tests: a running pipeline with a web output, and small HTTP helpers."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from pathlib import Path

import pytest

from edge.config import validate
from edge.outputs.base import build_sink
from edge.pipeline import Pipeline

DEADLINE_S = 30.0  # the longest any wait in these tests may take before it fails (not a performance figure)


class Recorder:
    """A sink that keeps the last few hundred results by frame index: what the model really said."""

    name = "recorder"

    def __init__(self):
        self.results: OrderedDict[int, object] = OrderedDict()
        self.lock = threading.Lock()

    def open(self, meta):
        self.meta = meta

    def write(self, result):
        with self.lock:
            self.results[result.frame.index] = result
            while len(self.results) > 600:
                self.results.popitem(last=False)

    def get(self, index):
        with self.lock:
            return self.results.get(index)

    def close(self):
        pass


def start_live(model: Path, clip: Path, **web) -> tuple[Pipeline, object, Recorder]:
    cfg = validate({"source": {"type": "file", "path": str(clip), "loop": True, "realtime": True},
                    "model": {"path": str(model)},
                    "outputs": [{"type": "web", "port": 0, **web}]})
    recorder = Recorder()
    web_sink = build_sink(cfg.outputs[0])
    pipe = Pipeline(cfg, sinks=[web_sink, recorder]).start()
    wait_for(lambda: pipe.stats.frames_processed > 3, "the pipeline to process frames")
    return pipe, web_sink, recorder


def wait_for(cond, what: str, timeout: float = DEADLINE_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def mjpeg_frames(url: str, n: int) -> list[tuple[int, bytes]]:
    """The first ``n`` parts of a multipart MJPEG response, parsed by hand: (declared length, JPEG bytes)."""
    with urllib.request.urlopen(url, timeout=10) as r:
        ctype = r.headers["Content-Type"]
        boundary = re.search(r"boundary=(\S+)", ctype).group(1).encode()
        parts = []
        while len(parts) < n:
            line = r.readline()
            if not line.strip():
                continue
            assert line.strip() == b"--" + boundary, line
            headers = {}
            while (h := r.readline().strip()):
                k, v = h.decode().split(":", 1)
                headers[k.strip().lower()] = v.strip()
            assert headers["content-type"] == "image/jpeg"
            length = int(headers["content-length"])
            parts.append((length, r.read(length)))
        return parts


PROM_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
PROM_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
PROM_SAMPLE = re.compile(rf"^({PROM_NAME})(?:\{{((?:{PROM_LABEL})(?:,(?:{PROM_LABEL}))*)?\}})? (\S+)(?: -?\d+)?$")


def parse_prometheus(text: str) -> dict[str, dict]:
    """A strict reader of the text format 0.0.4: TYPE before samples, families contiguous, no duplicates."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, dict] = {}
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(PROM_NAME, name), (n, line)
            fam = families.setdefault(name, {"type": None, "help": None, "samples": {}})
            assert fam["help"] is None and not fam["samples"], f"line {n}: second HELP for {name}"
            fam["help"] = line.split(" ", 3)[3] if line.count(" ") >= 3 else ""
            current = name
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), (n, line)
            fam = families.setdefault(name, {"type": None, "help": None, "samples": {}})
            assert fam["type"] is None and not fam["samples"], f"line {n}: TYPE after samples or twice"
            fam["type"] = kind
            current = name
        elif line.startswith("#") or not line:
            assert not line, f"line {n}: stray comment or blank line"
        else:
            m = PROM_SAMPLE.match(line)
            assert m, f"line {n} is not a sample: {line!r}"
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            assert name == current, f"line {n}: {name} outside its family block"
            fam = families[name]
            assert fam["type"] is not None, f"{name} has samples but no TYPE"
            assert labels not in fam["samples"], f"duplicate series {name}{{{labels}}}"
            fam["samples"][labels] = float(value)  # float() accepts +Inf, -Inf and NaN as the format does
            if fam["type"] == "counter":
                assert fam["samples"][labels] >= 0 and name.endswith("_total"), line
    return families
