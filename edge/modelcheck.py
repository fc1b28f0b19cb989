"""`edgepose models check`: is this model usable, before it reaches a device?

A quantized pose model that loads, runs and silently finds nobody is the most common failure
in this field (INT8 exports whose score channel collapsed to 0). This loads the model, shows
its tensors, family and quantization, runs it on the reference images shipped with the
package and calls the output degenerate when every score is ~0, the outputs are constant, the
same for every image, noise, or hold NaN/Inf (edge/output_health.py: the running pipeline warns
from the same judgement).

People are counted the way ``edgepose run`` counts them: the model is loaded by the pipeline's
own loader (edge.model.load_model) from a Config, so the family's score threshold, keypoint
threshold, NMS and max_people are the run's, and the run's tracker/smoother chain follows it.
Only when that finds nobody on an image does a low-threshold probe look for the best candidate,
to tell "below the threshold" from "degenerate".
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.capture.base import SAMPLE_DIR, to_rgb8
from edge.config import Config, override
from edge.errors import ModelError
from edge.model import Model, load_model, run_prepared
from edge.output_health import MIN_SCORE, flatten, judge
from edge.poses.base import CropBatch, FamilyOptions, ModelSignature, PoseFamily
from edge.poses.detect import make_family
from edge.poses.topdown import TopDown
from edge.post.tracking import build_post
from edge.runtime.base import Backend, BackendOptions
from edge.types import Frame

PROBE_SCORE = 0.01  # the probe's threshold: low enough to see a collapsed score channel


@dataclass
class ImageResult:
    image: str
    people: int  # as `edgepose run` counts them
    max_score: float  # best counted person; with nobody counted, the best candidate below the run's threshold
    finite: bool


@dataclass
class CheckReport:
    path: str
    runtime: str
    family: str
    inputs: list[str]
    outputs: list[str]
    quantization: dict
    images: list[ImageResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "path": self.path, "runtime": self.runtime, "family": self.family, "inputs": self.inputs,
            "outputs": self.outputs, "quantization": self.quantization, "ok": self.ok, "problems": self.problems,
            "images": [vars(r) for r in self.images],
        }


def _tflite_quantization(backend) -> dict:
    details = backend.tensor_details()
    kinds: Counter[str] = Counter()
    quantized = []
    for d in details:
        dtype = np.dtype(d["dtype"])
        scales = d.get("quantization_parameters", {}).get("scales", [])
        if np.issubdtype(dtype, np.integer) and len(scales):
            kinds["int8" if dtype.itemsize == 1 else f"int{8 * dtype.itemsize}"] += 1
            zps = d["quantization_parameters"]["zero_points"]
            quantized.append({"name": d["name"], "dtype": dtype.name, "scale": float(scales[0]),
                              "zero_point": int(zps[0]) if len(zps) else 0, "per_channel": len(scales) > 1})
        elif np.issubdtype(dtype, np.floating):
            kinds[dtype.name] += 1
    return _classify(kinds, quantized, float_key="float32", note="tensor counts by type")


def _onnx_quantization(path: Path) -> dict:
    try:
        import onnx
    except ImportError:
        return {"kind": "unknown", "note": "install the 'onnx' package (pip install 'edgepose[onnx]') to inspect"}
    model = onnx.load(str(path), load_external_data=False)
    ops = Counter(n.op_type for n in model.graph.node)
    inits = {i.name: i for i in model.graph.initializer}
    quantized = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) >= 2:
            scale = inits.get(node.input[1])
            zp = inits.get(node.input[2]) if len(node.input) > 2 else None
            if scale is not None:
                s = onnx.numpy_helper.to_array(scale).ravel()
                z = onnx.numpy_helper.to_array(zp).ravel() if zp is not None else np.zeros(1, np.int8)
                quantized.append({"name": node.input[0], "op": node.op_type, "dtype": z.dtype.name,
                                  "scale": float(s[0]) if s.size else 0.0,
                                  "zero_point": int(z[0]) if z.size else 0, "per_channel": s.size > 1})
    kinds = Counter({"qdq_nodes": ops["QuantizeLinear"] + ops["DequantizeLinear"],
                     "dynamic_quantize": ops["DynamicQuantizeLinear"] + ops["MatMulInteger"] + ops["ConvInteger"],
                     "float_compute": sum(ops[o] for o in ("Conv", "MatMul", "Gemm"))})
    result = {"kind": "float", "ops": dict(ops.most_common(10)), "quantized_tensors": quantized[:200],
              "quantized_tensor_count": len(quantized)}
    if kinds["dynamic_quantize"]:
        result["kind"] = "INT8 (dynamic)"
    elif kinds["qdq_nodes"]:
        q_out = ops["QuantizeLinear"]
        result["kind"] = "INT8 (QDQ)" if q_out else "mixed (INT8 weights, float activations)"
    return result


def _classify(kinds: Counter, quantized: list, float_key: str, note: str) -> dict:
    n_int, n_float = sum(v for k, v in kinds.items() if k.startswith("int")), kinds.get(float_key, 0)
    if not n_int:
        kind = "float"
    elif n_float > n_int:
        kind = "mixed (INT8 weights, mostly float activations)"
    elif n_float:
        kind = "INT8 (with float input/output or tail)"
    else:
        kind = "INT8"
    return {"kind": kind, "tensors": dict(kinds), "note": note, "quantized_tensors": quantized[:200],
            "quantized_tensor_count": len(quantized)}


def quantization(backend: Backend) -> dict:
    if backend.runtime == "tflite":
        return _tflite_quantization(backend)
    return _onnx_quantization(backend.path)


def reference_images() -> list[Path]:
    return sorted(SAMPLE_DIR.glob("*.jpg"))


def run_config(model: str | Path | None = None, backend: str | None = None, family: str | None = None,
               threads: int | None = None, config: Config | None = None) -> Config:
    """The Config ``edgepose run`` would use: ``config`` (default: the built-in defaults) with these overrides."""
    changes = {"model.path": None if model is None else str(model), "model.backend": backend, "model.family": family,
               "model.threads": threads}
    return override(config or Config(), **changes)


class _Probe:
    """The model's family at a very low score threshold, built only when the run's finds nobody."""

    def __init__(self, model: Model, cfg: Config):
        self.model, self.cfg, self._family = model, cfg, None

    def family(self) -> PoseFamily:
        if self._family is None:
            b, m = self.model.backend, self.cfg.model
            options = FamilyOptions(score_threshold=PROBE_SCORE, model_path=str(self.model.path), detector=m.detector,
                                    backend=m.backend, coco17_view=m.coco17_view,
                                    backend_options=BackendOptions(threads=m.threads, providers=list(m.providers)))
            self._family = make_family(ModelSignature(b.inputs, b.outputs, b.metadata), options,
                                       self.model.family.name, model_name=str(self.model.path))
        return self._family

    def alone(self, frame: Frame) -> tuple[list, list]:
        """The model alone on the whole frame (no person detector): inputs and raw outputs to judge."""
        fam = self.family()
        fam.reset()
        inputs, _ = fam.prepare(frame)
        return inputs, self.model.backend.run(inputs)

    def best_score(self, frame: Frame) -> float:
        if isinstance(self.model.family, TopDown):  # the run's own path, at the probe's threshold
            fam, keep = self.model.family, self.model.family.score_threshold
            fam.score_threshold = PROBE_SCORE
            try:
                fam.reset()
                inputs, t = fam.prepare(frame)
                return max((p.score for p in fam.decode(run_prepared(self.model.backend, inputs), t)), default=0.0)
            finally:
                fam.score_threshold = keep
        fam = self.family()
        fam.reset()
        inputs, t = fam.prepare(frame)
        outs = self.model.backend.run(inputs)
        return max((p.score for p in fam.decode(outs, t)), default=0.0)


def check_model(path: str | Path | None = None, backend: str | None = "auto", family: str | None = "auto",
                threads: int | None = 2, config: Config | None = None) -> CheckReport:
    """Load, identify and exercise a model; ``report.problems`` lists what is wrong in plain words.

    ``config`` supplies the run's model settings (thresholds, NMS, max_people, tracking); the other
    arguments override it where not None (``path`` None = the config's model.path).
    """
    cfg = run_config(path, backend, family, threads, config)
    model = load_model(cfg)
    try:
        return _exercise(model, cfg)
    finally:
        model.close()


def _exercise(model: Model, cfg: Config) -> CheckReport:
    b, fam, post = model.backend, model.family, build_post(cfg)
    report = CheckReport(str(model.path), b.runtime, fam.name, [s.describe() for s in b.inputs],
                         [s.describe() for s in b.outputs], quantization(b))
    images = reference_images()
    if not images:
        raise ModelError(f"the reference images are missing from {SAMPLE_DIR}; reinstall edgepose")
    probe = _Probe(model, cfg)
    raw_outputs, repeats = [], []
    for i, img_path in enumerate(images):
        rgb = to_rgb8(cv2.imread(str(img_path), cv2.IMREAD_UNCHANGED), bgr=True, what=str(img_path))
        frame = Frame(rgb, i, time.monotonic_ns(), time.time(), source_file=str(img_path))
        fam.reset()  # unrelated stills: the pipeline resets the family and the post chain for each
        post.reset()
        inputs, t = fam.prepare(frame)
        outs = run_prepared(b, inputs)
        # the outputs judged: the model's own (top-down: the model alone on the whole frame, not its crops)
        judged_inputs, judged = probe.alone(frame) if isinstance(inputs, CropBatch) else (inputs, outs)
        raw_outputs.append(judged)
        if i == 0:  # the same input again: a deterministic model gives the same output, noise does not
            repeats.append((flatten(judged), flatten(b.run(judged_inputs))))
        finite = all(np.isfinite(o).all() for o in (sum(outs, []) if isinstance(inputs, CropBatch) else outs))
        poses = post(fam.decode(outs, t), frame.t_stream_ns) if finite else []
        best = max((p.score for p in poses), default=0.0)
        if finite and not poses:
            best = probe.best_score(frame)
        report.images.append(ImageResult(img_path.name, len(poses), best, finite))
    _judge(report, raw_outputs, repeats)
    return report


def _judge(report: CheckReport, raw_outputs: list[list[np.ndarray]], repeats=()) -> None:
    report.problems += judge([flatten(outs) for outs in raw_outputs], repeats=list(repeats))
    if all(r.max_score < MIN_SCORE for r in report.images) and not report.problems:
        report.problems.append(
            f"no person scores above {MIN_SCORE} on any reference image (each shows one person clearly): the "
            "score output is degenerate, typically a broken INT8 quantization; re-export or re-quantize the "
            "model (keep the detection head in float) and check it again"
        )


def format_report(r: CheckReport) -> str:
    q = r.quantization
    lines = [
        f"model: {r.path}", f"runtime: {r.runtime}", f"family: {r.family}",
        "inputs:  " + "; ".join(r.inputs), "outputs: " + "; ".join(r.outputs),
        f"quantization: {q.get('kind')}" + (f"  {q['tensors']}" if "tensors" in q else ""),
    ]
    for t in q.get("quantized_tensors", [])[:8]:
        lines.append(f"  {t['name']}: {t['dtype']} scale={t['scale']:.6g} zero_point={t['zero_point']}"
                     + (" (per-channel)" if t.get("per_channel") else ""))
    if q.get("quantized_tensor_count", 0) > 8:
        lines.append(f"  ... {q['quantized_tensor_count'] - 8} more quantized tensors (--json lists them)")
    if r.images:
        lines.append("reference images (people counted as `edgepose run` counts them):")
    for im in r.images:
        people = f"{im.people} {'person' if im.people == 1 else 'people'}"
        best = (f"best score {im.max_score:.3f}" if im.people else
                f"best candidate {im.max_score:.3f}, below the run's score threshold")
        lines.append(f"  {im.image}: {people}, {best}")
    lines.append("result: OK" if r.ok else "result: DEGENERATE\n  - " + "\n  - ".join(r.problems))
    return "\n".join(lines)
