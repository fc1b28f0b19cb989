"""Raspberry Pi cameras through picamera2 (libcamera); OpenCV cannot open a CSI camera.

Two streams from one request: ``main`` (RGB, display size) is the frame for overlays and the
live view; ``lores`` (the model's input size, resized by the ISP for free) is kept as
``model_image``, which the pipeline puts in the Frame for the model (edge.poses.base.model_view). A Pi 4 or older can only give a YUV420 lores stream, so it is converted to
RGB here and the cost is measured and logged; a Pi 5 gives RGB directly.

source.rotate/hflip/vflip: the mirrors and a half turn are a libcamera Transform, done by the
sensor and ISP for free and to both streams; a quarter turn (90, 270), which the ISP cannot do,
is done here in software after it, to main and lores alike, so lores keeps main's aspect ratio.

picamera2 comes from apt (python3-picamera2), so it is imported lazily and the venv must be
made with --system-site-packages. Every capture waits with a timeout, so a loose ribbon cable
raises SourceError instead of hanging, and every request is released at once (a held request
pins a CMA buffer: hold a few and the camera stalls).
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import logging
import statistics
import time
from typing import Any

import cv2
import numpy as np

from edge.capture.base import Turn, register
from edge.config import SourceConfig
from edge.errors import SourceError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "picamera2 is not importable. On Raspberry Pi OS install it with `sudo apt install python3-picamera2` "
    "and create the virtual environment with `python3 -m venv --system-site-packages` so it can see it "
    "(picamera2 and libcamera are not on PyPI for the Pi; a plain venv hides the apt packages)"
)
CABLE_HINT = (
    "check the ribbon cable (both ends seated and latched, contacts the right way round; on a Pi 5 use a CAM port "
    "and the narrower cable), run `rpicam-hello --list-cameras`, and make sure no other program holds the camera"
)
# libcamera's AwbModeEnum (control_ids_core.yaml): names a config file can use instead of numbers.
AWB_MODES = {"auto": 0, "incandescent": 1, "tungsten": 2, "fluorescent": 3, "indoor": 4, "daylight": 5,
             "cloudy": 6, "custom": 7}
CONVERT_LOG_AFTER = 30  # frames: log the lores conversion cost once, as a median over these
TIMEOUTS = (TimeoutError, concurrent.futures.TimeoutError)  # the same class from Python 3.11 on


def picamera2_available() -> bool:
    try:
        return importlib.util.find_spec("picamera2") is not None
    except (ImportError, ValueError):
        return False


def lores_size(main: tuple[int, int], model: tuple[int, int]) -> tuple[int, int]:
    """The largest even size with main's aspect ratio that fits the model input (no bigger than main).

    The family then only pads it to the input (letterbox), never resizes: 640x480 main and a
    192x192 model give 192x144.
    """
    (mw, mh), (iw, ih) = main, model
    scale = min(iw / mw, ih / mh, 1.0)
    return max(2, int(mw * scale) // 2 * 2), max(2, int(mh * scale) // 2 * 2)


def yuv420_to_rgb(array: np.ndarray, width: int) -> np.ndarray:
    """picamera2's YUV420 array ((h*3/2) x stride, planar I420) -> h x width x 3 RGB."""
    rgb = cv2.cvtColor(array, cv2.COLOR_YUV2RGB_I420)
    return np.ascontiguousarray(rgb[:, :width])


def camera_controls(cfg: SourceConfig) -> dict[str, Any]:
    """source.controls (+ fps) as picamera2 wants them: AwbMode by name, ScalerCrop as a tuple."""
    controls: dict[str, Any] = {}
    if cfg.fps:
        frame_us = int(1_000_000 / cfg.fps)
        controls["FrameDurationLimits"] = (frame_us, frame_us)  # = picamera2's FrameRate, in every version
    for key, value in cfg.controls.items():
        if key == "AwbMode" and isinstance(value, str):
            if value.lower() not in AWB_MODES:
                raise SourceError(f"source.controls.AwbMode: unknown mode '{value}'; use one of {', '.join(AWB_MODES)}")
            value = AWB_MODES[value.lower()]
        elif key == "ScalerCrop" and (not isinstance(value, list) or len(value) != 4):
            raise SourceError(f"source.controls.ScalerCrop: expected [x, y, width, height] in sensor pixels, got {value!r}")
        controls[key] = tuple(value) if isinstance(value, list) else value
    return controls


class PiCameraSource:
    continuous = True
    live = True

    def __init__(self, cfg: SourceConfig):
        self.cfg = cfg
        if cfg.camera is not None:
            self.camera: int | str = cfg.camera
        else:
            self.camera = int(cfg.path) if cfg.path and cfg.path.isdigit() else 0
        self.name = f"picamera:{self.camera}"
        self.fps: float | None = cfg.fps
        self.model_input_size: tuple[int, int] | None = None  # set by the pipeline before the first read
        self.model_image: np.ndarray | None = None  # the lores frame (RGB) taken with the last main frame
        self.lores_convert_ms: float | None = None  # median YUV420 -> RGB cost, when the lores stream is YUV
        self._cam: Any = None
        self._started = False
        self._closing = False
        self._lores: tuple[int, int] | None = None
        self._lores_yuv = False
        self._platform = "VC4"  # picamera2's Platform name: VC4 (Pi 4 and older) or PISP (Pi 5)
        self._convert_ns: list[int] = []
        self.turn = Turn.of(cfg)
        self.isp_turn, self.software_turn = self.turn.flips_then_rotation()  # the ISP's part first, then ours

    # -- open: find and acquire the camera; configure and start at the first read ------------
    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise SourceError(INSTALL_HINT) from exc
        self._closing = False
        index, info = self._resolve(Picamera2)
        try:
            self._cam = Picamera2(index)
        except (IndexError, RuntimeError, OSError) as exc:
            raise SourceError(f"Pi camera {index} ({info.get('Model', '?')}) cannot be opened ({exc}); {CABLE_HINT}") from exc
        self.name = f"picamera:{index}:{info.get('Model', '?')}"
        self._platform = getattr(getattr(Picamera2, "platform", None), "name", "VC4")
        log.info("Pi camera %d: %s (%s), ISP %s", index, info.get("Model", "?"), info.get("Id", "?"), self._platform)

    def _resolve(self, Picamera2) -> tuple[int, dict]:
        try:
            cameras = list(Picamera2.global_camera_info())
        except Exception as exc:  # libcamera itself is broken: report it, whatever it raised
            raise SourceError(f"libcamera cannot list the cameras ({exc}); {CABLE_HINT}") from exc
        if not cameras:
            raise SourceError(f"libcamera finds no camera; {CABLE_HINT}; on Raspberry Pi OS keep camera_auto_detect=1 "
                              "in /boot/firmware/config.txt")
        listed = "; ".join(f"{i}: {c.get('Model', '?')} ({c.get('Id', '?')})" for i, c in enumerate(cameras))
        spec = self.camera
        if isinstance(spec, int) or str(spec).isdigit():
            index = int(spec)
            if index >= len(cameras):
                raise SourceError(f"source.camera: there is no Pi camera {index}; libcamera lists {listed}")
            return index, cameras[index]
        want = str(spec).lower()
        for i, c in enumerate(cameras):
            if str(c.get("Model", "")).lower() == want or want in str(c.get("Id", "")).lower():
                return i, c
        raise SourceError(f"source.camera: no camera model or id matches '{spec}'; libcamera lists {listed}")

    def _start(self) -> None:
        cam, cfg = self._cam, self.cfg
        main = (cfg.width or 1280, cfg.height or 720)
        self._lores = self._lores_wanted(main)
        # 'BGR888' is R, G, B in memory order (picamera2 manual, appendix A): the RGB the pipeline wants.
        streams: dict[str, Any] = {"main": {"size": main, "format": "BGR888"}}
        if self._lores:
            self._lores_yuv = self._platform != "PISP"  # Pi 4 and older: the lores stream must be YUV
            streams["lores"] = {"size": self._lores, "format": "YUV420" if self._lores_yuv else "BGR888"}
        controls = camera_controls(cfg)
        offered = getattr(cam, "camera_controls", None) or {}
        unknown = [k for k in controls if offered and k not in offered]
        if unknown:
            raise SourceError(f"source.controls: this camera has no control {', '.join(unknown)}; "
                              f"it offers {', '.join(sorted(offered))}")
        # no transform: picamera2's own identity Transform (it does not accept None)
        flips = {"transform": self._transform()} if self.isp_turn else {}
        try:
            config = cam.create_video_configuration(controls=controls, buffer_count=cfg.buffer_count, **streams,
                                                    **flips)
            cam.configure(config)
            cam.start()
        except (RuntimeError, ValueError) as exc:
            raise SourceError(f"{self.name} rejected the configuration {streams} ({exc}); check source.width/height, "
                              "source.lores and source.controls against `rpicam-hello --list-cameras`") from exc
        self._started = True
        granted = cam.camera_configuration() or {}
        desc = ", ".join(f"{n} {granted[n]['size'][0]}x{granted[n]['size'][1]} {granted[n]['format']}"
                         for n in ("main", "lores") if granted.get(n))
        log.info("%s started: %s, %d buffers, controls %s", self.name, desc, cfg.buffer_count, controls)
        if self.turn:
            log.info("%s: %s by the ISP, %s in software", self.name, self.isp_turn, self.software_turn)

    def _transform(self) -> Any:
        try:
            from libcamera import Transform
        except ImportError as exc:
            raise SourceError(f"source.hflip/vflip/rotate need libcamera's Python module; {INSTALL_HINT}") from exc
        return Transform(hflip=int(self.isp_turn.hflip), vflip=int(self.isp_turn.vflip))

    def _lores_wanted(self, main: tuple[int, int]) -> tuple[int, int] | None:
        lores = self.cfg.lores
        if lores is False:
            return None
        if isinstance(lores, tuple):  # no bigger than main, even (as libcamera wants)
            return min(lores[0], main[0]) // 2 * 2, min(lores[1], main[1]) // 2 * 2
        if self.model_input_size is None:
            if lores is True:
                log.warning("%s: source.lores is true but the model's input size is unknown; no lores stream", self.name)
            return None
        w, h = self.model_input_size  # the model sees the lores after the software turn: fit it turned
        return lores_size(main, (h, w) if self.software_turn.swaps else (w, h))

    # -- frames ------------------------------------------------------------------------------
    def read(self) -> tuple[np.ndarray, int] | None:
        cam = self._cam
        if cam is None:
            if self._closing:
                return None  # closed under the capture loop: it is stopping
            raise SourceError(f"{self.name} is not open; call open() first")
        if not self._started:
            self._start()
        timeout = self.cfg.read_timeout_s
        try:
            request = cam.capture_request(wait=timeout)
        except TIMEOUTS as exc:
            cam.cancel_all_and_flush()  # else the pending job grabs a request later and never releases it
            if self._closing:
                return None
            raise SourceError(f"{self.name} delivered no frame within {timeout:g} s (source.read_timeout_s); "
                              f"{CABLE_HINT}") from exc
        t_ns = time.monotonic_ns()
        try:
            main = request.make_array("main")
            lores = request.make_array("lores") if self._lores else None
        finally:
            request.release()  # make_array copied the pixels: give the buffer back to the camera now
        turn = self.software_turn
        self.model_image = turn.apply(self._lores_rgb(lores)) if lores is not None else None
        return turn.apply(main), t_ns

    def _lores_rgb(self, lores: np.ndarray) -> np.ndarray:
        if not self._lores_yuv:
            return lores
        t0 = time.monotonic_ns()
        rgb = yuv420_to_rgb(lores, self._lores[0])
        samples = self._convert_ns
        if len(samples) < CONVERT_LOG_AFTER:  # measure the first frames, then log the median once
            samples.append(time.monotonic_ns() - t0)
            self.lores_convert_ms = statistics.median(samples) / 1e6
            if len(samples) == CONVERT_LOG_AFTER:
                log.info("%s: lores YUV420 -> RGB conversion %.3f ms per frame (median of %d); a Pi 5 delivers "
                         "RGB lores with no conversion", self.name, self.lores_convert_ms, CONVERT_LOG_AFTER)
        return rgb

    def close(self) -> None:
        self._closing = True
        cam, self._cam = self._cam, None
        if cam is None:
            return
        try:
            if self._started:
                cam.stop()
        finally:
            self._started = False
            cam.close()


@register("picamera")
def open_picamera(cfg: SourceConfig) -> PiCameraSource:
    return PiCameraSource(cfg)
