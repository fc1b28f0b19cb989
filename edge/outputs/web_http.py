"""The live view's HTTP server: connections, limits and timeouts. What is served is the router's business.

Why not ThreadingHTTPServer: it gave every connection a thread and a client slot before reading a
byte, so 16 idle sockets made /healthz answer 503. Here one thread (the listener) accepts every
connection and reads its request through a selector, under a deadline (``request_timeout_s``, from
accept, so dribbling bytes does not extend it) and a size cap. Short replies (/healthz, /metrics,
the page, errors) are written by that thread without blocking. Only a request the router has
authorised as a stream takes a slot (``max_clients`` in all, ``max_clients_per_address`` from one
address) and a thread of its own, whose sends time out after ``client_timeout_s``. An idle or slow
socket costs a file descriptor for a few seconds and no thread; no client can hold what a health
check needs. Every connection the server gives up on is counted by reason (REASONS).
"""

from __future__ import annotations

import http.client
import io
import logging
import re
import selectors
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Callable, Union
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

POLL_S = 0.25  # the longest the listener sleeps before it re-checks deadlines and shutdown
MAX_HEAD = 8192  # request line + headers; a GET needs far less
MAX_PENDING = 256  # connections not (yet) streaming; beyond this the oldest is closed, so new ones still get in
BACKLOG = 128
LINGER_S = 1.0  # after a short reply, read what the client still sends, so close() does not reset the reply away
SEND_BUFFER = 256 * 1024  # per-stream kernel buffer: bounds memory and lag for a slow reader
RETRY_AFTER_S = 5
LOG_EVERY_S = 10.0  # drops are logged at most this often per reason (a flood must not flood the journal)
REASONS = ("request_timeout", "bad_request", "pending_full", "max_clients", "max_clients_per_address", "stalled")
_VERSION = re.compile(r"HTTP/1\.[01]")


@dataclass(frozen=True)
class Limits:
    max_clients: int
    max_clients_per_address: int
    request_timeout_s: float
    client_timeout_s: float


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    address: str  # the client's IP: what max_clients_per_address counts by


@dataclass(frozen=True)
class Reply:
    """A whole response, small enough to write without a thread."""

    status: int
    body: bytes
    ctype: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, head_only: bool = False) -> bytes:
        head = _head(self.status, self.ctype, {"Content-Length": str(len(self.body)), **self.headers})
        return head if head_only else head + self.body


@dataclass(frozen=True)
class Stream:
    """An endless response: ``run(write)`` writes the body until the client or the server goes."""

    kind: str  # counted per kind: 'stream', 'events'
    ctype: str
    run: Callable[[Callable[[bytes], None]], None]


Router = Callable[[Request], Union[Reply, Stream]]


def _head(status: int, ctype: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.0 {status} {HTTPStatus(status).phrase}", "Server: edgepose", f"Content-Type: {ctype}",
             "Cache-Control: no-store", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_request(head: bytes, address: str) -> Request | Reply:
    """The request line and headers (without the blank line), or the 400 to answer."""
    line, _, rest = head.partition(b"\n")
    parts = line.rstrip(b"\r").decode("latin-1").split()
    if len(parts) != 3 or not _VERSION.fullmatch(parts[2]):
        return Reply(400, b"bad request: this server speaks HTTP/1.1, e.g. GET /healthz HTTP/1.1\n")
    try:
        headers = http.client.parse_headers(io.BytesIO(rest + b"\r\n\r\n"))
    except http.client.HTTPException:
        return Reply(400, b"bad request: malformed headers\n")
    try:
        url = urlsplit(parts[1])  # ValueError on e.g. "//[x": an invalid IPv6 host
    except ValueError:
        return Reply(400, b"bad request: malformed request target\n")
    return Request(parts[0], url.path, parse_qs(url.query), headers, address)


class _Conn:
    """A connection the listener owns: reading its request, writing a short reply, or lingering."""

    __slots__ = ("sock", "address", "deadline", "data", "out", "state")

    def __init__(self, sock: socket.socket, address: str, deadline: float):
        self.sock, self.address, self.deadline = sock, address, deadline
        self.data = bytearray()
        self.out = memoryview(b"")
        self.state = "read"


class HttpServer:
    """Listens on (host, port); ``start`` runs the listener thread, ``stop`` ends it and every stream."""

    def __init__(self, host: str, port: int, limits: Limits, router: Router, closing: threading.Event):
        self.limits, self.router, self.closing = limits, router, closing
        self._listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(BACKLOG)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self.address = self._listener.getsockname()
        self._sel = selectors.DefaultSelector()
        self._pending: dict[socket.socket, _Conn] = {}  # insertion order = oldest first (listener thread only)
        self._lock = threading.Lock()  # guards the three below (listener, stream threads, /metrics)
        self._streams: dict[socket.socket, tuple[str, str]] = {}  # -> (address, kind)
        self._dropped: Counter[str] = Counter()
        self._logged: dict[str, tuple[float, int]] = {}  # reason -> (last logged at, count then)
        self._thread: threading.Thread | None = None
        self._seq = 0

    # -- what the rest of the live view reads ------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stream_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(kind for _, kind in self._streams.values()))

    def dropped(self) -> dict[str, int]:
        with self._lock:
            return {r: self._dropped[r] for r in REASONS}

    def count_drop(self, reason: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._dropped[reason] += 1
            total = self._dropped[reason]
            last, then = self._logged.get(reason, (-LOG_EVERY_S, 0))
            if now - last < LOG_EVERY_S:
                return
            self._logged[reason] = (now, total)
        log.info("live view: dropped %d connection(s) for %s (the last from %s; %d so far)",
                 total - then, reason, address, total)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name="web-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.closing.set()
        if self._thread is not None:
            self._thread.join(2.0)  # the listener closes its sockets on the way out
        else:
            self._sel.close()
            self._listener.close()
        with self._lock:
            streams = list(self._streams)
        for sock in streams:  # unblock stream threads stuck in send() to a client that stopped reading
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- the listener thread -----------------------------------------------------------------------
    def _serve(self) -> None:
        try:
            next_sweep = 0.0
            while not self.closing.is_set():
                for key, _ in self._sel.select(POLL_S):
                    if key.data is None:
                        self._accept()
                    elif key.data.sock in self._pending:
                        try:
                            self._service(key.data)
                        except Exception:  # one connection's bug must never close the listener (and /healthz)
                            log.warning("live view: a connection from %s failed", key.data.address, exc_info=True)
                            self._close(key.data)
                now = time.monotonic()
                if now >= next_sweep:
                    self._expire(now)
                    next_sweep = now + 0.05
        finally:
            for conn in list(self._pending.values()):
                self._close(conn)
            self._sel.close()
            self._listener.close()

    def _accept(self) -> None:
        for _ in range(BACKLOG):
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of file descriptors: make room rather than spin on a readable listener
                log.warning("live view: cannot accept a connection: %s", exc)
                if self._pending:
                    self._evict_oldest()
                else:
                    self.closing.wait(0.05)
                return
            if len(self._pending) >= MAX_PENDING:
                self._evict_oldest()
            sock.setblocking(False)
            conn = _Conn(sock, addr[0], time.monotonic() + self.limits.request_timeout_s)
            self._pending[sock] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _evict_oldest(self) -> None:
        oldest = next(iter(self._pending.values()))
        self.count_drop("pending_full", oldest.address)
        self._close(oldest)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._pending.values() if now >= c.deadline]:
            if conn.state != "linger":  # did not send its request, or read its reply, in time
                if conn.state == "read":
                    self._try_send(conn.sock, Reply(408, b"request timeout\n").encode())
                self.count_drop("request_timeout", conn.address)
            self._close(conn)

    def _service(self, conn: _Conn) -> None:
        if conn.state == "write":
            return self._write(conn)
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._close(conn)
        if not data:
            return self._close(conn)
        if conn.state == "linger":
            return  # discard
        conn.data += data
        end = min((i for i in (conn.data.find(b"\r\n\r\n"), conn.data.find(b"\n\n")) if i >= 0), default=-1)
        if end < 0 and len(conn.data) <= MAX_HEAD:
            return
        if end < 0 or end > MAX_HEAD:
            self.count_drop("bad_request", conn.address)
            return self._reply(conn, Reply(431, b"request header too large\n"))
        self._dispatch(conn, parse_request(bytes(conn.data[:end]), conn.address))

    def _dispatch(self, conn: _Conn, req: Request | Reply) -> None:
        if isinstance(req, Reply):
            self.count_drop("bad_request", conn.address)
            return self._reply(conn, req)
        if req.method not in ("GET", "HEAD"):
            return self._reply(conn, Reply(405, b"only GET and HEAD\n", headers={"Allow": "GET, HEAD"}))
        try:
            out = self.router(req)
        except Exception:  # a bug in a route must not take the listener down with it
            log.warning("live view: %s %s failed", req.method, req.path, exc_info=True)
            out = Reply(500, b"internal error; see the edgepose log\n")
        log.debug("%s %s %s", req.address, req.method, req.path)  # never the query: it may hold the token
        if isinstance(out, Reply):
            return self._reply(conn, out, head_only=req.method == "HEAD")
        if req.method == "HEAD":
            return self._reply(conn, Reply(200, b"", out.ctype), head_only=True)
        refused = self._take_slot(conn.sock, conn.address, out.kind)
        if refused is not None:
            self.count_drop(refused, conn.address)
            body = (f"too many live-view streams ({refused}: {getattr(self.limits, refused)}"
                    f"{'' if refused == 'max_clients' else ' from ' + conn.address}); try again later\n")
            return self._reply(conn, Reply(503, body.encode(), headers={"Retry-After": str(RETRY_AFTER_S)}))
        self._sel.unregister(conn.sock)
        del self._pending[conn.sock]
        self._seq += 1
        try:
            threading.Thread(target=self._stream, args=(conn.sock, conn.address, out),
                             name=f"web-{out.kind}-{self._seq}", daemon=True).start()
        except RuntimeError:  # no thread to be had: give the slot back
            log.warning("live view: cannot start a thread for a %s stream", out.kind)
            with self._lock:
                self._streams.pop(conn.sock, None)
            conn.sock.close()

    def _take_slot(self, sock: socket.socket, address: str, kind: str) -> str | None:
        """Reserve a stream slot; or the name of the limit that refuses one."""
        with self._lock:
            if len(self._streams) >= self.limits.max_clients:
                return "max_clients"
            if sum(a == address for a, _ in self._streams.values()) >= self.limits.max_clients_per_address:
                return "max_clients_per_address"
            self._streams[sock] = (address, kind)
        return None

    def _reply(self, conn: _Conn, reply: Reply, head_only: bool = False) -> None:
        conn.state, conn.out = "write", memoryview(reply.encode(head_only))
        conn.deadline = time.monotonic() + self.limits.request_timeout_s
        self._sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        try:
            conn.out = conn.out[conn.sock.send(conn.out):]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return self._close(conn)
        if conn.out:
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return self._close(conn)
        conn.state, conn.deadline = "linger", time.monotonic() + LINGER_S
        self._sel.modify(conn.sock, selectors.EVENT_READ, conn)

    @staticmethod
    def _try_send(sock: socket.socket, data: bytes) -> None:
        try:
            sock.send(data)
        except OSError:
            pass

    def _close(self, conn: _Conn) -> None:
        self._pending.pop(conn.sock, None)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    # -- one thread per admitted stream ------------------------------------------------------------
    def _stream(self, sock: socket.socket, address: str, stream: Stream) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(self.limits.client_timeout_s)  # the longest one send may wait for the client
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            except OSError:
                pass
            sock.sendall(_head(200, stream.ctype, {"X-Accel-Buffering": "no"}))
            stream.run(sock.sendall)
        except socket.timeout:  # TimeoutError on 3.10+
            if not self.closing.is_set():
                self.count_drop("stalled", address)
        except OSError:
            pass  # the client went away, or stop() shut the socket
        except Exception:
            log.warning("live view: a %s stream to %s failed", stream.kind, address, exc_info=True)
        finally:
            with self._lock:
                self._streams.pop(sock, None)
            sock.close()
