"""IP cameras for tests, on 127.0.0.1: HTTP MJPEG and RTSP (RTP/JPEG, RFC 2435, over TCP, Basic auth).

Both serve JPEG frames of a real clip at a fixed rate, and both can be stopped like a camera losing
power (listener and open streams gone) and started again on the same port. The RTSP camera speaks
what FFmpeg (inside OpenCV) needs: OPTIONS, DESCRIBE (401 until the credentials from the URL
arrive), SETUP (TCP only: a UDP request gets 461, so a test sees which transport was asked for),
PLAY, then interleaved RTP packets.
"""

from __future__ import annotations

import base64
import http.server
import socket
import socketserver
import struct
import threading
import time

RTP_JPEG = 26
MAX_PAYLOAD = 1400


def split_jpeg(jpeg: bytes) -> tuple[bytes, bytes, int, int, int]:
    """Baseline JPEG -> (the two 64-byte quantization tables, entropy-coded scan, width, height, RFC 2435 type)."""
    tables: dict[int, bytes] = {}
    width = height = 0
    kind = 1
    i = 2  # after SOI
    while i < len(jpeg):
        marker = jpeg[i + 1]
        length = struct.unpack(">H", jpeg[i + 2:i + 4])[0]
        seg = jpeg[i + 4:i + 2 + length]
        if marker == 0xDB:  # DQT: one or more 8-bit tables
            pos = 0
            while pos < len(seg):
                tables[seg[pos] & 0x0F] = seg[pos + 1:pos + 65]
                pos += 65
        elif marker == 0xC0:  # SOF0
            height, width = struct.unpack(">HH", seg[1:5])
            kind = 1 if seg[7] == 0x22 else 0  # luma sampling 2x2 -> 4:2:0 (type 1), 2x1 -> 4:2:2 (type 0)
        elif marker == 0xDA:  # SOS: the scan runs to the EOI
            return tables[0] + tables[1], jpeg[i + 2 + length:-2], width, height, kind
        i += 2 + length
    raise ValueError("not a baseline JPEG")


def rtp_packets(jpeg: bytes, seq: int, timestamp: int, ssrc: int = 0x5EED) -> list[bytes]:
    qtables, scan, width, height, kind = split_jpeg(jpeg)
    packets, offset = [], 0
    while offset < len(scan):
        head = struct.pack(">B3sBBBB", 0, offset.to_bytes(3, "big"), kind, 255, width // 8, height // 8)
        if offset == 0:  # Q >= 128: the tables travel in-band with the first fragment
            head += struct.pack(">BBH", 0, 0, len(qtables)) + qtables
        chunk = scan[offset:offset + MAX_PAYLOAD]
        offset += len(chunk)
        marker = 0x80 if offset >= len(scan) else 0
        rtp = struct.pack(">BBHII", 0x80, marker | RTP_JPEG, (seq + len(packets)) & 0xFFFF, timestamp, ssrc)
        packets.append(rtp + head + chunk)
    return packets


class _Camera:
    """What both cameras share: a threaded server on a fixed port that can be stopped and restarted."""

    def __init__(self, frames: list[bytes], fps: float):
        self.frames, self.period = frames, 1.0 / fps
        self.port = 0  # chosen at the first start, kept on every restart
        self._server: socketserver.ThreadingTCPServer | None = None
        self._conns: set[socket.socket] = set()
        self._alive = threading.Event()

    def _handler(self) -> type:
        raise NotImplementedError

    def start(self):
        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server(("127.0.0.1", self.port), self._handler())
        self.port = self._server.server_address[1]
        self._alive.set()
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Like a camera losing power: the listener and every open stream go away."""
        self._alive.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self._conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._conns.clear()


class MjpegCamera(_Camera):
    """multipart/x-mixed-replace JPEG stream that can also stall (connection open, no frames)."""

    def __init__(self, frames: list[bytes], user: str, password: str, fps: float = 30.0):
        super().__init__(frames, fps)
        self.user, self.password = user, password
        self.stalled = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.port}/stream.mjpg"

    def _handler(self) -> type:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                camera._conns.add(self.connection)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while camera._alive.is_set():
                    if camera.stalled.is_set():
                        time.sleep(0.02)
                        continue
                    jpeg = camera.frames[i % len(camera.frames)]
                    i += 1
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                         % (len(jpeg), jpeg))
                    except OSError:
                        return
                    time.sleep(camera.period)

        return Handler


class RtspCamera(_Camera):
    """RTSP/TCP with Basic auth, RTP/JPEG payload."""

    def __init__(self, frames: list[bytes], user: str, password: str, fps: float = 30.0):
        super().__init__(frames, fps)
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.transports: list[str] = []  # the Transport header of every SETUP

    def url(self, user: str, password: str) -> str:
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}/stream1"

    def _handler(self) -> type:
        camera = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                camera._conns.add(self.connection)
                while camera._alive.is_set():
                    request = self._request()
                    if request is None:
                        return
                    method, headers = request
                    if method == "PLAY":
                        self._reply(headers, "200 OK", {"Session": "1"})
                        camera._stream(self.wfile)
                        return
                    self._answer(method, headers)

            def _request(self):
                lines = []
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return None
                    if line in (b"\r\n", b"\n"):
                        break
                    lines.append(line.decode("latin-1").strip())
                if not lines:
                    return None
                headers = dict(ln.split(":", 1) for ln in lines[1:] if ":" in ln)
                headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
                length = int(headers.get("content-length", 0))
                if length:
                    self.rfile.read(length)
                return lines[0].split()[0], headers

            def _reply(self, headers, status, extra=None, body=b""):
                out = [f"RTSP/1.0 {status}", f"CSeq: {headers.get('cseq', '0')}"]
                out += [f"{k}: {v}" for k, v in (extra or {}).items()]
                if body:
                    out.append(f"Content-Length: {len(body)}")
                self.wfile.write(("\r\n".join(out) + "\r\n\r\n").encode() + body)

            def _answer(self, method, headers):
                if method == "OPTIONS":
                    self._reply(headers, "200 OK", {"Public": "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN"})
                elif method == "DESCRIBE":
                    if headers.get("authorization") != camera.auth:
                        self._reply(headers, "401 Unauthorized", {"WWW-Authenticate": 'Basic realm="camera"'})
                        return
                    sdp = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=test camera\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
                           "m=video 0 RTP/AVP 26\r\na=rtpmap:26 JPEG/90000\r\na=control:track0\r\n").encode()
                    base = f"rtsp://127.0.0.1:{camera.port}/stream1/"
                    self._reply(headers, "200 OK", {"Content-Base": base, "Content-Type": "application/sdp"}, sdp)
                elif method == "SETUP":
                    transport = headers.get("transport", "")
                    camera.transports.append(transport)
                    if "TCP" not in transport.upper():
                        self._reply(headers, "461 Unsupported Transport")
                        return
                    self._reply(headers, "200 OK", {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1",
                                                    "Session": "1;timeout=60"})
                else:
                    self._reply(headers, "200 OK", {"Session": "1"})

        return Handler

    def _stream(self, out) -> None:
        seq, n = 0, 0
        while self._alive.is_set():
            packets = rtp_packets(self.frames[n % len(self.frames)], seq, int(n * self.period * 90000))
            try:
                for p in packets:
                    out.write(b"$\x00" + struct.pack(">H", len(p)) + p)
                out.flush()
            except OSError:
                return
            seq, n = seq + len(packets), n + 1
            time.sleep(self.period)
