"""Backends: quantization honoured from the model, metadata read, bad files refused with the fix."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import ModelError
from edge.runtime.base import BackendOptions, TensorSpec, from_output, load_backend, to_input


@pytest.mark.parametrize(
    "dtype, scale, zero, real, expected",
    [
        (np.int8, 1 / 255, -128, [0.0, 0.4, 1.0], [-128, -26, 127]),
        (np.uint8, 1 / 255, 0, [0.0, 0.4, 1.0], [0, 102, 255]),
        (np.uint8, 0.0, 0, [0.0, 127.6, 300.0], [0, 128, 255]),  # not quantized: cast with clipping
        (np.int32, 0.0, 0, [0.0, 127.0, 255.0], [0, 127, 255]),
    ],
)
def test_to_input_honours_dtype_scale_and_zero_point(dtype, scale, zero, real, expected):
    spec = TensorSpec("x", (3,), np.dtype(dtype), scale, zero)
    out = to_input(np.asarray(real, dtype=np.float32), spec)
    assert out.dtype == dtype
    assert out.tolist() == expected


def test_from_output_dequantizes():
    spec = TensorSpec("y", (3,), np.dtype(np.int8), 0.5, 10)
    np.testing.assert_allclose(from_output(np.array([10, 12, -10], dtype=np.int8), spec), [0.0, 1.0, -10.0])


@pytest.mark.parametrize("threads", [1, 2])
def test_tflite_reads_tensors_and_ultralytics_metadata(yolo_tflite, threads):
    b = load_backend(yolo_tflite, options=BackendOptions(threads=threads))
    assert b.runtime == "tflite"
    assert b.inputs[0].shape == (1, 640, 640, 3) and b.inputs[0].dtype == np.float32
    assert b.outputs[0].shape == (1, 56, 8400)
    assert b.metadata["kpt_shape"] == "[17, 3]"
    out = b.run([np.zeros((1, 640, 640, 3), np.float32)])
    assert out[0].shape == (1, 56, 8400) and out[0].dtype == np.float32


def test_onnx_backend_runs_uint8_movenet(models_dir):
    b = load_backend(models_dir / "onnx" / "movenet_singlepose_lightning_int8_4_qdq.onnx")
    assert b.runtime == "onnx" and b.inputs[0].dtype == np.uint8
    out = b.run([np.full((1, 192, 192, 3), 128.0, np.float32)])  # float in, cast to uint8 by the backend
    assert out[0].shape == (1, 1, 17, 3)


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_corrupt_model_gives_model_error(tmp_path, suffix):
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(b"this is not a model" * 100)
    with pytest.raises(ModelError, match=r"corrupt.*again"):
        load_backend(bad)


def test_truncated_real_model_gives_model_error(tmp_path, movenet_tflite):
    cut = tmp_path / "cut.tflite"
    data = movenet_tflite.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="cut.tflite"):
        load_backend(cut)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_backend(tmp_path / "nope.tflite")
    other = tmp_path / "model.pt"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"\.tflite.*\.onnx"):
        load_backend(other)


def test_backend_mismatch_names_the_right_one(movenet_tflite):
    with pytest.raises(ModelError, match="--backend tflite"):
        load_backend(movenet_tflite, kind="onnx")


def test_an_inference_failure_is_the_file_before_the_first_success_and_a_runtime_failure_after():
    """A Jetson's transient CUDA out-of-memory must not exit 2 (RestartPreventExitStatus=2 would stop the unit)."""
    from pathlib import Path

    from edge.errors import ModelError
    from edge.runtime.base import run_failure

    first = run_failure(Path("m.onnx"), "ONNX Runtime", RuntimeError("bad Reshape\nmore"), ran_before=False)
    assert isinstance(first, ModelError) and first.exit_code == 2 and "bad Reshape" in str(first)
    later = run_failure(Path("m.onnx"), "ONNX Runtime", RuntimeError("CUDA out of memory"), ran_before=True)
    assert not isinstance(later, ModelError) and later.exit_code == 1 and "CUDA out of memory" in str(later)
