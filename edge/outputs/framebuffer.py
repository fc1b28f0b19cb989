"""Annotated frames straight to a Linux framebuffer (/dev/fbN): a kiosk screen with no desktop.

Geometry, depth and stride come from sysfs (``<sysfs_root>/class/graphics/fbN``; tests use a
fake tree and a plain file as the device). The pixel layout comes from the driver when it
answers FBIOGET_VSCREENINFO: RGB565 at 16 bpp, XRGB8888 (bytes B,G,R,X) or XBGR8888 at 32 bpp.
Each frame is scaled to fit and letterboxed; only the rows the picture covers are rewritten
(one ``os.pwrite``), the black borders once. The pipeline's sink thread calls ``write`` and
drops the oldest frame when the screen is slower than inference.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.config import FramebufferOutput
from edge.errors import OutputError
from edge.outputs.base import register
from edge.outputs.draw import DrawStyle, annotate
from edge.types import PoseResult, StreamMeta

log = logging.getLogger(__name__)
FBIOGET_VSCREENINFO = 0x4600
VSCREENINFO_SIZE = 160  # sizeof(struct fb_var_screeninfo)
BYTES_PER_PIXEL = {"rgb565": 2, "xrgb8888": 4, "xbgr8888": 4}
CONVERT = {"rgb565": cv2.COLOR_RGB2BGR565, "xrgb8888": cv2.COLOR_RGB2BGRA, "xbgr8888": cv2.COLOR_RGB2RGBA}
FIX_GROUP = ("add the service user to the 'video' group (sudo usermod -aG video USER, then log in again; "
             "in a systemd unit: SupplementaryGroups=video)")


@dataclass(frozen=True)
class Geometry:
    """The visible screen: size in pixels, bytes per row and where the visible area starts."""

    width: int
    height: int
    bits_per_pixel: int
    stride: int
    pixel_format: str
    offset: int = 0

    @property
    def bytes_per_pixel(self) -> int:
        return BYTES_PER_PIXEL[self.pixel_format]


def _read(path: Path, device: str) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        raise OutputError(
            f"{path} cannot be read, so {device} is not a framebuffer this kernel knows (or sysfs is not mounted "
            f"at the configured sysfs_root). List the framebuffers with: ls /sys/class/graphics/; on a Raspberry "
            "Pi keep dtoverlay=vc4-kms-v3d in /boot/firmware/config.txt and connect the screen before boot"
        ) from None


def _pair(text: str) -> tuple[int, int]:
    a, b = text.replace("x", ",").split(",")[:2]
    return int(a), int(b)


def _vscreeninfo(fd: int) -> tuple[int, ...] | None:
    """xres, yres, xres_virtual, yres_virtual, xoffset, yoffset, bpp, grayscale, red.offset (None: not a device)."""
    try:
        raw = fcntl.ioctl(fd, FBIOGET_VSCREENINFO, bytes(VSCREENINFO_SIZE))
    except OSError:
        return None
    return struct.unpack_from("9I", raw)


def read_geometry(device: str, sysfs_root: str, pixel_format: str = "auto", fd: int | None = None) -> Geometry:
    """The screen's geometry from sysfs, refined by the driver's own answer when ``fd`` is a real device."""
    node = Path(sysfs_root) / "class" / "graphics" / Path(device).name
    vw, vh = _pair(_read(node / "virtual_size", device))
    bpp = int(_read(node / "bits_per_pixel", device))
    stride = int(_read(node / "stride", device))
    width, height, offset, red_offset = vw, vh, 0, None
    mode = node / "mode"
    if mode.is_file() and ":" in mode.read_text():  # e.g. "U:1920x1080p-60"; virtual_size may be 2x for paging
        width, height = _pair(mode.read_text().split(":", 1)[1].split("p")[0].split("i")[0])
    info = _vscreeninfo(fd) if fd is not None else None
    if info is not None:
        width, height, bpp, red_offset = info[0], info[1], info[6], info[8]
        offset = info[5] * stride + info[4] * (bpp // 8)
    if pixel_format == "auto":
        if bpp == 16:
            pixel_format = "rgb565"
        elif bpp == 32:
            pixel_format = "xbgr8888" if red_offset == 0 else "xrgb8888"
        else:
            raise OutputError(
                f"framebuffer {device} uses {bpp} bits per pixel; edgepose writes 16 (RGB565) or 32 (XRGB8888). "
                "Switch the console to 32 bits with: fbset -fb " + device + " -depth 32"
            )
    if BYTES_PER_PIXEL[pixel_format] * 8 != bpp:
        raise OutputError(f"framebuffer {device} has {bpp} bits per pixel but pixel_format is {pixel_format}; "
                          "set pixel_format: auto")
    if stride < width * bpp // 8 or width <= 0 or height <= 0:
        raise OutputError(f"framebuffer {device} reports an impossible geometry {width}x{height}, stride {stride}")
    return Geometry(width, height, bpp, stride, pixel_format, offset)


def letterbox_box(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """x, y, w, h of a src_w x src_h picture scaled to fit inside dst, centred."""
    scale = min(dst_w / src_w, dst_h / src_h)
    w, h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    return (dst_w - w) // 2, (dst_h - h) // 2, w, h


def to_pixels(rgb: np.ndarray, pixel_format: str) -> np.ndarray:
    """HxWx3 RGB -> HxWxB bytes in the framebuffer's memory layout (little-endian words)."""
    return cv2.cvtColor(rgb, CONVERT[pixel_format])


class FramebufferSink:
    queue_length = 1  # a screen shows only the newest frame: never a backlog

    def __init__(self, cfg: FramebufferOutput):
        self.cfg = cfg
        self.name = f"framebuffer:{cfg.device}"
        self.style = DrawStyle.of(cfg)
        self.geometry: Geometry | None = None
        self._fd: int | None = None
        self._meta: StreamMeta | None = None
        self._screen: np.ndarray | None = None  # height x stride bytes, the whole visible area
        self._box: tuple[int, int, int, int] | None = None
        self._for_size: tuple[int, int] | None = None

    def open(self, meta: StreamMeta) -> None:
        self._meta = meta
        device = self.cfg.device
        try:
            fd = os.open(device, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise OutputError(
                f"framebuffer {device} does not exist: no display driver provides it, or no screen was connected "
                "at boot. Check with: ls /dev/fb*; on a Raspberry Pi connect HDMI before boot and keep "
                "dtoverlay=vc4-kms-v3d (its fbdev emulation is /dev/fb0), or pick another device "
                "(outputs: - type: framebuffer, device: /dev/fb1), or use the web output instead"
            ) from None
        except PermissionError:
            raise OutputError(f"no permission to write framebuffer {device}: {FIX_GROUP}") from None
        except OSError as exc:
            raise OutputError(f"framebuffer {device} cannot be opened: {exc.strerror}; check the device path") from None
        try:
            is_device = stat.S_ISCHR(os.fstat(fd).st_mode)
            self.geometry = read_geometry(device, self.cfg.sysfs_root, self.cfg.pixel_format,
                                          fd if is_device else None)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        g = self.geometry
        self._screen = np.zeros((g.height, g.stride), np.uint8)
        self._flush_rows(0, g.height)  # black borders, once
        log.info("framebuffer %s: %dx%d, %s, stride %d", device, g.width, g.height, g.pixel_format, g.stride)
        self._warn_console()

    def _warn_console(self) -> None:
        """The text console fights a kiosk: it blanks the screen and blinks its cursor over the picture."""
        root = Path(self.cfg.sysfs_root)
        try:
            blank = int((root / "module" / "kernel" / "parameters" / "consoleblank").read_text().strip() or 0)
        except (OSError, ValueError):
            blank = 0
        if blank:
            log.warning("console blanking will turn the screen black after %d s: add consoleblank=0 to "
                        "/boot/firmware/cmdline.txt (see docs/KIOSK.md)", blank)
        try:
            blink = (root / "class" / "graphics" / "fbcon" / "cursor_blink").read_text().strip()
        except OSError:
            blink = "0"
        if blink == "1":
            log.warning("the fbcon text cursor blinks over the picture: add vt.global_cursor_default=0 to "
                        "/boot/firmware/cmdline.txt, or map the console away with fbcon=map:1 (see docs/KIOSK.md)")

    def _flush_rows(self, y0: int, y1: int) -> None:
        assert self._fd is not None and self._screen is not None and self.geometry is not None
        data = memoryview(self._screen[y0:y1]).cast("B")
        pos = self.geometry.offset + y0 * self.geometry.stride
        try:
            while len(data):
                n = os.pwrite(self._fd, data, pos)
                if n <= 0:
                    raise OSError(0, "the device accepted no bytes")
                data, pos = data[n:], pos + n
        except OSError as exc:
            raise OutputError(f"writing framebuffer {self.cfg.device} failed: {exc.strerror}") from None

    def write(self, result: PoseResult) -> None:
        assert self._screen is not None and self.geometry is not None and self._meta is not None, "open() first"
        g = self.geometry
        image = annotate(result, self._meta, self.style)
        size = (image.shape[1], image.shape[0])
        if size != self._for_size:  # a new frame size: new box, clear the old picture
            self._screen[:] = 0
            self._box, self._for_size = letterbox_box(size[0], size[1], g.width, g.height), size
            self._flush_rows(0, g.height)
        x, y, w, h = self._box
        interp = cv2.INTER_AREA if w < size[0] else cv2.INTER_LINEAR
        fitted = image if (w, h) == size else cv2.resize(image, (w, h), interpolation=interp)
        bpp = g.bytes_per_pixel
        band = self._screen[y:y + h, x * bpp:(x + w) * bpp]
        band[:] = to_pixels(fitted, g.pixel_format).reshape(h, w * bpp)
        self._flush_rows(y, y + h)

    def close(self) -> None:
        """Black the screen (a frozen last frame would look live) and release the device."""
        if self._fd is None:
            return
        try:
            if self._screen is not None:
                self._screen[:] = 0
                self._flush_rows(0, self._screen.shape[0])
        finally:
            os.close(self._fd)
            self._fd = None


@register("framebuffer")
def make_framebuffer(cfg: FramebufferOutput) -> FramebufferSink:
    return FramebufferSink(cfg)
