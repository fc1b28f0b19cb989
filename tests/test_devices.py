"""V4L2 devices (there is no camera here): missing paths name the fix; a lost camera is reconnected.

The reconnect tests stand a scripted USB camera in for the hardware: it delivers frames from a real
clip, gets unplugged (reads fail, opens fail) and plugged back in.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge.capture.base import build_source
from edge.capture.opencv import V4L_TIMEOUT_ENV, Capture, DeviceSource
from edge.capture.reconnect import SLICE_S, Backoff, Reconnecting, StreamLost
from edge.config import SourceConfig, validate
from edge.errors import SourceError


@pytest.mark.parametrize("path, shown", [
    ("/dev/video99", "/dev/video99"),
    ("/dev/v4l/by-id/usb-Logitech_HD_Webcam_C920-video-index0", "/dev/v4l/by-id/usb-Logitech_HD_Webcam_C920"),
    ("57", "/dev/video57"),
])
def test_missing_device_names_the_path_and_the_fix(path, shown):
    src = build_source(SourceConfig(type="device", path=path))
    assert isinstance(src, Reconnecting)
    with pytest.raises(SourceError) as err:
        src.open()
    msg = str(err.value)
    assert shown in msg and "does not exist" in msg
    assert "v4l2-ctl --list-devices" in msg and "usermod -aG video" in msg and "/dev/v4l/by-id" in msg


def test_a_file_that_is_not_a_camera_cannot_be_opened(tmp_path, monkeypatch):
    monkeypatch.delenv(V4L_TIMEOUT_ENV, raising=False)
    fake_node = tmp_path / "video0"
    fake_node.write_bytes(b"")
    src = build_source(SourceConfig(type="device", path=str(fake_node), read_timeout_s=1.5))
    with pytest.raises(SourceError, match=r"cannot be opened as a V4L2 capture device.*v4l2-ctl"):
        src.open()
    assert os.environ[V4L_TIMEOUT_ENV] == "2"  # V4L2 ignores CAP_PROP_READ_TIMEOUT_MSEC: select() timeout instead


def test_a_closed_device_reports_a_lost_stream_not_a_crash():
    src = DeviceSource(SourceConfig(type="device", path="/dev/video99"))
    with pytest.raises(StreamLost):
        src.read()


def test_capture_release_waits_for_a_read(walk_clip):
    cap = Capture(cv2.VideoCapture(str(walk_clip)))
    ok, image = cap.read()
    assert ok and image.shape == (480, 640, 3)
    cap.release()
    assert cap.read() == (False, None) and cap.get(cv2.CAP_PROP_FPS) == 0.0


class UsbCamera:
    """Stands in for a USB webcam (hardware): frames from a real clip; can be unplugged and plugged in."""

    name = "device:/dev/video0"
    continuous = True
    live = True
    fps = 30.0

    def __init__(self, clip):
        self.clip = clip
        self.plugged = True
        self.opens = 0
        self.cap: cv2.VideoCapture | None = None

    def open(self):
        if not self.plugged:
            raise SourceError("camera /dev/video0 does not exist")
        self.opens += 1
        self.cap = cv2.VideoCapture(str(self.clip))

    def read(self):
        ok, image = self.cap.read() if (self.cap is not None and self.plugged) else (False, None)
        if not ok:
            raise StreamLost("camera /dev/video0 delivered no frame")
        return image[..., ::-1].copy(), time.monotonic_ns()

    def close(self):
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def _read_until(src, cond, timeout: float = 10.0):
    t0 = time.monotonic()
    while True:
        got = src.read()
        if cond(got):
            return got
        assert time.monotonic() - t0 < timeout, f"gave up after {timeout} s in state {src.state}"


def test_unplugged_camera_backs_off_then_reconnects(walk_clip, caplog):
    caplog.set_level(logging.INFO, logger="edge.capture.reconnect")
    usb = UsbCamera(walk_clip)
    src = Reconnecting(usb, Backoff(0.05, 0.2))
    src.open()
    assert src.state == "streaming" and src.read()[0].shape == (480, 640, 3)

    usb.plugged = False
    assert src.read() is None and src.state == "reconnecting" and usb.cap is None  # lost: closed, not leaked
    _read_until(src, lambda _: src.backoff.attempts >= 4)  # attempts keep failing while unplugged
    assert src.backoff.upcoming_s == 0.2 and src.reconnects == 0  # the wait doubled up to its cap

    usb.plugged = True
    frame = _read_until(src, lambda got: got is not None)
    assert isinstance(frame[0], np.ndarray) and src.state == "streaming"
    assert src.reconnects == 1 and src.losses == 1 and usb.opens == 2
    assert src.backoff.upcoming_s == 0.05  # reset after the success
    assert "reconnected after" in caplog.text and "reconnecting in" in caplog.text


def test_reads_stay_short_while_backing_off(walk_clip):
    usb = UsbCamera(walk_clip)
    src = Reconnecting(usb, Backoff(30.0, 60.0))  # a long back-off: the capture loop must still see stop
    src.open()
    usb.plugged = False
    assert src.read() is None
    t0 = time.monotonic()
    assert src.read() is None and src.read() is None
    assert time.monotonic() - t0 < 10 * SLICE_S  # each call sleeps one slice, not the whole back-off


def _lost(walk_clip) -> tuple[UsbCamera, Reconnecting]:
    """A camera that was streaming and has just been unplugged."""
    usb = UsbCamera(walk_clip)
    src = Reconnecting(usb, Backoff(0.01, 0.02))
    src.open()
    usb.plugged = False
    src.read()
    return usb, src


def test_close_during_reconnect_leaves_nothing_open(walk_clip):
    usb, src = _lost(walk_clip)
    src.close()
    usb.plugged = True
    time.sleep(0.03)
    assert src.read() is None  # closed: no reconnect attempt behind the pipeline's back
    assert usb.cap is None and usb.opens == 1


def test_close_while_a_reconnect_is_connecting_closes_the_new_connection(walk_clip):
    usb, src = _lost(walk_clip)
    real_open = usb.open

    def open_then_closed_meanwhile():  # the pipeline's stop() lands while the capture thread connects
        real_open()
        src.close()

    usb.open = open_then_closed_meanwhile
    usb.plugged = True
    time.sleep(0.03)
    assert src.read() is None and usb.opens == 2 and usb.cap is None


def test_camera_recipes_in_the_docs_are_valid_config():
    text = (Path(__file__).resolve().parent.parent / "docs" / "CAMERAS.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    kinds = [validate(b, origin="docs/CAMERAS.md").source.type for b in blocks]
    assert kinds == ["picamera", "device", "network", "gstreamer"]
