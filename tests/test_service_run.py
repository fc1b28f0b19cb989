"""The service loop for real: READY and WATCHDOG over a fake NOTIFY_SOCKET, stalls, SIGTERM, SIGHUP reload."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT
from edge.config import Config
from edge.pipeline import Pipeline
from edge.service import Notifier, Supervisor


class NotifyListener:
    """A bound unix datagram socket standing in for systemd's notify socket; records (time, message)."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.path = path
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, prefix: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, m in list(self.messages):
                if m.startswith(prefix):
                    return t
            time.sleep(0.02)
        raise AssertionError(f"no {prefix!r} within {timeout} s; got {[m for _, m in self.messages]}")

    def times(self, prefix: str) -> list[float]:
        return [t for t, m in self.messages if m.startswith(prefix)]

    def close(self):
        self._stop.set()
        self._t.join(1)
        self.sock.close()


@pytest.fixture
def listener(tmp_path):
    lst = NotifyListener(tmp_path / "notify.sock")
    yield lst
    lst.close()


class StallingSource:
    """Delivers frames of a real clip, then stops delivering (like a camera whose cable came loose)."""

    name = "stalling"
    continuous = True
    live = True
    fps = 30.0

    def __init__(self, clip: Path, frames: int):
        import cv2

        cap = cv2.VideoCapture(str(clip))
        self.images = []
        for _ in range(10):
            ok, img = cap.read()
            self.images.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        self.frames, self.n, self.stalled_at = frames, 0, None

    def open(self):
        pass

    def read(self):
        time.sleep(1 / 30)
        if self.n >= self.frames:
            if self.stalled_at is None:
                self.stalled_at = time.monotonic()
            return None
        self.n += 1
        return self.images[self.n % len(self.images)], time.monotonic_ns()

    def close(self):
        pass


def test_ready_then_watchdog_then_pings_stop_when_frames_stall(listener, movenet_tflite, walk_clip):
    cfg = Config.model_validate({"model": {"path": str(movenet_tflite)}, "outputs": []})
    source = StallingSource(walk_clip, frames=60)
    pipeline = Pipeline(cfg, source=source, sinks=[])
    watchdog_usec = 1_000_000  # WatchdogSec=1s: pings every 0.25 s while frames flow
    sup = Supervisor(lambda r: cfg, lambda c, old: old, Notifier(str(listener.path), watchdog_usec))
    timer = threading.Timer(4.0, sup.request_stop)
    timer.start()
    sup.run(pipeline)  # on the main thread, as in the CLI
    timer.cancel()
    ready = listener.wait_for("READY=1")
    pings = listener.times("WATCHDOG=1")
    assert pings and pings[0] >= ready
    assert len(pings) >= 3  # periodic while ~2 s of frames flowed
    assert source.stalled_at is not None
    last_frame = source.stalled_at
    assert max(pings) - last_frame <= 0.5 + 0.15  # WatchdogSec/2 after the last frame, plus one poll
    assert listener.times("STOPPING=1") and listener.times("STOPPING=1")[0] > max(pings)
    assert any(m.startswith("STATUS=") or "STATUS=" in m for _, m in listener.messages)


def _write_config(path: Path, clip: Path, model: Path, out: Path, threshold: float) -> None:
    path.write_text(yaml.safe_dump({
        "source": {"type": "file", "path": str(clip), "loop": True},
        "model": {"path": str(model), "score_threshold": threshold},
        "outputs": [{"type": "jsonl", "path": str(out)}],
    }))


def _start(tmp_path, cfg_path, listener, watchdog_usec=2_000_000):
    env = dict(os.environ, NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC=str(watchdog_usec))
    env.pop("WATCHDOG_PID", None)
    return subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(cfg_path)], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, text=True)


def test_sigterm_sends_stopping_and_exits_0_within_2s(tmp_path, listener, movenet_tflite, walk_clip):
    cfg = tmp_path / "c.yaml"
    _write_config(cfg, walk_clip, movenet_tflite, tmp_path / "o.jsonl", 0.15)
    proc = _start(tmp_path, cfg, listener)
    try:
        listener.wait_for("READY=1")
        listener.wait_for("WATCHDOG=1")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        assert time.monotonic() - t0 < 2.0
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert listener.wait_for("STOPPING=1", timeout=1) >= t0


def test_sighup_applies_a_changed_threshold_and_rejects_a_broken_config(tmp_path, listener, movenet_tflite, walk_clip):
    cfg, out = tmp_path / "c.yaml", tmp_path / "o.jsonl"
    _write_config(cfg, walk_clip, movenet_tflite, out, 0.0)
    proc = _start(tmp_path, cfg, listener)
    try:
        listener.wait_for("READY=1")
        time.sleep(0.5)
        # 1. a threshold no pose reaches: after the reload, frames keep coming with nobody in them
        _write_config(cfg, walk_clip, movenet_tflite, out, 0.99)
        n_before = len(out.read_text().splitlines())
        proc.send_signal(signal.SIGHUP)
        listener.wait_for("RELOADING=1")
        time.sleep(1.5)
        records = [json.loads(x) for x in out.read_text().splitlines()]
        assert len(records) > n_before + 5  # appended, not truncated, and still running
        assert all(r["people"] for r in records[:n_before])
        assert not any(r["people"] for r in records[-5:])
        # 2. a broken config: rejected with a log line, the running pipeline goes on
        cfg.write_text("model:\n  threads: many\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        n_after_bad = len(out.read_text().splitlines())
        time.sleep(1.0)
        assert len(out.read_text().splitlines()) > n_after_bad
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=5)[1]
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "reload rejected" in err and "model.threads" in err
    assert "configuration reloaded" in err
