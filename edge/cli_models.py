"""Model-facing subcommands: `edgepose models list|info|pull|verify|check|calibrate|quantize`, `edgepose eval`.

Kept apart from cli.py so the run path stays small; each handler returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys

from edge.errors import ModelError


def add_parsers(sub) -> None:
    models = sub.add_parser("models", help="the model zoo, downloads and model checks")
    msub = models.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", help="list the zoo's models and whether they are here")
    info = msub.add_parser("info", help="everything the zoo knows about one model")
    info.add_argument("id")
    pull = msub.add_parser("pull", help="download a zoo model into the cache (verified by sha256, resumable)")
    pull.add_argument("id")
    pull.add_argument("--from", dest="mirror", metavar="DIR_OR_URL", help="a local folder or URL that mirrors the files")
    pull.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    msub.add_parser("verify", help="check the sha256 of every zoo model that is here")
    check = msub.add_parser("check", help="load a model, show its tensors and quantization, flag degenerate output; "
                            "people are counted as `edgepose run` counts them")
    check.add_argument("model", nargs="?", help="model file or zoo id (default: the config's model.path, 'default')")
    check.add_argument("--config", help="config YAML whose model: settings (thresholds, max_people, ...) the run uses")
    check.add_argument("--backend", choices=["auto", "tflite", "onnx"], help="default: the config's (auto)")
    check.add_argument("--family", help="default: the config's (auto)")
    check.add_argument("--threads", type=int, help="default: the config's (2)")
    check.add_argument("--json", action="store_true")
    _add_quantize_parsers(msub)
    for p in msub.choices.values():
        _add_log_level(p)

    ev = sub.add_parser("eval", help="accuracy on a labelled set: OKS AP, AP50, AP75, PCK@0.05/0.1 per keypoint")
    ev.add_argument("--model", required=True, help="model file or zoo id")
    ev.add_argument("--data", required=True, help="a YOLO-pose folder (images/, labels/) or a COCO person_keypoints JSON")
    ev.add_argument("--images", help="with a COCO JSON: the folder of its images")
    ev.add_argument("--backend", default="auto", choices=["auto", "tflite", "onnx"])
    ev.add_argument("--family", default="auto")
    ev.add_argument("--threads", type=int, default=2)
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--crops", action="store_true",
                    help="single-person models: judge the model alone on ground-truth person crops (a path the "
                    "pipeline never takes; the default runs what `edgepose run` runs, on whole images)")
    ev.add_argument("--person-detector", default="auto",
                    help="top-down person detector for single-person MoveNet models (model.person_detector): "
                    "auto, a MultiPose file or zoo id, or none")
    _add_log_level(ev)


def _add_log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="DEBUG also shows what LiteRT and ONNX Runtime print themselves")


def _add_quantize_parsers(msub) -> None:
    cal = msub.add_parser("calibrate", help="collect diverse calibration frames with people from a source")
    cal.add_argument("--source", help="camera index, /dev/videoN, clip, image folder or URL (default: the config's)")
    cal.add_argument("--config", help="config YAML whose source: section is used")
    cal.add_argument("--frames", type=int, default=200, help="frames to keep (default 200)")
    cal.add_argument("--out", required=True, help="folder for the frames and manifest.json")
    cal.add_argument("--every", type=int, help="look at every k-th frame (default: files spread over the clip)")
    cal.add_argument("--min-change", type=float, default=0.01, help="skip a frame unless at least this share of "
                     "its 32x32 gray thumbnail differs from every kept frame (default 0.01)")
    cal.add_argument("--min-interval", type=float, default=0.0, help="live sources: seconds between kept frames")
    cal.add_argument("--reference", default="default", help="model that decides whether someone is in the frame "
                     "(default: the shipped MoveNet; 'none' keeps empty frames too)")
    cal.add_argument("--min-person-score", type=float, default=0.3)
    cal.add_argument("--max-read", type=int, help="stop after reading this many frames")
    cal.add_argument("--format", dest="image_format", choices=["jpg", "png"], default="jpg")
    cal.add_argument("--overwrite", action="store_true", help="replace the frames of an earlier run in --out")
    q = msub.add_parser("quantize", help="float model -> INT8 with a sensitivity search and an accuracy/speed report")
    q.add_argument("model", help="float .tflite or .onnx model (file or zoo id)")
    q.add_argument("--calib", required=True, action="append", help="calibration folder (edgepose models calibrate); "
                   "repeatable")
    q.add_argument("--holdout", help="frames to judge on (default: every 5th calibration frame, not calibrated on)")
    q.add_argument("--labels", help="YOLO-pose folder: also report PCK@0.1 / OKS AP and hold the PCK drop to the target")
    q.add_argument("--out", help="INT8 model file (default: beside the model, -int8)")
    q.add_argument("--report", help="report path prefix (default: <out>.report.json and .md beside the model)")
    q.add_argument("--family", default="auto")
    q.add_argument("--threads", type=int, default=2, help="threads for calibration, judging and the speed test")
    q.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile", "distribution"],
                   help="ONNX: calibration method")
    q.add_argument("--activations", default="u8", choices=["u8", "s8"], help="ONNX: u8s8 (CPU) or s8s8 (TensorRT, NPUs)")
    q.add_argument("--all-ops", action="store_true", help="TFLite: also quantize ops XNNPACK has no INT8 kernel for")
    q.add_argument("--no-search", action="store_true", help="full INT8 only, no sensitivity search")
    q.add_argument("--max-rounds", type=int, default=12)
    q.add_argument("--max-frames", type=int, help="use at most this many calibration frames")
    q.add_argument("--max-drift", type=float, default=3.0, help="target: mean keypoint drift, %% of box diagonal")
    q.add_argument("--max-drift-px", type=float, help="target: mean keypoint drift in model-input pixels")
    q.add_argument("--max-pck-drop", type=float, default=1.0, help="target with --labels: PCK@0.1 points lost")
    q.add_argument("--min-recall", type=float, default=0.95, help="target: share of float's people INT8 still finds")
    q.add_argument("--min-speedup", type=float, help="target: INT8 p50 latency this many times faster than float")
    q.add_argument("--max-float-compute", type=float, default=0.5,
                   help="the search keeps at most this share of the multiply-accumulates float (default 0.5)")
    q.add_argument("--speed-runs", type=int, default=60)
    q.add_argument("--force", action="store_true", help="write the INT8 model even when the target is not met")
    q.add_argument("--json", action="store_true", help="print the report as JSON")


def _models(args: argparse.Namespace) -> int:
    from edge import zoo

    out = sys.stdout
    if args.models_command == "calibrate":
        from edge.quantize.calibrate import cli_calibrate

        return cli_calibrate(args, out)
    if args.models_command == "quantize":
        from edge.quantize.job import cli_quantize

        return cli_quantize(args, out, sys.stderr)
    if args.models_command == "list":
        here = {i: (s, p) for i, s, p in zoo.verify()}
        out.write(f"{'id':34} {'family':18} {'input':26} {'licence':11} {'here':8}\n")
        for e in zoo.load_zoo().values():
            out.write(f"{e.id:34} {e.family:18} {e.input:26} {e.license:11} {here[e.id][0]:8}\n")
        out.write(f"cache: {zoo.cache_dir()}\n")
        return 0
    if args.models_command == "info":
        entries = zoo.load_zoo()
        if args.id not in entries:
            raise ModelError(f"unknown zoo id '{args.id}'; see: edgepose models list")
        entry = entries[args.id]
        for k, v in vars(entry).items():
            out.write(f"{k}: {'none (no public download)' if k == 'url' and not v else v}\n")
        path = zoo.local_file(entry)
        out.write(f"local file: {path or zoo.how_to_get(entry)}\n")
        return 0
    if args.models_command == "pull":
        path = zoo.pull(args.id, mirror=args.mirror, progress=not args.quiet)
        out.write(f"{args.id}: {path} (sha256 verified)\n")
        return 0
    if args.models_command == "verify":
        rows = zoo.verify()
        for i, status, path in rows:
            out.write(f"{i:34} {status:9} {path or ''}\n")
        return 2 if any(s == "MISMATCH" for _, s, _ in rows) else 0
    from edge.config import load_config
    from edge.modelcheck import check_model, format_report

    report = check_model(args.model, args.backend, args.family, args.threads, config=load_config(args.config))
    out.write(json.dumps(report.to_dict(), indent=2) + "\n" if args.json else format_report(report) + "\n")
    if not report.ok:  # the problems (and their advice) are in the report: only say where
        where = 'its "problems" in the JSON above' if args.json else "the result above"
        sys.stderr.write(f"edgepose: ModelError: the output of {report.path} is degenerate; see {where}\n")
        return 2
    return 0


def _progress(label: str):
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        sys.stderr.write(f"\r{label} {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edge.config import Config
    from edge.evaluate import evaluate, load_coco_json, load_yolo_pose
    from edge.model import load_model

    cfg = Config.model_validate({"model": {"path": args.model, "backend": args.backend, "family": args.family,
                                           "threads": args.threads, "score_threshold": 0.0, "movenet_tracking": False,
                                           "coco17_view": True,  # BlazePose: judged on the 17 COCO points
                                           "person_detector": args.person_detector}})
    model = load_model(cfg, topdown=not args.crops)
    data = Path(args.data)
    if data.suffix == ".json":
        if not args.images:
            raise ModelError("eval: a COCO JSON needs --images DIR (the folder of its images)")
        samples = load_coco_json(data, args.images)
    elif (data / "images").is_dir():
        samples = load_yolo_pose(data)
    else:
        raise ModelError(f"eval: {data} is neither a YOLO-pose folder (images/, labels/) nor a COCO JSON file")
    if not samples:
        raise ModelError(f"eval: no labelled images found in {data}")
    single = args.crops  # the default judges what the pipeline outputs: whole images, through the detector if any
    operating = 0.0
    if not single:  # multi-person: keep low-score people so AP sees the whole precision-recall curve
        operating = getattr(model.family, "default_score_threshold", 0.25)
        model.family.score_threshold = 0.01
    report = evaluate(model, samples, crops=single, names=model.family.keypoint_names, progress=_progress("eval"),
                      pck_min_score=operating)
    topdown = getattr(model.family, "topdown", None)
    if topdown:
        report["protocol"] += f", top-down: person detector {topdown}, then the model on each person's crop"
    report = {"model": str(model.path), "family": model.family.name, "runtime": model.backend.runtime,
              "topdown": topdown, **report}
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    w = sys.stdout.write
    w(f"model: {report['model']} ({report['family']}, {report['runtime']})\n")
    w(f"data: {data} - {report['images']} images, {report['people']} people\n{report['protocol']}\n")
    w(f"OKS AP {report['AP']:.3f}   AP50 {report['AP50']:.3f}   AP75 {report['AP75']:.3f}   "
      f"PCK@0.05 {report['PCK@0.05']:.3f}   PCK@0.1 {report['PCK@0.1']:.3f}\n")
    w(f"{'keypoint':16} PCK@0.1\n")
    for name, v in report["per_keypoint_PCK@0.1"].items():
        w(f"{name:16} {'-' if v is None else f'{v:.3f}'}\n")
    return 0


def run(args: argparse.Namespace) -> int:
    if getattr(args, "log_level", None):
        from edge.logsetup import setup_logging

        setup_logging(args.log_level)
    return _models(args) if args.command == "models" else _eval(args)
