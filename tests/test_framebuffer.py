"""Framebuffer sink against a file-backed fake /dev/fbN and a fake sysfs tree: bytes decoded back."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import FramebufferOutput, validate
from edge.errors import OutputError
from edge.outputs.base import build_sink
from edge.outputs.draw import DrawStyle, annotate, confidence_color
from edge.outputs.framebuffer import FramebufferSink, letterbox_box, read_geometry
from edge.outputs.window import _gui_from_build_info, gui_backend
from edge.pipeline import Pipeline
from edge.types import COCO17_EDGES, COCO17_NAMES, Frame, PoseResult, StreamMeta

BLOCKS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (255, 200, 40), (30, 90, 160)]


def fake_fb(tmp_path: Path, width: int, height: int, bpp: int, pad: int = 0, mode: str | None = None,
            virtual_height: int | None = None, name: str = "fb0") -> tuple[Path, Path, int]:
    """A sysfs dir and a device file filled with 0xAA (so untouched bytes show)."""
    stride = width * bpp // 8 + pad
    node = tmp_path / "sys" / "class" / "graphics" / name
    node.mkdir(parents=True)
    (node / "virtual_size").write_text(f"{width},{virtual_height or height}\n")
    (node / "bits_per_pixel").write_text(f"{bpp}\n")
    (node / "stride").write_text(f"{stride}\n")
    if mode:
        (node / "mode").write_text(mode + "\n")
    dev = tmp_path / "dev" / name
    dev.parent.mkdir()
    dev.write_bytes(b"\xaa" * stride * (virtual_height or height))
    return dev, tmp_path / "sys", stride


def decode(dev: Path, width: int, height: int, stride: int, fmt: str) -> np.ndarray:
    """The visible screen as HxWx3 RGB, decoded independently of the sink's code."""
    raw = np.frombuffer(dev.read_bytes()[: stride * height], np.uint8).reshape(height, stride)
    if fmt == "rgb565":
        v = raw[:, : width * 2].copy().view("<u2").astype(np.uint32)
        r, g, b = (v >> 11) & 0x1F, (v >> 5) & 0x3F, v & 0x1F
        return np.stack([(r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)], -1).astype(np.uint8)
    px = raw[:, : width * 4].reshape(height, width, 4)
    return px[..., [2, 1, 0]] if fmt == "xrgb8888" else px[..., [0, 1, 2]]


def block_frame(w: int, h: int) -> np.ndarray:
    """Six big uniform colour blocks, 3 across and 2 down."""
    img = np.zeros((h, w, 3), np.uint8)
    for i, color in enumerate(BLOCKS):
        r, c = divmod(i, 3)
        img[r * h // 2:(r + 1) * h // 2, c * w // 3:(c + 1) * w // 3] = color
    return img


def meta() -> StreamMeta:
    return StreamMeta("m", "movenet", "tflite", COCO17_NAMES, COCO17_EDGES, "test", "0", None)


def result_of(image: np.ndarray) -> PoseResult:
    return PoseResult(Frame(image, 0, 1, 0.0), [], {}, 2)


def open_sink(dev: Path, sysfs: Path, **kw) -> FramebufferSink:
    sink = build_sink(FramebufferOutput(type="framebuffer", device=str(dev), sysfs_root=str(sysfs), badge=False, **kw))
    sink.open(meta())
    return sink


@pytest.mark.parametrize("fmt,bpp,pad,tol", [("rgb565", 16, 16, 8), ("xrgb8888", 32, 0, 0), ("xrgb8888", 32, 64, 0)])
def test_letterboxed_blocks_decode_back(tmp_path, fmt, bpp, pad, tol):
    width, height = 200, 150
    dev, sysfs, stride = fake_fb(tmp_path, width, height, bpp, pad)
    sink = open_sink(dev, sysfs)
    assert sink.geometry.pixel_format == fmt and sink.geometry.stride == stride
    sink.write(result_of(block_frame(640, 240)))  # wide: scaled to 200x75, black bars above and below
    screen = decode(dev, width, height, stride, fmt)
    top = (height - 75) // 2
    assert not screen[:top].any() and not screen[top + 75:].any(), "letterbox bars must be black"
    for i, color in enumerate(BLOCKS):
        r, c = divmod(i, 3)
        y, x = top + int((r + 0.5) * 75 / 2), int((c + 0.5) * width / 3)
        got = screen[y, x].astype(int)
        assert np.abs(got - color).max() <= tol, (fmt, color, tuple(got))
    raw = np.frombuffer(dev.read_bytes(), np.uint8).reshape(height, stride)
    assert raw.size == stride * height  # nothing written past the end


def test_a_real_photo_is_scaled_to_fit_a_tall_screen(tmp_path, data_dir):
    photo = cv2.cvtColor(cv2.imread(str(data_dir / "images" / "zidane.jpg")), cv2.COLOR_BGR2RGB)  # 1280x720
    dev, sysfs, stride = fake_fb(tmp_path, 300, 400, 32)
    sink = open_sink(dev, sysfs)
    sink.write(result_of(photo))
    screen = decode(dev, 300, 400, stride, "xrgb8888")
    x, y, w, h = letterbox_box(1280, 720, 300, 400)
    assert (x, w, h) == (0, 300, 169) and y == (400 - 169) // 2
    want = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    assert np.abs(screen[y:y + h].astype(int) - want).mean() < 1.0
    assert not screen[:y].any() and not screen[y + h:].any()


def test_xbgr_byte_order_when_the_driver_says_so(tmp_path):
    dev, sysfs, stride = fake_fb(tmp_path, 60, 40, 32)
    sink = open_sink(dev, sysfs, pixel_format="xbgr8888")
    sink.write(result_of(np.full((40, 60, 3), (250, 20, 5), np.uint8)))
    raw = np.frombuffer(dev.read_bytes(), np.uint8).reshape(40, 60, 4)
    assert tuple(raw[20, 30, :3]) == (250, 20, 5)  # R, G, B, X in memory


def test_rgb565_bit_layout(tmp_path):
    dev, sysfs, stride = fake_fb(tmp_path, 4, 2, 16)
    sink = open_sink(dev, sysfs)
    sink.write(result_of(np.full((2, 4, 3), (255, 0, 0), np.uint8)))
    assert np.frombuffer(dev.read_bytes(), "<u2")[0] == 0xF800  # red is the top 5 bits
    sink.write(result_of(np.full((2, 4, 3), (0, 0, 255), np.uint8)))
    assert np.frombuffer(dev.read_bytes(), "<u2")[0] == 0x001F


def test_visible_size_from_mode_when_the_virtual_screen_is_double_height(tmp_path):
    dev, sysfs, stride = fake_fb(tmp_path, 64, 48, 32, mode="U:64x48p-60", virtual_height=96)
    g = read_geometry(str(dev), str(sysfs))
    assert (g.width, g.height, g.stride, g.pixel_format) == (64, 48, 256, "xrgb8888")
    sink = open_sink(dev, sysfs)
    sink.write(result_of(np.full((48, 64, 3), 200, np.uint8)))
    raw = dev.read_bytes()
    assert raw[stride * 48:] == b"\xaa" * stride * 48  # the hidden second page is left alone


def test_close_blanks_the_screen(tmp_path):
    dev, sysfs, stride = fake_fb(tmp_path, 40, 30, 16)
    sink = open_sink(dev, sysfs)
    sink.write(result_of(np.full((30, 40, 3), 255, np.uint8)))
    assert any(dev.read_bytes())
    sink.close()
    assert not any(dev.read_bytes())


def test_missing_device_names_it_and_the_fix(tmp_path):
    _, sysfs, _ = fake_fb(tmp_path, 40, 30, 16)
    with pytest.raises(OutputError) as err:
        open_sink(tmp_path / "dev" / "fb7", sysfs)
    msg = str(err.value)
    assert "fb7" in msg and "ls /dev/fb*" in msg and "web output" in msg


def test_missing_sysfs_entry_is_explained(tmp_path):
    dev, _, _ = fake_fb(tmp_path, 40, 30, 16)
    with pytest.raises(OutputError, match="not a framebuffer"):
        open_sink(dev, tmp_path / "elsewhere")


def test_unsupported_depth_names_fbset(tmp_path):
    dev, sysfs, _ = fake_fb(tmp_path, 40, 30, 24)
    with pytest.raises(OutputError, match="fbset"):
        open_sink(dev, sysfs)


def test_not_writable_device_names_the_video_group(tmp_path):
    if os.geteuid() != 0:
        dev, sysfs, _ = fake_fb(tmp_path, 40, 30, 16)
        dev.chmod(0o400)
        with pytest.raises(OutputError) as err:
            open_sink(dev, sysfs)
    else:  # root may write anything: open it as an unprivileged user, like the service would
        top = Path(tempfile.mkdtemp(prefix="edgepose-fb-"))  # pytest's own tmp root is closed to others
        try:
            top.chmod(0o711)
            dev, sysfs, _ = fake_fb(top, 40, 30, 16)
            dev.chmod(0o600)
            os.seteuid(pwd.getpwnam("nobody").pw_uid)
            try:
                with pytest.raises(OutputError) as err:
                    open_sink(dev, sysfs)
            finally:
                os.seteuid(0)
        finally:
            shutil.rmtree(top)
    msg = str(err.value)
    assert str(dev) in msg and "video" in msg and "usermod" in msg, msg


class ScreenGrab:
    """Wraps the real sink: after each write, decodes the fake screen next to the result it showed."""

    def __init__(self, sink: FramebufferSink, dev: Path, stride: int):
        self.sink, self.name, self.dev, self.stride = sink, sink.name, dev, stride
        self.shown: list[tuple[PoseResult, np.ndarray]] = []

    def open(self, m):
        self.meta = m
        self.sink.open(m)

    def write(self, result):
        self.sink.write(result)
        g = self.sink.geometry
        self.shown.append((result, decode(self.dev, g.width, g.height, self.stride, g.pixel_format)))

    def close(self):
        self.sink.close()


def test_pipeline_draws_the_model_s_skeleton_on_the_screen(tmp_path, movenet_tflite, walk_clip):
    dev, sysfs, stride = fake_fb(tmp_path, 800, 600, 32)
    cfg = validate({"source": {"type": "file", "path": str(walk_clip), "realtime": False},
                    "model": {"path": str(movenet_tflite)}, "pipeline": {"max_frames": 6},
                    "outputs": [{"type": "framebuffer", "device": str(dev), "sysfs_root": str(sysfs)}]})
    grab = ScreenGrab(build_sink(cfg.outputs[0]), dev, stride)
    pipe = Pipeline(cfg, sinks=[grab])
    pipe.run()
    assert len(grab.shown) >= 1
    result, screen = grab.shown[-1]
    assert result.poses, "MoveNet finds the person in intel_walk"
    x0, y0, w, h = letterbox_box(640, 480, 800, 600)
    scale = w / 640
    want = cv2.resize(annotate(result, grab.meta, DrawStyle()), (w, h), interpolation=cv2.INTER_LINEAR)
    assert np.abs(screen[y0:y0 + h, x0:x0 + w].astype(int) - want).mean() < 1.0
    checked = 0
    for x, y, s in result.poses[0].keypoints:
        if s < 0.2 or not (0 <= x < 640 and 0 <= y < 480):
            continue
        px = screen[int(round(y0 + y * scale)), int(round(x0 + x * scale))].astype(int)
        assert np.abs(px - confidence_color(float(s), 0.2)).max() <= 40, (x, y, s, px)
        checked += 1
    assert checked >= 5


# -- the window output: the other local display ---------------------------------------------------
OLD_GTK = "  GUI: \n    GTK+:                        YES (ver 3.24.20)\n      GThread :                  YES\n"
NEW_GTK = "  GUI:                           GTK3\n    GTK+:                        YES (ver 3.24.41)\n"
HEADLESS = "  GUI:                           NONE\n    VTK support:                 NO\n"


@pytest.mark.parametrize("info,want", [(OLD_GTK, "GTK+"), (NEW_GTK, "GTK3"), (HEADLESS, None), ("", None)])
def test_gui_backend_is_read_from_the_build_information(info, want):
    assert _gui_from_build_info(info) == want


def test_window_on_headless_opencv_points_to_framebuffer_and_web(monkeypatch):
    sink = build_sink(validate({"outputs": [{"type": "window"}]}).outputs[0])
    if gui_backend() is not None:  # a GUI build: the missing desktop is what must be explained
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(OutputError) as err:
        sink.open(meta())
    msg = str(err.value)
    assert "type: framebuffer" in msg and "--output framebuffer" in msg
    assert "binds 127.0.0.1" in msg and "--output web:0.0.0.0:8080" in msg  # the default, and how to open it to the LAN
