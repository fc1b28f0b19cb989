"""The live view's shared state: the newest result and, made on demand, its JPEGs and JSON event.

Apart from the HTTP server (web_http.py) because it is what every client reads, whatever the
connection handling: ``publish`` is O(1) for the sink thread and never waits on a client.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import cv2

from edge.errors import OutputError
from edge.outputs.draw import DrawStyle, annotate
from edge.outputs.jsonl import dumps as strict_dumps
from edge.types import PoseResult, StreamMeta

RECENT_EVENTS = 20  # analytics events kept for the page: SSE skips frames, so their events must not go with them


class LiveFeed:
    """The newest result and, made on demand, its JPEGs and JSON event: what every client reads.

    Each kind is made at most ``max_fps`` times a second whatever the number of clients: a client
    asking within that interval gets the last one made, if it has not seen it yet.
    """

    def __init__(self, meta: StreamMeta, style: DrawStyle, quality: int, max_fps: float):
        self.meta = meta
        self.style = style
        self.quality = quality
        self.period_ns = int(1e9 / max_fps)
        self._cond = threading.Condition()
        self._result: PoseResult | None = None
        self._seq = 0
        self._recent: deque[dict] = deque(maxlen=RECENT_EVENTS)  # guarded by _cond
        self._cache: dict[str, tuple[int, bytes, int]] = {}  # kind -> (seq, data, made at)
        self._locks = {"jpeg:1": threading.Lock(), "jpeg:0": threading.Lock(), "event": threading.Lock()}

    def publish(self, result: PoseResult) -> None:
        """Called by the sink thread for every result: never blocks on a client."""
        with self._cond:
            self._result = result
            self._seq += 1
            self._recent.extend(e.to_dict() for e in result.events)
            self._cond.notify_all()

    def wait_newer(self, seq: int, timeout: float) -> int | None:
        """The current sequence number once it is past ``seq``; None after ``timeout``."""
        with self._cond:
            if self._seq <= seq:
                self._cond.wait(timeout)
            return self._seq if self._seq > seq else None

    def _latest(self) -> tuple[int, PoseResult | None]:
        with self._cond:
            return self._seq, self._result

    def _cached(self, key: str, make, after: int) -> tuple[int, bytes]:
        with self._locks[key]:
            now = time.monotonic_ns()
            seq, result = self._latest()
            hit = self._cache.get(key)
            if hit is not None and hit[0] > after and (hit[0] == seq or now - hit[2] < self.period_ns):
                return hit[0], hit[1]
            data = make(result)
            self._cache[key] = (seq, data, now)
            return seq, data

    def jpeg(self, overlay: bool, after: int = 0) -> tuple[int, bytes]:
        """The newest frame as JPEG (newer than ``after``, the last one this client got)."""
        def make(result: PoseResult) -> bytes:
            image = annotate(result, self.meta, self.style) if overlay else result.frame.image
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                raise OutputError("OpenCV could not encode a JPEG; check that OpenCV was built with JPEG support")
            return buf.tobytes()

        return self._cached(f"jpeg:{int(overlay)}", make, after)

    def event(self, after: int = 0) -> tuple[int, bytes]:
        def make(result: PoseResult) -> bytes:
            payload = result.to_dict()
            stats = self.meta.stats
            payload["fps"] = round(stats.fps(), 2) if hasattr(stats, "fps") else None
            if result.analytics is not None:
                payload.pop("events", None)  # recent_events has them, and those of the frames not sent
                with self._cond:
                    payload["recent_events"] = list(self._recent)
                payload["analytics"] = result.analytics
            return strict_dumps(payload).encode()  # never a bare NaN: browsers' JSON.parse refuses it

        return self._cached("event", make, after)
