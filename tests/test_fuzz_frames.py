"""Any array a source can yield is processed or counted as a bad frame, and the pipeline goes on.

The unit path is the pipeline's own (edge.intake.Intake.admit: validate, convert, prepare for the
family), then the real model and decoder; the pipeline path runs a fake source that yields bad
frames between good ones through the whole threaded pipeline.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import need
from edge.config import Config
from edge.errors import FrameError
from edge.intake import Intake
from edge.model import run_prepared
from edge.pipeline import Pipeline, load_model
from edge.poses.base import CropBatch
from edge.post.geometry import clip_to_frame
from edge.stats import Stats
from fuzzing import fuzz_settings
from test_hostile_frames import Collect, onnx_model

DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_, np.int8, np.float16]
ASPECTS = [(1, 10000), (10000, 1), (2, 5000), (5000, 3), (1, 1), (1, 2)]
MAX_ELEMENTS = 3_000_000


@st.composite
def images(draw):
    """Arrays of any rank 0..4, zero-sized or huge-aspect dims, 0..5 channels, odd dtypes, NaN/Inf, any layout."""
    ndim = draw(st.integers(0, 4))
    dim = st.one_of(st.sampled_from([0, 1, 2, 3, 7, 64, 241, 480, 640]), st.integers(0, 700))
    shape = [draw(dim) for _ in range(ndim)]
    if ndim in (2, 3) and draw(st.booleans()):
        shape[:2] = draw(st.sampled_from(ASPECTS))
    if ndim == 3:
        shape[2] = draw(st.sampled_from([3, 3, 0, 1, 2, 4, 5]))
    if int(np.prod(shape, dtype=np.int64)) > MAX_ELEMENTS:
        shape = [min(d, 64) for d in shape]
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.RandomState(draw(st.integers(0, 2**31 - 1)))
    layout = draw(st.sampled_from(["c", "fortran", "strided", "reversed"]))
    base = [d * 2 if layout == "strided" and i == 0 else d for i, d in enumerate(shape)]
    fill = draw(st.sampled_from(["zeros", "random", "max"] + (["nan", "inf"] if dtype.kind == "f" else [])))
    if fill == "zeros":
        a = np.zeros(base, dtype)
    elif fill == "max":
        a = np.full(base, np.iinfo(dtype).max if dtype.kind in "iu" else 1, dtype)
    elif dtype.kind == "b":
        a = np.asarray(rng.random_sample(tuple(base)) > 0.5)
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        a = rng.randint(max(info.min, -2**31), min(info.max, 2**31 - 1), size=base, dtype=np.int64).astype(dtype)
    else:
        a = np.asarray(rng.random_sample(tuple(base)) * draw(st.sampled_from([1.0, 255.0, 65535.0]))).astype(dtype)
    if fill in ("nan", "inf") and a.size:
        a.reshape(-1)[rng.randint(0, a.size, size=max(1, a.size // 100))] = np.nan if fill == "nan" else np.inf
    if layout == "fortran":
        a = np.asfortranarray(a)
    elif layout == "strided" and ndim:
        a = a[::2]
    elif layout == "reversed" and ndim:
        a = a[::-1]
    return a


def must_be_processed(a: np.ndarray) -> bool:
    """What a source may yield and the pipeline must run: a non-empty 8-bit RGB or grayscale image."""
    return a.dtype == np.uint8 and a.size > 0 and (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4)))


# -- the families, with real models (MultiPose: a tiny ONNX model with its tensors) ---------------------
@pytest.fixture(scope="module")
def family_model(request, tmp_path_factory, models_dir):
    name = request.param
    if name == "movenet":
        path = models_dir / "movenet_singlepose_lightning_int8_4.tflite"
    elif name == "yolo":
        path = models_dir / "yolo11n-pose_int8.tflite"
    elif name == "blazepose":
        cache = Path(os.environ.get("EDGEPOSE_MODELS") or Path.home() / ".cache" / "edgepose" / "models")
        path = cache / "pose_landmark_lite.tflite"
        need(path.is_file() and (cache / "pose_detection.tflite").is_file(),
             f"BlazePose files in {cache} (python3 scripts/fetch_blazepose.py --out {cache})")
    else:
        in_shape = (1, 256, 256, 3) if name == "multipose" else (1, None, None, 3)
        path = onnx_model(tmp_path_factory.mktemp(name) / f"{name}.onnx", in_shape, (1, 6, 56), fill=0.0)
    need(path.is_file(), str(path))
    model = load_model(Config.model_validate({"model": {"path": str(path), "threads": 1}}))
    assert model.family.name == {"multipose_dynamic": "movenet_multipose", "multipose": "movenet_multipose"}.get(name, name)
    yield model
    model.backend.close()


@pytest.mark.parametrize("family_model", ["movenet", "yolo", "blazepose", "multipose", "multipose_dynamic"],
                         indirect=True)
def test_any_frame_is_processed_or_counted_as_bad(family_model):
    model = family_model

    @fuzz_settings(30)
    @given(images(), st.booleans())
    def check(image, continuous):
        stats = Stats()
        intake = Intake(model.family, stats, continuous)
        item = intake.admit(image, 0, time.monotonic_ns(), time.time())
        if item is None:
            assert stats.drops == {"bad_frame": 1}
            assert not must_be_processed(image), f"a usable {image.shape} {image.dtype} frame was dropped"
            return
        assert not stats.drops
        frame = item.frame
        assert frame.image.ndim == 3 and frame.image.shape[2] == 3 and frame.image.dtype == np.uint8
        runs = item.inputs if isinstance(item.inputs, CropBatch) else [item.inputs]  # top-down: one run per crop
        for inputs in runs:
            for array, spec in zip(inputs, model.backend.inputs):
                assert len(array.shape) == len(spec.shape)
                assert all(d is None or d == a for a, d in zip(array.shape, spec.shape)), (array.shape, spec.shape)
        poses = clip_to_frame(model.family.decode(run_prepared(model.backend, item.inputs), item.transform),
                              frame.width, frame.height)
        for p in poses:
            assert np.isfinite(p.keypoints).all() and np.isfinite(p.score)
            assert (p.keypoints[:, 0] <= frame.width - 1).all() and (p.keypoints[:, 1] <= frame.height - 1).all()

    check()


# -- the whole pipeline: bad frames between good ones --------------------------------------------------
class ListSource:
    """Yields the given arrays in order (an exception instance is raised instead), then ends."""

    name = "list"
    continuous = True
    live = False  # wait for the pipeline: no frame is replaced, so every one is processed or counted bad
    fps = None

    def __init__(self, items):
        self.items = list(items)

    def open(self):
        pass

    def read(self):
        from edge.capture.base import EndOfStream

        if not self.items:
            raise EndOfStream("done")
        item = self.items.pop(0)
        if isinstance(item, Exception):
            raise item
        return item, time.monotonic_ns()

    def close(self):
        pass


@pytest.fixture(scope="module")
def movenet(models_dir):
    cfg = Config.model_validate({"model": {"path": str(models_dir / "movenet_singlepose_lightning_int8_4.tflite")}})
    model = load_model(cfg)
    yield cfg, model
    model.backend.close()


@pytest.fixture(scope="module")
def walk_frames(walk_clip):
    cap = cv2.VideoCapture(str(walk_clip))
    frames = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(6)]
    cap.release()
    return frames


def _run(cfg, model, items):
    sink = Collect()
    p = Pipeline(cfg.model_copy(update={"outputs": []}), model=model, source=ListSource(items), sinks=[sink])
    p.run()
    return p, sink


HOSTILE = [np.zeros((1, 10000, 3), np.uint8), np.zeros((0, 640, 3), np.uint8), np.array(7, np.uint8),
           np.zeros((48, 64, 2), np.uint8), np.zeros((48, 64, 5), np.uint8), np.full((48, 64, 3), np.nan, np.float32),
           np.zeros((48, 64, 3), np.int32), np.zeros((48, 64, 3), bool), np.zeros((1, 48, 64, 3), np.uint8),
           np.zeros((48, 64), np.uint16)[:, ::-1], "not an array", None]


def test_bad_frames_between_good_ones_are_counted_and_the_pipeline_goes_on(movenet, walk_frames):
    cfg, model = movenet
    items, good = [], 0
    for i, bad in enumerate(HOSTILE):
        items += [walk_frames[i % len(walk_frames)], bad]
        good += 1
    items.insert(3, FrameError("image broken.jpg cannot be decoded"))  # what ImageSource raises for a corrupt file
    p, sink = _run(cfg, model, items)
    snap = p.stats.snapshot()
    yielded = len(items) - 1  # the FrameError is no frame
    assert p.error is None and snap["source_state"] == "ended"
    assert snap["frames_captured"] == yielded
    assert snap["frames_processed"] + snap["drops"]["bad_frame"] == yielded
    assert snap["drops"]["unreadable"] == 1 and snap["drops"].get("capture", 0) == 0
    assert len(sink.results) == snap["frames_processed"] >= good + 2  # the 10000x1 strip and the 16-bit gray run too
    assert sum(1 for r in sink.results if r.poses) >= good // 2  # the person in the walking clip, between bad frames


def test_any_sequence_of_frames_through_the_pipeline(movenet, walk_frames):
    cfg, model = movenet

    @fuzz_settings(4)
    @given(st.lists(st.one_of(images(), st.sampled_from(range(len(walk_frames)))), min_size=1, max_size=8))
    def check(picks):
        items = [walk_frames[x] if isinstance(x, int) else x for x in picks]
        p, sink = _run(cfg, model, items)
        snap = p.stats.snapshot()
        assert p.error is None
        assert snap["frames_captured"] == len(items)
        assert snap["frames_processed"] + snap["drops"].get("bad_frame", 0) == len(items)
        assert snap["frames_processed"] >= sum(isinstance(x, int) for x in picks)
        assert len(sink.results) == snap["frames_processed"]

    check()
