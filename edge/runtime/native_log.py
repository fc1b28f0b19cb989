"""What native runtimes print to fd 2, routed through ``logging``.

LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` and ONNX Runtime its
warnings (with raw ANSI colour codes) straight to file descriptor 2, below Python: no logging
level reaches them. ``native_stderr`` points fd 2 at a temporary file around a native call (a
model load), puts fd 2 back however the call ends, and re-emits each captured line through a
logger: known chatter at DEBUG, anything else at WARNING, so a real error message is never
swallowed.

fd 2 belongs to the whole process, so captures are serialised by one lock, a capture inside a
capture leaves the outer one in charge, and the handlers that write to fd 2 are held for the
short window, so another thread's log line waits instead of landing in the capture.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections import Counter
from contextlib import ExitStack, contextmanager
from typing import Iterator, Pattern

_LOCK = threading.RLock()  # fd 2 is process-wide: one capture at a time
_depth = 0  # > 0 while fd 2 is captured (only touched under _LOCK)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# ONNX Runtime's sink: "2026-01-01 12:00:00.123456789 [W:onnxruntime:Default, file.h:12 Fn] message"
_ORT_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ (?=\[[VIWEF]:onnxruntime)")

LITERT_CHATTER = (re.compile(r"^(INFO|VERBOSE): "),)  # TFLite's minimal logger; WARNING:/ERROR: stay loud
ORT_CHATTER = (re.compile(r"^\[[VIW]:onnxruntime"),)  # verbose, info, warning; [E:]/[F:] stay loud


def debug_enabled(logger: logging.Logger) -> bool:
    """Whether the runtime should let its own diagnostics through (they are then logged at DEBUG)."""
    return logger.isEnabledFor(logging.DEBUG)


def _stderr_handlers() -> list[logging.Handler]:
    """Handlers (on any logger) whose stream is fd 2: held during a capture so their lines are not caught."""
    registered = list(logging.Logger.manager.loggerDict.values())  # a snapshot: threads may add loggers
    loggers = [logging.getLogger(), *(v for v in registered if isinstance(v, logging.Logger))]
    found: dict[int, logging.Handler] = {}
    for lg in loggers:
        for h in lg.handlers:
            stream = getattr(h, "stream", None)
            try:
                if stream is not None and stream.fileno() == 2:
                    found[id(h)] = h
            except (AttributeError, OSError, ValueError):
                continue
    return list(found.values())


def _flush_stderr() -> None:
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError, AttributeError):
            pass


def reemit(text: str, logger: logging.Logger, known: tuple[Pattern[str], ...], label: str) -> None:
    """Log each captured line once (repeats counted): DEBUG when a ``known`` pattern matches, else WARNING."""
    lines = [_ORT_STAMP.sub("", _ANSI.sub("", line)).strip() for line in text.splitlines()]
    for line, n in Counter(line for line in lines if line).items():
        level = logging.DEBUG if any(p.search(line) for p in known) else logging.WARNING
        logger.log(level, "%s: %s%s", label, line, f" ({n} times)" if n > 1 else "")


@contextmanager
def native_stderr(logger: logging.Logger, known: tuple[Pattern[str], ...], label: str) -> Iterator[None]:
    """Capture fd 2 for the duration of the block; afterwards (also when it raised) re-emit it through ``logger``.

    Log nothing inside the block: the line would be captured and come out again as a warning.
    """
    global _depth
    with _LOCK:
        if _depth:  # an outer capture is active: it collects (and re-emits) this output too
            yield
            return
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 (a daemon with stderr closed): nothing to capture
            yield
            return
        try:
            capture = tempfile.TemporaryFile(mode="w+b")
        except OSError:  # no writable temp dir: run uncaptured rather than not at all
            os.close(saved)
            yield
            return
        try:
            with ExitStack() as held:
                for h in _stderr_handlers():
                    h.acquire()
                    held.callback(h.release)
                _flush_stderr()
                os.dup2(capture.fileno(), 2)
                _depth += 1
                try:
                    yield
                finally:
                    _depth -= 1
                    _flush_stderr()
                    os.dup2(saved, 2)
            # the handlers are released here: the re-emitted lines go out through them
        finally:
            os.close(saved)
            try:
                capture.seek(0)
                text = capture.read().decode("utf-8", errors="replace")
            except OSError as exc:
                text = f"(the captured output could not be read back: {exc})"
            finally:
                capture.close()
            reemit(text, logger, known, label)
