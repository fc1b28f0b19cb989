"""`edgepose models quantize`: float model + calibration frames -> INT8 model + report, or a refusal.

Calibration and judging both go through the model family's own ``prepare``, so the quantizer sees
exactly the tensors inference will feed (letterbox, crop, dtype). Families that crop around the last
pose (MoveNet, BlazePose) give two inputs per frame: the first look and the tracked crop.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from edge.errors import ConfigError, ModelError
from edge.poses.base import FamilyOptions, ModelSignature
from edge.poses.detect import make_family
from edge.quantize.calibrate import calibration_files, read_frame
from edge.quantize.report import Drift, Item, Report, Target, drift, speed
from edge.quantize.sensitivity import search
from edge.runtime.base import BackendOptions, backend_for, load_backend

log = logging.getLogger(__name__)
SINGLE_PERSON = ("movenet", "blazepose")
HOLDOUT_EVERY = 5  # without --holdout, every 5th calibration frame is held out


@dataclass
class QuantizeOptions:
    model: str
    calib: list[str]
    holdout: str | None = None
    labels: str | None = None
    out: str | None = None
    report: str | None = None
    family: str = "auto"
    threads: int = 2
    method: str = "minmax"  # ONNX calibration method
    activations: str = "u8"  # ONNX activations: u8 (u8s8) or s8 (s8s8)
    all_ops: bool = False  # TFLite: quantize ops XNNPACK has no INT8 kernel for, too
    search: bool = True
    max_rounds: int = 12
    max_frames: int | None = None
    speed_runs: int = 60
    force: bool = False
    target: Target = field(default_factory=Target)


@dataclass
class Outcome:
    report: Report
    report_files: tuple[Path, Path]
    written: Path | None


def default_out(model: Path) -> Path:
    stem = model.stem.replace("-float", "").replace("_float", "")
    return model.with_name(f"{stem}-int8{model.suffix}")


def open_engine(path: Path, opts: QuantizeOptions):
    kind = backend_for(path)
    if kind == "tflite":
        from edge.quantize.tflite_quant import TFLiteQuantizer

        return TFLiteQuantizer(path, all_ops=opts.all_ops, threads=opts.threads)
    from edge.quantize.onnx_quant import OnnxQuantizer

    return OnnxQuantizer(path, method=opts.method, activations=opts.activations, threads=opts.threads)


def open_model(path: Path, runtime: str, threads: int, family: str, float_path: Path, tracking: bool,
               coco17: bool = False):
    """Backend + family; BlazePose finds its detector beside the float model."""
    backend = load_backend(path, runtime, BackendOptions(threads=threads))
    options = FamilyOptions(tracking=tracking, model_path=str(float_path), backend_options=BackendOptions(threads=threads),
                            coco17_view=coco17)
    fam = make_family(ModelSignature(backend.inputs, backend.outputs, backend.metadata), options, family,
                      model_name=str(float_path))
    return backend, fam


def reference_items(family, backend, frames, progress=None) -> list[Item]:
    """Each frame's model input(s) with the float model's poses: the first look, and the tracked crop if any."""
    items = []
    for n, frame in enumerate(frames):
        family.reset()
        for view in range(2):
            inputs, t = family.prepare(frame)
            if view == 1 and not getattr(family, "last_was_tracked", False):
                break
            items.append(Item(inputs, t, family.decode(backend.run(inputs), t)))
        if progress and (n + 1) % 25 == 0:
            progress(f"prepared {n + 1}/{len(frames)} frames")
    return items


def split_frames(opts: QuantizeOptions) -> tuple[list[Path], list[Path], str]:
    calib = [f for folder in opts.calib for f in calibration_files(folder)]
    if opts.max_frames:
        calib = calib[:opts.max_frames]
    if opts.holdout:
        return calib, calibration_files(opts.holdout), str(opts.holdout)
    if len(calib) < 2:
        return calib, calib, f"{', '.join(opts.calib)} (the same single frame: pass more frames or --holdout)"
    held = calib[HOLDOUT_EVERY - 1::HOLDOUT_EVERY] or calib[-1:]
    return [p for p in calib if p not in held], held, f"{', '.join(opts.calib)} (every {HOLDOUT_EVERY}th frame)"


def labelled_metrics(path: Path, runtime: str, threads: int, family: str, float_path: Path, samples) -> dict:
    """PCK/OKS on a labelled set, with `edgepose eval`'s protocol (crops for single-person families)."""
    from edge.evaluate import evaluate
    from edge.model import Model

    backend, fam = open_model(path, runtime, threads, family, float_path, tracking=False, coco17=True)
    single = fam.name in SINGLE_PERSON
    operating = 0.0 if single else float(fam.score_threshold)
    fam.score_threshold = 0.0 if single else 0.01
    report = evaluate(Model(path, backend, fam), samples, crops=single, names=fam.keypoint_names,
                      pck_min_score=operating)
    return {k: v for k, v in report.items() if k != "per_keypoint_PCK@0.1"}


def run(opts: QuantizeOptions, progress: Callable[[str], None] | None = None) -> Outcome:
    say = progress or (lambda msg: log.info("%s", msg))
    path = Path(opts.model)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist; give a float .tflite or .onnx model")
    engine = open_engine(path, opts)  # reads and checks the model first: a bad file fails before any work
    runtime = engine.runtime
    f_backend, fam = open_model(path, runtime, opts.threads, opts.family, path, tracking=True)
    operating = float(fam.score_threshold)
    fam.score_threshold = operating / 2  # judged with hysteresis, see report.drift
    calib_paths, held_paths, held_from = split_frames(opts)
    labels = None
    if opts.labels:
        from edge.evaluate import load_yolo_pose

        if not (Path(opts.labels) / "images").is_dir():
            raise ConfigError(f"--labels {opts.labels}: expected a YOLO-pose folder with images/ and labels/")
        labels = load_yolo_pose(opts.labels)
        if not labels:
            raise ConfigError(f"--labels {opts.labels}: no labelled images found")
    say(f"{path.name}: {fam.name} family, {runtime}; {len(calib_paths)} calibration and {len(held_paths)} "
        f"held-out frames")
    calib_items = reference_items(fam, f_backend, [read_frame(p, i) for i, p in enumerate(calib_paths)], say)
    held = reference_items(fam, f_backend, [read_frame(p, i) for i, p in enumerate(held_paths)])
    engine.calibrate([it.inputs for it in calib_items])
    say(f"calibrated on {len(calib_items)} model inputs")
    tmp = tempfile.TemporaryDirectory(prefix="edgepose-int8-")
    float_pck = (labelled_metrics(path, runtime, opts.threads, fam.name, path, labels) if labels else None)
    counter = [0]

    def judge(model: bytes) -> tuple[Drift, bool]:
        counter[0] += 1
        candidate = Path(tmp.name) / f"candidate{counter[0]}{engine.suffix}"
        candidate.write_bytes(model)
        q_backend = load_backend(candidate, runtime, BackendOptions(threads=opts.threads))
        d = drift(held, [q_backend.run(it.inputs) for it in held], fam, operating, fam.options.keypoint_threshold)
        if labels:
            q_pck = labelled_metrics(candidate, runtime, opts.threads, fam.name, path, labels)
            d.pck = {"protocol": float_pck["protocol"], "float": float_pck, "int8": q_pck}
        q_backend.close()
        return d, not opts.target.problems(d)

    try:
        result = search(engine, judge, [it.inputs for it in held], max_rounds=opts.max_rounds, enabled=opts.search,
                        max_float_share=opts.target.max_float_compute, progress=say)
        best = result.best
        problems = opts.target.problems(best.metrics)
        out = Path(opts.out) if opts.out else default_out(path)
        final = Path(tmp.name) / f"final{engine.suffix}"
        final.write_bytes(best.model)
        q_backend = load_backend(final, runtime, BackendOptions(threads=opts.threads))
        say(f"timing float vs INT8 ({opts.threads} thread(s), {opts.speed_runs} runs each)")
        timing = speed(f_backend, q_backend, [it.inputs for it in held], runs=opts.speed_runs)
        q_backend.close()
        problems += opts.target.speed_problems(timing)
        write = not problems or opts.force
        if write:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(best.model)
        types = {op.key: op.type for op in engine.ops}
        total = sum(op.cost for op in engine.ops if op.quantizable) or 1
        float_share = sum(op.cost for op in engine.ops if op.key in best.keep_float) / total
        notes = [f"drift compares both models on the same prepared inputs; people count when float scores >= "
                 f"{operating:g} (INT8 may score down to {operating / 2:g})"]
        if getattr(engine, "folded", 0):
            notes.append(f"{engine.folded} float16 weight tensors were folded into float32 constants first")
        if runtime == "tflite" and not opts.all_ops:
            notes.append("op types LiteRT's XNNPACK has no INT8 kernel for stay float (faster); --all-ops "
                         "quantizes them too")
        if runtime == "onnx":
            notes.append(f"QDQ, per-channel int8 weights, {opts.activations} activations, {opts.method} calibration")
        pre = getattr(engine, "preprocessing", None)
        if pre and pre.get("problem"):
            notes.append(("ONNX pre-processing skipped symbolic shape inference" if pre.get("ran") else
                          "ONNX pre-processing failed, so the raw graph was quantized") +
                         f" ({pre['problem']}): INT8 drift can be worse than it needs to be")
        if problems and opts.force:
            notes.append("written despite the target (--force)")
        report = Report(
            model=str(path), output=str(out), family=fam.name, runtime=runtime, threads=opts.threads,
            calibration={"folder": ", ".join(opts.calib), "frames": len(calib_paths), "samples": len(calib_items)},
            holdout={"folder": held_from, "frames": len(held_paths), "samples": len(held)},
            target={**asdict(opts.target), "max_pck_drop": opts.target.max_pck_drop if labels else None},
            search={"stop_reason": result.stop_reason, "trials": len(result.trials), "unchanged": result.unchanged,
                    "float_compute_share": round(float_share, 4),
                    "history": [{"kept_float": len(t.keep_float), "added": len(t.added), "loss": round(t.loss, 4),
                                 "drift_pct": round(t.metrics.mean_pct, 3),
                                 "drift_input_px": round(t.metrics.mean_input_px, 3),
                                 "pck_drop": round(t.metrics.pck_drop, 3) if t.metrics.pck else None,
                                 "met": t.met} for t in result.trials]},
            drift=best.metrics.to_dict(), speed=timing,
            kept_float=[{"op": k, "type": types.get(k, "?"), "damage": round(result.damage.get(k, 0.0), 4)}
                        for k in sorted(best.keep_float, key=lambda k: -result.damage.get(k, 0.0))],
            met=not problems, problems=problems, written=write, notes=notes, preprocess=pre)
        prefix = Path(opts.report) if opts.report else out.with_name(out.name + ".report")
        files = report.write(prefix)
    finally:
        f_backend.close()
        tmp.cleanup()
    return Outcome(report, files, out if write else None)


def cli_quantize(args, out, err) -> int:
    """`edgepose models quantize`: 0 written, 2 bad input, 3 target not met (report written, model not)."""
    import json

    from edge.zoo import resolve_model

    opts = QuantizeOptions(
        model=str(resolve_model(args.model)), calib=args.calib, holdout=args.holdout, labels=args.labels,
        out=args.out, report=args.report, family=args.family, threads=args.threads, method=args.method,
        activations=args.activations, all_ops=args.all_ops, search=not args.no_search, max_rounds=args.max_rounds,
        max_frames=args.max_frames, speed_runs=args.speed_runs, force=args.force,
        target=Target(max_drift_pct=args.max_drift, max_drift_px=args.max_drift_px, max_pck_drop=args.max_pck_drop,
                      min_recall=args.min_recall, min_speedup=args.min_speedup,
                      max_float_compute=args.max_float_compute))
    result = run(opts, progress=lambda msg: err.write(f"quantize: {msg}\n"))
    r = result.report
    if args.json:
        out.write(json.dumps(r.to_dict(), indent=2) + "\n")
    else:
        d, s = r.drift, r.speed
        out.write(f"{'target met' if r.met else 'TARGET NOT MET'}: {Path(r.model).name} ({r.family}, {r.runtime}, "
                  f"{r.threads} thread(s))\n")
        out.write(f"speed p50: float {s['float']['p50']:.2f} ms, INT8 {s['int8']['p50']:.2f} ms "
                  f"({s['speedup_p50']}x)\n")
        out.write(f"drift vs float: mean {d['mean_px']:.2f} px ({d['mean_pct']:.2f}% of box diagonal, "
                  f"{d['mean_input_px']:.2f} input px), p95 {d['p95_px']:.2f} px; people {d['matched']}/{d['people']}"
                  f", invented {d['extra']}\n")
        if d.get("pck"):
            out.write(f"PCK@0.1: float {d['pck']['float']['PCK@0.1']:.3f}, INT8 {d['pck']['int8']['PCK@0.1']:.3f}\n")
        out.write(f"ops kept float: {len(r.kept_float)} ({r.search['stop_reason']})\n")
        out.write(f"report: {result.report_files[0]} and {result.report_files[1]}\n")
        if result.written:
            out.write(f"wrote {result.written}\n")
    if not r.met and not args.force:
        err.write(f"edgepose: the INT8 model misses the accuracy target: {'; '.join(r.problems)}. It was not "
                  "written; see the report, or pass --force to write it anyway.\n")
        return 3
    return 0
