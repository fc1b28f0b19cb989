"""A status line on stderr at most once per interval: FPS, ms per stage, people, drops."""

from __future__ import annotations

import sys
import time

from edge.config import ConsoleOutput
from edge.outputs.base import register
from edge.stats import rate, status_line
from edge.types import PoseResult, StreamMeta


class ConsoleSink:
    name = "console"

    def __init__(self, cfg: ConsoleOutput):
        self.interval_ns = int(cfg.interval_s * 1e9)
        self._last = 0
        self._printed = False
        self._stats = None
        self._tty = sys.stderr.isatty()

    def open(self, meta: StreamMeta) -> None:
        self._stats = meta.stats
        self._last = time.monotonic_ns()  # the first line after one interval: by then there is a rate to show

    def write(self, result: PoseResult) -> None:
        now = time.monotonic_ns()
        if self._stats is None or now - self._last < self.interval_ns:
            return
        snap = self._stats.snapshot()
        if rate(snap) is None:  # one frame has no rate yet (a slow first frame, or a single still): wait for two
            return
        self._last, self._printed = now, True
        line = status_line(snap)
        sys.stderr.write(("\r" + line + "\033[K") if self._tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self._tty and self._printed:
            sys.stderr.write("\n")


@register("console")
def make_console(cfg: ConsoleOutput) -> ConsoleSink:
    return ConsoleSink(cfg)
