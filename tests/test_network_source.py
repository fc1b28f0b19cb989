"""Network streams: local HTTP MJPEG and RTSP servers (tests/ip_cameras.py, frames of a real clip) act as IP cameras.

They are stopped mid-run and restarted on the same port: the source reconnects with back-off, the
pipeline stays up, the reconnect is counted, and credentials never reach a log line.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from edge.capture.base import build_source, guess_type
from edge.capture.network import has_backend, mask_url
from edge.capture.reconnect import Backoff, Reconnecting
from edge.config import Config, SourceConfig, validate
from edge.errors import ConfigError, SourceError
from ip_cameras import MjpegCamera, RtspCamera

PASSWORD = "hunter2-s3cret"


@pytest.fixture(scope="module")
def jpeg_frames(walk_clip) -> list[bytes]:
    cap = cv2.VideoCapture(str(walk_clip))
    frames = []
    while len(frames) < 30:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
    return frames


@pytest.fixture
def camera(jpeg_frames):
    cam = MjpegCamera(jpeg_frames, user="viewer", password=PASSWORD).start()
    yield cam
    cam.stop()


@pytest.fixture
def rtsp_camera(jpeg_frames):
    cam = RtspCamera(jpeg_frames, user="admin", password=PASSWORD).start()
    yield cam
    cam.stop()


def _wait_for(cond, timeout: float, what: str) -> float:
    """Poll ``cond`` until true; return the seconds it took (fail after ``timeout``)."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - t0


@pytest.mark.parametrize("text, masked", [
    ("rtsp://admin:s3cret@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
    ("rtsp://admin:p@ss@cam/x", "rtsp://admin:***@cam/x"),  # unencoded '@' in the password
    ("http://TOKEN123@cam/video.mjpg", "http://***@cam/video.mjpg"),
    ("http://cam/video.cgi?user=admin&pwd=s3cret&res=1", "http://cam/video.cgi?user=admin&pwd=***&res=1"),
    ("http://cam/snap?password=s3cret", "http://cam/snap?password=***"),
    ("rtspsrc location=rtsp://u:s3cret@cam/x user-id=u user-pw=s3cret ! decodebin ! appsink",
     "rtspsrc location=rtsp://u:***@cam/x user-id=u user-pw=*** ! decodebin ! appsink"),
    ("rtsp://cam:554/stream1", "rtsp://cam:554/stream1"),
    ("http://cam:8080/a@b", "http://cam:8080/a@b"),
])
def test_mask_url(text, masked):
    assert mask_url(text) == masked


@pytest.mark.parametrize("spec, kind", [
    ("rtsp://cam/stream", "network"), ("http://cam/video.mjpg", "network"), ("https://cam/x", "network"),
    ("rtsps://u:p@cam/x", "network"), ("udp://0.0.0.0:5000", "network"),
    ("nvarguscamerasrc ! video/x-raw(memory:NVMM) ! nvvidconv ! videoconvert ! appsink", "gstreamer"),
    ("/dev/video0", "device"), ("clip.mp4", "file"),
])
def test_guess_type_of_streams(spec, kind):
    assert guess_type(spec) == kind


def test_backoff_doubles_to_the_cap_and_resets():
    b = Backoff(0.5, 4.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0] and b.attempts == 6
    b.reset()
    assert b.next_delay() == 0.5
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def test_config_errors_never_echo_the_password():
    with pytest.raises(ConfigError) as err:
        validate({"source": {"type": "network", "path": f"rtsp://admin:{PASSWORD}@cam/x",
                             "reconnect_initial_s": 5, "reconnect_max_s": 1}})
    assert "source.reconnect_max_s" in str(err.value) and PASSWORD not in str(err.value)


def test_network_source_needs_a_path():
    with pytest.raises(ConfigError, match="source.path"):
        build_source(SourceConfig(type="network"))


def test_reads_an_mjpeg_camera_and_never_logs_the_password(camera, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    src = build_source(SourceConfig(type="network", path=camera.url))
    assert isinstance(src, Reconnecting) and PASSWORD not in src.name and "viewer:***@" in src.name
    src.open()
    for _ in range(5):
        image, t_ns = src.read()
        assert image.shape == (480, 640, 3) and t_ns > 0
    src.close()
    assert PASSWORD not in caplog.text and "opened" in caplog.text
    assert PASSWORD not in capfd.readouterr().err  # nor in what FFmpeg/OpenCV print themselves


def test_unreachable_camera_fails_at_open_with_masked_url_and_hint(capfd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # a port nothing listens on
    src = build_source(SourceConfig(type="network", path=f"rtsp://admin:{PASSWORD}@127.0.0.1:{port}/stream1",
                                    open_timeout_s=2))
    with pytest.raises(SourceError) as err:
        src.open()
    msg = str(err.value)
    assert "admin:***@127.0.0.1" in msg and "ping" in msg and "rtsp_transport: udp" in msg and PASSWORD not in msg
    assert PASSWORD not in capfd.readouterr().err


def test_rtsp_camera_with_a_password_over_tcp(rtsp_camera, jpeg_frames, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    src = build_source(SourceConfig(type="network", path=rtsp_camera.url("admin", PASSWORD), open_timeout_s=5))
    src.open()
    for i in range(3):
        image, _ = src.read()
        sent = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg_frames[i], np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert image.shape == sent.shape and np.abs(image.astype(np.int16) - sent).mean() < 3
    src.close()
    assert "RTP/AVP/TCP" in rtsp_camera.transports[-1]  # source.rtsp_transport: tcp (the default) was asked for
    assert PASSWORD not in caplog.text and PASSWORD not in capfd.readouterr().err


def test_rtsp_wrong_password_or_transport_fails_at_open(rtsp_camera, capfd):
    wrong = build_source(SourceConfig(type="network", path=rtsp_camera.url("admin", "not-it"), open_timeout_s=5))
    with pytest.raises(SourceError, match=r"admin:\*\*\*@.*user name and password"):
        wrong.open()
    udp = build_source(SourceConfig(type="network", path=rtsp_camera.url("admin", PASSWORD), open_timeout_s=5,
                                    rtsp_transport="udp"))
    with pytest.raises(SourceError, match="try source.rtsp_transport: tcp"):
        udp.open()
    assert "RTP/AVP/UDP" in rtsp_camera.transports[-1]  # this camera only does TCP: the option reached FFmpeg
    assert PASSWORD not in capfd.readouterr().err


def test_rtsp_camera_restart_reconnects(rtsp_camera):
    src = build_source(SourceConfig(type="network", path=rtsp_camera.url("admin", PASSWORD), read_timeout_s=1,
                                    open_timeout_s=2, reconnect_initial_s=0.2, reconnect_max_s=0.5))
    src.open()
    assert src.read() is not None
    rtsp_camera.stop()
    _wait_for(lambda: src.read() is None and src.state == "reconnecting", 5, "the loss")
    rtsp_camera.start()
    _wait_for(lambda: src.read() is not None, 10, "frames after the restart")
    assert src.reconnects == 1 and src.state == "streaming"
    src.close()


def test_gstreamer_path_says_what_is_missing():
    src = build_source(SourceConfig(type="gstreamer", path="videotestsrc ! videoconvert ! appsink"))
    if not has_backend(cv2.CAP_GSTREAMER):  # the PyPI OpenCV wheels: no GStreamer
        with pytest.raises(SourceError, match=r"no GStreamer support.*--system-site-packages"):
            src.open()
    else:
        src.open()
        assert src.read()[0].ndim == 3
        src.close()
    with pytest.raises(SourceError, match="GStreamer" if not has_backend(cv2.CAP_GSTREAMER) else "appsink"):
        build_source(SourceConfig(type="gstreamer", path="rtsp://cam/not-a-pipeline")).open()


def test_stalled_stream_times_out_and_reconnects(camera, caplog):
    caplog.set_level(logging.INFO, logger="edge.capture")
    src = build_source(SourceConfig(type="network", path=camera.url, read_timeout_s=0.5, open_timeout_s=1,
                                    reconnect_initial_s=0.2, reconnect_max_s=0.5))
    src.open()
    assert src.read() is not None
    camera.stalled.set()  # connection stays open, no more frames: read() must not hang
    _wait_for(lambda: src.read() is None and src.state == "reconnecting", 5, "the read timeout")
    assert "read timeout 0.5 s" in caplog.text
    camera.stalled.clear()
    _wait_for(lambda: src.read() is not None, 10, "frames after the stall")
    assert src.reconnects == 1 and src.state == "streaming"
    src.close()
    assert PASSWORD not in caplog.text


def test_camera_restart_mid_run_reconnects_and_the_pipeline_stays_up(camera, movenet_tflite, caplog):
    from edge.pipeline import Pipeline

    caplog.set_level(logging.INFO)
    source = {"type": "network", "path": camera.url, "read_timeout_s": 1.0, "open_timeout_s": 2.0,
              "reconnect_initial_s": 0.25, "reconnect_max_s": 1.0}
    cfg = Config.model_validate({"model": {"path": str(movenet_tflite)}, "source": source, "outputs": []})
    p = Pipeline(cfg).start()
    try:
        _wait_for(lambda: p.stats.frames_processed >= 5, 20, "the first frames")
        assert p.stats.source_state == "streaming"

        camera.stop()  # the camera loses power mid-run
        _wait_for(lambda: p.stats.source_state == "reconnecting", 5, "the source to notice")
        time.sleep(1.5)  # several attempts fail meanwhile: the back-off grows to its cap
        assert p.source.backoff.attempts >= 2 and not p.finished.is_set()

        captured = p.stats.frames_captured
        camera.start()  # back on the same port
        took = _wait_for(lambda: p.stats.frames_captured > captured, 10, "frames after the restart")
        assert took <= cfg.source.reconnect_max_s + 1.0, f"frames came back after {took:.2f} s"
        assert p.stats.reconnects == 1 and p.stats.source_state == "streaming"
        assert p.stats.snapshot()["reconnects"] == 1
        _wait_for(lambda: p.stats.frames_processed > 5 + 3, 10, "inference on the new frames")
        assert p.error is None and not p.finished.is_set()

        camera.stop()  # stopping while reconnecting still returns promptly
        _wait_for(lambda: p.stats.source_state == "reconnecting", 5, "the second loss")
    finally:
        p.stop()
    assert not any(t.is_alive() for t in threading.enumerate() if t.name == "capture")
    assert PASSWORD not in caplog.text and "reconnected after" in caplog.text
