"""ONNX Runtime backend: configurable execution providers (CPU, CUDA, TensorRT) and threads.

ONNX Runtime writes its own log (ANSI-coloured) to fd 2. Below DEBUG it is held to errors; at DEBUG
it includes warnings. What it prints while it loads a model is captured and logged through
``logging`` instead: its verbose, info and warning lines at DEBUG, anything else at WARNING
(edge/runtime/native_log.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from edge.errors import ModelError
from edge.runtime.base import BackendOptions, TensorSpec, from_output, register, run_failure, to_input
from edge.runtime.native_log import ORT_CHATTER, debug_enabled, native_stderr

log = logging.getLogger(__name__)

ORT_WARNING, ORT_ERROR = 2, 3  # ONNX Runtime's severities (0 verbose, 1 info, 2 warning, 3 error, 4 fatal)
_ONNX_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
}


def _spec(arg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
    dtype = _ONNX_DTYPES.get(arg.type)
    if dtype is None:
        raise ModelError(f"tensor {arg.name} has unsupported type {arg.type}")
    # ONNX QDQ models keep quantization inside the graph: the I/O is plain.
    return TensorSpec(arg.name, shape, np.dtype(dtype))


class OnnxBackend:
    runtime = "onnx"

    def __init__(self, path: Path, options: BackendOptions):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError(
                "ONNX Runtime is not installed. Install it with: pip install 'edgepose[onnx]' "
                "(on a Jetson use NVIDIA's onnxruntime-gpu wheel for JetPack instead)"
            ) from exc
        self.path = path
        available = ort.get_available_providers()
        providers = [p for p in options.providers if p in available]
        missing = [p for p in options.providers if p not in available]
        if missing:
            log.warning("ONNX Runtime providers not available here: %s (available: %s)", missing, available)
        if not providers:
            providers = ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, options.threads)
        so.inter_op_num_threads = 1
        # the level is read now: setup_logging() runs before any model is loaded
        severity = ORT_WARNING if debug_enabled(log) else ORT_ERROR
        ort.set_default_logger_severity(severity)  # the process-wide logger: model loading warns through it
        so.log_severity_level = severity  # the session's own logger (runs)
        try:
            printed = io.StringIO()  # a failing load prints "EP Error ... Falling back" to stdout (JSONL may go there)
            with native_stderr(log, ORT_CHATTER, "ONNX Runtime"), contextlib.redirect_stdout(printed):
                self._session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped exceptions for bad files
            log.debug("ONNX Runtime printed while loading %s: %s", path, printed.getvalue().strip())
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(
                f"model {path} could not be loaded by ONNX Runtime: {first}. "
                "The file is corrupt, truncated or not an ONNX model; download or export it again."
            ) from exc
        self.providers = self._session.get_providers()
        self.inputs = [_spec(a) for a in self._session.get_inputs()]
        self.outputs = [_spec(a) for a in self._session.get_outputs()]
        self._out_names = [o.name for o in self.outputs]
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        state = ort.capi.onnxruntime_pybind11_state  # its errors of a model that loads but cannot run
        self._run_errors = tuple(getattr(state, n) for n in ("Fail", "RuntimeException", "NotImplemented", "EPFail",
                                                             "InvalidGraph") if hasattr(state, n))

    def run(self, tensors: list[np.ndarray]) -> list[np.ndarray]:
        feed = {s.name: to_input(a, s) for s, a in zip(self.inputs, tensors)}
        try:
            outs = self._session.run(self._out_names, feed)
        except self._run_errors as exc:  # e.g. a damaged Reshape constant: the file, not the frame
            raise run_failure(self.path, "ONNX Runtime", exc, getattr(self, "_ran", False)) from None
        self._ran = True
        return [from_output(np.asarray(o), s) for o, s in zip(outs, self.outputs)]

    def close(self) -> None:
        self._session = None


@register("onnx")
def open_onnx(path: Path, options: BackendOptions) -> OnnxBackend:
    return OnnxBackend(path, options)
