"""The edgepose command line. ``main(argv) -> int``; exit codes: 0 ok, 2 config/model error, 1 runtime failure.

User errors print one paragraph and no traceback; unexpected bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from edge import __version__
from edge.errors import ConfigError, EdgeposeError, redact

log = logging.getLogger("edgepose")
MESSAGE_CAP = 16_000  # an error message on stderr; config errors list at most 20 capped lines, far below


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="config YAML (default: built-in defaults)")
    p.add_argument("--config", dest="config_opt", metavar="FILE", help="config YAML (same as the positional)")
    p.add_argument("--source", help="auto | sample | video file | image/folder/glob | camera index or /dev/videoN")
    p.add_argument("--model", help="model file (.tflite or .onnx) or 'default'")
    p.add_argument("--backend", choices=["auto", "tflite", "onnx"])
    p.add_argument("--family", help="override the detected model family (movenet, movenet_multipose, yolo, yolo_e2e, ...)")
    p.add_argument("--threads", type=int, help="inference threads (per model worker)")
    p.add_argument("--workers", help="copies of the model that take frames in turn: N or auto (model.workers)")
    p.add_argument("--output", action="append", metavar="OUT",
                   help="FILE.jsonl, '-' (JSON lines on stdout), console, web[:PORT] or web:HOST:PORT (default "
                        "127.0.0.1; web:0.0.0.0:8080 opens it to the LAN), framebuffer[:/dev/fbN], window, "
                        "mqtt://[user@]host[:port][/prefix]; repeatable; replaces the config's outputs")
    p.add_argument("--no-realtime", action="store_true", help="play files as fast as possible instead of at their fps")
    p.add_argument("--loop", action="store_true", help="loop files and images")
    p.add_argument("--rotate", type=int, metavar="DEG", help="turn every frame 0, 90, 180 or 270 degrees clockwise "
                   "(a camera mounted sideways or upside down; source.rotate)")
    p.add_argument("--hflip", action="store_true", help="mirror every frame left-right, after --rotate")
    p.add_argument("--vflip", action="store_true", help="mirror every frame top-bottom, after --rotate")
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
    p.add_argument("--tune", action="store_true", help="measure every model.workers x model.threads that fits the "
                   "cores on the pipeline and print the best for throughput and for latency")
    p.add_argument("--rounds", type=int, default=2, help="--tune: interleaved rounds per combination (median)")
    p.add_argument("--write", metavar="CONFIG", help="--tune: write the best-throughput combination into CONFIG")


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


def _workers(text: str | None):
    """--workers as the config takes it: a number stays a number (so the config's range check names it)."""
    return int(text) if text is not None and text.strip().isascii() and text.strip().isdecimal() else text


def resolve_config(args: argparse.Namespace):
    """The config file plus command-line overrides, validated."""
    from edge.config import load_config, override

    path = getattr(args, "config_opt", None) or args.config
    cfg = load_config(path)
    changes: dict[str, Any] = {
        "source.path": None if args.source in (None, "auto", "sample") else args.source,
        "model.path": args.model, "model.backend": args.backend, "model.family": args.family,
        "model.threads": args.threads, "model.workers": _workers(args.workers), "pipeline.max_frames": args.max_frames,
        "logging.level": args.log_level, "source.rotate": args.rotate,
        "source.hflip": args.hflip or None, "source.vflip": args.vflip or None,
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


def _unreadable_here(out) -> str | None:
    """Why ``check`` cannot read an MQTT password that only the service's environment holds (None: it can)."""
    if out.password_env and out.password_env not in os.environ:
        return (f"password_env: ${out.password_env} is not set in this shell, so the password is not checked here "
                "(the unit's Environment= or EnvironmentFile= sets it for run)")
    if out.password_credential and not os.environ.get("CREDENTIALS_DIRECTORY"):
        return ("password_credential: $CREDENTIALS_DIRECTORY is set only by systemd (LoadCredential=), so the "
                "password is not checked here")
    return None


def prepare(cfg, old=None, checking: bool = False):
    """An unstarted Pipeline, after every check ``run`` makes before it starts; returns (pipeline, notes).

    ``check``, ``run`` and a SIGHUP reload all come through here, so they cannot disagree: the files the
    outputs name are read as their open() reads them (MQTT password file, TLS CA/certificate/key), the model
    is loaded and its family detected, and every stage is built from its settings. A file source (video,
    images, the sample) is also opened and closed for ``check`` and for a reload (refused before the running
    pipeline stops); run opens it first thing anyway. Cameras and brokers are left to start(). ``checking``
    (check, in a shell) notes instead of failing on a password only the unit's environment or credentials hold.
    """
    from edge.capture.base import auto_type
    from edge.outputs.mqtt_tls import tls_context
    from edge.pipeline import Pipeline

    notes: list[str] = []
    for i, out in enumerate(cfg.outputs):
        if out.type != "mqtt":
            continue
        why = _unreadable_here(out) if checking else None
        if why:
            notes.append(f"outputs.{i}.{why}")
        else:
            out.read_password()  # the value is dropped: only whether it can be read matters here
        if out.tls:
            tls_context(out.tls)
    # workers: auto may choose other threads for another kind of source: load it anew then
    same_model = old is not None and cfg.model == old.cfg.model and cfg.model.workers != "auto"
    pipeline = Pipeline(cfg, model=old.model if same_model else None)
    kind = cfg.source.type if cfg.source.type != "auto" else auto_type(cfg.source)
    if (checking or old is not None) and kind in ("file", "images", "sample"):
        pipeline.source.open()  # a missing or unreadable file: the error run would give at start
        pipeline.source.close()
    return pipeline, notes


def cmd_check(args: argparse.Namespace) -> int:
    from edge.config import load_config
    from edge.logsetup import setup_logging

    setup_logging("WARNING")  # the report goes to stdout; stderr keeps warnings and the error
    cfg = load_config(args.config)
    pipeline, notes = prepare(cfg, checking=True)
    model = pipeline.model
    sys.stdout.write(f"{args.config or 'built-in defaults'}: OK\n")
    sys.stdout.write(f"  source: {cfg.source.type} {redact(cfg.source.path or '', 200)}\n")
    sys.stdout.write(f"  model: {redact(cfg.model.path, 200)} -> {redact(str(model.path), 200)} (family "
                     f"{model.family.name}, backend {model.backend.runtime}, {cfg.model.threads} threads)\n")
    sys.stdout.write(f"  outputs: {', '.join(o.type for o in cfg.outputs) or 'none'}\n")
    for note in notes:
        sys.stdout.write(f"  note: {note}\n")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge.logsetup import setup_logging
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
        return prepare(new_cfg, old)[0]

    pipeline = prepare(cfg)[0]
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
        sys.stderr.write(f"edgepose: {kind}: {redact(str(exc), MESSAGE_CAP, MESSAGE_CAP)}\n")  # masked, bounded
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
