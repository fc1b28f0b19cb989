"""Rolling FPS, stage timings, latency percentiles and drop counters.

Monotonic clock only (a Pi has no RTC; NTP steps the wall clock). Thread-safe: the
capture, inference and sink threads write, the main thread reads ``snapshot()``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np


STILLS_LISTED = 10  # images named one by one in the summary; the rest are counted


class Stats:
    def __init__(self, window: int = 120):
        self._lock = threading.Lock()
        self._t_done: deque[int] = deque(maxlen=window)
        self._stage: dict[str, deque[float]] = {}
        self._latency: deque[float] = deque(maxlen=window * 4)
        self._window = window
        self.drops: Counter[str] = Counter()
        # frames whose raw model output looked broken, by kind: 'nonfinite', 'constant', 'noise' (output_health.py)
        self.model_problems: Counter[str] = Counter()
        self.frames_captured = 0
        self.frames_processed = 0
        self.people_last = 0
        self.people_max = 0
        self.last_processed_ns = 0
        self.t_start_ns = time.monotonic_ns()
        self.source_state = "starting"
        self.reconnects = 0  # times a live source lost its stream and got it back (set by the capture thread)
        # idle gating (edge/idle.py): frames the model skipped because nobody was there, and the gate's state
        self.idle_frames = 0
        self.activity = "always"  # always (gating off), active or idle
        self.last_idle_ns = 0
        # still images: what was found in the first STILLS_LISTED of them, and a tally of all
        self.stills: list[tuple[str, list[float]]] = []
        self.stills_seen = 0
        self.stills_with_people = 0

    def captured(self) -> None:
        with self._lock:
            self.frames_captured += 1

    def drop(self, where: str, n: int = 1) -> None:
        """Count a dropped frame or message; ``where`` names the stage (e.g. 'capture', 'sink:mqtt')."""
        with self._lock:
            self.drops[where] += n

    def idle_frame(self, t_ns: int) -> None:
        """Count a frame the model skipped while idle: not a drop, and proof that the source is alive."""
        with self._lock:
            self.idle_frames += 1
            self.last_idle_ns = t_ns

    def model_output(self, kind: str, n: int = 1) -> None:
        """Count ``n`` frames whose raw model output had a problem of ``kind`` (e.g. 'nonfinite')."""
        with self._lock:
            self.model_problems[kind] += n

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

    def still(self, name: str, scores: list[float]) -> None:
        """Remember what one still image held, for the end-of-run summary."""
        with self._lock:
            self.stills_seen += 1
            self.stills_with_people += bool(scores)
            if len(self.stills) < STILLS_LISTED:
                self.stills.append((name, scores))

    def fps(self) -> float:
        with self._lock:
            return self._fps_locked()

    def _fps_locked(self) -> float:
        if len(self._t_done) < 2:
            return 0.0
        span = (self._t_done[-1] - self._t_done[0]) / 1e9
        return (len(self._t_done) - 1) / span if span > 0 else 0.0

    def since_last_frame_s(self, now_ns: int | None = None) -> float:
        """Seconds since the last frame handled: processed, or skipped while idle (inf before the first one)."""
        last = max(self.last_processed_ns, self.last_idle_ns)
        if not last:
            return float("inf")
        return ((now_ns or time.monotonic_ns()) - last) / 1e9

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
                "model_output": dict(self.model_problems),  # frames by problem: nonfinite, constant, noise
                "stage_ms": stage_ms,
                "latency_ms_p50": round(float(np.percentile(lat, 50)), 2) if lat is not None else None,
                "latency_ms_p99": round(float(np.percentile(lat, 99)), 2) if lat is not None else None,
                "people": self.people_last,
                "people_max": self.people_max,
                "uptime_s": round((time.monotonic_ns() - self.t_start_ns) / 1e9, 1),
                "source_state": self.source_state,
                "reconnects": self.reconnects,
                "activity": self.activity,
                "idle_frames": self.idle_frames,
            }


def people_text(n: int) -> str:
    return f"{n} {'person' if n == 1 else 'people'}"


def drops_text(snap: dict) -> str:
    """``dropped 3 (capture 2, sink:mqtt 1)``, or ``dropped 0``."""
    where = ", ".join(f"{k} {v}" for k, v in sorted(snap["drops"].items()) if v)
    return f"dropped {snap['dropped_total']}" + (f" ({where})" if where else "")


def rate(snap: dict) -> str | None:
    """``12.3 fps`` once two frames give a rate; None before that (one frame has no rate)."""
    return f"{snap['fps']:.1f} fps" if snap["frames_processed"] >= 2 and snap["fps"] > 0 else None


def status_line(snap: dict) -> str:
    """The console's periodic line; the same words as the summary at the end of a run."""
    stages = " ".join(f"{k} {v:.1f}" for k, v in snap.get("stage_ms", {}).items())
    lat = snap.get("latency_ms_p50")
    return " | ".join([
        rate(snap) or "- fps",
        f"ms: {stages}" if stages else "ms: -",
        f"latency p50 {lat:.1f} ms" if lat is not None else "latency -",
        f"{people_text(snap['people'])} now",
        f"frames {snap['frames_processed']}",
        *([f"idle: nobody seen, {snap['idle_frames']} frames skipped"] if snap.get("activity") == "idle" else []),
        drops_text(snap),
    ])


def summarize(stats: Stats) -> str:
    snap = stats.snapshot()
    n, captured = snap["frames_processed"], snap["frames_captured"]
    frames = f"{n} frame{'' if n == 1 else 's'}" if n == captured else f"{n} of {captured} captured frames"
    head = f"processed {frames} in {snap['uptime_s']:.1f} s" + (f" ({r})" if (r := rate(snap)) else "")
    parts = [head]
    if snap["stage_ms"]:
        parts.append("median " + ", ".join(f"{k} {v:.2f} ms" for k, v in snap["stage_ms"].items()))
    if n:
        parts.append(f"up to {people_text(snap['people_max'])} in a frame")
    parts.append(drops_text(snap))
    if snap.get("idle_frames"):
        parts.append(f"{snap['idle_frames']} frames skipped while nobody was there (idle)")
    if problems := snap.get("model_output"):
        parts.append("model output: " + ", ".join(f"{v} frame{'' if v == 1 else 's'} {k}"
                                                  for k, v in sorted(problems.items())))
    return "; ".join(parts) + "".join(f"\n{line}" for line in found_in_stills(stats))


def found_in_stills(stats: Stats) -> list[str]:
    """One plain line per image: ``  bus.jpg: 2 people (scores 0.81, 0.44)`` or ``  cat.jpg: nobody``."""
    with stats._lock:
        stills, seen, with_people = list(stats.stills), stats.stills_seen, stats.stills_with_people
    lines = []
    for name, scores in stills:
        if not scores:
            lines.append(f"  {name}: nobody")
        else:
            shown = ", ".join(f"{v:.2f}" for v in scores[:5]) + (", ..." if len(scores) > 5 else "")
            lines.append(f"  {name}: {people_text(len(scores))} (score{'s' if len(scores) > 1 else ''} {shown})")
    if seen > len(stills):
        rest, rest_with = seen - len(stills), with_people - sum(bool(s) for _, s in stills)
        lines.append(f"  ... and {rest} more image{'s' if rest != 1 else ''}: {rest_with} with people, "
                     f"{rest - rest_with} without (every result is in the outputs)")
    return lines
