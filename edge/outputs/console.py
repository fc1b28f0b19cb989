"""A status line on stderr at most once per interval: FPS, ms per stage, people, drops."""

from __future__ import annotations

import sys
import time

from edge.config import ConsoleOutput
from edge.outputs.base import register
from edge.types import PoseResult, StreamMeta


def format_status(snap: dict) -> str:
    stages = " ".join(f"{k} {v:.1f}" for k, v in snap.get("stage_ms", {}).items())
    lat = snap.get("latency_ms_p50")
    return (
        f"{snap['fps']:5.1f} fps | ms: {stages} | latency p50 {lat if lat is not None else '-'} ms | "
        f"people {snap['people']} | frames {snap['frames_processed']} | dropped {snap['dropped_total']}"
    )


class ConsoleSink:
    name = "console"

    def __init__(self, cfg: ConsoleOutput):
        self.interval_ns = int(cfg.interval_s * 1e9)
        self._last = 0
        self._stats = None
        self._tty = sys.stderr.isatty()

    def open(self, meta: StreamMeta) -> None:
        self._stats = meta.stats

    def write(self, result: PoseResult) -> None:
        now = time.monotonic_ns()
        if self._stats is None or now - self._last < self.interval_ns:
            return
        self._last = now
        line = format_status(self._stats.snapshot())
        sys.stderr.write(("\r" + line + "\033[K") if self._tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self._tty and self._last:
            sys.stderr.write("\n")


@register("console")
def make_console(cfg: ConsoleOutput) -> ConsoleSink:
    return ConsoleSink(cfg)
