"""An OpenCV window with the annotated video: for a desktop with a GUI build of OpenCV.

edgepose depends on opencv-python-headless, which has no window support; this sink checks
first and says where to go instead (the framebuffer on a kiosk, the live view remotely).
"""

from __future__ import annotations

import logging
import os
import sys

import cv2

from edge.config import WindowOutput
from edge.errors import OutputError
from edge.outputs.base import register
from edge.outputs.draw import DrawStyle, annotate
from edge.types import PoseResult, StreamMeta

log = logging.getLogger(__name__)
ALTERNATIVES = ("On a kiosk without a desktop use the framebuffer output (--output framebuffer, or outputs: "
                "- type: framebuffer). To watch from another computer use the live view: it binds 127.0.0.1 "
                "(this device only) by default, so open it to the LAN with --output web:0.0.0.0:8080 (or "
                "host: 0.0.0.0 in the web output, with a token:), then open http://DEVICE:8080/.")


def gui_backend() -> str | None:
    """The GUI toolkit this OpenCV was built with (e.g. 'GTK3', 'QT'), or None for a headless build."""
    return _gui_from_build_info(cv2.getBuildInformation())


def _gui_from_build_info(info: str) -> str | None:
    if "GUI:" not in info:
        return None
    head, _, rest = info.split("GUI:", 1)[1].partition("\n")
    if head.strip():  # OpenCV 4.5+: "GUI: GTK3" or "GUI: NONE"
        return None if head.strip().upper() == "NONE" else head.strip()
    for line in rest.splitlines():  # older builds: "GUI:" then "    GTK+: YES (ver 3.24)"
        name, _, value = line.strip().partition(":")
        if name.split(" ")[0] in ("GTK+", "QT", "Cocoa", "Win32") and value.strip().startswith("YES"):
            return name
        if not line.startswith("    "):
            break
    return None


def check_window_support() -> None:
    """Raise OutputError naming the fix when no window can be opened here."""
    backend = gui_backend()
    if backend is None:
        raise OutputError(
            f"the window output needs a GUI build of OpenCV, but this one ({cv2.__version__}) is headless "
            "(opencv-python-headless). " + ALTERNATIVES +
            " On a desktop: pip uninstall opencv-python-headless && pip install opencv-python"
        )
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise OutputError("the window output needs a desktop session, but neither DISPLAY nor WAYLAND_DISPLAY is "
                          "set (a service or SSH session has none). " + ALTERNATIVES)


class WindowSink:
    queue_length = 1  # a screen shows only the newest frame: never a backlog

    def __init__(self, cfg: WindowOutput):
        self.cfg = cfg
        self.name = f"window:{cfg.title}"
        self.style = DrawStyle.of(cfg)
        self._meta: StreamMeta | None = None

    def open(self, meta: StreamMeta) -> None:
        check_window_support()
        self._meta = meta
        try:
            cv2.namedWindow(self.cfg.title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise OutputError(f"OpenCV could not open a window: {exc}. " + ALTERNATIVES) from None

    def write(self, result: PoseResult) -> None:
        assert self._meta is not None, "open() first"
        image = annotate(result, self._meta, self.style)
        cv2.imshow(self.cfg.title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.waitKey(1)  # lets the toolkit paint; the window is display-only

    def close(self) -> None:
        if self._meta is not None:
            try:
                cv2.destroyWindow(self.cfg.title)
            except cv2.error:
                pass
            self._meta = None


@register("window")
def make_window(cfg: WindowOutput) -> WindowSink:
    return WindowSink(cfg)
