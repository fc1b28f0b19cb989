"""ONNX static QDQ quantization with onnxruntime.quantization: per-channel weights, selectable calibration.

uint8 activations with int8 weights (u8s8) were faster than s8s8 on this x86 CPU, so u8s8 is the default;
s8s8 is what TensorRT and most NPUs want (``--activations s8``). The model is pre-processed once (shape
inference and ORT's graph optimisations, as ORT recommends; its symbolic shape inference needs sympy),
calibrated once, and then quantized again for each set of nodes the sensitivity search keeps float: ORT's
calibrator and QDQQuantizer are used directly so that the ranges are computed only once.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from edge.errors import ModelError, missing_dependency
from edge.quantize.sensitivity import ErrorAccumulator, OpInfo
from edge.runtime.base import TensorSpec, to_input

log = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile", "distribution")
_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
              "ConvInteger", "MatMulInteger"}
_FLOAT = 1  # onnx.TensorProto.FLOAT
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
           "tensor(int8)": np.int8, "tensor(int32)": np.int32, "tensor(int64)": np.int64}
DEQUANT_SUFFIX = "_DequantizeLinear_Output"  # onnxruntime.quantization.quant_utils.DEQUANT_OUTPUT_SUFFIX


PREPROCESS_FIX = "pip install sympy, or pip install 'edgepose[quantize]'"


def has_sympy() -> bool:
    """ORT's quant_pre_process needs sympy for its symbolic shape inference."""
    try:
        import sympy  # noqa: F401
    except ImportError:
        return False
    return True


def _ort_quant():
    try:
        import onnx
        from onnxruntime.quantization import calibrate, qdq_quantizer, quant_utils, registry
    except ImportError:
        raise missing_dependency("onnx", "quantize", "INT8 quantization of ONNX models") from None
    return onnx, calibrate, qdq_quantizer, quant_utils, registry


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over prepared samples."""

    def __init__(self, names: list[str], samples: list[list[np.ndarray]]):
        self._it = iter([dict(zip(names, s)) for s in samples])

    def get_next(self):
        return next(self._it, None)


class OnnxQuantizer:
    """One float ONNX model: calibrate once, then quantize with any set of nodes kept float."""

    runtime = "onnx"
    suffix = ".onnx"

    def __init__(self, path: str | Path, method: str = "minmax", activations: str = "u8", per_channel: bool = True,
                 threads: int = 2):
        onnx, _, _, _, registry = _ort_quant()
        self.path = Path(path)
        if method not in METHODS:
            raise ModelError(f"unknown calibration method '{method}'; choose one of {', '.join(METHODS)}")
        if activations not in ("u8", "s8"):
            raise ModelError(f"activations: u8 or s8, got '{activations}'")
        self.method, self.activations, self.per_channel, self.threads = method, activations, per_channel, threads
        try:
            model = onnx.load(str(self.path))
            onnx.checker.check_model(model)
        except Exception as exc:  # onnx raises DecodeError, ValidationError, ...: all mean "not a usable model"
            raise ModelError(f"{self.path} cannot be read as an ONNX model ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); give a float .onnx file") from None
        quantized = sorted({n.op_type for n in model.graph.node if n.op_type in _QUANT_OPS})
        if quantized:
            raise ModelError(f"{self.path} is already quantized (it has {', '.join(quantized)} nodes); give the "
                             "float model it was made from")
        self._tmp = tempfile.TemporaryDirectory(prefix="edgepose-quant-")
        self.preprocessing: dict = {}  # what _preprocess ran: ran, symbolic_shapes, problem
        self.prepared = self._preprocess(model)
        model = onnx.load(str(self.prepared))
        self._model_bytes = model.SerializeToString()
        inits = {i.name for i in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in inits]
        quantizable = set(registry.QDQRegistry) | set(registry.QLinearOpsRegistry)
        self._types, shapes = self._tensor_types(model)
        sizes = {i.name: int(np.prod(i.dims)) if len(i.dims) > 1 else 0 for i in model.graph.initializer}

        def cost(n) -> int:
            out = shapes.get(n.output[0], []) if n.output else []
            positions = int(np.prod([d for d in out[2:] if d > 0])) if n.op_type.startswith("Conv") and len(out) > 2 else 1
            return sum(sizes.get(x, 0) for x in n.input) * positions

        self.ops = [OpInfo(key=n.name, index=i, type=n.op_type, outputs=tuple(o for o in n.output if o),
                           inputs=tuple(x for x in n.input if x and x not in inits),
                           quantizable=n.op_type in quantizable, cost=cost(n)) for i, n in enumerate(model.graph.node)]
        self._ranges = None
        self._float_debug = None

    def _preprocess(self, model) -> Path:
        """Shape inference + ORT optimisations; every node gets a unique name (the search keeps nodes by name).

        What ran is kept in ``self.preprocessing`` (the report shows it): without sympy, ORT's symbolic shape
        inference is skipped; if pre-processing fails altogether, the raw graph is quantized."""
        onnx = _ort_quant()[0]
        from onnxruntime.quantization.shape_inference import quant_pre_process

        raw, out = Path(self._tmp.name) / "named.onnx", Path(self._tmp.name) / "prepared.onnx"
        seen: set[str] = set()
        for i, n in enumerate(model.graph.node):
            if not n.name or n.name in seen:
                n.name = f"{n.op_type}_{i}"
            seen.add(n.name)
        onnx.save(model, str(raw))
        symbolic = has_sympy()
        if not symbolic:
            log.warning("ONNX pre-processing skips symbolic shape inference: it needs sympy, which is not "
                        "installed (INT8 drift can be worse). Fix: %s", PREPROCESS_FIX)
        try:
            quant_pre_process(str(raw), str(out), skip_symbolic_shape=not symbolic)
        except Exception as exc:  # pre-processing is an optimisation; quantizing the raw graph still works
            why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            log.warning("ONNX pre-processing failed (%s); quantizing the model as it is, which can drift more", why)
            self.preprocessing = {"ran": False, "symbolic_shapes": False, "problem": why}
            return raw
        self.preprocessing = {"ran": True, "symbolic_shapes": symbolic,
                              "problem": None if symbolic else f"sympy is not installed ({PREPROCESS_FIX})"}
        return out

    @staticmethod
    def _tensor_types(model) -> tuple[dict[str, int], dict[str, list[int]]]:
        """Element type and shape (-1 = unknown) of every tensor shape inference can tell."""
        onnx = _ort_quant()[0]
        inferred = onnx.shape_inference.infer_shapes(model)
        vis = list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
        types = {v.name: v.type.tensor_type.elem_type for v in vis if v.type.tensor_type.elem_type}
        shapes = {v.name: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                  for v in vis}
        return types, shapes

    def _session(self, content: bytes):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, self.threads)
        so.log_severity_level = 3
        return ort.InferenceSession(content, sess_options=so, providers=["CPUExecutionProvider"])

    def _feed(self, sample: list[np.ndarray], session) -> dict[str, np.ndarray]:
        specs = {i.name: TensorSpec(i.name, (), np.dtype(_DTYPES.get(i.type, np.float32))) for i in session.get_inputs()}
        return {n: to_input(a, specs[n]) for n, a in zip(self.input_names, sample)}

    def calibrate(self, samples: list[list[np.ndarray]]) -> None:
        _, calibrate, _, _, _ = _ort_quant()
        method = {"minmax": calibrate.CalibrationMethod.MinMax, "entropy": calibrate.CalibrationMethod.Entropy,
                  "percentile": calibrate.CalibrationMethod.Percentile,
                  "distribution": calibrate.CalibrationMethod.Distribution}[self.method]
        session = self._session(self._model_bytes)
        feeds = [list(self._feed(s, session).values()) for s in samples]
        calibrator = calibrate.create_calibrator(
            self.prepared, None, augmented_model_path=str(Path(self._tmp.name) / "augmented.onnx"),
            calibrate_method=method, extra_options={"symmetric": self.activations == "s8"})
        calibrator.collect_data(_Reader(self.input_names, feeds))
        self._ranges = calibrator.compute_data()

    def quantize(self, keep_float: set[str]) -> bytes:
        onnx, _, qdq_quantizer, quant_utils, registry = _ort_quant()
        if self._ranges is None:
            raise RuntimeError("calibrate() first")
        model = quant_utils.load_model_with_shape_infer(self.prepared)
        act = quant_utils.QuantType.QUInt8 if self.activations == "u8" else quant_utils.QuantType.QInt8
        q = qdq_quantizer.QDQQuantizer(model, self.per_channel, False, quant_utils.QuantType.QInt8, act, self._ranges,
                                       [], sorted(keep_float), list(registry.QDQRegistry),
                                       {"ActivationSymmetric": self.activations == "s8"})
        q.quantize_model()
        return q.model.model.SerializeToString()

    def _with_outputs(self, content: bytes, names: dict[str, str]) -> bytes:
        """The model with extra graph outputs (name -> float model tensor whose type it has)."""
        onnx = _ort_quant()[0]
        model = onnx.load_from_string(content)
        have = {o.name for o in model.graph.output}
        for name, like in names.items():
            if name not in have:
                elem = _FLOAT if name.endswith(DEQUANT_SUFFIX) else self._types[like]
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
        return model.SerializeToString()

    def tensor_errors(self, int8: bytes, samples: list[list[np.ndarray]]) -> dict[str, float]:
        """Per node output: relative RMS error of INT8 (after its QDQ pair) vs float."""
        onnx = _ort_quant()[0]
        wanted = [t for op in self.ops for t in op.outputs if t in self._types]
        if self._float_debug is None:
            self._float_debug = self._session(self._with_outputs(self._model_bytes, {t: t for t in wanted}))
        q_tensors = {n for node in onnx.load_from_string(int8).graph.node for n in node.output}
        pick = {t: (t + DEQUANT_SUFFIX if t + DEQUANT_SUFFIX in q_tensors else t) for t in wanted}
        pick = {t: q for t, q in pick.items() if q in q_tensors}
        q_sess = self._session(self._with_outputs(int8, {q: t for t, q in pick.items()}))
        f_names = [o.name for o in self._float_debug.get_outputs()]
        q_names = [o.name for o in q_sess.get_outputs()]
        acc = ErrorAccumulator()
        for sample in samples:
            f = dict(zip(f_names, self._float_debug.run(None, self._feed(sample, self._float_debug))))
            q = dict(zip(q_names, q_sess.run(None, self._feed(sample, q_sess))))
            for t, qn in pick.items():
                if t in f and qn in q:
                    acc.add(t, f[t], q[qn])
        return acc.errors()
