"""TFLite full INT8 with ai-edge-quantizer: no TensorFlow at run time, so it runs on the device itself.

The float model is first normalised: float16 weights behind DEQUANTIZE ops (MediaPipe's BlazePose files)
are folded into plain float32 constants, which ai-edge-quantizer needs, and a model without a signature
(also MediaPipe) gets one. Only op types that LiteRT's XNNPACK runs natively in INT8 are quantized by
default: an INT8 DIV or SQRT runs in slow reference kernels, and measured here it made MoveNet's INT8
model no faster than float. Everything is compared tensor by tensor with the float model on builtin
kernels, so the sensitivity search sees the error each op adds.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np

from edge.errors import ModelError, missing_dependency
from edge.quantize.sensitivity import ErrorAccumulator, OpInfo
from edge.runtime.base import TensorSpec, to_input

log = logging.getLogger(__name__)

# Op types XNNPACK runs natively in INT8 (QS8), as ai-edge-quantizer names them.
FAST_INT8_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CONCATENATION", "CONV_2D", "CONV_2D_TRANSPOSE",
    "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "HARD_SWISH", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "PAD",
    "PADV2", "RELU", "RESHAPE", "RESIZE_BILINEAR", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT",
    "STRIDED_SLICE", "SUB", "TANH", "TRANSPOSE",
})
_FLOAT16, _FLOAT32, _INT8, _UINT8, _INT16 = 1, 0, 9, 3, 7  # tflite TensorType values
_DEQUANTIZE = 6  # tflite BuiltinOperator.DEQUANTIZE
SIGNATURE = "serving_default"
A8W8 = {"activation_tensor_config": {"num_bits": 8, "symmetric": False, "granularity": "TENSORWISE", "dtype": "INT"},
        "weight_tensor_config": {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"},
        "compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False,
        "min_weight_elements": 0}


class _Quiet(logging.Filter):
    """ai-edge-quantizer logs every tensor mapping with logging.info on the root logger: drop those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO


@contextlib.contextmanager
def _quiet():
    root, filt = logging.getLogger(), _Quiet()
    root.addFilter(filt)
    try:
        # ... its progress bars (the CLI reports progress itself) and LiteRT's "preserve_all_tensors is for
        # debugging" warning about the interpreter it calibrates with, which is exactly what that is for.
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        root.removeFilter(filt)


def _aeq():
    try:
        from ai_edge_quantizer import quantizer
        from ai_edge_quantizer.utils import tfl_flatbuffer_utils
        from ai_edge_litert.tools import flatbuffer_utils
    except ImportError:
        raise missing_dependency("ai_edge_quantizer", "quantize", "INT8 quantization of TFLite models") from None
    return quantizer, tfl_flatbuffer_utils, flatbuffer_utils


def _interpreter(content: bytes, debug: bool, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kw = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
          "experimental_preserve_all_tensors": True} if debug else {}
    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": that is what it is used for here
        warnings.simplefilter("ignore", UserWarning)
        it = Interpreter(model_content=bytes(content), num_threads=threads, **kw)
    it.allocate_tensors()
    return it


def _buffer_bytes(model, content: bytes, index: int) -> bytes | None:
    buf = model.buffers[index]
    if buf.data is not None and len(buf.data):
        return np.asarray(buf.data, dtype=np.uint8).tobytes()
    if getattr(buf, "offset", 0) > 1 and getattr(buf, "size", 0):
        return content[buf.offset:buf.offset + buf.size]
    return None


def normalise(content: bytes, path: Path) -> tuple[bytes, int]:
    """Fold float16 constants into float32 and add a signature when there is none: (model bytes, folded)."""
    _, fu, fbu = _aeq()
    try:
        model = fu.read_model(bytearray(content))
        sg = model.subgraphs[0]
    except Exception as exc:  # the flatbuffer reader raises anything on a file that is not a model
        raise ModelError(f"{path} cannot be read as a TFLite model ({type(exc).__name__}: {exc}); "
                         "give a float .tflite file") from None
    if len(model.subgraphs) != 1:
        raise ModelError(f"{path}: {len(model.subgraphs)} subgraphs; the quantizer handles single-graph models")
    for t in sg.tensors:
        q = t.quantization
        if t.type in (_INT8, _UINT8, _INT16) and q is not None and q.scale is not None and len(q.scale):
            raise ModelError(f"{path} is already quantized (tensor {fu.get_tensor_name(t)} is "
                             f"{'int8' if t.type == _INT8 else 'uint8' if t.type == _UINT8 else 'int16'}); "
                             "give the float model it was made from")
    folded, kept_ops = 0, []
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        src, dst = (sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]) if len(op.inputs) and len(op.outputs) else (None, None)
        data = _buffer_bytes(model, content, src.buffer) if src is not None and src.buffer else None
        if (max(code.builtinCode, code.deprecatedBuiltinCode) == _DEQUANTIZE and src.type == _FLOAT16
                and dst.type == _FLOAT32 and data is not None):
            from ai_edge_litert import schema_py_generated as schema

            buf = schema.BufferT()
            buf.data = np.frombuffer(data, dtype=np.float16).astype("<f4").view(np.uint8)
            model.buffers.append(buf)
            dst.buffer = len(model.buffers) - 1
            folded += 1
        else:
            kept_ops.append(op)
    sg.operators = kept_ops
    if folded:
        _drop_unused_tensors(model, sg)
    if not model.signatureDefs:
        from ai_edge_litert import schema_py_generated as schema

        sig = schema.SignatureDefT()
        sig.signatureKey, sig.subgraphIndex = SIGNATURE, 0
        sig.inputs, sig.outputs = [], []
        for target, indices in ((sig.inputs, sg.inputs), (sig.outputs, sg.outputs)):
            for i in indices:
                m = schema.TensorMapT()
                m.name, m.tensorIndex = fu.get_tensor_name(sg.tensors[i]), int(i)
                target.append(m)
        model.signatureDefs = [sig]
    if folded:
        log.info("%s: folded %d float16 weight tensors into float32 constants", path.name, folded)
    return bytes(fbu.convert_object_to_bytearray(model)), folded


def _drop_unused_tensors(model, sg) -> None:
    """Remove tensors no op, graph input or output refers to (the folded float16 originals), renumbering."""
    used = sorted({int(i) for op in sg.operators for i in list(op.inputs) + list(op.outputs) if i >= 0}
                  | {int(i) for i in sg.inputs} | {int(i) for i in sg.outputs})
    new = {old: n for n, old in enumerate(used)}
    for old, t in enumerate(sg.tensors):
        if old not in new and t.buffer:
            model.buffers[t.buffer].data = None
    sg.tensors = [sg.tensors[i] for i in used]
    for op in sg.operators:
        op.inputs = [new[int(i)] if i >= 0 else -1 for i in op.inputs]
        op.outputs = [new[int(i)] for i in op.outputs]
    sg.inputs = [new[int(i)] for i in sg.inputs]
    sg.outputs = [new[int(i)] for i in sg.outputs]
    for sig in model.signatureDefs or []:
        for m in list(sig.inputs or []) + list(sig.outputs or []):
            m.tensorIndex = new[int(m.tensorIndex)]


class TFLiteQuantizer:
    """One float TFLite model: calibrate once, then quantize with any set of ops kept float."""

    runtime = "tflite"
    suffix = ".tflite"

    def __init__(self, path: str | Path, all_ops: bool = False, threads: int = 2):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file {self.path} does not exist")
        self.float_bytes, self.folded = normalise(self.path.read_bytes(), self.path)
        self.threads = threads
        quantizer, fu, _ = _aeq()
        from ai_edge_quantizer import qtyping

        supported = {o.value for o in qtyping.TFLOperationName}
        model = fu.read_model(bytearray(self.float_bytes))
        sg = model.subgraphs[0]
        self.ops: list[OpInfo] = []
        present = set()
        for i, op in enumerate(sg.operators):
            code = model.operatorCodes[op.opcodeIndex].builtinCode
            name = getattr(fu.TFL_OP_CODE_TO_NAME.get(code), "value", str(code))
            outs = [sg.tensors[j] for j in op.outputs if j >= 0]
            float_out = bool(outs) and all(t.type == _FLOAT32 for t in outs)
            consts = [sg.tensors[j] for j in op.inputs if j >= 0 and _buffer_bytes(model, self.float_bytes, sg.tensors[j].buffer)]
            acts = [fu.get_tensor_name(sg.tensors[j]) for j in op.inputs
                    if j >= 0 and sg.tensors[j] not in consts]
            weights = sum(int(np.prod(t.shape)) for t in consts if t.type == _FLOAT32 and t.shape is not None and len(t.shape) > 1)
            shape = list(outs[0].shape) if outs and outs[0].shape is not None else []
            positions = int(np.prod(shape[1:-1])) if len(shape) == 4 else 1
            quantizable = float_out and name in supported and (all_ops or name in FAST_INT8_OPS)
            if quantizable:
                present.add(name)
            self.ops.append(OpInfo(key=fu.get_op_scope(op, sg.tensors), index=i, type=name,
                                   outputs=tuple(fu.get_tensor_name(t) for t in outs), inputs=tuple(acts),
                                   quantizable=quantizable, cost=weights * positions))
        self._op_types = sorted(present)
        if not self._op_types:
            raise ModelError(f"{self.path}: none of its ops can be quantized to INT8 (ops: "
                             f"{', '.join(sorted({o.type for o in self.ops}))})")
        self._quantizer_cls = quantizer.Quantizer
        it = _interpreter(self.float_bytes, debug=False)
        sigs = it.get_signature_list()
        self.signature = SIGNATURE if SIGNATURE in sigs else next(iter(sigs))
        runner = it.get_signature_runner(self.signature)
        by_index = {d["index"]: name for name, d in runner.get_input_details().items()}
        self._inputs = [(by_index[d["index"]], d) for d in it.get_input_details()]
        self._qsv = None
        self._float_debug = None

    def recipe(self, keep_float: set[str]) -> list[dict]:
        rules = [{"regex": ".*", "operation": t, "algorithm_key": "min_max_uniform_quantize", "op_config": A8W8}
                 for t in self._op_types]
        rules += [{"regex": f"^{re.escape(k)}$", "operation": "*", "algorithm_key": "no_quantize"}
                  for k in sorted(keep_float)]
        return rules

    def _feed(self, sample: list[np.ndarray]) -> dict[str, np.ndarray]:
        return {name: to_input(a, _spec(d)) for (name, d), a in zip(self._inputs, sample)}

    def calibrate(self, samples: list[list[np.ndarray]]) -> None:
        q = self._quantizer_cls(bytearray(self.float_bytes), self.recipe(set()))
        with _quiet():
            self._qsv = q.calibrate({self.signature: [self._feed(s) for s in samples]}, num_threads=self.threads)

    def quantize(self, keep_float: set[str]) -> bytes:
        if self._qsv is None:
            raise RuntimeError("calibrate() first")
        q = self._quantizer_cls(bytearray(self.float_bytes), self.recipe(keep_float))
        with _quiet():
            result = q.quantize(self._qsv, enable_progress_bar=False, enable_progress_report=False)
        return bytes(result.quantized_model)

    def tensor_errors(self, int8: bytes, samples: list[list[np.ndarray]]) -> dict[str, float]:
        """Per op output tensor: relative RMS error of INT8 vs float (integer tensors: share that differs)."""
        if self._float_debug is None:
            self._float_debug = _interpreter(self.float_bytes, debug=True)
        f_it, q_it = self._float_debug, _interpreter(int8, debug=True)
        f_idx = {d["name"]: d for d in f_it.get_tensor_details()}
        q_idx = {d["name"]: d for d in q_it.get_tensor_details()}
        names = [n for op in self.ops for n in op.outputs if n in f_idx and n in q_idx]
        acc = ErrorAccumulator()
        for sample in samples:
            for it in (f_it, q_it):
                for d, a in zip(it.get_input_details(), sample):
                    it.set_tensor(d["index"], to_input(a, _spec(d)))
                it.invoke()
            for n in names:
                acc.add(n, f_it.get_tensor(f_idx[n]["index"]), _dequantized(q_it, q_idx[n]))
        return acc.errors()


def _spec(detail: dict) -> TensorSpec:
    scale, zero = detail.get("quantization", (0.0, 0))
    return TensorSpec(detail["name"], tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]),
                      float(scale), int(zero))


def _dequantized(it, detail: dict) -> np.ndarray:
    a = it.get_tensor(detail["index"])
    qp = detail.get("quantization_parameters") or {}
    scales = qp.get("scales", [])
    if len(scales) and np.issubdtype(a.dtype, np.integer) and a.dtype.itemsize <= 2:
        zps = qp.get("zero_points", [0])
        return (a.astype(np.float32) - np.float32(zps[0] if len(zps) else 0)) * np.float32(scales[0])
    return a
