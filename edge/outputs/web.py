"""HTTP live view: a kiosk page, an MJPEG stream, keypoints as Server-Sent Events, /healthz, /metrics.

Standard library only (ThreadingHTTPServer). Routes:
  /             full-screen page; draws the skeletons client-side from /events over the video
  /stream.mjpg  annotated MJPEG (``?overlay=0`` for the bare video the page draws on)
  /events       the newest result as JSON (SSE, at most max_fps a second), after an ``event: meta``;
                with analytics: their state ("analytics") and the last RECENT_EVENTS events ("recent_events")
  /healthz      200 while frames flow, 503 once none came for ``stale_after_s`` (no token needed)
  /metrics      Prometheus text

Slow clients never stall the pipeline: ``write()`` only swaps the latest result into a slot
(O(1), no per-client queue). Each client's own server thread pulls the newest frame when it
is ready for one, so a client that stops reading blocks only itself, until its socket
timeout drops it. JPEG and JSON are made lazily, once per frame, and only when a client asks.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
import time
from collections import deque
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import cv2

from edge.config import WebOutput
from edge.errors import OutputError
from edge.outputs.base import register
from edge.outputs.draw import DrawStyle, annotate
from edge.outputs.metrics import CONTENT_TYPE as METRICS_TYPE, format_metrics
from edge.types import PoseResult, StreamMeta

log = logging.getLogger(__name__)
POLL_S = 0.25  # how long a client thread waits before re-checking for shutdown
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies and browsers from timing out
SEND_BUFFER = 256 * 1024  # per-client kernel buffer: bounds memory and lag for a slow reader
BOUNDARY = "edgeposeframe"
RECENT_EVENTS = 20  # analytics events kept for the page: SSE skips frames, so their events must not go with them
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class LiveFeed:
    """The newest result and, made on demand, its JPEGs and JSON event: what every client reads.

    Each kind is made at most ``max_fps`` times a second whatever the number of clients: a client
    asking within that interval gets the last one made, if it has not seen it yet.
    """

    def __init__(self, meta: StreamMeta, style: DrawStyle, quality: int, max_fps: float):
        self.meta = meta
        self.style = style
        self.quality = quality
        self.period_ns = int(1e9 / max_fps)
        self._cond = threading.Condition()
        self._result: PoseResult | None = None
        self._seq = 0
        self._recent: deque[dict] = deque(maxlen=RECENT_EVENTS)  # guarded by _cond
        self._cache: dict[str, tuple[int, bytes, int]] = {}  # kind -> (seq, data, made at)
        self._locks = {"jpeg:1": threading.Lock(), "jpeg:0": threading.Lock(), "event": threading.Lock()}

    def publish(self, result: PoseResult) -> None:
        """Called by the sink thread for every result: never blocks on a client."""
        with self._cond:
            self._result = result
            self._seq += 1
            self._recent.extend(e.to_dict() for e in result.events)
            self._cond.notify_all()

    def wait_newer(self, seq: int, timeout: float) -> int | None:
        """The current sequence number once it is past ``seq``; None after ``timeout``."""
        with self._cond:
            if self._seq <= seq:
                self._cond.wait(timeout)
            return self._seq if self._seq > seq else None

    def _latest(self) -> tuple[int, PoseResult | None]:
        with self._cond:
            return self._seq, self._result

    def _cached(self, key: str, make, after: int) -> tuple[int, bytes]:
        with self._locks[key]:
            now = time.monotonic_ns()
            seq, result = self._latest()
            hit = self._cache.get(key)
            if hit is not None and hit[0] > after and (hit[0] == seq or now - hit[2] < self.period_ns):
                return hit[0], hit[1]
            data = make(result)
            self._cache[key] = (seq, data, now)
            return seq, data

    def jpeg(self, overlay: bool, after: int = 0) -> tuple[int, bytes]:
        """The newest frame as JPEG (newer than ``after``, the last one this client got)."""
        def make(result: PoseResult) -> bytes:
            image = annotate(result, self.meta, self.style) if overlay else result.frame.image
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise OutputError("OpenCV could not encode a JPEG; check that OpenCV was built with JPEG support")
            return buf.tobytes()

        return self._cached(f"jpeg:{int(overlay)}", make, after)

    def event(self, after: int = 0) -> tuple[int, bytes]:
        def make(result: PoseResult) -> bytes:
            payload = result.to_dict()
            stats = self.meta.stats
            payload["fps"] = round(stats.fps(), 2) if hasattr(stats, "fps") else None
            if result.analytics is not None:
                payload.pop("events", None)  # recent_events has them, and those of the frames not sent
                with self._cond:
                    payload["recent_events"] = list(self._recent)
                payload["analytics"] = result.analytics
            return json.dumps(payload, separators=(",", ":")).encode()

        return self._cached("event", make, after)


class _Server(ThreadingHTTPServer):
    """One thread per connection (daemon), at most ``max_clients`` at once, each with a socket timeout."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, app: "LiveServer"):
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        super().__init__(addr, _Handler)

    def process_request(self, request, client_address):
        with self.lock:
            full = len(self.open) >= self.app.cfg.max_clients
            if not full:
                self.open.add(request)
        if full:
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                                b"Retry-After: 5\r\nConnection: close\r\n\r\ntoo many live-view clients\n")
            except OSError:
                pass
            self.app.count_drop("too many clients")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:  # not socketserver's traceback on stderr
        log.debug("live view: error serving %s", client_address, exc_info=True)

    def shutdown_request(self, request):
        with self.lock:
            self.open.discard(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "edgepose"

    def setup(self) -> None:
        self.timeout = self.server.app.cfg.client_timeout_s  # applied by StreamRequestHandler.setup
        super().setup()
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass

    def log_message(self, fmt: str, *args) -> None:  # quiet: the token may be in the query string
        log.debug("%s %s", self.address_string(), (fmt % args).split("?")[0])

    def do_GET(self) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        route = {"/": self._page, "/index.html": self._page, "/stream.mjpg": self._mjpeg, "/events": self._events,
                 "/healthz": self._healthz, "/metrics": self._metrics}.get(url.path)
        if route is None:
            return self._send(404, b"not found: try / /stream.mjpg /events /healthz /metrics\n", "text/plain")
        if url.path != "/healthz" and not app.authorized(self.headers.get("Authorization"), query):
            return self._send(401, b"a bearer token is required: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
                              "text/plain", {"WWW-Authenticate": 'Bearer realm="edgepose"'})
        try:
            route(query)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away: nothing to report
        except socket.timeout:  # TimeoutError on 3.10+
            app.count_drop(f"{self.address_string()} stopped reading {url.path}")

    def _send(self, code: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _page(self, _query) -> None:
        self._send(200, self.server.app.page, "text/html; charset=utf-8")

    def _healthz(self, _query) -> None:
        ok, body = self.server.app.health()
        self._send(200 if ok else 503, json.dumps(body).encode() + b"\n", "application/json")

    def _metrics(self, _query) -> None:
        self._send(200, self.server.app.metrics().encode(), METRICS_TYPE)

    def _start_stream(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()

    def _mjpeg(self, query) -> None:
        app = self.server.app
        overlay = query.get("overlay", ["1" if app.cfg.overlay else "0"])[0] not in ("0", "false", "no")
        period = 1.0 / app.cfg.max_fps
        self._start_stream(f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        with app.client("stream"):
            seq = 0
            while not app.closing.is_set():
                if app.feed.wait_newer(seq, POLL_S) is None:
                    continue
                t0 = time.monotonic()
                seq, jpeg = app.feed.jpeg(overlay, seq)
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                self.wfile.write(head.encode() + jpeg + b"\r\n")
                app.closing.wait(max(0.0, period - (time.monotonic() - t0)))

    def _events(self, _query) -> None:
        app = self.server.app
        period = 1.0 / app.cfg.max_fps
        self._start_stream("text/event-stream")
        meta = json.dumps({**app.feed.meta.to_dict(), "min_score": app.cfg.min_score}, separators=(",", ":"))
        self.wfile.write(f"retry: 2000\nevent: meta\ndata: {meta}\n\n".encode())
        with app.client("events"):
            seq, quiet_since = 0, time.monotonic()
            while not app.closing.is_set():
                if app.feed.wait_newer(seq, POLL_S) is None:
                    if time.monotonic() - quiet_since > KEEPALIVE_S:
                        self.wfile.write(b": keepalive\n\n")
                        quiet_since = time.monotonic()
                    continue
                t0 = time.monotonic()
                seq, data = app.feed.event(seq)
                self.wfile.write(b"id: %d\ndata: %s\n\n" % (seq, data))
                quiet_since = time.monotonic()
                app.closing.wait(max(0.0, period - (quiet_since - t0)))


class LiveServer:
    """The HTTP server and its threads, started and stopped by WebSink.open/close.

    DESIGN keeps threads in pipeline.py; an HTTP server needs a listener thread plus one per
    connection, so they are the one accepted exception, fully owned here: ``start`` creates
    them, ``stop`` shuts every socket down and joins the listener. None touches the pipeline:
    they only read the LiveFeed.
    """

    def __init__(self, cfg: WebOutput, feed: LiveFeed):
        self.cfg = cfg
        self.feed = feed
        self.closing = threading.Event()
        self.page = b""
        self.clients_dropped = 0
        self._clients: dict[str, int] = {"stream": 0, "events": 0}
        self._lock = threading.Lock()
        self._token = cfg.token.encode() if cfg.token else None
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self.cfg.port

    def start(self) -> None:
        self.page = resources.files("edge.outputs").joinpath("web_page.html").read_bytes()
        try:
            self._httpd = _Server((self.cfg.host, self.cfg.port), self)
        except OSError as exc:
            raise OutputError(
                f"web output cannot listen on {self.cfg.host}:{self.cfg.port}: {exc.strerror or exc}. "
                "Choose another port (--output web:PORT, or outputs: - type: web, port: ...) or stop the program "
                "that uses it; host must be an address of this device (127.0.0.1, or 0.0.0.0 for every interface)"
            ) from None
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": POLL_S},
                                        name="web-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.closing.set()
        if self._httpd is None:
            return
        self._httpd.shutdown()
        with self._httpd.lock:
            conns = list(self._httpd.open)
        for conn in conns:  # unblock client threads stuck in send() to a client that stopped reading
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(2.0)
        self._httpd = None

    def authorized(self, header: str | None, query: dict) -> bool:
        if self._token is None:
            return True
        given = ""
        if header and header.lower().startswith("bearer "):
            given = header[7:].strip()
        elif query.get("token"):
            given = query["token"][0]
        return hmac.compare_digest(given.encode(), self._token)

    @contextmanager
    def client(self, kind: str) -> Iterator[None]:
        """Count one streaming client of ``kind`` while it is connected."""
        with self._lock:
            self._clients[kind] += 1
        try:
            yield
        finally:
            with self._lock:
                self._clients[kind] -= 1

    def client_counts(self) -> dict[str, int]:
        """Open streaming connections by endpoint ('stream', 'events')."""
        with self._lock:
            return dict(self._clients)

    def count_drop(self, why: str) -> None:
        with self._lock:
            self.clients_dropped += 1
        log.info("live view: dropped a client (%s)", why)

    def health(self) -> tuple[bool, dict]:
        stats = self.feed.meta.stats
        since = stats.since_last_frame_s() if stats is not None else float("inf")
        state = getattr(stats, "source_state", "unknown")
        ok = since < self.cfg.stale_after_s and state != "failed"
        return ok, {"status": "ok" if ok else "stalled", "source_state": state,
                    "since_last_frame_s": round(since, 3) if since != float("inf") else None}

    def metrics(self) -> str:
        stats = self.feed.meta.stats
        return format_metrics(stats.snapshot(), self.feed.meta.to_dict(), stats.since_last_frame_s(),
                              self.client_counts(), self.clients_dropped)


class WebSink:
    """The ``web`` output: starts the live view on open, feeds it on write, stops it on close."""

    def __init__(self, cfg: WebOutput):
        self.cfg = cfg
        self.name = f"web:{cfg.port}"
        self.server: LiveServer | None = None

    @property
    def url(self) -> str:
        host = self.cfg.host if self.cfg.host not in ("0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.server.port if self.server else self.cfg.port}/"

    def open(self, meta: StreamMeta) -> None:
        style = DrawStyle.of(self.cfg)
        self.server = LiveServer(self.cfg, LiveFeed(meta, style, self.cfg.jpeg_quality, self.cfg.max_fps))
        self.server.start()
        if self.cfg.host not in LOOPBACK:  # the default binds loopback: beyond it, say so every time
            log.warning("live view listens beyond this device, on %s:%d: anyone on the network can watch%s",
                        self.cfg.host, self.server.port, "" if self.cfg.token else " (set token: to require one)")
        log.info("live view at %s", self.url)

    def write(self, result: PoseResult) -> None:
        assert self.server is not None, "open() first"
        self.server.feed.publish(result)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@register("web")
def make_web(cfg: WebOutput) -> WebSink:
    return WebSink(cfg)
