"""A stand-in for picamera2 where no Pi camera exists: the API surface edgepose uses, same signatures.

It behaves like the real library where edgepose depends on it (see tests/test_picamera.py, which
compares these signatures with the documented ones):
- ``Picamera2(camera_num)`` indexes ``global_camera_info()`` (IndexError when out of range);
- ``configure`` rejects what libcamera rejects: odd sizes, lores bigger than main, a non-YUV lores
  on a VC4 (Pi 4) ISP, controls the camera does not advertise;
- frames arrive at the configured frame rate, from a real clip; ``capture_request(wait=seconds)``
  raises TimeoutError (as the real ``Job.get_result`` does) when none came in time;
- a request holds one of ``buffer_count`` buffers until ``release()``: a caller that leaks
  requests starves the camera and gets timeouts, as on a Pi;
- ``transform`` is a libcamera Transform (the fake libcamera beside this package), default the identity;
  anything else is refused as picamera2's transform_to_orientation refuses it. A transpose is refused too,
  stricter than a Pi: its ISP cannot do one, and libcamera would quietly adjust it away (validate() returns
  Adjusted), so a 90 or 270 degree turn is the caller's job and a test must see a request for one. The
  flips are applied to the sensor image, so both streams come out mirrored, as from the real sensor.

Test knobs live on ``FAKE`` (not part of picamera2): the clip (or still ``images``, served in turn),
the cameras, ``hang``, counters. The sensor image is scaled to main's size; lores is made from it
with INTER_AREA, as the ISP's downscaler would.
"""

from __future__ import annotations

import concurrent.futures
import time

import cv2
import numpy as np
from libcamera import Transform

from .platform import Platform

_FOREVER_S = 20.0  # a wait=None capture on a hung fake gives up after this (the real one never does)


class FakeState:
    def __init__(self):
        self.reset()

    def reset(self, clip: str | None = None) -> None:
        self.clip = clip
        self.images: list[np.ndarray] | None = None  # RGB stills to serve instead of the clip
        self.cameras = [
            {"Model": "imx708", "Location": 2, "Rotation": 180, "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a", "Num": 0},
            {"Model": "imx477", "Location": 2, "Rotation": 0, "Id": "/base/soc/i2c0mux/i2c@0/imx477@1a", "Num": 1},
        ]
        self.hang = False
        self.init_error: str | None = None
        self.requests_made = 0
        self.requests_released = 0
        self.flushes = 0
        self.waits: list = []
        self.configs: list[dict] = []
        self.instances: list["Picamera2"] = []

    @property
    def outstanding(self) -> int:
        return self.requests_made - self.requests_released


FAKE = FakeState()

# name -> (min, max, default), as Picamera2.camera_controls reports them for a Camera Module 3.
CONTROLS = {
    "ExposureTime": (26, 220417486, 20000),
    "AnalogueGain": (1.12, 16.0, None),
    "AeEnable": (False, True, None),
    "AwbEnable": (False, True, None),
    "AwbMode": (0, 7, 0),
    "ColourGains": (0.0, 32.0, None),
    "ScalerCrop": ((0, 0, 64, 64), (0, 0, 4608, 2592), (576, 0, 3456, 2592)),
    "FrameDurationLimits": (14245, 220514047, None),
    "NoiseReductionMode": (0, 4, 0),
}
_RGB = ("BGR888", "RGB888", "XBGR8888", "XRGB8888")
_YUV = ("YUV420", "YVU420")
_BYTES = {"BGR888": 3, "RGB888": 3, "XBGR8888": 4, "XRGB8888": 4}  # per pixel; YUV420 rows: 1 per pixel


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


class CompletedRequest:
    def __init__(self, cam: "Picamera2", image_rgb: np.ndarray, t_ns: int):
        self._cam = cam
        self._image = image_rgb  # the sensor image at main size, RGB
        self._t_ns = t_ns
        self.config = cam.camera_config
        self._released = False
        FAKE.requests_made += 1

    def make_array(self, name):
        if self._released:
            raise RuntimeError("make_array on a released request: the buffer belongs to the camera again")
        stream = self.config.get(name)
        if stream is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        w, h = stream["size"]
        rgb = self._image if (w, h) == self._image.shape[1::-1] else cv2.resize(self._image, (w, h), interpolation=cv2.INTER_AREA)
        fmt = stream["format"]
        if fmt == "BGR888":  # R, G, B in memory
            return rgb.copy()
        if fmt == "RGB888":  # B, G, R in memory
            return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if fmt == "XBGR8888":
            return cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
        if fmt == "XRGB8888":
            return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
        # YUV420: (h*3/2, stride) planar I420, rows padded to the stride, as picamera2 returns it.
        stride = stream["stride"]
        padded = cv2.copyMakeBorder(rgb, 0, 0, 0, stride - w, cv2.BORDER_REPLICATE)
        yuv = cv2.cvtColor(padded, cv2.COLOR_RGB2YUV_I420)
        if fmt == "YVU420":
            yuv = cv2.cvtColor(padded, cv2.COLOR_RGB2YUV_YV12)
        return yuv

    def get_metadata(self):
        d = self._cam._frame_us
        return {"SensorTimestamp": self._t_ns, "ExposureTime": min(d, 20000), "AnalogueGain": 1.0, "FrameDuration": d}

    def release(self):
        if self._released:
            raise RuntimeError("CompletedRequest: lock now has negative ref_count")
        self._released = True
        FAKE.requests_released += 1


class Picamera2:
    platform = Platform.VC4

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
        if FAKE.init_error:
            raise RuntimeError(FAKE.init_error)
        info = self.global_camera_info()[camera_num]  # IndexError, as the real one
        self.camera_idx = info["Num"]
        self.is_open = True
        self.started = False
        self.camera_config = None
        self._clip = None
        self._served = 0
        self._next_ns = 0
        self._frame_us = 33333
        FAKE.instances.append(self)

    @staticmethod
    def global_camera_info():
        return [dict(c) for c in FAKE.cameras]

    @property
    def camera_controls(self):
        return dict(CONTROLS)

    def create_video_configuration(self, main={}, lores=None, raw={}, transform=Transform(), colour_space=None,
                                   buffer_count=6, controls={}, display="main", encode="main", queue=True,
                                   sensor={}, use_case="video"):
        def stream(defaults, updates):
            for key in updates:
                if key not in ("format", "size"):
                    raise ValueError(f"Bad key {key!r}: valid stream configuration keys are ('format', 'size')")
            s = {**defaults, **updates}
            s["size"] = (s["size"][0] - s["size"][0] % 2, s["size"][1] - s["size"][1] % 2)  # align_stream(optimal=False)
            return s

        main = stream({"format": "XBGR8888", "size": (1280, 720)}, main)
        return {"use_case": use_case, "transform": transform, "colour_space": colour_space,
                "buffer_count": buffer_count, "queue": queue, "main": main,
                "lores": None if lores is None else stream({"format": "YUV420", "size": main["size"]}, lores),
                "raw": None, "controls": {"FrameDurationLimits": (33333, 33333), **controls}, "sensor": sensor,
                "display": display, "encode": encode}

    def configure(self, camera_config=None):
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        config = dict(camera_config or self.create_video_configuration())
        for name in ("main", "lores"):
            s = config.get(name)
            if s is None:
                continue
            if s["format"] not in _RGB + _YUV:
                raise RuntimeError(f"Bad format {s['format']} in stream {name}")
            if s["size"][0] % 2 or s["size"][1] % 2:
                raise RuntimeError("width and height should be even")
            w = s["size"][0]
            stride = _align(w * _BYTES.get(s["format"], 1), 64)
            config[name] = {**s, "stride": stride}
        lores = config.get("lores")
        if lores is not None:
            if lores["size"][0] > config["main"]["size"][0] or lores["size"][1] > config["main"]["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if self.platform == Platform.VC4 and lores["format"] not in _YUV:
                raise RuntimeError("lores stream must be YUV")
        transform = config.get("transform")
        if not isinstance(transform, Transform):
            raise RuntimeError(f"Unknown transform {transform}")
        if transform.transpose:
            raise RuntimeError(f"transform {transform}: the Raspberry Pi ISP cannot transpose (rotate 90/270)")
        for key in config.get("controls", {}):
            if key != "FrameRate" and key not in CONTROLS:
                raise RuntimeError(f"Control {key} is not advertised by libcamera")
        limits = config["controls"].get("FrameDurationLimits", (33333, 33333))
        self._frame_us = int(limits[0])
        self.camera_config = config
        FAKE.configs.append(config)

    def camera_configuration(self):
        return self.camera_config

    def set_controls(self, controls):
        for key in controls:
            if key not in CONTROLS:
                raise RuntimeError(f"Control {key} is not advertised by libcamera")

    def start(self, config=None, show_preview=False):
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        if FAKE.images:
            self._served = 0
        elif not FAKE.clip:
            raise RuntimeError("fake picamera2: set FAKE.clip to a video file (or FAKE.images) first")
        else:
            self._clip = cv2.VideoCapture(str(FAKE.clip))
        self._next_ns = time.monotonic_ns()
        self.started = True

    def _sensor_image(self) -> np.ndarray:
        if FAKE.images:
            rgb = FAKE.images[self._served % len(FAKE.images)]
            self._served += 1
        else:
            ok, bgr = self._clip.read()
            if not ok:  # loop the clip
                self._clip.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._clip.read()
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        w, h = self.camera_config["main"]["size"]
        if (w, h) == rgb.shape[1::-1]:
            rgb = rgb.copy()
        else:
            smaller = w < rgb.shape[1]
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if smaller else cv2.INTER_LINEAR)
        t = self.camera_config["transform"]  # the sensor reads out mirrored: both streams are
        code = {(True, False): 1, (False, True): 0, (True, True): -1}.get((t.hflip, t.vflip))
        return rgb if code is None else cv2.flip(rgb, code)

    def capture_request(self, wait=None, signal_function=None, flush=None):
        FAKE.waits.append(wait)
        if wait is False or signal_function is not None:
            raise NotImplementedError("fake picamera2: only blocking captures")
        timeout = _FOREVER_S if wait in (None, True) else float(wait)
        deadline = time.monotonic() + timeout
        while True:
            starved = FAKE.outstanding >= self.camera_config["buffer_count"]  # every buffer held by the caller
            if self.started and not FAKE.hang and not starved and time.monotonic_ns() >= self._next_ns:
                break
            if time.monotonic() >= deadline:
                if wait in (None, True):
                    raise AssertionError("fake picamera2: a capture without a timeout would block forever here")
                raise concurrent.futures.TimeoutError()
            time.sleep(0.005)
        self._next_ns = max(self._next_ns + self._frame_us * 1000, time.monotonic_ns())
        return CompletedRequest(self, self._sensor_image(), time.monotonic_ns())

    def capture_array(self, name="main", wait=None, signal_function=None):
        request = self.capture_request(wait=wait, signal_function=signal_function)
        try:
            return request.make_array(name)
        finally:
            request.release()

    def cancel_all_and_flush(self):
        FAKE.flushes += 1

    def stop(self):
        self.started = False

    def close(self):
        self.stop()
        if self._clip is not None:
            self._clip.release()
            self._clip = None
        self.is_open = False


__all__ = ["Picamera2", "CompletedRequest", "FAKE", "Platform"]
