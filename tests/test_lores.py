"""The model reads picamera2's lores stream: the ISP's resize replaces the family's whole-frame resize.

Frames come from the fake picamera2 (tests/fakes) serving a real clip or real images; the main and
lores arrays are what PiCameraSource.read() returns, put in a Frame exactly as the pipeline does.
Each check runs the real model twice on the same main image: with the lores and without it.

Tolerance for "the same keypoints" (lores vs main): the median distance over confident keypoints is
at most 3% of the person's box diagonal and none is further than 8%. Why: the two model inputs differ
only by resampling (the ISP-like INTER_AREA lores vs the family's bilinear resize of main); at
these sizes one model input pixel is 0.5-1% of the diagonal and MoveNet's heatmap cell (4 input
pixels) 3-4%, so a keypoint may move by a fraction of a cell, and 8% stays inside PCK's 10%
"correct" radius. Measured on the walking clip: MoveNet median <= 1.7%, max <= 4.9%; YOLO <= 0.6%, <= 1.5%.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import pytest

from conftest import need
from edge.capture.base import build_source
from edge.capture.picamera import lores_size
from edge.config import Config, SourceConfig
from edge.errors import FrameError
from edge.evaluate import load_yolo_pose, match_people, pck, person_crop_box
from edge.pipeline import Pipeline, load_model
from edge.poses import base as poses_base
from edge.poses.base import FamilyOptions, ModelSignature, model_view
from edge.poses.detect import make_family
from edge.post.geometry import clip_to_frame, crop_rotated, crop_square, letterbox
from edge.runtime.base import TensorSpec
from edge.types import Frame
from test_blazepose import blazepose_dir  # noqa: F401  (fixture: the BlazePose files, fetched once)
from test_picamera import fake  # noqa: F401  (fixture: the fake picamera2 serving the walking clip)

MEDIAN_TOL, MAX_TOL = 0.03, 0.08  # of the person's box diagonal; see the module docstring


def _model(path):
    """The model's own family (a MoveNet here is judged alone: top-down crops read the lores the same way)."""
    return load_model(Config.model_validate({"model": {"path": str(path), "threads": 1, "person_detector": "none"}}))


@pytest.fixture(scope="module")
def yolo(yolo_tflite):
    return _model(yolo_tflite)


@pytest.fixture(scope="module")
def movenet(movenet_tflite):
    return _model(movenet_tflite)


@pytest.fixture(scope="session")
def walkers_clip(data_dir):
    """Two full-body walkers, small in the frame: MoveNet's and BlazePose's crops are a third of it."""
    path = data_dir / "video" / "intel_face-demographics-walking_transcoded.mp4"
    need(path.is_file(), str(path))
    return path


@pytest.fixture(autouse=True)
def fresh_log_once():
    """model_view logs the lores use once per process; each test sees its own first time."""
    poses_base._lores_used.cache_clear()
    poses_base._aspect_mismatch.cache_clear()


def capture(fake, model_size, frames=1, every=1, images=None, clip=None, **source) -> list[Frame]:  # noqa: F811
    """Frames as the pipeline builds them from the (fake) camera: main image + the lores as model_image."""
    fake.FAKE.images = images
    if clip is not None:
        fake.FAKE.clip = str(clip)
    src = build_source(SourceConfig(type="picamera", fps=240, **source))
    src.model_input_size = model_size
    src.open()
    out = []
    try:
        for i in range(frames * every):
            main, t_ns = src.read()
            if i % every == 0:
                out.append(Frame(main, len(out), t_ns, 0.0, src.model_image))
    finally:
        src.close()
    return out


def infer(model, frame: Frame):
    """(model inputs, poses) for one frame, with no state from earlier frames."""
    model.family.reset()
    inputs, t = model.family.prepare(frame)
    return inputs, model.family.decode(model.backend.run(inputs), t)


def main_only(frame: Frame) -> Frame:
    return Frame(frame.image, frame.index, frame.t_capture_ns, frame.t_wall)


def assert_same_keypoints(a, b, min_conf=0.3, max_tol=MAX_TOL) -> None:
    """Poses ``b`` within the module's tolerance of poses ``a`` (the first, most confident person)."""
    assert a and b, "both runs must find the person"
    ka, kb = a[0].keypoints, b[0].keypoints
    conf = (ka[:, 2] > min_conf) & (kb[:, 2] > min_conf)
    assert conf.sum() >= 5, "too few confident keypoints to compare"
    x1, y1, x2, y2 = a[0].bbox
    diag = math.hypot(x2 - x1, y2 - y1)
    d = np.linalg.norm(ka[conf, :2] - kb[conf, :2], axis=1) / diag
    assert np.median(d) <= MEDIAN_TOL and d.max() <= max_tol, (np.median(d), d.max(), diag)


@pytest.fixture
def resize_spy(monkeypatch):
    """The shapes of every image cv2.resize / cv2.warpAffine resampled (what prepare read its pixels from)."""
    seen: list[tuple[int, ...]] = []
    for name in ("resize", "warpAffine"):
        real = getattr(cv2, name)

        def spy(src, *args, _real=real, **kw):
            seen.append(src.shape)
            return _real(src, *args, **kw)

        monkeypatch.setattr(cv2, name, spy)
    return seen


# -- (a) + (b): the whole-frame step reads the lores, keypoints stay in main pixels -----------------

def test_yolo_letterboxes_the_lores_and_finds_the_same_keypoints(fake, yolo, resize_spy, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="edge.poses.base")
    frames = capture(fake, yolo.family.size, frames=6, every=15, width=1920, height=1080)
    for frame in frames:
        assert frame.model_image.shape == (360, 640, 3)  # 1920x1080 -> 640x360: 3x, not the trivial 2x
        resize_spy.clear()
        inputs, poses = infer(yolo, frame)
        assert (1080, 1920, 3) not in resize_spy  # main was not resized...
        as_pixels = np.rint(inputs[0][0] * 255.0).astype(np.uint8)  # YOLO feeds 0..1
        assert np.array_equal(as_pixels, letterbox(frame.model_image, (640, 640))[0])  # the letterboxed lores, exactly
        _, from_main = infer(yolo, main_only(frame))
        assert_same_keypoints(from_main, poses)
    assert "reads the camera's 640x360 lores stream (main 1920x1080)" in caplog.text
    t = yolo.family.prepare(frames[0])[1]  # the lores area of the input maps onto the whole main frame
    np.testing.assert_allclose(t.to_frame(np.array([[0, 140], [640, 500]])), [[0, 0], [1920, 1080]], atol=1e-3)


def test_movenet_full_frame_square_is_the_padded_lores(fake, movenet, resize_spy):  # noqa: F811
    frames = capture(fake, movenet.family.size, frames=6, every=15, width=1280, height=720)
    for frame in frames:
        lores = frame.model_image
        assert lores.shape == (108, 192, 3)
        resize_spy.clear()
        inputs, poses = infer(movenet, frame)
        assert (720, 1280, 3) not in resize_spy
        x = inputs[0][0]  # the 1280x1280 square around the frame = the 192x108 lores, centred, zero rows around it
        assert np.array_equal(x[42:150], lores) and not x[:42].any() and not x[150:].any()
        _, from_main = infer(movenet, main_only(frame))
        assert_same_keypoints(from_main, poses)


def test_whole_frame_paths_are_untouched_without_lores(fake, yolo, movenet):  # noqa: F811
    """No lores (every non-picamera source): prepare gives exactly what it gave before this feature."""
    frame = main_only(capture(fake, (192, 192), width=1280, height=720)[0])
    inputs, _ = yolo.family.prepare(frame)
    assert np.array_equal(np.rint(inputs[0][0] * 255.0).astype(np.uint8), letterbox(frame.image, (640, 640))[0])
    movenet.family.reset()
    inputs, _ = movenet.family.prepare(frame)
    assert np.array_equal(inputs[0][0], crop_square(frame.image, (0, -280, 1280, 1000), (192, 192))[0])


@pytest.mark.parametrize("dynamic", [False, True])
def test_multipose_letterboxes_the_lores(dynamic):
    sig = ModelSignature([TensorSpec("in", (1, None, None, 3) if dynamic else (1, 256, 256, 3), np.dtype(np.int32))],
                         [TensorSpec("out", (1, 6, 56), np.dtype(np.float32))], {})
    fam = make_family(sig, FamilyOptions(), "movenet_multipose")
    main = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    lores = cv2.resize(main, lores_size((1280, 720), fam.size), interpolation=cv2.INTER_AREA)
    inputs, t = fam.prepare(Frame(main, 0, 0, 0.0, lores))
    size = (256, 160) if dynamic else (256, 256)
    canvas, tl = letterbox(lores, size, pad_value=0)
    assert np.array_equal(inputs[0][0], canvas)
    corners = np.array([[0, -tl.ty / tl.sy], [256, (144 - tl.ty) / tl.sy]])  # where the lores sits in the input
    np.testing.assert_allclose(t.to_frame(corners), [[0, 0], [1280, 720]], atol=1e-3)
    assert (t.frame_w, t.frame_h) == (1280, 720)


# -- (b) against ground truth: coco8-pose images served by the camera at a main size ---------------

def _served(fake, image: np.ndarray, model_size, scale: float) -> Frame:  # noqa: F811
    h, w = image.shape[:2]
    main = (int(w * scale) // 2 * 2, int(h * scale) // 2 * 2)
    return capture(fake, model_size, images=[image], width=main[0], height=main[1])[0]


def test_yolo_with_lores_matches_coco8_ground_truth(fake, yolo, data_dir):  # noqa: F811
    samples = load_yolo_pose(data_dir / "coco8-pose")
    pairs = {"main": [], "lores": []}
    for s in samples:
        frame = _served(fake, s.image, yolo.family.size, 1.5)  # e.g. 640x480 -> main 960x720, lores 640x480
        k = np.array([s.image.shape[1] / frame.width, s.image.shape[0] / frame.height], np.float32)
        for name, f in (("main", main_only(frame)), ("lores", frame)):
            _, poses = infer(yolo, f)
            for p in poses:
                p.keypoints[:, :2] *= k  # main pixels -> the labelled image's pixels
            pairs[name].extend(zip(s.people, match_people(poses, s.people)))
    from_main, from_lores = pck(pairs["main"], 0.1), pck(pairs["lores"], 0.1)
    assert from_lores >= 0.7 and from_lores >= from_main - 0.03, (from_main, from_lores)  # measured 0.81 / 0.86


def test_movenet_with_lores_matches_coco8_ground_truth(fake, movenet, data_dir):  # noqa: F811
    """Each labelled person's crop (as evaluate.py cuts them) is the camera view, served at 960x960."""
    pairs = {"main": [], "lores": []}
    for s in load_yolo_pose(data_dir / "coco8-pose"):
        for person in s.people:
            box = person_crop_box(person)
            side = max(1, int(round(box[2] - box[0])))
            view, t_view = crop_square(s.image, box, (side, side))
            frame = _served(fake, view, movenet.family.size, 960 / side)
            assert frame.model_image.shape == (192, 192, 3)
            for name, f in (("main", main_only(frame)), ("lores", frame)):
                _, poses = infer(movenet, f)
                pred = None
                if poses:
                    pred = poses[0].keypoints.copy()
                    pred[:, :2] = t_view.to_frame(pred[:, :2] * (side / frame.width))
                pairs[name].append((person, pred))
    from_main, from_lores = pck(pairs["main"], 0.1), pck(pairs["lores"], 0.1)
    assert from_lores >= 0.6 and from_lores >= from_main - 0.03, (from_main, from_lores)  # measured 0.67 / 0.69


# -- (c) crops that would upsample the lores come from main --------------------------------------

def _crop_box(t) -> tuple[float, float, float, float]:
    """The frame box a MoveNet input shows, read from its Transform (main pixels either way)."""
    return (t.tx, t.ty, t.tx + t.sx * t.input_w, t.ty + t.sy * t.input_h)


def _tracked(model, frames: list[Frame]):
    """MoveNet on all but the last frame (the first one whole), then prepare the last: its tracked crop."""
    fam = model.family
    fam.reset()
    for frame in frames[:-1]:
        inputs, t = fam.prepare(frame)
        fam.decode(model.backend.run(inputs), t)
    inputs, t = fam.prepare(frames[-1])
    assert fam.last_was_tracked
    return inputs, t


def test_tracked_movenet_crop_falls_back_to_main_when_the_lores_is_too_small(fake, movenet, walkers_clip):  # noqa: F811
    frames = capture(fake, movenet.family.size, frames=3, every=4, width=1280, height=720, clip=walkers_clip)
    inputs, t = _tracked(movenet, frames)
    box = _crop_box(t)
    assert (box[2] - box[0]) * 192 / 1280 < 190  # fewer lores pixels across the crop than the model's 192
    assert np.array_equal(inputs[0][0], crop_square(frames[-1].image, box, (192, 192))[0])  # so it came from main
    assert (t.frame_w, t.frame_h) == (1280, 720)


def test_tracked_movenet_crop_reads_a_lores_big_enough(fake, movenet, walkers_clip):  # noqa: F811
    frames = capture(fake, movenet.family.size, frames=3, every=4, width=1280, height=720, lores=[640, 360],
                     clip=walkers_clip)
    inputs, t = _tracked(movenet, frames)
    box = _crop_box(t)
    assert (box[2] - box[0]) / 2 >= 192  # at least the model's 192 lores pixels across the crop
    lores_box = tuple(v / 2 for v in box)
    assert np.array_equal(inputs[0][0], crop_square(frames[-1].model_image, lores_box, (192, 192))[0])
    tracked = movenet.family.decode(movenet.backend.run(inputs), t)
    inputs_main, t_main = _tracked(movenet, [main_only(f) for f in frames])  # the same frames without lores
    side = box[2] - box[0]
    assert np.allclose(_crop_box(t_main), box, atol=MAX_TOL * side)  # both runs track the same region
    assert_same_keypoints(movenet.family.decode(movenet.backend.run(inputs_main), t_main), tracked)


@pytest.mark.parametrize("clip, roi_from", [("walk", "lores"), ("walkers", "main")])
def test_blazepose_detector_reads_the_lores_and_the_roi_reads_lores_only_when_big(
        fake, blazepose_dir, walk_clip, walkers_clip, clip, roi_from):  # noqa: F811
    model = _model(blazepose_dir / "pose_landmark_full.tflite")
    fam = model.family
    seen = []
    run = fam.detector.run
    fam.detector.run = lambda inputs: seen.append(inputs[0]) or run(inputs)
    frame = capture(fake, fam.size, width=1280, height=720, clip=walk_clip if clip == "walk" else walkers_clip)[0]
    lores = frame.model_image
    assert lores.shape == (144, 256, 3)
    fam.reset()
    inputs, t = fam.prepare(frame)
    expected = letterbox(lores, (224, 224), pad_value=0)[0].astype(np.float32) / 127.5 - 1.0
    assert len(seen) == 1 and np.array_equal(seen[0][0], expected)  # the detector saw the letterboxed lores
    m = np.asarray(t.m)  # the landmark crop, read back from its transform (main pixels)
    size, angle = math.hypot(m[0, 0], m[1, 0]) * t.input_w, math.atan2(m[1, 0], m[0, 0])
    centre = m[:, :2] @ [t.input_w / 2, t.input_h / 2] + m[:, 2]
    big = size * 256 / 1280 >= 256  # at least the model's 256 lores pixels across the ROI
    assert big == (roi_from == "lores")
    if big:
        patch = crop_rotated(lores, tuple(centre / 5), size / 5, angle, (256, 256))[0]
    else:
        patch = crop_rotated(frame.image, tuple(centre), size, angle, (256, 256))[0]
    assert np.abs(inputs[0][0] * 255.0 - patch).max() <= 1.0
    poses = fam.decode(model.backend.run(inputs), t)
    _, from_main = infer(model, main_only(frame))
    # The landmark crop's ROI comes from the detector, which saw another image (lores vs main): the ROI
    # shifts by ~3% of its size, and the small, blurred hands of the walkers (upscaled 480x270) move by up to
    # ~10% of the box diagonal with it. The body (median) is held to the common 3%.
    assert_same_keypoints(from_main, poses, min_conf=0.5, max_tol=0.15)


# -- (d) a lores of the wrong shape: a clear error, or main -------------------------------------

def test_lores_with_another_aspect_ratio_falls_back_to_main(fake, yolo, movenet, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="edge.poses.base")
    frame = capture(fake, None, width=1280, height=720, lores=[320, 320])[0]  # stretched 16:9 -> 1:1
    assert frame.model_image.shape == (320, 320, 3)
    for model in (yolo, movenet):
        inputs, poses = infer(model, frame)
        inputs_main, poses_main = infer(model, main_only(frame))
        assert np.array_equal(inputs[0], inputs_main[0])
        assert [p.keypoints.tolist() for p in poses] == [p.keypoints.tolist() for p in poses_main]
    assert caplog.text.count("does not have the 1280x720 main stream's aspect ratio") == 1
    assert "reads the camera's" not in caplog.text


@pytest.mark.parametrize("lores, what", [
    (np.zeros((162, 192), np.uint8), "(162, 192) and dtype uint8"),  # a YUV420 array nobody converted
    (np.zeros((108, 192, 4), np.uint8), "(108, 192, 4)"),  # XBGR8888
    (np.zeros((108, 192, 3), np.float32), "dtype float32"),
])
def test_lores_of_a_wrong_shape_is_a_clear_error(lores, what):
    with pytest.raises(FrameError, match=r"model_image \(the lores stream\) has shape") as err:
        Frame(np.zeros((720, 1280, 3), np.uint8), 7, 0, 0.0, lores)
    assert what in str(err.value) and "yuv420_to_rgb" in str(err.value) and "source.lores: false" in str(err.value)


def test_model_view_rule():
    """Lores when it has the pixels (within the camera's even rounding), main when it would upsample."""
    main = np.zeros((1088, 1456, 3), np.uint8)
    lores = np.zeros((142, 192, 3), np.uint8)  # lores_size((1456, 1088), (192, 192)): 1.5 px lost to rounding
    frame = Frame(main, 0, 0, 0.0, lores)
    image, kx, ky = model_view(frame, (1456, 1456), (192, 192))  # the whole-frame square
    assert image is lores and (kx, ky) == (1456 / 192, 1088 / 142)
    assert model_view(frame, (1200, 1200), (192, 192))[0] is main  # a tracked crop: 158 lores px for 192
    assert model_view(Frame(main, 0, 0, 0.0), (1456, 1456), (192, 192))[0] is main


# -- the pipeline hands the lores to the model ------------------------------------------------------

class Recorder:
    name = "recorder"

    def __init__(self):
        self.results = []

    def open(self, meta):
        pass

    def write(self, result):
        self.results.append(result)

    def close(self):
        pass


def test_pipeline_passes_the_lores_to_the_model(fake, yolo, caplog):  # noqa: F811
    caplog.set_level(logging.INFO, logger="edge.poses.base")
    cfg = Config.model_validate({
        "model": {"path": str(yolo.path)},
        "source": {"type": "picamera", "width": 1920, "height": 1080, "fps": 30},
        "pipeline": {"max_frames": 3}, "outputs": [],
        "tracking": {"enabled": False}, "smoothing": {"enabled": False}})  # poses as decoded
    rec = Recorder()
    Pipeline(cfg, model=yolo, sinks=[rec]).run()
    assert len(rec.results) >= 3
    assert "reads the camera's 640x360 lores stream (main 1920x1080)" in caplog.text
    for r in rec.results:
        assert r.frame.model_image.shape == (360, 640, 3)
        _, again = infer(yolo, r.frame)  # the pipeline's poses are the lores run's (clipped to the frame)
        again = clip_to_frame(again, r.frame.width, r.frame.height)
        assert [p.keypoints.tolist() for p in r.poses] == [p.keypoints.tolist() for p in again]
        _, from_main = infer(yolo, main_only(r.frame))
        assert_same_keypoints(from_main, r.poses)
    assert fake.FAKE.outstanding == 0
