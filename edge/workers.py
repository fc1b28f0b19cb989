"""How many copies of the model run, and with how many threads each: the rule behind ``model.workers: auto``.

One interpreter does not use a multi-core board well: XNNPACK's thread pool loses much of its
second thread as soon as anything else wants a core, and in a pipeline the capture and post
threads always do. Independent interpreters each keep their speed, and ``invoke()`` releases
the GIL (docs/BENCHMARKS.md, "Model workers"). So:

- **throughput** (a file read as fast as possible): one copy per usable core, one thread each
  (``model.threads`` is not used; give ``workers`` a number to keep your thread count);
- **live** (a camera or a paced file): the configured threads per copy, so that one frame takes
  no longer than with one worker, and as many copies as the cores hold. A frame is taken by
  whichever copy is free, so a second copy only ever works when the first one is busy: it can
  add throughput, never a frame of latency.

``edgepose bench --tune`` measures every combination on the device itself; this rule is what
``auto`` does without a measurement (checked against --tune on a 2-core machine, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_WORKERS = 16  # model.workers' upper bound (edge/config.py)
MAX_AUTO_WORKERS = 4  # each copy holds its own tensors (docs/BENCHMARKS.md: memory per worker)


@dataclass(frozen=True)
class Placement:
    workers: int
    threads: int

    def __str__(self) -> str:
        return f"{self.workers} worker{'s' if self.workers != 1 else ''} x {self.threads} thread{'s' if self.threads != 1 else ''}"


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def auto_placement(threads: int, live: bool, cores: int | None = None) -> Placement:
    """``workers: auto``: copies x threads for this many cores (see the module's docstring)."""
    cores = cores or usable_cores()
    if not live:
        threads = 1
    workers = max(1, min(MAX_AUTO_WORKERS, cores // max(1, threads)))
    return Placement(workers, threads)


def placement(workers: int | str, threads: int, live: bool, cores: int | None = None) -> Placement:
    """The copies and threads a model config asks for: a number as it is, ``auto`` by the rule."""
    if workers == "auto":
        return auto_placement(threads, live, cores)
    return Placement(int(workers), threads)


def combinations(cores: int | None = None) -> list[Placement]:
    """Every workers x threads that fits the cores (workers x threads <= cores): what ``bench --tune`` measures."""
    cores = cores or usable_cores()
    return [Placement(w, t) for w in range(1, min(cores, MAX_WORKERS) + 1) for t in range(1, cores + 1) if w * t <= cores]
