"""YOLO-pose layouts: NCHW/NHWC input x normalised/pixel coordinates x [1,56,N]/[1,N,56] output.

The real TFLite model's output on bus.jpg is re-expressed in every layout; each must decode to
the same people as the original.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edge.poses.base import FamilyOptions, ModelSignature
from edge.poses.detect import detect_family, make_family
from edge.runtime.base import TensorSpec, load_backend
from edge.types import Frame


@pytest.fixture(scope="module")
def real(yolo_tflite, data_dir):
    backend = load_backend(yolo_tflite)
    sig = ModelSignature(backend.inputs, backend.outputs, backend.metadata)
    family = make_family(sig, FamilyOptions())
    rgb = cv2.cvtColor(cv2.imread(str(data_dir / "images" / "bus.jpg")), cv2.COLOR_BGR2RGB)
    frame = Frame(rgb, 0, time.monotonic_ns(), time.time())
    inputs, t = family.prepare(frame)
    out = backend.run(inputs)[0]
    return frame, inputs[0], t, out, family.decode([out], t)


def _sig(input_shape, output_shape, metadata=None):
    return ModelSignature(
        [TensorSpec("images", input_shape, np.dtype(np.float32))],
        [TensorSpec("output0", output_shape, np.dtype(np.float32))],
        metadata or {},
    )


@pytest.mark.parametrize("input_layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("pixels", [False, True])
@pytest.mark.parametrize("transposed", [False, True])
def test_every_layout_decodes_the_same_people(real, input_layout, pixels, transposed):
    frame, nhwc_input, t, out, expected = real
    assert len(expected) == 4
    raw = out.copy()
    if pixels:  # ONNX exports keep input pixels
        raw[0, 5::3] = out[0, 5::3] * 640
        raw[0, 6::3] = out[0, 6::3] * 640
        raw[0, 0:4] = out[0, 0:4] * 640
    if transposed:
        raw = raw.transpose(0, 2, 1).copy()
    in_shape = (1, 640, 640, 3) if input_layout == "nhwc" else (1, 3, 640, 640)
    sig = _sig(in_shape, raw.shape)
    assert detect_family(sig) == "yolo"
    family = make_family(sig, FamilyOptions())
    inputs, t2 = family.prepare(frame)
    assert inputs[0].shape == in_shape
    expected_input = nhwc_input if input_layout == "nhwc" else nhwc_input.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(inputs[0], expected_input)
    poses = family.decode([raw], t2)
    assert len(poses) == len(expected)
    for got, want in zip(poses, expected):
        np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-2)
        np.testing.assert_allclose(got.bbox, want.bbox, atol=1e-2)


def test_dynamic_input_uses_metadata_imgsz(real):
    frame, *_ = real
    sig = _sig((1, 3, None, None), (1, 56, None), {"imgsz": "[480, 480]", "kpt_shape": "[17, 3]"})
    family = make_family(sig, FamilyOptions())
    inputs, t = family.prepare(frame)
    assert inputs[0].shape == (1, 3, 480, 480)
    assert t.frame_w == frame.width and t.frame_h == frame.height


def test_letterbox_inverse_maps_back_to_frame(real):
    frame, nhwc_input, t, *_ = real
    # bus.jpg is 810x1080 (w x h): a 640 letterbox scales by 640/1080 and pads x by (640-480)/2
    assert nhwc_input.shape == (1, 640, 640, 3)
    corners = t.to_frame(np.array([[80.0, 0.0], [560.0, 640.0]]))
    np.testing.assert_allclose(corners, [[0, 0], [frame.width, frame.height]], atol=1.0)
