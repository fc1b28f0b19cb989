"""LiteRT (TFLite) backend: ai-edge-litert, else tflite_runtime, else tensorflow.lite.

XNNPACK is the default CPU delegate in all three; ``threads`` sets its thread count. What the
runtime prints to fd 2 while it loads a model (``INFO: Created TensorFlow Lite XNNPACK delegate
for CPU.``) is logged at DEBUG, anything unexpected at WARNING (edge/runtime/native_log.py).
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from edge.errors import ModelError
from edge.runtime.base import BackendOptions, TensorSpec, from_output, register, run_failure, to_input
from edge.runtime.native_log import LITERT_CHATTER, native_stderr
from edge.runtime.tflite_check import check_header, check_model, probe

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "LiteRT is not installed. Install it with: pip install 'edgepose[tflite]' "
    "(the ai-edge-litert package; on a Pi with Python 3.11 it has aarch64 wheels)"
)


def _interpreter_class():
    """Find an Interpreter class, explaining the numpy-2 trap of old tflite_runtime wheels."""
    errors: list[str] = []
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError as exc:
        errors.append(f"ai_edge_litert: {exc}")
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError as exc:
        errors.append(f"tflite_runtime: {exc}")
    except (AttributeError, RuntimeError) as exc:  # numpy 2 vs a numpy-1 build of tflite_runtime
        np_major = int(np.__version__.split(".")[0])
        if np_major >= 2:
            raise ModelError(
                f"tflite_runtime is installed but was built for numpy 1.x and cannot load with numpy "
                f"{np.__version__} ({exc}). Replace it with LiteRT: pip uninstall tflite-runtime && "
                "pip install 'edgepose[tflite]'  (or pin 'numpy<2')."
            ) from exc
        errors.append(f"tflite_runtime: {exc}")
    try:
        import tensorflow as tf  # noqa: F401

        return tf.lite.Interpreter
    except ImportError as exc:
        errors.append(f"tensorflow: {exc}")
    log.debug("no TFLite runtime: %s", "; ".join(errors))
    raise ModelError(INSTALL_HINT)


def read_embedded_metadata(path: Path) -> dict[str, str]:
    """Ultralytics appends a zip holding metadata.json to its TFLite exports."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("metadata.json")]
            if not names:
                return {}
            data = json.loads(zf.read(names[0]).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, ValueError, UnicodeDecodeError):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def _spec(detail: dict) -> TensorSpec:
    scale, zero = detail.get("quantization", (0.0, 0))
    sig = detail.get("shape_signature")
    shape = tuple(None if (sig is not None and sig[i] < 0) else int(d) for i, d in enumerate(detail["shape"]))
    return TensorSpec(detail["name"], shape, np.dtype(detail["dtype"]), float(scale), int(zero))


class TFLiteBackend:
    runtime = "tflite"

    def __init__(self, path: Path, options: BackendOptions):
        self.path = path
        interpreter_cls = _interpreter_class()
        check_header(path)
        try:
            with native_stderr(log, LITERT_CHATTER, "LiteRT"):
                self._it = interpreter_cls(model_path=str(path), num_threads=max(1, options.threads))
                check_model(path)  # LiteRT verified the structure; values that would crash it natively fail here
            # What no check foresees crashes a child. Outside the capture: it holds the log handlers' lock,
            # and the running pipeline's threads must still log during a reload.
            probe(path, interpreter_cls, max(1, options.threads))
            with native_stderr(log, LITERT_CHATTER, "LiteRT"):  # the XNNPACK line comes from allocate_tensors
                self._it.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(
                f"model {path} could not be loaded by LiteRT: {str(exc).strip().splitlines()[0]}. "
                "The file is corrupt, truncated or not a TFLite model; download or export it again."
            ) from exc
        self._in = self._it.get_input_details()
        self._out = self._it.get_output_details()
        self.inputs = [_spec(d) for d in self._in]
        self.outputs = [_spec(d) for d in self._out]
        self.metadata = read_embedded_metadata(path)
        self._ran = False

    def run(self, tensors: list[np.ndarray]) -> list[np.ndarray]:
        it = self._it
        for detail, spec, array in zip(self._in, self.inputs, tensors):
            data = to_input(array, spec)
            if tuple(data.shape) != tuple(detail["shape"]):
                it.resize_tensor_input(detail["index"], list(data.shape))
                it.allocate_tensors()
                self._in = it.get_input_details()
                self._out = it.get_output_details()
                detail = next(d for d in self._in if d["name"] == spec.name)
            it.set_tensor(detail["index"], data)
        try:
            it.invoke()
        except RuntimeError as exc:  # e.g. "Input tensor 129 lacks data": a damaged file that still loaded
            raise run_failure(self.path, "LiteRT", exc, self._ran) from None
        self._ran = True
        return [from_output(it.get_tensor(d["index"]), s) for d, s in zip(self._out, self.outputs)]

    def tensor_details(self) -> list[dict]:
        """Every tensor of the graph with its dtype and quantization (for `models check`)."""
        return self._it.get_tensor_details()

    def close(self) -> None:
        self._it = None


@register("tflite")
def open_tflite(path: Path, options: BackendOptions) -> TFLiteBackend:
    return TFLiteBackend(path, options)
