"""HTTP live view: a kiosk page, an MJPEG stream, keypoints as Server-Sent Events, /healthz, /metrics.

Standard library only. Routes:
  /             full-screen page; draws the skeletons client-side from /events over the video
  /stream.mjpg  annotated MJPEG (``?overlay=0`` for the bare video the page draws on)
  /events       the newest result as JSON (SSE, at most max_fps a second), after an ``event: meta``;
                with analytics: their state ("analytics") and the last RECENT_EVENTS events ("recent_events")
  /healthz      200 while frames flow, 503 once none came for ``stale_after_s`` (no token needed)
  /metrics      Prometheus text

This module says what each route answers; web_http.py owns connections, limits and timeouts
(/healthz and /metrics are never refused for want of a slot), web_feed.py the frames clients read.
Slow clients never stall the pipeline: ``write()`` only swaps the latest result into a slot
(O(1), no per-client queue). Each stream's own thread pulls the newest frame when it is ready
for one, so a client that stops reading blocks only itself, until its send timeout drops it.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from importlib import resources
from typing import Callable

from edge.config import WebOutput
from edge.errors import OutputError
from edge.outputs.base import register
from edge.outputs.draw import DrawStyle
from edge.outputs.metrics import CONTENT_TYPE as METRICS_TYPE, format_metrics
from edge.outputs.web_feed import LiveFeed
from edge.outputs.web_http import REASONS, HttpServer, Limits, Reply, Request, Stream
from edge.types import PoseResult, StreamMeta

log = logging.getLogger(__name__)
POLL_S = 0.25  # how long a stream thread waits for a frame before re-checking for shutdown
KEEPALIVE_S = 15.0  # with no new frame this long, send something: keeps proxies open, finds clients that left
BOUNDARY = "edgeposeframe"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
STREAM_KINDS = ("stream", "events")
Write = Callable[[bytes], None]


class LiveServer:
    """The routes, token and health of the live view, served by an HttpServer; started by WebSink.open.

    DESIGN keeps threads in pipeline.py; an HTTP server needs a listener thread plus one per
    stream, so they are the one accepted exception, owned by web_http.HttpServer: ``start``
    creates them, ``stop`` shuts every socket down and joins the listener. None touches the
    pipeline: they only read the LiveFeed.
    """

    def __init__(self, cfg: WebOutput, feed: LiveFeed):
        self.cfg = cfg
        self.feed = feed
        self.closing = threading.Event()
        self.page = b""
        self._token = cfg.token.encode() if cfg.token else None
        self._http: HttpServer | None = None
        self._routes = {"/": self._page, "/index.html": self._page, "/stream.mjpg": self._mjpeg,
                        "/events": self._events, "/healthz": self._healthz, "/metrics": self._metrics}

    @property
    def port(self) -> int:
        return self._http.address[1] if self._http else self.cfg.port

    @property
    def address(self) -> tuple:
        """The bound (host, port, ...), as the socket reports it."""
        return self._http.address if self._http else (self.cfg.host, self.cfg.port)

    @property
    def listening(self) -> bool:
        return self._http is not None and self._http.running

    def start(self) -> None:
        self.page = resources.files("edge.outputs").joinpath("web_page.html").read_bytes()
        limits = Limits(self.cfg.max_clients, self.cfg.max_clients_per_address, self.cfg.request_timeout_s,
                        self.cfg.client_timeout_s)
        try:
            self._http = HttpServer(self.cfg.host, self.cfg.port, limits, self.route, self.closing)
        except OSError as exc:
            raise OutputError(
                f"web output cannot listen on {self.cfg.host}:{self.cfg.port}: {exc.strerror or exc}. "
                "Choose another port (--output web:PORT, or outputs: - type: web, port: ...) or stop the program "
                "that uses it; host must be an address of this device (127.0.0.1, or 0.0.0.0 for every interface)"
            ) from None
        self._http.start()

    def stop(self) -> None:
        self.closing.set()
        if self._http is not None:
            self._http.stop()

    # -- routing -----------------------------------------------------------------------------------
    def route(self, req: Request) -> Reply | Stream:
        """What to answer ``req``: called by the listener thread, so it must not block."""
        handler = self._routes.get(req.path)
        if handler is None:
            return Reply(404, b"not found: try / /stream.mjpg /events /healthz /metrics\n")
        if req.path != "/healthz" and not self.authorized(req.headers.get("Authorization"), req.query):
            return Reply(401, b"a bearer token is required: Authorization: Bearer TOKEN, or ?token=TOKEN\n",
                         headers={"WWW-Authenticate": 'Bearer realm="edgepose"'})
        return handler(req)

    def authorized(self, header: str | None, query: dict) -> bool:
        if self._token is None:
            return True
        given = ""
        if header and header.lower().startswith("bearer "):
            given = header[7:].strip()
        elif query.get("token"):
            given = query["token"][0]
        return hmac.compare_digest(given.encode(), self._token)

    def _page(self, _req: Request) -> Reply:
        return Reply(200, self.page, "text/html; charset=utf-8")

    def _healthz(self, _req: Request) -> Reply:
        ok, body = self.health()
        return Reply(200 if ok else 503, json.dumps(body).encode() + b"\n", "application/json")

    def _metrics(self, _req: Request) -> Reply:
        return Reply(200, self.metrics().encode(), METRICS_TYPE)

    # -- streams: each runs on its own thread, writing until the client or the server goes ------------
    def _mjpeg(self, req: Request) -> Stream:
        overlay = req.query.get("overlay", ["1" if self.cfg.overlay else "0"])[0] not in ("0", "false", "no")

        def run(write: Write) -> None:
            seq, jpeg, sent = 0, b"", time.monotonic()
            while not self.closing.is_set():
                if self.feed.wait_newer(seq, POLL_S) is None:
                    if jpeg and time.monotonic() - sent > KEEPALIVE_S:  # the same frame again
                        write(self._part(jpeg))
                        sent = time.monotonic()
                    continue
                t0 = time.monotonic()
                seq, jpeg = self.feed.jpeg(overlay, seq)
                write(self._part(jpeg))
                sent = time.monotonic()
                self.closing.wait(max(0.0, 1.0 / self.cfg.max_fps - (sent - t0)))

        return Stream("stream", f"multipart/x-mixed-replace; boundary={BOUNDARY}", run)

    @staticmethod
    def _part(jpeg: bytes) -> bytes:
        head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
        return head.encode() + jpeg + b"\r\n"

    def _events(self, _req: Request) -> Stream:
        def run(write: Write) -> None:
            meta = json.dumps({**self.feed.meta.to_dict(), "min_score": self.cfg.min_score}, separators=(",", ":"))
            write(f"retry: 2000\nevent: meta\ndata: {meta}\n\n".encode())
            seq, quiet_since = 0, time.monotonic()
            while not self.closing.is_set():
                if self.feed.wait_newer(seq, POLL_S) is None:
                    if time.monotonic() - quiet_since > KEEPALIVE_S:
                        write(b": keepalive\n\n")
                        quiet_since = time.monotonic()
                    continue
                t0 = time.monotonic()
                seq, data = self.feed.event(seq)
                write(b"id: %d\ndata: %s\n\n" % (seq, data))
                quiet_since = time.monotonic()
                self.closing.wait(max(0.0, 1.0 / self.cfg.max_fps - (quiet_since - t0)))

        return Stream("events", "text/event-stream", run)

    # -- state -------------------------------------------------------------------------------------
    def client_counts(self) -> dict[str, int]:
        """Open streaming connections by endpoint ('stream', 'events')."""
        counts = self._http.stream_counts() if self._http else {}
        return {kind: counts.get(kind, 0) for kind in STREAM_KINDS}

    def dropped(self) -> dict[str, int]:
        """Connections the server closed or refused, by reason (web_http.REASONS)."""
        return self._http.dropped() if self._http else dict.fromkeys(REASONS, 0)

    @property
    def clients_dropped(self) -> int:
        return sum(self.dropped().values())

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
                              self.client_counts(), self.dropped())


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
