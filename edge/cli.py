"""The edgepose command line. ``main(argv) -> int``; exit codes: 0 ok, 2 config/model error, 1 runtime failure.

User errors print one paragraph and no traceback; unexpected bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
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
    p.add_argument("--family", choices=["auto", "movenet", "yolo"], help="override the detected model family")
    p.add_argument("--threads", type=int, help="inference threads")
    p.add_argument("--output", action="append", metavar="OUT",
                   help="FILE.jsonl, or '-' for JSON lines on stdout; repeatable; replaces the config's outputs")
    p.add_argument("--no-realtime", action="store_true", help="play files as fast as possible instead of at their fps")
    p.add_argument("--loop", action="store_true", help="loop files and images")
    p.add_argument("--max-frames", type=int, help="stop after this many processed frames")
    p.add_argument("-q", "--quiet", action="store_true", help="no console status line")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepose", description="Real-time human pose estimation on edge devices.")
    parser.add_argument("--version", action="version", version=f"edgepose {__version__}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the pipeline (default: bundled sample or the first camera)")
    _add_run_options(run)
    check = sub.add_parser("check", help="validate a config file without running it")
    check.add_argument("config", nargs="?", help="config YAML (default: built-in defaults)")
    return parser


def _outputs(args: argparse.Namespace, configured: list[Any]) -> list[dict] | None:
    if not args.output and not args.quiet:
        return None
    outs: list[dict] = [] if args.quiet else [{"type": "console"}]
    if args.output:
        for spec in args.output:
            outs.append({"type": "jsonl", "path": spec})
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
    from edge.config import load_config

    cfg = load_config(args.config)
    sys.stdout.write(f"{args.config or 'built-in defaults'}: OK\n")
    sys.stdout.write(f"  source: {cfg.source.type} {cfg.source.path or ''}\n")
    sys.stdout.write(f"  model: {cfg.model.path} (family {cfg.model.family}, backend {cfg.model.backend}, "
                     f"{cfg.model.threads} threads)\n")
    sys.stdout.write(f"  outputs: {', '.join(o.type for o in cfg.outputs) or 'none'}\n")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge.pipeline import Pipeline, summarize

    cfg = resolve_config(args)
    logging.getLogger().setLevel(cfg.logging.level)
    pipeline = Pipeline(cfg)
    if pipeline.source.name == "sample":
        log.info("no camera found: running on the bundled sample images (pass --source to use your own)")
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        pipeline.start()
        while not pipeline.wait(0.1) and not stop.is_set():
            pass
    finally:
        pipeline.stop()
        for s, h in previous.items():
            signal.signal(s, h)
    sys.stderr.write(summarize(pipeline.stats) + "\n")
    if pipeline.error is not None:
        raise pipeline.error
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run", *(argv if argv is not None else sys.argv[1:])])
    commands = {"run": cmd_run, "check": cmd_check}
    try:
        return commands[args.command](args)
    except EdgeposeError as exc:
        kind = "configuration error" if isinstance(exc, ConfigError) else type(exc).__name__
        sys.stderr.write(f"edgepose: {kind}: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
