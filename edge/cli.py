"""The edgepose command line. ``main(argv) -> int``; exit codes: 0 ok, 2 config/model error, 1 runtime failure.

User errors print one paragraph and no traceback; unexpected bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from edge import __version__
from edge.errors import ConfigError, EdgeposeError

log = logging.getLogger("edgepose")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="config YAML (default: built-in defaults)")
    p.add_argument("--config", dest="config_opt", metavar="FILE", help="config YAML (same as the positional)")
    p.add_argument("--source", help="auto | sample | video file | image/folder/glob | camera index or /dev/videoN")
    p.add_argument("--model", help="model file (.tflite or .onnx) or 'default'")
    p.add_argument("--backend", choices=["auto", "tflite", "onnx"])
    p.add_argument("--family", help="override the detected model family (movenet, movenet_multipose, yolo, yolo_e2e, ...)")
    p.add_argument("--threads", type=int, help="inference threads")
    p.add_argument("--output", action="append", metavar="OUT",
                   help="FILE.jsonl, '-' (JSON lines on stdout), console, web[:PORT] or web:HOST:PORT (default "
                        "127.0.0.1; web:0.0.0.0:8080 opens it to the LAN), framebuffer[:/dev/fbN], window, "
                        "mqtt://[user@]host[:port][/prefix]; repeatable; replaces the config's outputs")
    p.add_argument("--no-realtime", action="store_true", help="play files as fast as possible instead of at their fps")
    p.add_argument("--loop", action="store_true", help="loop files and images")
    p.add_argument("--max-frames", type=int, help="stop after this many processed frames")
    p.add_argument("-q", "--quiet", action="store_true", help="no console status line")
    p.add_argument("--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="debug also shows what LiteRT and ONNX Runtime print themselves")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepose", description="Real-time human pose estimation on edge devices.")
    parser.add_argument("--version", action="version", version=f"edgepose {__version__}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the pipeline (default: bundled sample or the first camera)")
    _add_run_options(run)
    check = sub.add_parser("check", help="validate a config file without running it")
    check.add_argument("config", nargs="?", help="config YAML (default: built-in defaults)")
    from edge import cli_models

    cli_models.add_parsers(sub)
    _add_bench_options(sub.add_parser("bench", help="measure FPS: the model alone, or the whole pipeline"))
    return parser


def _add_bench_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", required=True, help="model file(s); repeatable or comma-separated")
    p.add_argument("--backend", default="auto", help="comma list of auto|tflite|onnx (default auto)")
    p.add_argument("--threads", default="2", help="comma list of inference thread counts, e.g. 1,2,4")
    p.add_argument("--iterations", type=int, default=100, help="timed model-only runs per combination (0: skip)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs (and pipeline frames) first")
    p.add_argument("--source", help="frames to run on: clip, images, camera (default: the bundled sample)")
    p.add_argument("--pipeline", action="store_true", help="also run the whole pipeline on --source")
    p.add_argument("--seconds", type=float, default=20.0, help="pipeline run length")
    p.add_argument("--realtime", action="store_true", help="pace files at their fps instead of as fast as possible")
    p.add_argument("--loop", action="store_true", help="loop the file so the run lasts --seconds")
    p.add_argument("--output", action="append", default=[], metavar="FILE.jsonl", help="time this output too")
    p.add_argument("--family", choices=["auto", "movenet", "yolo"], default="auto")
    p.add_argument("--config", help="base config YAML for the pipeline run")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write JSON to FILE (or stdout)")
    p.add_argument("--report", metavar="DIR", help="write DIR/report.md with PNG plots (needs edgepose[plots])")


def _outputs(args: argparse.Namespace, configured: list[Any]) -> list[dict] | None:
    from edge.outputs.spec import parse_output

    if not args.output and not args.quiet:
        return None
    outs: list[dict] = [] if args.quiet else [{"type": "console"}]
    if args.output:
        for spec in args.output:
            out = parse_output(spec)
            if out["type"] != "console" or not any(o["type"] == "console" for o in outs):
                outs.append(out)
    else:
        outs += [o.model_dump() for o in configured if o.type != "console"]
    return outs


def resolve_config(args: argparse.Namespace):
    """The config file plus command-line overrides, validated."""
    from edge.config import load_config, override

    path = getattr(args, "config_opt", None) or args.config
    cfg = load_config(path)
    changes: dict[str, Any] = {
        "source.path": None if args.source in (None, "auto", "sample") else args.source,
        "model.path": args.model, "model.backend": args.backend, "model.family": args.family,
        "model.threads": args.threads, "pipeline.max_frames": args.max_frames,
        "logging.level": args.log_level,
    }
    if args.source is not None:
        from edge.capture.base import guess_type

        changes["source.type"] = guess_type(args.source)
    if args.no_realtime:
        changes["source.realtime"] = False
    if args.loop:
        changes["source.loop"] = True
    outs = _outputs(args, cfg.outputs)
    if outs is not None:
        changes["outputs"] = outs
    return override(cfg, **changes)


def cmd_check(args: argparse.Namespace) -> int:
    from edge.capture.network import mask_url
    from edge.config import load_config

    cfg = load_config(args.config)
    sys.stdout.write(f"{args.config or 'built-in defaults'}: OK\n")
    sys.stdout.write(f"  source: {cfg.source.type} {mask_url(cfg.source.path or '')}\n")
    sys.stdout.write(f"  model: {cfg.model.path} (family {cfg.model.family}, backend {cfg.model.backend}, "
                     f"{cfg.model.threads} threads)\n")
    sys.stdout.write(f"  outputs: {', '.join(o.type for o in cfg.outputs) or 'none'}\n")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge.logsetup import setup_logging
    from edge.pipeline import Pipeline
    from edge.stats import summarize
    from edge.service import Supervisor

    cfg = resolve_config(args)
    setup_logging(cfg.logging.level)

    def build(reloading: bool):
        new = resolve_config(args)  # the config file again, with the same command-line overrides
        if reloading:  # keep what the outputs already wrote
            outs = [o.model_copy(update={"append": True}) if o.type == "jsonl" else o for o in new.outputs]
            new = new.model_copy(update={"outputs": outs})
        return new

    def make(new_cfg, old):
        same_model = old is not None and new_cfg.model == old.cfg.model
        return Pipeline(new_cfg, model=old.model if same_model else None)

    pipeline = Pipeline(cfg)
    if pipeline.source.name == "sample" and cfg.source.type == "auto":
        log.info("no camera found: running on the bundled sample images (pass --source to use your own)")
    pipeline = Supervisor(build, make).run(pipeline)
    sys.stderr.write(summarize(pipeline.stats) + "\n")
    if pipeline.error is not None:
        raise pipeline.error
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from edge.bench_report import cli_bench

    return cli_bench(args, sys.stdout, sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from edge.logsetup import setup_logging

    setup_logging("INFO")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *(argv if argv is not None else sys.argv[1:])])
    from edge import cli_models

    commands = {"run": cmd_run, "check": cmd_check, "bench": cmd_bench, "models": cli_models.run, "eval": cli_models.run}
    try:
        return commands[args.command](args)
    except EdgeposeError as exc:
        kind = "configuration error" if isinstance(exc, ConfigError) else type(exc).__name__
        sys.stderr.write(f"edgepose: {kind}: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
