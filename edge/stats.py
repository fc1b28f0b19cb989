"""Rolling FPS, stage timings, latency percentiles and drop counters.

Monotonic clock only (a Pi has no RTC; NTP steps the wall clock). Thread-safe: the
capture, inference and sink threads write, the main thread reads ``snapshot()``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np


class Stats:
    def __init__(self, window: int = 120):
        self._lock = threading.Lock()
        self._t_done: deque[int] = deque(maxlen=window)
        self._stage: dict[str, deque[float]] = {}
        self._latency: deque[float] = deque(maxlen=window * 4)
        self._window = window
        self.drops: Counter[str] = Counter()
        self.frames_captured = 0
        self.frames_processed = 0
        self.people_last = 0
        self.people_max = 0
        self.last_processed_ns = 0
        self.t_start_ns = time.monotonic_ns()
        self.source_state = "starting"
        self.reconnects = 0  # times a live source lost its stream and got it back (set by the capture thread)

    def captured(self) -> None:
        with self._lock:
            self.frames_captured += 1

    def drop(self, where: str, n: int = 1) -> None:
        """Count a dropped frame or message; ``where`` names the stage (e.g. 'capture', 'sink:mqtt')."""
        with self._lock:
            self.drops[where] += n

    def processed(self, timings_ms: dict[str, float], latency_ms: float, people: int, t_done_ns: int) -> None:
        with self._lock:
            self.frames_processed += 1
            self.last_processed_ns = t_done_ns
            self.people_last = people
            self.people_max = max(self.people_max, people)
            self._t_done.append(t_done_ns)
            self._latency.append(latency_ms)
            for k, v in timings_ms.items():
                self._stage.setdefault(k, deque(maxlen=self._window)).append(v)

    def fps(self) -> float:
        with self._lock:
            return self._fps_locked()

    def _fps_locked(self) -> float:
        if len(self._t_done) < 2:
            return 0.0
        span = (self._t_done[-1] - self._t_done[0]) / 1e9
        return (len(self._t_done) - 1) / span if span > 0 else 0.0

    def since_last_frame_s(self, now_ns: int | None = None) -> float:
        """Seconds since the last processed frame (inf before the first one)."""
        if not self.last_processed_ns:
            return float("inf")
        return ((now_ns or time.monotonic_ns()) - self.last_processed_ns) / 1e9

    def snapshot(self) -> dict:
        """A JSON-ready view for status lines, MQTT stats and metrics."""
        with self._lock:
            stage_ms = {k: round(float(np.median(v)), 3) for k, v in self._stage.items() if v}
            lat = np.asarray(self._latency) if self._latency else None
            return {
                "fps": round(self._fps_locked(), 2),
                "frames_captured": self.frames_captured,
                "frames_processed": self.frames_processed,
                "drops": dict(self.drops),
                "dropped_total": int(sum(self.drops.values())),
                "stage_ms": stage_ms,
                "latency_ms_p50": round(float(np.percentile(lat, 50)), 2) if lat is not None else None,
                "latency_ms_p99": round(float(np.percentile(lat, 99)), 2) if lat is not None else None,
                "people": self.people_last,
                "people_max": self.people_max,
                "uptime_s": round((time.monotonic_ns() - self.t_start_ns) / 1e9, 1),
                "source_state": self.source_state,
                "reconnects": self.reconnects,
            }


def summarize(stats: Stats) -> str:
    snap = stats.snapshot()
    stages = ", ".join(f"{k} {v:.2f} ms" for k, v in snap["stage_ms"].items())
    return (
        f"processed {snap['frames_processed']} of {snap['frames_captured']} captured frames in "
        f"{snap['uptime_s']:.1f} s ({snap['fps']:.1f} fps); median {stages}; "
        f"up to {snap['people_max']} people in a frame; dropped {snap['dropped_total']} {snap['drops'] or ''}".rstrip()
    )
