"""Live view: who may connect, how many, and clients that never read must not stall the pipeline."""

from __future__ import annotations

import socket

import cv2
import numpy as np
import pytest

from edge.capture.base import to_rgb8
from edge.config import WebOutput
from edge.errors import OutputError
from edge.outputs.base import build_sink
from edge.types import StreamMeta
from web_live import get, mjpeg_frames, parse_prometheus, start_live, wait_for


# -- access, limits and slow clients --------------------------------------------------------------
def test_binds_loopback_by_default():
    assert WebOutput(type="web").host == "127.0.0.1"
    sink = build_sink(WebOutput(type="web", port=0))
    sink.open(StreamMeta("m", "f", "r", (), (), "s", "0", None))
    try:
        assert sink.server.address[0] == "127.0.0.1"
    finally:
        sink.close()


def test_bearer_token_is_required_except_for_healthz(movenet_tflite, walk_clip):
    token = "s3cret-token-123"
    pipe, web, _ = start_live(movenet_tflite, walk_clip, token=token)
    try:
        for path in ["", "metrics", "stream.mjpg", "events"]:
            assert get(web.url + path)[0] == 401, path
            assert get(web.url + path, {"Authorization": "Bearer wrong-token-000"})[0] == 401, path
        assert get(web.url + "metrics", {"Authorization": f"Bearer {token}"})[0] == 200
        assert get(web.url + f"?token={token}")[0] == 200
        assert len(mjpeg_frames(web.url + f"stream.mjpg?overlay=0&token={token}", 1)) == 1
        assert get(web.url + "healthz")[0] == 200
    finally:
        pipe.stop()


def stuck_client(port: int, path: str) -> socket.socket:
    """A client that asks for a stream and then never reads: a tiny receive window, no recv()."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


def test_clients_that_never_read_do_not_stall_the_pipeline_and_are_dropped(movenet_tflite, walk_clip):
    pipe, web, _ = start_live(movenet_tflite, walk_clip, client_timeout_s=1.0, max_fps=60, jpeg_quality=95,
                              max_clients_per_address=16)  # all of them come from 127.0.0.1
    server = web.server
    port = server.port
    stuck = [stuck_client(port, "/stream.mjpg" if i % 2 else "/stream.mjpg?overlay=0") for i in range(10)]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]  # connect, say nothing
    try:
        before = pipe.stats.frames_processed
        wait_for(lambda: server.client_counts()["stream"] == 10 or server.clients_dropped, "the stuck clients")
        # While they hang, frames keep flowing and a healthy client still gets fresh frames.
        assert len(mjpeg_frames(web.url + "stream.mjpg", 3)) == 3
        wait_for(lambda: pipe.stats.frames_processed > before + 30, "the pipeline to keep going")
        wait_for(lambda: server.clients_dropped >= 10, "the server to drop the clients that never read")
        fam = parse_prometheus(get(web.url + "metrics")[1].decode())
        assert fam["edgepose_web_clients_dropped_total"]["samples"][""] >= 10
        assert fam["edgepose_web_clients"]["samples"]['endpoint="stream"'] == 0
        assert get(web.url + "healthz")[0] == 200
    finally:
        for s in stuck + idle:
            s.close()
        pipe.stop()
    assert not server.listening


def test_stop_returns_while_clients_are_stuck(movenet_tflite, walk_clip):
    pipe, web, _ = start_live(movenet_tflite, walk_clip, client_timeout_s=600)
    server = web.server
    stuck = [stuck_client(server.port, "/stream.mjpg") for _ in range(3)]
    try:
        wait_for(lambda: server.client_counts()["stream"] == 3, "the stuck clients to connect")
        pipe.stop()
        assert not server.listening
        wait_for(lambda: server.client_counts()["stream"] == 0, "the client threads to end")
    finally:
        for s in stuck:
            s.close()


def test_too_many_streams_get_503_but_health_and_metrics_answer(movenet_tflite, walk_clip):
    pipe, web, _ = start_live(movenet_tflite, walk_clip, max_clients=2, client_timeout_s=30)
    held = [stuck_client(web.server.port, "/events") for _ in range(2)]
    try:
        wait_for(lambda: web.server.client_counts()["events"] == 2, "two event clients")
        status, body, headers = get(web.url + "events")
        assert status == 503 and headers.get("Retry-After") == "5" and b"max_clients" in body
        assert get(web.url + "metrics")[0] == 200 and get(web.url + "healthz")[0] == 200
        assert get(web.url)[0] == 200  # the page too: only streams take a slot
    finally:
        for s in held:
            s.close()
        pipe.stop()


def test_port_in_use_names_the_port_and_the_fix():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        sink = build_sink(WebOutput(type="web", port=port))
        with pytest.raises(OutputError, match=rf"127\.0\.0\.1:{port}.*another port"):
            sink.open(StreamMeta("m", "f", "r", (), (), "s", "0", None))
    finally:
        blocker.close()


def test_unknown_path_is_404(live):
    _, web, _ = live
    status, body, _ = get(web.url + "nope")
    assert status == 404 and b"/stream.mjpg" in body


def test_one_encode_serves_every_client_within_the_frame_interval(walk_clip):
    """Ten viewers cost one JPEG per interval, not ten; a client never gets the same frame twice."""
    from edge.outputs.draw import DrawStyle
    from edge.outputs.web import LiveFeed
    from edge.types import Frame, PoseResult

    cap = cv2.VideoCapture(str(walk_clip))
    images = [to_rgb8(cap.read()[1]) for _ in range(3)]
    cap.release()
    feed = LiveFeed(StreamMeta("m", "f", "r", (), (), "s", "0", None), DrawStyle(badge=False), 80, max_fps=0.01)
    feed.publish(PoseResult(Frame(images[0], 0, 1, 0.0), [], {}, 2))
    seq_a, jpeg_a = feed.jpeg(overlay=False, after=0)
    feed.publish(PoseResult(Frame(images[1], 1, 1, 0.0), [], {}, 2))
    seq_b, jpeg_b = feed.jpeg(overlay=False, after=0)  # a second client, within the interval: shared
    assert (seq_b, jpeg_b) == (seq_a, jpeg_a) and jpeg_b is jpeg_a
    seq_c, jpeg_c = feed.jpeg(overlay=False, after=seq_a)  # the first client again: it gets the new frame
    assert seq_c == 2 and jpeg_c != jpeg_a
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg_c, np.uint8), 1), cv2.COLOR_BGR2RGB)
    assert np.abs(decoded.astype(int) - images[1]).mean() < 4  # it is frame 1's picture
    assert feed.wait_newer(2, timeout=0.01) is None
