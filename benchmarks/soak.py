"""Soak: `edgepose run` for a long time under client churn; fails when its RSS, fds or threads grow.

The real pipeline runs as a service would (`edgepose run CONFIG` from the venv, a subprocess): a
looped clip (or image folder) paced like a camera, the shipped default model, and three outputs: MQTT
to a real mosquitto started here on a free port, the web live view on a free port, and JSON lines to
/dev/null. Clients then come and go the whole time:

  MQTT        subscribers (raw MQTT 3.1.1 sockets) connect, subscribe to <prefix>/# at QoS 1, take
              5-60 messages and vanish: most close the socket without DISCONNECT (FIN) or with an RST
              (SO_LINGER 0), leaving unacknowledged QoS 1 messages; one in five says DISCONNECT. One
              steady paho subscriber stays for the whole run and counts the poses messages.
  web         viewers open /stream.mjpg (or /events), read 2-8 frames and drop: politely (FIN), by
              RST, after half-closing their side first, or right after connecting without a request.
              A staller reads one frame and then stops reading (or sends half a request line) for
              longer than the live view's client_timeout_s, so that the server must time it out.
  polls       /healthz and /metrics, a new connection each time, every --poll seconds.

Every --interval seconds after --warmup it samples the edgepose process from /proc/PID (VmRSS,
Threads, open fds) and /metrics (frames processed, FPS), fits least-squares lines (per hour) and
exits 1 on a leak:

  RSS         slope > --max-rss-mb-h, AND the one-sided 99% lower bound of the slope > 0 (its standard
              error widened for the residuals' lag-1 autocorrelation), AND the fitted growth over the
              measured window > --min-rss-growth-mb, AND each half of the window on its own has a
              slope > half the limit (a leak keeps growing; a one-off step or a settling allocator
              grows in one half only).
  fds,        counted less the live view's ESTABLISHED client connections at that moment (each holds
  threads     an fd and a handler thread; one left in CLOSE_WAIT still counts): the minimum of the last
              fifth of the samples minus the minimum of the first fifth (the minimum skips connections
              that were just closing) > --max-fd-growth / --max-thread-growth.

It also fails when edgepose exits on its own, or stops processing frames. FPS is reported (slope and
relative trend) but never fails the run: the machine is shared and its FPS moves with the load.
--duration is the whole run from the moment /healthz answers, warm-up included. All processes are
stopped on exit, on Ctrl-C and on SIGTERM (and get SIGKILL if this script itself is killed).

    python3 benchmarks/soak.py --duration 30m --interval 10 --warmup 2m --json soak.json
"""

from __future__ import annotations

import argparse
import ctypes
import http.client
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from mqtt_broker import free_port, mosquitto_binary, wait_until  # noqa: E402

SHARED = Path(os.environ.get("EDGEPOSE_SHARED", ROOT.parent / "shared"))
DEFAULT_SOURCE = SHARED / "data/video/intel_walk.mkv"
PREFIX = "edgepose/soak"
BOUNDARY = b"--edgeposeframe"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CLIENT_TIMEOUT_S = 10.0  # the live view's default client_timeout_s; the staller outlasts it


# --------------------------------------------------------------------------- statistics

def t_quantile(p: float, df: float) -> float:
    """Student's t quantile: exact for df 1 and 2, else a Cornish-Fisher expansion (within 10% at df 3, 1% from 8)."""
    df = max(df, 1.0)
    if df < 1.5:  # exact for 1 and 2 degrees of freedom
        return math.tan(math.pi * (p - 0.5))
    if df < 2.5:
        return (2 * p - 1) * math.sqrt(2 / (4 * p * (1 - p)))
    z = statistics.NormalDist().inv_cdf(p)
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def linfit(t_h: list[float], y: list[float], confidence: float = 0.99) -> dict | None:
    """Least-squares line of y over t (hours): slope per hour with its noise.

    ``se`` is the textbook standard error; ``se_eff`` widens it by sqrt((1 + r1) / (1 - r1)), r1 the
    lag-1 autocorrelation of the residuals (an AR(1) effective sample size), because RSS moves in
    steps: a one-off step leaves long runs of same-signed residuals, a steady leak does not.
    ``lower``/``upper`` are the one-sided ``confidence`` bounds of the slope with se_eff.
    """
    n = len(y)
    if n < 3 or len(t_h) != n:
        return None
    tm, ym = statistics.fmean(t_h), statistics.fmean(y)
    sxx = sum((x - tm) ** 2 for x in t_h)
    if sxx <= 0:
        return None
    slope = sum((x - tm) * (v - ym) for x, v in zip(t_h, y)) / sxx
    icpt = ym - slope * tm
    res = [v - (icpt + slope * x) for x, v in zip(t_h, y)]
    ssr = sum(r * r for r in res)
    resid_std = math.sqrt(ssr / (n - 2))
    se = resid_std / math.sqrt(sxx)
    r1 = sum(res[i] * res[i - 1] for i in range(1, n)) / ssr if ssr > 0 else 0.0
    r1 = min(max(r1, 0.0), 0.99)
    n_eff = max(3.0, n * (1 - r1) / (1 + r1))
    se_eff = se * math.sqrt((1 + r1) / (1 - r1))
    q = t_quantile(confidence, n_eff - 2)
    span = t_h[-1] - t_h[0]
    return {"n": n, "slope_per_h": slope, "intercept": icpt, "resid_std": resid_std, "se": se,
            "r1": r1, "n_eff": n_eff, "se_eff": se_eff, "lower": slope - q * se_eff, "upper": slope + q * se_eff,
            "span_h": span, "fitted_growth": slope * span, "first": y[0], "last": y[-1]}


def window_growth(y: list[float]) -> tuple[float, int]:
    """min(last fifth) - min(first fifth) (at least 3 samples each): growth that transient connections cannot fake."""
    k = max(3, len(y) // 5)
    k = min(k, max(1, len(y) // 2))
    return min(y[-k:]) - min(y[:k]), k


def judge(samples: list[dict], max_rss_mb_h: float = 10.0, min_rss_growth_mb: float = 2.0,
          max_fd_growth: float = 3, max_thread_growth: float = 2, confidence: float = 0.99) -> dict:
    """Fit every series of the measured ``samples`` and decide on leaks.

    A sample has t_s, rss_mb, fds, threads, optionally fds_adj/threads_adj (used instead when every
    sample has them) and fps; samples with ``warmup`` true are left out.
    """
    s = [x for x in samples if not x.get("warmup")]
    out: dict = {"samples": len(s), "leaks": [], "ok": True}
    if len(s) < 3:
        out.update(ok=False, leaks=["too few samples"])
        return out
    t_h = [(x["t_s"] - s[0]["t_s"]) / 3600 for x in s]

    rss = [x["rss_mb"] for x in s]
    f = linfit(t_h, rss, confidence)
    half = len(s) // 2
    halves = [linfit(t_h[:half + 1], rss[:half + 1], confidence), linfit(t_h[half:], rss[half:], confidence)]
    half_slopes = [h["slope_per_h"] if h else None for h in halves]
    persistent = all(h is not None and h > max_rss_mb_h / 2 for h in half_slopes)
    rss_leak = (f["slope_per_h"] > max_rss_mb_h and f["lower"] > 0 and f["fitted_growth"] > min_rss_growth_mb
                and persistent)
    out["rss_mb"] = {**f, "half_slopes_per_h": half_slopes, "persistent": persistent,
                     "limit": {"max_slope_per_h": max_rss_mb_h, "min_growth": min_rss_growth_mb,
                               "half_slopes_over": max_rss_mb_h / 2, "confidence": confidence}, "leak": rss_leak}

    for key, allowance in (("fds", max_fd_growth), ("threads", max_thread_growth)):
        # judged on the counts less the live-view connections open at that moment, when the sampler knew them
        series = f"{key}_adj" if all(f"{key}_adj" in x for x in s) else key
        y = [float(x[series]) for x in s]
        g, k = window_growth(y)
        fit = linfit(t_h, y, confidence)
        raw = linfit(t_h, [float(x[key]) for x in s], confidence)
        out[key] = {**fit, "series": series, "raw_first": raw["first"], "raw_last": raw["last"],
                    "raw_slope_per_h": raw["slope_per_h"], "window_growth": g, "window": k,
                    "limit": {"max_growth": allowance}, "leak": g > allowance}

    fps = [x["fps"] for x in s if x.get("fps") is not None]
    t_fps = [t for t, x in zip(t_h, s) if x.get("fps") is not None]
    ff = linfit(t_fps, fps, confidence)
    if ff:
        mean = statistics.fmean(fps)
        ff["mean"], ff["min"], ff["max"] = mean, min(fps), max(fps)
        ff["relative_per_h"] = ff["slope_per_h"] / mean if mean else None
    out["fps"] = ff
    out["leaks"] = [k for k in ("rss_mb", "fds", "threads") if out[k]["leak"]]
    out["ok"] = not out["leaks"]
    return out


# --------------------------------------------------------------------------- /proc sampling

TCP_STATES = {"01": "established", "02": "syn_sent", "03": "syn_recv", "04": "fin_wait1", "05": "fin_wait2",
              "06": "time_wait", "07": "close", "08": "close_wait", "09": "last_ack", "0A": "listen", "0B": "closing"}


def tcp_states(pid: int, inodes: set[str], local_port: int) -> Counter:
    """States of ``pid``'s sockets (by inode) whose local port is ``local_port``: its live-view connections."""
    states: Counter = Counter()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[9] in inodes and int(f[1].rsplit(":", 1)[1], 16) == local_port:
                states[TCP_STATES.get(f[3], f[3])] += 1
    return states


def proc_sample(pid: int, web_port: int | None = None) -> dict:
    """VmRSS, RssAnon, Threads and open fds (by kind) of ``pid``; raises OSError once it is gone.

    With ``web_port``: also its connections on that port by TCP state, and ``fds_adj``/``threads_adj``,
    the counts less the ESTABLISHED ones (each holds an fd and a handler thread while a client is
    connected). A connection whose client has gone stays in CLOSE_WAIT until the server closes it, so
    a connection the server never closes still counts: it is a leak.
    """
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def kb(name: str) -> float:
        return int(fields[name].split()[0]) / 1024 if name in fields else float("nan")

    kinds: Counter = Counter()
    inodes: set[str] = set()
    fd_dir = f"/proc/{pid}/fd"
    names = os.listdir(fd_dir)
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
        kinds[target.split(":", 1)[0] if ":[" in target or target.startswith("anon_inode:") else "file"] += 1
    out = {"rss_mb": round(kb("VmRSS"), 3), "rss_anon_mb": round(kb("RssAnon"), 3),
           "threads": int(fields["Threads"]), "fds": len(names), "fd_kinds": dict(kinds)}
    if web_port is not None:
        states = tcp_states(pid, inodes, web_port)
        live = states.get("established", 0)
        out.update(web_conns=dict(states), fds_adj=out["fds"] - live, threads_adj=out["threads"] - live)
    return out


def quietest_sample(pid: int, web_port: int, reads: int) -> dict:
    """``reads`` readings 50 ms apart; the one with the fewest fds and threads not explained by open connections."""
    got = []
    for i in range(max(1, reads)):
        if i:
            time.sleep(0.05)
        got.append(proc_sample(pid, web_port))
    return min(got, key=lambda r: (r["fds_adj"], r["threads_adj"]))


METRIC_LINE = re.compile(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)\s+(\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        m = METRIC_LINE.match(line.strip())
        if m:
            try:
                out[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
    return out


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes, float]:
    """(status, body, seconds) of one GET on a fresh connection."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        return r.status, r.read(), time.monotonic() - t0
    finally:
        conn.close()


# --------------------------------------------------------------------------- clients

class Tally:
    """Thread-safe counters, plus the number of our sockets open to edgepose's live view."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter = Counter()
        self.open_web = 0
        self.max_open_web = 0
        self.errors: Counter = Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def error(self, where: str, exc: BaseException) -> None:
        with self._lock:
            self.counts[f"{where}_errors"] += 1
            self.errors[f"{where}: {type(exc).__name__}: {exc}"[:160]] += 1

    def web_opened(self) -> None:
        with self._lock:
            self.open_web += 1
            self.max_open_web = max(self.max_open_web, self.open_web)

    def web_closed(self) -> None:
        with self._lock:
            self.open_web -= 1

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self.counts)


def _rst_close(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def _mqtt_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _mqtt_packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _mqtt_varint(len(body)) + body


class _Reader:
    """Buffered exact reads on a socket, without makefile() (whose reference would delay the real close)."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, bytearray()

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _mqtt_read(rf: _Reader) -> tuple[int, bytes]:
    head = rf.read(1)
    if not head:
        raise ConnectionError("broker closed the connection")
    length, mult = 0, 1
    for _ in range(4):
        b = rf.read(1)
        if not b:
            raise ConnectionError("broker closed the connection")
        length += (b[0] & 0x7F) * mult
        mult *= 128
        if not b[0] & 0x80:
            break
    body = rf.read(length) if length else b""
    if len(body) != length:
        raise ConnectionError("short MQTT packet")
    return head[0], body


def mqtt_churn(port: int, stop: threading.Event, tally: Tally, worker: int, rng: random.Random) -> None:
    """Raw MQTT 3.1.1 subscribers that take some messages and vanish (FIN or RST; 1 in 5 DISCONNECTs)."""
    n = 0
    while not stop.is_set():
        n += 1
        how = ("close", "rst", "close", "rst", "disconnect")[n % 5]
        want = rng.randint(5, 60)
        sock = None
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            rf = _Reader(sock)
            sock.sendall(_mqtt_packet(0x10, _mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60)
                                      + _mqtt_str(f"soak-sub-{worker}-{n}")))
            kind, body = _mqtt_read(rf)
            if kind >> 4 != 2 or body[1] != 0:
                raise ConnectionError(f"CONNACK refused: {body!r}")
            tally.add("mqtt_connected")
            sock.sendall(_mqtt_packet(0x82, struct.pack("!H", 1) + _mqtt_str(f"{PREFIX}/#") + b"\x01"))
            got, deadline = 0, time.monotonic() + 15
            while got < want and not stop.is_set() and time.monotonic() < deadline:
                kind, body = _mqtt_read(rf)
                if kind >> 4 == 3:
                    got += 1
                    qos = (kind >> 1) & 3
                    if qos and got < want:  # the last one stays unacknowledged: the broker must resend or drop it
                        tlen = struct.unpack("!H", body[:2])[0]
                        sock.sendall(b"\x40\x02" + body[2 + tlen:4 + tlen])
            tally.add("mqtt_messages", got)
            if got < want and not stop.is_set():
                tally.add("mqtt_short")  # fewer messages than wanted within 15 s
            if how == "disconnect":
                sock.sendall(b"\xe0\x00")
                sock.close()
            elif how == "rst":
                _rst_close(sock)
            else:
                sock.close()
            sock = None
            tally.add(f"mqtt_vanished_{how}")
        except Exception as exc:  # noqa: BLE001  (counted, and the loop goes on)
            if not stop.is_set():
                tally.error("mqtt", exc)
        finally:
            if sock is not None:
                sock.close()
        stop.wait(rng.uniform(0.1, 1.0))


class SteadySubscriber:
    """One paho client for the whole run: counts poses messages (so a silent MQTT output shows)."""

    def __init__(self, port: int, tally: Tally):
        self.port, self.tally = port, tally
        self.poses = 0
        self.client = None

    def start(self) -> "SteadySubscriber":
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            return self
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-steady")

        def on_connect(client, _userdata, _flags, rc, _props=None):
            if not rc.is_failure:
                client.subscribe(f"{PREFIX}/poses", qos=0)
                self.tally.add("steady_connects")

        def on_message(_client, _userdata, msg):
            self.poses += 1

        c.on_connect, c.on_message = on_connect, on_message
        c.connect("127.0.0.1", self.port, keepalive=30)
        c.loop_start()
        self.client = c
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


def _http_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: soak\r\nUser-Agent: edgepose-soak\r\n\r\n".encode()


def _read_status(sock: socket.socket, buf: bytearray) -> int:
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a status line")
        buf += chunk
    return int(buf.split(b"\r\n", 1)[0].split()[1])


def _read_parts(sock: socket.socket, buf: bytearray, marker: bytes, want: int, deadline: float) -> int:
    """Read until ``marker`` was seen ``want`` times (frames of /stream.mjpg, events of /events)."""
    seen = buf.count(marker)
    tail = bytes(buf[-len(marker):])
    while seen < want and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        seen += (tail + chunk).count(marker)
        tail = (tail + chunk)[-len(marker):]
    return seen


def web_viewer(port: int, stop: threading.Event, tally: Tally, rng: random.Random, slot: int) -> None:
    """Viewers that read a few frames and drop: polite, rst, half_close, events, connect_only."""
    modes = ("polite", "rst", "half_close", "events", "rst", "polite", "connect_only")
    n = slot
    while not stop.is_set():
        mode = modes[n % len(modes)]
        n += 1
        sock, opened = None, False
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            tally.web_opened()
            opened = True
            if mode == "connect_only":
                sock.close() if n % 2 else _rst_close(sock)
            else:
                path, marker = ("/events", b"\ndata: ") if mode == "events" else ("/stream.mjpg", BOUNDARY)
                sock.sendall(_http_request(path))
                if mode == "half_close":
                    sock.shutdown(socket.SHUT_WR)
                buf = bytearray()
                status = _read_status(sock, buf)
                tally.add(f"web_status_{status}")
                if status == 200:
                    want = rng.randint(2, 8)
                    got = _read_parts(sock, buf, marker, want, time.monotonic() + 10)
                    tally.add("web_frames", got)
                    if got < want and not stop.is_set():
                        tally.add("web_short")
                if mode == "rst":
                    _rst_close(sock)
                else:
                    sock.close()
            sock = None
            tally.add(f"web_{mode}")
        except Exception as exc:  # noqa: BLE001
            if not stop.is_set():
                tally.error("web", exc)
        finally:
            if sock is not None:
                sock.close()
            if opened:
                tally.web_closed()
        stop.wait(rng.uniform(0.1, 0.8))


def web_staller(port: int, stop: threading.Event, tally: Tally, rng: random.Random, stall_s: float) -> None:
    """A client that stops reading mid-stream, or stops half-way through its request, for ``stall_s``."""
    n = 0
    while not stop.is_set():
        mode = ("stall", "slow_request")[n % 2]
        n += 1
        sock, opened = None, False
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # small, so the server's send() blocks
            sock.settimeout(10)
            sock.connect(("127.0.0.1", port))
            tally.web_opened()
            opened = True
            if mode == "stall":
                sock.sendall(_http_request("/stream.mjpg"))
                buf = bytearray()
                status = _read_status(sock, buf)
                tally.add(f"web_status_{status}")
                if status == 200:
                    _read_parts(sock, buf, BOUNDARY, 1, time.monotonic() + 10)
            else:
                sock.sendall(b"GET /stream.mjpg HT")
            stop.wait(stall_s)
            _rst_close(sock)  # unread data: the kernel sends an RST anyway
            sock = None
            tally.add(f"web_{mode}")
        except Exception as exc:  # noqa: BLE001
            if not stop.is_set():
                tally.error("staller", exc)
        finally:
            if sock is not None:
                sock.close()
            if opened:
                tally.web_closed()
        stop.wait(rng.uniform(0.2, 1.0))


def poller(port: int, stop: threading.Event, tally: Tally, every_s: float, latencies: list[float]) -> None:
    """/healthz and /metrics on a new connection each, every ``every_s``."""
    while not stop.wait(every_s):
        for path in ("/healthz", "/metrics"):
            try:
                status, _body, secs = http_get(port, path)
                tally.add(f"poll_{path.strip('/')}_{status}")
                latencies.append(secs)
            except Exception as exc:  # noqa: BLE001
                if not stop.is_set():
                    tally.error(f"poll{path}", exc)


# --------------------------------------------------------------------------- processes

def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when this script dies (even by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn(cmd: list[str], log_path: Path, **kw) -> subprocess.Popen:
    """A child in its own session (Ctrl-C reaches only us: we stop it in order), killed if we die."""
    with log_path.open("ab") as log:
        return subprocess.Popen(cmd, stdout=kw.pop("stdout", subprocess.DEVNULL), stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent, **kw)


def stop_process(proc: subprocess.Popen | None, timeout: float = 15.0) -> dict:
    """SIGTERM, then SIGKILL after ``timeout``; how long it took and its exit code."""
    if proc is None:
        return {}
    t0 = time.monotonic()
    killed = False
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            killed = True
            proc.kill()
            proc.wait(10)
    return {"returncode": proc.returncode, "stop_s": round(time.monotonic() - t0, 2), "killed": killed}


def start_broker(workdir: Path) -> tuple[subprocess.Popen, int, Path]:
    binary = mosquitto_binary()
    if binary is None:
        raise SystemExit("soak: mosquitto is not installed: apt-get install -y mosquitto")
    port = free_port()
    import getpass

    conf = workdir / "mosquitto.conf"
    conf.write_text("\n".join([
        f"listener {port} 127.0.0.1", f"user {getpass.getuser()}", "allow_anonymous true",
        "log_dest stderr", "log_type error", "log_type warning", "log_type notice", "log_type information",
        "max_queued_messages 1000",
    ]) + "\n")
    log = workdir / "mosquitto.log"
    proc = spawn([binary, "-c", str(conf)], log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"soak: mosquitto exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_until(ready, 10, f"mosquitto on port {port}")
    return proc, port, log


def find_edgepose(given: str | None) -> str:
    for cand in (given, str(Path(sys.executable).parent / "edgepose"), str(ROOT / ".venv/bin/edgepose"),
                 shutil.which("edgepose")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise SystemExit("soak: no edgepose executable; pip install -e . in the venv, or pass --edgepose")


def write_config(workdir: Path, args, mqtt_port: int, web_port: int) -> Path:
    source = str(args.source)
    is_images = source == "sample" or Path(source).is_dir() or source.lower().endswith(IMAGE_SUFFIXES)
    fps = args.fps if args.fps is not None else (10.0 if is_images else None)
    cfg = {
        "source": {"loop": True, "realtime": not args.no_realtime, "fps": fps},
        "model": {"path": args.model, "threads": args.threads},
        "outputs": [
            {"type": "mqtt", "host": "127.0.0.1", "port": mqtt_port, "device_id": "soak", "topic_prefix": PREFIX,
             "stats_interval_s": 5.0, "qos": 1},
            {"type": "web", "host": "127.0.0.1", "port": web_port, "client_timeout_s": CLIENT_TIMEOUT_S},
            {"type": "jsonl", "path": args.jsonl},
        ],
        "logging": {"level": "INFO"},
    }
    path = workdir / "soak-config.yaml"
    path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
    return path


NOTABLE = re.compile(r"drop|lost|reconnect|refus|timed? ?out|error|fail|stall|full", re.I)


def log_findings(text: str) -> dict:
    """edgepose's log, grouped with numbers blanked: WARNING and worse, tracebacks, and INFO lines about
    drops, timeouts, reconnects and failures (what the client churn provokes)."""
    problems: Counter = Counter()
    notable: Counter = Counter()
    levels: Counter = Counter()
    for line in text.splitlines():
        m = re.search(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b\s+(.*)", line)
        if line.startswith("Traceback"):
            levels["Traceback"] += 1
        if not m:
            continue
        level, msg = m.groups()
        levels[level] += 1
        key = f"{level} " + re.sub(r"\d+(\.\d+)?", "N", msg)[:200]
        if level in ("WARNING", "ERROR", "CRITICAL"):
            problems[key] += 1
        elif NOTABLE.search(msg):
            notable[key] += 1
    return {"levels": dict(levels), "problems": problems.most_common(15), "notable": notable.most_common(15)}


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90, 90s, 5m, 1h)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# --------------------------------------------------------------------------- the run

class _Interrupted(Exception):
    """Ctrl-C or SIGTERM before the run started, or edgepose did not come up."""


def run(args) -> dict:
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="edgepose-soak-")) if args.workdir is None else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()  # the clients
    done = threading.Event()  # the run (Ctrl-C, SIGTERM)
    interrupted = []

    def on_signal(signum, _frame):
        interrupted.append(signal.Signals(signum).name)
        done.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    broker = edge = steady = None
    threads: list[threading.Thread] = []
    tally = Tally()
    latencies: list[float] = []
    samples: list[dict] = []
    result: dict = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "machine": {"machine": platform.machine(), "cpus": os.cpu_count(),
                                "python": platform.python_version(), "load_avg_start": os.getloadavg()}}
    try:
        broker, mqtt_port, broker_log = start_broker(workdir)
        web_port = free_port()
        config = write_config(workdir, args, mqtt_port, web_port)
        edge_log = workdir / "edgepose.log"
        cmd = [find_edgepose(args.edgepose), "run", str(config), "--source", str(args.source), "--loop"]
        edge = spawn(cmd, edge_log)
        result["command"] = cmd
        result["pids"] = {"edgepose": edge.pid, "mosquitto": broker.pid}
        print(f"soak: edgepose pid {edge.pid} (live view http://127.0.0.1:{web_port}/), mosquitto pid {broker.pid} "
              f"(port {mqtt_port}), work folder {workdir}", flush=True)
        t_start = time.monotonic()

        def edge_ready() -> bool:
            if edge.poll() is not None:
                raise RuntimeError(f"edgepose exited with {edge.returncode} before it was ready:\n"
                                   f"{edge_log.read_text(errors='replace')[-3000:]}")
            if done.is_set():
                raise _Interrupted
            try:
                return http_get(web_port, "/healthz", timeout=2)[0] == 200
            except OSError:
                return False

        try:
            wait_until(edge_ready, args.start_timeout, "edgepose's /healthz to answer 200", poll=0.25)
        except (RuntimeError, AssertionError) as exc:
            result["died"] = str(exc)
            raise _Interrupted from None
        result["startup_s"] = round(time.monotonic() - t_start, 2)
        t0 = time.monotonic()

        steady = SteadySubscriber(mqtt_port, tally).start()
        for i in range(args.mqtt_clients):
            threads.append(threading.Thread(target=mqtt_churn, name=f"mqtt-{i}", daemon=True,
                                            args=(mqtt_port, stop, tally, i, random.Random(rng.random()))))
        for i in range(args.web_clients):
            threads.append(threading.Thread(target=web_viewer, name=f"web-{i}", daemon=True,
                                            args=(web_port, stop, tally, random.Random(rng.random()), i)))
        if args.stall_s > 0:
            threads.append(threading.Thread(target=web_staller, name="staller", daemon=True,
                                            args=(web_port, stop, tally, random.Random(rng.random()), args.stall_s)))
        threads.append(threading.Thread(target=poller, name="poller", daemon=True,
                                        args=(web_port, stop, tally, args.poll, latencies)))
        for t in threads:
            t.start()

        prev = None
        stalled_in_a_row = 0
        next_at = t0
        while not done.is_set():
            now = time.monotonic()
            if now - t0 >= args.duration:
                break
            if edge.poll() is not None:
                result["died"] = f"edgepose exited with {edge.returncode} after {now - t0:.0f} s"
                break
            if now < next_at:
                done.wait(min(next_at - now, 1.0))
                continue
            next_at += args.interval
            try:  # /proc first, so that our own /metrics request is not among its connections
                p = quietest_sample(edge.pid, web_port, args.reads)
                bp = proc_sample(broker.pid)
            except OSError:
                continue
            try:
                status, body, _ = http_get(web_port, "/metrics")
                m = parse_metrics(body.decode()) if status == 200 else {}
            except OSError as exc:
                tally.error("sample/metrics", exc)
                m = {}
            t_s = time.monotonic() - t0
            frames = m.get("edgepose_frames_processed_total")
            x = {"t_s": round(t_s, 2), "warmup": t_s < args.warmup, **p,
                 "frames": frames, "fps_gauge": m.get("edgepose_fps"),
                 "web_clients_stream": m.get('edgepose_web_clients{endpoint="stream"}'),
                 "web_clients_events": m.get('edgepose_web_clients{endpoint="events"}'),
                 "web_clients_dropped": m.get("edgepose_web_clients_dropped_total"),
                 "drops": {k.split('"')[1]: v for k, v in m.items() if k.startswith("edgepose_dropped_total{")},
                 "our_open_web": tally.open_web, "steady_poses": steady.poses if steady else None,
                 "broker_rss_mb": bp["rss_mb"], "broker_fds": bp["fds"], "fps": None}
            if prev is not None and frames is not None and prev["frames"] is not None:
                dt = x["t_s"] - prev["t_s"]
                x["fps"] = round((frames - prev["frames"]) / dt, 3) if dt > 0 else None
                stalled_in_a_row = stalled_in_a_row + 1 if frames == prev["frames"] else 0
                if stalled_in_a_row >= 3:
                    result["died"] = f"edgepose stopped processing frames (3 samples in a row) at {t_s:.0f} s"
                    samples.append(x)
                    break
            samples.append(x)
            prev = x
            if not args.quiet:
                print(f"{t_s:7.0f} s{' (warm-up)' if x['warmup'] else '          '} RSS {x['rss_mb']:7.1f} MB  "
                      f"fds {x['fds']:3d} ({x['fds_adj']:3d})  threads {x['threads']:3d} ({x['threads_adj']:3d})  "
                      f"fps {x['fps'] if x['fps'] is not None else '-':>7}"
                      f"  web conns {x['web_conns']}", flush=True)
        result["run_s"] = round(time.monotonic() - t0, 1)
    except _Interrupted:
        pass
    finally:
        stop.set()
        for t in threads:
            t.join(args.stall_s + 15)
        if steady is not None:
            try:
                steady.stop()
            except Exception:  # noqa: BLE001
                pass
        result["edgepose"] = stop_process(edge)
        result["broker"] = stop_process(broker)
        for s, h in old.items():
            signal.signal(s, h)
        if interrupted:
            result["interrupted"] = interrupted[0]
        if edge is not None:
            text = (workdir / "edgepose.log").read_text(errors="replace")
            result["edgepose"]["log"] = log_findings(text)
            result["edgepose"]["summary_line"] = next(
                (ln for ln in reversed(text.splitlines()) if ln.startswith("processed ")), None)
            result["edgepose"]["log_tail"] = text.splitlines()[-15:]
        if broker is not None:
            blog = (workdir / "mosquitto.log").read_text(errors="replace")
            result["broker"]["log"] = {"lines": blog.count("\n"),
                                       "closed_by_client": len(re.findall(r"closed its connection", blog)),
                                       "disconnected": len(re.findall(r"disconnected", blog)),
                                       "socket_errors": len(re.findall(r"socket error", blog))}
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            result["workdir"] = str(workdir)

    counts = tally.snapshot()
    counts["steady_poses"] = steady.poses if steady else None
    counts["max_open_web"] = tally.max_open_web
    result["clients"] = counts
    result["client_errors"] = tally.errors.most_common(10)
    lat = sorted(latencies)
    result["poll_latency_s"] = ({"n": len(lat), "p50": lat[len(lat) // 2], "p99": lat[int(len(lat) * 0.99)],
                                 "max": lat[-1]} if lat else None)
    result["samples"] = samples
    result["verdict"] = judge(samples, args.max_rss_mb_h, args.min_rss_growth_mb, args.max_fd_growth,
                              args.max_thread_growth)
    if samples:
        first = next((x for x in samples if not x["warmup"]), samples[0])
        result["server_drops_during_run"] = ((samples[-1]["web_clients_dropped"] or 0)
                                             - (first["web_clients_dropped"] or 0))
    failures = list(result["verdict"]["leaks"])
    if result.get("died"):
        failures.append(result["died"])
    result["failures"] = failures
    result["machine"]["load_avg_end"] = os.getloadavg()
    return result


def summary(result: dict) -> str:
    v = result["verdict"]
    lines = [f"soak: {result.get('run_s', 0):.0f} s run, {v['samples']} samples after the warm-up "
             f"(load average {result['machine']['load_avg_end'][0]:.1f})", "",
             "| series | first → last | slope per hour ± 99% bound | residual std | limit | verdict |",
             "|---|---|---|---|---|---|"]

    def bound(f: dict) -> str:
        return f"{f['slope_per_h']:+.2f} ± {f['upper'] - f['slope_per_h']:.2f}"

    if "rss_mb" in v:
        f = v["rss_mb"]
        halves = ", ".join(f"{h:+.1f}" if h is not None else "-" for h in f["half_slopes_per_h"])
        lines.append(f"| RSS MB | {f['first']:.1f} → {f['last']:.1f} | {bound(f)} MB/h (halves {halves}) "
                     f"| {f['resid_std']:.2f} MB | > {f['limit']['max_slope_per_h']:g} MB/h, lower bound > 0, "
                     f"growth > {f['limit']['min_growth']:g} MB, both halves > {f['limit']['half_slopes_over']:g} "
                     f"| {'LEAK' if f['leak'] else 'ok'} |")
        for key, unit in (("fds", "fds"), ("threads", "threads")):
            f = v[key]
            name = f"{key} (less open client conns)" if f["series"].endswith("_adj") else key
            lines.append(f"| {name} | {f['first']:.0f} → {f['last']:.0f} | {bound(f)} {unit}/h "
                         f"| {f['resid_std']:.2f} "
                         f"| window-min growth {f['window_growth']:+.0f} ≤ {f['limit']['max_growth']:g} "
                         f"| {'LEAK' if f['leak'] else 'ok'} |")
    f = v.get("fps")
    if f:
        rel = f"{100 * f['relative_per_h']:+.1f} %/h" if f.get("relative_per_h") is not None else ""
        lines.append(f"| FPS | {f['first']:.1f} → {f['last']:.1f} (mean {f['mean']:.1f}, min {f['min']:.1f}) "
                     f"| {bound(f)} /h ({rel}) | {f['resid_std']:.2f} | reported only (shared machine) | info |")
    c = result["clients"]
    mq = sum(c.get(f"mqtt_vanished_{h}", 0) for h in ("close", "rst", "disconnect"))
    web = {k[4:]: n for k, n in c.items() if k.startswith("web_") and not k.startswith(("web_status", "web_frames",
                                                                                         "web_short", "web_errors"))}
    status = {k[11:]: n for k, n in c.items() if k.startswith("web_status_")}
    polls = {k[5:]: n for k, n in c.items() if k.startswith("poll_")}
    lines += ["", f"MQTT subscribers: {c.get('mqtt_connected', 0)} connected, {mq} vanished "
                  f"(FIN {c.get('mqtt_vanished_close', 0)}, RST {c.get('mqtt_vanished_rst', 0)}, "
                  f"DISCONNECT {c.get('mqtt_vanished_disconnect', 0)}), {c.get('mqtt_messages', 0)} messages, "
                  f"errors {c.get('mqtt_errors', 0)}; steady subscriber: {c.get('steady_poses')} poses messages",
              f"web clients: {web}; statuses {status}; {c.get('web_frames', 0)} frames/events read; "
              f"server-side drops {result.get('server_drops_during_run')}; errors "
              f"{c.get('web_errors', 0) + c.get('staller_errors', 0)}",
              f"polls: {polls}; latency {result['poll_latency_s']}"]
    e = result.get("edgepose", {})
    if result.get("samples"):
        last = result["samples"][-1]
        lines.append(f"pipeline drops (counted by edgepose, /metrics): {last.get('drops')}; "
                     f"mosquitto RSS {result['samples'][0]['broker_rss_mb']:.1f} → {last['broker_rss_mb']:.1f} MB")
    lines.append(f"edgepose: exit {e.get('returncode')} after SIGTERM in {e.get('stop_s')} s"
                 f"{' (SIGKILLed)' if e.get('killed') else ''}; log {e.get('log', {}).get('levels')}")
    for msg, n in ((e.get("log", {}).get("problems") or []) + (e.get("log", {}).get("notable") or []))[:10]:
        lines.append(f"  {n:5d} × {msg}")
    if result.get("client_errors"):
        lines.append(f"client errors: {result['client_errors']}")
    lines.append("")
    lines.append("FAIL: " + "; ".join(result["failures"]) if result["failures"] else "PASS: no leak")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=parse_duration, default=1800.0,
                   help="whole run, warm-up included (30m, 90s, ...)")
    p.add_argument("--interval", type=parse_duration, default=10.0, help="seconds between samples")
    p.add_argument("--warmup", type=parse_duration, default=120.0, help="samples before this are left out of the fits")
    p.add_argument("--model", default="default", help="model file or zoo id (default: the shipped model)")
    p.add_argument("--threads", type=int, default=2, help="inference threads")
    p.add_argument("--source", default=str(DEFAULT_SOURCE), help="clip, image folder or 'sample' (looped)")
    p.add_argument("--fps", type=float, help="pacing for image sources (default 10) or to override a clip's fps")
    p.add_argument("--no-realtime", action="store_true", help="play the source as fast as possible (CPU-bound)")
    p.add_argument("--jsonl", default="/dev/null", help="where the JSONL output goes")
    p.add_argument("--mqtt-clients", type=int, default=2, help="churning MQTT subscriber loops")
    p.add_argument("--web-clients", type=int, default=3, help="churning live-view viewer loops")
    p.add_argument("--stall-s", type=float, default=CLIENT_TIMEOUT_S + 3,
                   help="how long the staller stops reading (0: no staller)")
    p.add_argument("--reads", type=int, default=3,
                   help="/proc readings per sample, 50 ms apart; the one with the fewest unexplained fds is kept")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between /healthz + /metrics polls")
    p.add_argument("--max-rss-mb-h", type=float, default=10.0, help="RSS slope above this (and significant) is a leak")
    p.add_argument("--min-rss-growth-mb", type=float, default=2.0, help="... and the fitted growth must exceed this")
    p.add_argument("--max-fd-growth", type=float, default=3, help="allowed window-minimum growth of open fds")
    p.add_argument("--max-thread-growth", type=float, default=2, help="allowed window-minimum growth of threads")
    p.add_argument("--start-timeout", type=float, default=90.0, help="seconds for edgepose to answer /healthz")
    p.add_argument("--edgepose", help="the edgepose executable (default: the one beside this Python, or .venv)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, metavar="OUT", help="write the samples and results here")
    p.add_argument("--workdir", help="keep configs and logs here (default: a temporary folder, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    p.add_argument("--quiet", action="store_true", help="no line per sample")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.warmup >= args.duration:
        raise SystemExit("soak: --warmup must be shorter than --duration")
    result = run(args)
    print(summary(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    if result.get("interrupted"):
        return 130  # a partial run: its figures are printed, but it is no verdict
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
