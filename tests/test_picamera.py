"""picamera2 source on a fake picamera2 (no Pi camera here) that serves frames from a real clip.

The fake (tests/fakes/picamera2) is put on sys.path by the ``fake`` fixture only. Its signatures
are checked against the documented picamera2 API below, so the source cannot come to rely on
a call the real library does not have.
"""

from __future__ import annotations

import inspect
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.capture.base import build_source
from edge.capture.picamera import TIMEOUTS, PiCameraSource, lores_size, yuv420_to_rgb
from edge.config import Config, SourceConfig
from edge.errors import SourceError

FAKES = Path(__file__).resolve().parent / "fakes"
LIBCAMERA_OBJECT = object()  # a default that is a libcamera object in the real library (not comparable here)

# The real signatures, as documented by picamera2's API: the source of raspberrypi/picamera2
# (picamera2/picamera2.py, class Picamera2; picamera2/request.py, class CompletedRequest), whose
# docstrings the Picamera2 manual ("The Picamera2 Library", Raspberry Pi) presents. Notes from the same code:
# - ``wait`` (capture_request, capture_array): None = wait as needed, a number = wait that many seconds,
#   then Job.get_result raises concurrent.futures.TimeoutError; the job stays queued until
#   cancel_all_and_flush() ("for tidying up after an operation has unexpectedly timed out").
# - Picamera2(camera_num) indexes global_camera_info() (dicts with Model, Location, Rotation, Id, Num).
# - check_camera_config: "lores stream must be YUV" only when Picamera2.platform is Platform.VC4 (Pi 4 and older).
# - Manual appendix A (pixel formats): 'BGR888' is [R, G, B] per pixel, 'RGB888' is [B, G, R];
#   YUV420 arrays are (height*3/2, stride). Helpers.make_image maps BGR888 to PIL mode "RGB" accordingly.
DOCUMENTED = {
    "Picamera2.__init__": [("self",), ("camera_num", 0), ("verbose_console", None), ("tuning", None),
                           ("allocator", None)],
    "Picamera2.global_camera_info": [],
    "Picamera2.create_video_configuration": [
        ("self",), ("main", {}), ("lores", None), ("raw", {}), ("transform", LIBCAMERA_OBJECT), ("colour_space", None),
        ("buffer_count", 6), ("controls", {}), ("display", "main"), ("encode", "main"), ("queue", True),
        ("sensor", {}), ("use_case", "video")],
    "Picamera2.configure": [("self",), ("camera_config", None)],
    "Picamera2.start": [("self",), ("config", None), ("show_preview", False)],
    "Picamera2.capture_array": [("self",), ("name", "main"), ("wait", None), ("signal_function", None)],
    "Picamera2.capture_request": [("self",), ("wait", None), ("signal_function", None), ("flush", None)],
    "Picamera2.cancel_all_and_flush": [("self",)],
    "Picamera2.camera_configuration": [("self",)],
    "Picamera2.set_controls": [("self",), ("controls",)],
    "Picamera2.stop": [("self",)],
    "Picamera2.close": [("self",)],
    "CompletedRequest.make_array": [("self",), ("name",)],
    "CompletedRequest.get_metadata": [("self",)],
    "CompletedRequest.release": [("self",)],
}


@pytest.fixture
def fake(monkeypatch, walk_clip):
    """The fake picamera2, importable for this test only, serving the walking clip."""
    monkeypatch.syspath_prepend(str(FAKES))
    for name in _fake_modules():
        monkeypatch.delitem(sys.modules, name)
    import picamera2

    picamera2.FAKE.reset(clip=str(walk_clip))
    yield picamera2
    for name in _fake_modules():
        del sys.modules[name]


def _fake_modules() -> list[str]:
    """picamera2 and the libcamera it imports (tests/fakes): loaded for one test only."""
    return [m for m in sys.modules if m.split(".")[0] in ("picamera2", "libcamera")]


@pytest.fixture(scope="module")
def clip_frames(walk_clip) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(walk_clip))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


def _source(**kw) -> PiCameraSource:
    return build_source(SourceConfig(type="picamera", **kw))


def test_fake_signatures_match_the_documented_api(fake):
    from picamera2 import CompletedRequest, Picamera2

    owners = {"Picamera2": Picamera2, "CompletedRequest": CompletedRequest}
    for qualified, documented in DOCUMENTED.items():
        owner, method = qualified.split(".")
        params = list(inspect.signature(getattr(owners[owner], method)).parameters.values())
        assert [p.name for p in params] == [d[0] for d in documented], qualified
        for p, d in zip(params, documented):
            if len(d) == 1:
                assert p.default is inspect.Parameter.empty, f"{qualified}({p.name}) must have no default"
            elif d[1] is not LIBCAMERA_OBJECT:
                assert p.default == d[1], f"{qualified}({p.name}) default {p.default!r}, documented {d[1]!r}"
    assert isinstance(inspect.getattr_static(Picamera2, "global_camera_info"), staticmethod)


def test_dual_stream_on_a_pi4_converts_yuv_lores_and_measures_it(fake, clip_frames, caplog):
    src = _source(width=640, height=480, fps=120)
    src.model_input_size = (192, 192)  # what the pipeline sets for MoveNet Lightning
    src.open()
    caplog.set_level(logging.INFO, logger="edge.capture.picamera")
    for i in range(32):
        main, t_ns = src.read()
        assert main.shape == (480, 640, 3) and main.dtype == np.uint8 and t_ns > 0
        assert np.array_equal(main, clip_frames[i])  # BGR888 is RGB in memory: no channel swap
        lores = src.model_image
        assert lores.shape == (144, 192, 3) and lores.flags["C_CONTIGUOUS"]
        expected = cv2.resize(clip_frames[i], (192, 144), interpolation=cv2.INTER_AREA).astype(np.int16)
        err = np.abs(lores.astype(np.int16) - expected).mean()
        swapped = np.abs(lores[..., ::-1].astype(np.int16) - expected).mean()
        assert err < 4 and err < swapped / 2, (err, swapped)
    config = fake.FAKE.configs[-1]
    assert config["main"]["format"] == "BGR888" and config["main"]["size"] == (640, 480)
    assert config["lores"]["format"] == "YUV420" and config["lores"]["size"] == (192, 144)
    assert config["controls"]["FrameDurationLimits"] == (8333, 8333) and config["buffer_count"] == 4
    assert src.lores_convert_ms is not None and src.lores_convert_ms > 0
    assert "lores YUV420 -> RGB conversion" in caplog.text
    src.close()
    assert fake.FAKE.outstanding == 0 and not fake.FAKE.instances[-1].is_open


def test_dual_stream_on_a_pi5_gets_rgb_lores_without_conversion(fake, clip_frames, monkeypatch):
    monkeypatch.setattr(fake.Picamera2, "platform", fake.Platform.PISP)
    src = _source(width=640, height=480, fps=120)
    src.model_input_size = (256, 256)
    src.open()
    main, _ = src.read()
    expected = cv2.resize(clip_frames[0], (256, 192), interpolation=cv2.INTER_AREA)
    assert np.array_equal(src.model_image, expected) and np.array_equal(main, clip_frames[0])
    assert fake.FAKE.configs[-1]["lores"]["format"] == "BGR888" and src.lores_convert_ms is None
    src.close()


@pytest.mark.parametrize("main, model, lores", [
    ((640, 480), (192, 192), (192, 144)), ((1280, 720), (640, 640), (640, 360)),
    ((1920, 1080), (256, 256), (256, 144)), ((320, 240), (640, 640), (320, 240)), ((1456, 1088), (192, 192), (192, 142)),
])
def test_lores_size_keeps_the_main_aspect_inside_the_model_input(main, model, lores):
    assert lores_size(main, model) == lores


def test_lores_off_or_explicit(fake):
    off = _source(width=640, height=480, fps=120, lores=False)
    off.model_input_size = (192, 192)
    off.open()
    off.read()
    assert fake.FAKE.configs[-1]["lores"] is None and off.model_image is None
    off.close()
    explicit = _source(width=640, height=480, fps=120, lores=[320, 240])
    explicit.open()
    explicit.read()
    assert fake.FAKE.configs[-1]["lores"]["size"] == (320, 240) and explicit.model_image.shape == (240, 320, 3)
    explicit.close()


def test_yuv420_with_a_padded_stride_converts_to_the_right_width(clip_frames):
    rgb = cv2.resize(clip_frames[10], (160, 120), interpolation=cv2.INTER_AREA)
    padded = cv2.copyMakeBorder(rgb, 0, 0, 0, 32, cv2.BORDER_REPLICATE)  # stride 192 > width 160
    out = yuv420_to_rgb(cv2.cvtColor(padded, cv2.COLOR_RGB2YUV_I420), 160)
    assert out.shape == (120, 160, 3)
    assert np.abs(out.astype(np.int16) - rgb).mean() < 4


def test_a_hung_camera_raises_source_error_within_the_timeout(fake):
    src = _source(width=640, height=480, fps=120, read_timeout_s=0.3)
    src.open()
    src.read()
    fake.FAKE.hang = True  # the ribbon cable came loose
    with pytest.raises(SourceError, match=r"no frame within 0.3 s.*ribbon cable"):
        src.read()
    assert fake.FAKE.waits[-1] == 0.3  # every capture waits with the timeout, never wait=None
    assert fake.FAKE.flushes == 1  # the timed-out job was cancelled, so it cannot hold a buffer later
    src.close()
    assert not fake.FAKE.instances[-1].is_open


def test_buffers_are_released_every_frame(fake):
    src = _source(width=320, height=240, fps=240, buffer_count=2)
    src.model_input_size = (192, 192)
    src.open()
    for _ in range(40):  # 20x more frames than buffers: a single leaked request would starve the camera
        src.read()
        assert fake.FAKE.outstanding == 0
    assert fake.FAKE.requests_made == fake.FAKE.requests_released == 40
    src.close()


def test_the_fake_starves_when_requests_leak(fake):
    """The fake is strict about buffers, so the test above can catch a leak."""
    cam = fake.Picamera2(0)
    cam.configure(cam.create_video_configuration(main={"size": (320, 240), "format": "BGR888"}, buffer_count=2))
    cam.start()
    held = [cam.capture_request(wait=1.0), cam.capture_request(wait=1.0)]
    with pytest.raises(TIMEOUTS):  # concurrent.futures' TimeoutError: the builtin one only from Python 3.11
        cam.capture_request(wait=0.2)
    held[0].release()
    cam.capture_request(wait=1.0).release()
    held[1].release()
    cam.close()


def test_missing_picamera2_names_apt_and_the_venv_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(SourceError) as err:
        _source().open()
    assert "sudo apt install python3-picamera2" in str(err.value)
    assert "--system-site-packages" in str(err.value)


def test_camera_chosen_by_index_or_model(fake):
    src = _source(camera="imx477", width=640, height=480)
    src.open()
    assert src.name == "picamera:1:imx477" and fake.FAKE.instances[-1].camera_idx == 1
    src.close()
    with pytest.raises(SourceError, match=r"no camera model or id matches 'imx999'.*0: imx708"):
        _source(camera="imx999").open()
    with pytest.raises(SourceError, match=r"no Pi camera 5; libcamera lists 0: imx708"):
        _source(camera=5).open()


def test_no_camera_or_failed_init_names_the_cable(fake):
    fake.FAKE.cameras = []
    with pytest.raises(SourceError, match=r"finds no camera.*ribbon cable.*camera_auto_detect"):
        _source().open()
    fake.FAKE.reset(clip=fake.FAKE.clip)
    fake.FAKE.init_error = "Camera __init__ sequence did not complete."
    with pytest.raises(SourceError, match=r"cannot be opened \(Camera __init__.*rpicam-hello --list-cameras"):
        _source().open()


def test_controls_reach_the_camera_in_its_types(fake):
    src = _source(width=640, height=480, controls={
        "ExposureTime": 10000, "AnalogueGain": 2.0, "AwbEnable": False, "AwbMode": "daylight",
        "ScalerCrop": [1152, 648, 2304, 1296]})
    src.open()
    src.read()
    controls = fake.FAKE.configs[-1]["controls"]
    assert controls["ExposureTime"] == 10000 and controls["AnalogueGain"] == 2.0 and controls["AwbEnable"] is False
    assert controls["AwbMode"] == 5 and controls["ScalerCrop"] == (1152, 648, 2304, 1296)
    src.close()


@pytest.mark.parametrize("controls, message", [
    ({"Brightnes": 0.1}, r"no control Brightnes; it offers .*AnalogueGain"),
    ({"AwbMode": "sunny"}, r"AwbMode: unknown mode 'sunny'; use one of auto, incandescent"),
    ({"ScalerCrop": [0, 0, 100]}, r"ScalerCrop: expected \[x, y, width, height\]"),
])
def test_bad_controls_are_named(fake, controls, message):
    src = _source(controls=controls)
    src.open()
    with pytest.raises(SourceError, match=message):
        src.read()
    src.close()


def test_pipeline_sizes_the_lores_stream_for_its_model(fake, movenet_tflite):
    from edge.pipeline import Pipeline

    cfg = Config.model_validate({
        "model": {"path": str(movenet_tflite)},
        "source": {"type": "picamera", "width": 640, "height": 480, "fps": 60},
        "pipeline": {"max_frames": 8}, "outputs": []})
    p = Pipeline(cfg)
    p.run()
    assert p.source.model_input_size == (192, 192)
    assert fake.FAKE.configs[-1]["lores"]["size"] == (192, 144)
    assert p.stats.frames_processed >= 8 and p.stats.people_max >= 1  # RGB frames of a real person
    assert fake.FAKE.outstanding == 0 and not fake.FAKE.instances[-1].is_open
