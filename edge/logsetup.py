"""Logging to stderr that reads well both in a terminal and in the journal.

Under systemd (stderr is the stream named by $JOURNAL_STREAM) journald stamps each line
itself, so we add no timestamp but a ``<N>`` syslog prefix: journald then files the line at
its real priority (``journalctl -p warning`` works). Elsewhere: a short wall-clock time
(HH:MM:SS.mmm), for reading only.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO

from edge.errors import ConfigError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SYSLOG_PRIORITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}
_MARK = "_edgepose_handler"


class JournalFormatter(logging.Formatter):
    """``<prio>name: message``; journald strips the prefix and keeps the priority."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prio = _SYSLOG_PRIORITY.get(record.levelname, 6)
        # every line of a traceback gets the prefix, or journald would log it at the default level
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())


def _stderr_is_journal(stream: IO[str], environ: dict[str, str] | os._Environ[str]) -> bool:
    """True if $JOURNAL_STREAM names this very stream (it is inherited by children whose stderr may differ)."""
    value = environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        dev, ino = (int(x) for x in value.split(":", 1))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: str, stream: IO[str] | None = None, environ: dict[str, str] | None = None) -> logging.Handler:
    """Install one stderr handler on the root logger (replacing ours from an earlier call)."""
    name = str(level).upper()
    if name not in LEVELS:
        raise ConfigError(f"logging.level: {level!r} is not a log level; use one of {', '.join(LEVELS)}")
    stream = sys.stderr if stream is None else stream
    env = os.environ if environ is None else environ
    handler = logging.StreamHandler(stream)
    if _stderr_is_journal(stream, env):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(name)
    return handler
