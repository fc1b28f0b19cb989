"""Live view under hostile clients: idle sockets, slowloris, too many viewers, viewers that stop reading.

Real sockets against the real server, started by the pipeline. Loopback has a whole /8, so clients
bind 127.0.0.N as their source address to stand for N different machines.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time

from edge.outputs.web_http import MAX_PENDING
from web_live import get, parse_prometheus, start_live, wait_for

POLLS = 20
ANSWER_S = 1.0  # what a monitoring system allows /healthz and /metrics (many default to 1 s)


def poll(port: int, path: str, timeout: float = ANSWER_S) -> tuple[int | None, float]:
    """(status, seconds) of one GET; status None if no answer came within ``timeout``."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - t0
    except OSError:
        return None, time.monotonic() - t0
    finally:
        conn.close()


def assert_monitoring_answers(port: int, polls: int = POLLS) -> None:
    """Every poll of /healthz and of /metrics answers 200 within ANSWER_S."""
    for i in range(polls):
        for path in ("/healthz", "/metrics"):
            status, secs = poll(port, path)
            assert status == 200 and secs < ANSWER_S, f"poll {i} of {path}: {status} after {secs:.2f} s"
        time.sleep(0.05)


def dropped(port: int, headers: dict | None = None) -> dict[str, float]:
    """edgepose_web_connections_dropped_total by reason."""
    fam = parse_prometheus(get(f"http://127.0.0.1:{port}/metrics", headers)[1].decode())
    samples = fam["edgepose_web_connections_dropped_total"]["samples"]
    return {re.search(r'reason="([^"]+)"', k).group(1): v for k, v in samples.items()}


def request(port: int, path: str, source: str = "127.0.0.1", **headers) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    conn.request("GET", path, headers=headers)
    return conn.getresponse()


class Viewer:
    """A real MJPEG viewer from ``source``: reads parts as fast as they come, on its own thread."""

    def __init__(self, port: int, source: str, path: str = "/stream.mjpg"):
        self.resp = request(port, path, source)
        assert self.resp.status == 200, (source, self.resp.status, self.resp.read())
        self.frames, self.arrivals = 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while not self.stop.is_set():
                line = self.resp.fp.readline()
                if not line:
                    return
                if line.lower().startswith(b"content-length:"):
                    self.resp.fp.readline()
                    self.resp.fp.read(int(line.split(b":")[1]))
                    self.frames += 1
                    self.arrivals.append(time.monotonic())
        except (OSError, ValueError):
            return

    def close(self) -> None:
        self.stop.set()
        self.resp.close()


def stuck_client(port: int, path: str = "/stream.mjpg") -> socket.socket:
    """Asks for a stream, then never reads: a tiny receive window and no recv()."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


def closed_by_server_after(s: socket.socket, limit: float) -> float | None:
    """Seconds until the server closed ``s`` (whatever it sent first), None if not within ``limit``."""
    t0 = time.monotonic()
    s.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            if s.recv(4096) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except OSError:  # reset
            return time.monotonic() - t0
    return None


def test_healthz_and_metrics_answer_while_64_idle_connections_are_open(live):
    pipe, web, _ = live
    port = web.server.port
    threads = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
    try:
        time.sleep(0.3)  # the server has accepted them all
        assert_monitoring_answers(port)
        # an idle connection costs a socket, not a thread
        assert threading.active_count() <= threads + 1, (threads, threading.active_count())
        # and they did not take a stream slot: a viewer still gets frames
        viewer = Viewer(port, "127.0.0.1")
        wait_for(lambda: viewer.frames >= 2, "a viewer's frames beside 64 idle connections")
        viewer.close()
    finally:
        for s in idle:
            s.close()


def test_past_max_pending_connections_the_oldest_idle_one_is_closed(live):
    _, web, _ = live
    port = web.server.port
    before = dropped(port)["pending_full"]
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(MAX_PENDING + 20)]
    try:
        assert_monitoring_answers(port, polls=3)
        assert closed_by_server_after(idle[0], 2.0) is not None  # the first in is the first out
        assert dropped(port)["pending_full"] >= before + 20
    finally:
        for s in idle:
            s.close()


def test_healthz_and_metrics_answer_with_every_stream_slot_taken(live):
    """16 real viewers (the default max_clients) from 8 addresses; the 17th gets 503, monitoring never does."""
    _, web, _ = live
    port = web.server.port
    limit = web.cfg.max_clients
    assert limit == 16
    wait_for(lambda: web.server.client_counts()["stream"] == 0, "earlier viewers to go")
    viewers = [Viewer(port, f"127.0.0.{2 + i // 2}", "/stream.mjpg" + ("?overlay=0" if i % 2 else ""))
               for i in range(limit)]
    try:
        wait_for(lambda: web.server.client_counts()["stream"] == limit, "16 viewers")
        before = dropped(port).get("max_clients", 0)
        extra = request(port, "/stream.mjpg", "127.0.0.100")
        body = extra.read()
        assert extra.status == 503 and extra.headers["Retry-After"].isdigit(), (extra.status, body)
        assert b"max_clients" in body
        assert dropped(port)["max_clients"] == before + 1
        counts = [v.frames for v in viewers]
        assert_monitoring_answers(port)
        assert all(v.frames > c for v, c in zip(viewers, counts)), "a viewer stopped getting frames"
        fam = parse_prometheus(get(web.url + "metrics")[1].decode())
        assert fam["edgepose_web_clients"]["samples"]['endpoint="stream"'] == limit
    finally:
        for v in viewers:
            v.close()


def test_stream_slots_per_address_and_only_after_authorisation(movenet_tflite, walk_clip):
    token = "s3cret-token-123"
    pipe, web, _ = start_live(movenet_tflite, walk_clip, token=token, max_clients=3, max_clients_per_address=2)
    port, auth = web.server.port, {"Authorization": f"Bearer {token}"}
    held = []
    try:
        # requests without the token are turned away and never hold a slot
        for _ in range(5):
            assert request(port, "/stream.mjpg").status == 401
        assert web.server.client_counts()["stream"] == 0
        held = [request(port, f"/stream.mjpg?token={token}") for _ in range(2)]
        held.append(request(port, "/events", "127.0.0.1", **auth))
        assert [r.status for r in held] == [200, 200, 503]
        body = held[2].read()
        assert b"max_clients_per_address" in body and held[2].headers["Retry-After"].isdigit()
        other = request(port, "/events", "127.0.0.2", **auth)  # another machine still gets in
        assert other.status == 200 and other.fp.readline().startswith(b"retry:")
        held.append(other)
        assert dropped(port, auth)["max_clients_per_address"] == 1
        assert (status := poll(port, "/healthz")[0]) == 200, status
    finally:
        for r in held:
            r.close()
        pipe.stop()


def test_a_viewer_that_stops_reading_is_dropped_and_blocks_no_one(movenet_tflite, walk_clip):
    timeout = 3.0
    pipe, web, _ = start_live(movenet_tflite, walk_clip, client_timeout_s=timeout, max_fps=30, jpeg_quality=95,
                              max_clients=2)
    port = web.server.port
    viewer = Viewer(port, "127.0.0.2")
    t0 = time.monotonic()
    stuck = stuck_client(port)
    try:
        wait_for(lambda: web.server.client_counts()["stream"] == 2, "a viewer and a stalled one")
        wait_for(lambda: web.server.client_counts()["stream"] == 1, "the stalled viewer to be dropped", 15)
        took = time.monotonic() - t0
        assert took < timeout + 5.0, took  # client_timeout_s, plus the frames it took to fill its buffers
        assert dropped(port)["stalled"] >= 1
        # the healthy viewer got frames all along: never a gap anywhere near the stalled one's timeout
        gaps = [b - a for a, b in zip(viewer.arrivals, viewer.arrivals[1:]) if b > t0]
        assert len(gaps) > 10 and max(gaps) < timeout / 2, (len(gaps), max(gaps, default=None))
        third = Viewer(port, "127.0.0.3")  # the slot it held is free again
        wait_for(lambda: third.frames >= 1, "a new viewer in the freed slot")
        third.close()
    finally:
        viewer.close()
        stuck.close()
        pipe.stop()


def test_clients_that_send_nothing_or_dribble_are_dropped_after_the_request_timeout(movenet_tflite, walk_clip):
    pipe, web, _ = start_live(movenet_tflite, walk_clip, request_timeout_s=1.0)
    port = web.server.port
    silent = socket.create_connection(("127.0.0.1", port))
    dribbler = socket.create_connection(("127.0.0.1", port))
    stop = threading.Event()

    def dribble():  # a byte every 0.1 s, never the blank line that ends a request
        try:
            dribbler.sendall(b"GET /healthz HTTP/1.1\r\n")
            while not stop.wait(0.1):
                dribbler.sendall(b"X")
        except OSError:
            return

    threading.Thread(target=dribble, daemon=True).start()
    try:
        assert_monitoring_answers(port, polls=5)
        assert (t := closed_by_server_after(silent, 4.0)) is not None and t < 4.0
        assert closed_by_server_after(dribbler, 4.0) is not None
        assert dropped(port)["request_timeout"] >= 2
        # a request too large, and one that is not HTTP: answered, closed, counted
        big = socket.create_connection(("127.0.0.1", port))
        big.sendall(b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 65536 + b"\r\n\r\n")
        assert big.recv(64).startswith(b"HTTP/1.0 431"), "a 64 KiB request head"
        junk = socket.create_connection(("127.0.0.1", port))
        junk.sendall(b"\x16\x03\x01 hello\r\n\r\n")  # e.g. TLS to a plain-HTTP port
        assert junk.recv(64).startswith(b"HTTP/1.0 400")
        big.close(), junk.close()
        assert dropped(port)["bad_request"] >= 2
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("HEAD", "/healthz")  # some monitors only ask for the status
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/healthz", body=b"x")
        resp = conn.getresponse()
        assert resp.status == 405 and resp.headers["Allow"] == "GET, HEAD"
    finally:
        stop.set()
        silent.close()
        dribbler.close()
        pipe.stop()


def test_a_malformed_request_target_gets_400_and_the_live_view_stays_up(live):
    """`GET //[x` made urlsplit raise in the listener thread, which then closed the listening socket."""
    _, web, _ = live
    port = web.server.port
    for target in (b"//[x", b"http://[::1", b"/%ff%fe?\xff=\xfe"):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = s.recv(4096)
        s.close()
        status = reply.split(b"\r\n")[0]
        assert status.startswith(b"HTTP/1.") and (b" 400 " in status or b" 404 " in status), reply[:80]
    assert_monitoring_answers(port, polls=3)
