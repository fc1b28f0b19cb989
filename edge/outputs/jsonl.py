"""JSON Lines: one line per processed frame (index, capture time, size, people, stage timings).

Every line is strict JSON: a NaN or Inf that reaches this sink (the families already drop a broken
model's) is written as null, never as the bare ``NaN`` that JSON parsers reject.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import IO

from edge.config import JsonlOutput
from edge.errors import OutputError
from edge.outputs.base import register
from edge.types import PoseResult, StreamMeta


def finite_json(value):
    """``value`` with every non-finite float replaced by None (JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def dumps(record: dict) -> str:
    """One compact, strictly valid JSON line."""
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=False)
    except ValueError:  # NaN or Inf somewhere: the slow path, only then
        return json.dumps(finite_json(record), separators=(",", ":"), allow_nan=False)


class JsonlSink:
    def __init__(self, cfg: JsonlOutput):
        self.path = cfg.path
        self.name = f"jsonl:{self.path}"
        self.flush_every = cfg.flush_every
        self.append = cfg.append
        self._fh: IO[str] | None = None
        self._n = 0

    def open(self, meta: StreamMeta) -> None:
        if self.path == "-":
            self._fh = sys.stdout
            return
        path = Path(self.path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("a" if self.append else "w", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror}; choose a writable path for the jsonl output") from None

    def write(self, result: PoseResult) -> None:
        assert self._fh is not None, "open() first"
        self._fh.write(dumps(result.to_dict()) + "\n")
        self._n += 1
        if self._n % self.flush_every == 0:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            if self._fh is not sys.stdout:
                self._fh.close()
            self._fh = None


@register("jsonl")
def make_jsonl(cfg: JsonlOutput) -> JsonlSink:
    return JsonlSink(cfg)
