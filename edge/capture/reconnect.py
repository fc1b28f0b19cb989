"""Exponential back-off and the wrapper that keeps a live source reconnecting instead of failing.

A network camera reboots, a Wi-Fi link drops, a USB hub resets: none of these should take
the pose service down. The wrapped source raises StreamLost when its stream stops (a read
timeout or the end of a live stream); the wrapper closes it, waits with exponential back-off
and opens it again. Each read() call stays short (the wait is slept in slices and None is
returned) so the capture loop re-checks its stop event and stop() returns promptly.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from edge.errors import SourceError

log = logging.getLogger(__name__)

SLICE_S = 0.1  # the longest read() sleeps while backing off


class StreamLost(SourceError):
    """A live stream stopped delivering (read timeout or end of stream); it may come back."""


class Backoff:
    """Delays initial, initial*factor, ... capped at max_s; reset() after a success."""

    def __init__(self, initial_s: float, max_s: float, factor: float = 2.0):
        if initial_s <= 0 or max_s < initial_s or factor < 1:
            raise ValueError(f"bad back-off: initial {initial_s} s, max {max_s} s, factor {factor}")
        self.initial_s, self.max_s, self.factor = float(initial_s), float(max_s), float(factor)
        self.attempts = 0
        self._next = self.initial_s

    @property
    def upcoming_s(self) -> float:
        """The delay the next failure will get."""
        return self._next

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.max_s)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self._next = self.initial_s
        self.attempts = 0


class Reconnecting:
    """A live source that reconnects with back-off when its stream is lost.

    ``state`` is 'starting', 'streaming' or 'reconnecting' (the pipeline copies it to stats);
    ``reconnects`` counts the times the stream was lost and came back. The first open() still
    raises, so a wrong URL or a missing device is reported at start-up, not retried forever.
    """

    continuous = True
    live = True

    def __init__(self, inner, backoff: Backoff):
        self.inner = inner
        self.backoff = backoff
        self.name: str = inner.name
        self.state = "starting"
        self.reconnects = 0
        self.losses = 0
        self._retry_at: float | None = None
        self._closed = False

    @property
    def fps(self) -> float | None:
        return getattr(self.inner, "fps", None)

    def open(self) -> None:
        self._closed = False
        self.inner.open()
        self.state = "streaming"

    def read(self) -> tuple[np.ndarray, int] | None:
        if self._closed:
            return None
        if self._retry_at is None:
            try:
                return self.inner.read()
            except StreamLost as exc:
                if self._closed:  # closed under a blocked read: shutting down, not a lost stream
                    return None
                self.losses += 1
                self._schedule(f"stream lost: {exc}")
                return None
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            time.sleep(min(SLICE_S, wait))
            return None
        try:
            self.inner.open()
        except SourceError as exc:
            self._schedule(f"reconnect attempt {self.backoff.attempts} failed: {exc}")
            return None
        if self._closed:  # close() came while open() was connecting: do not leak the new connection
            self.inner.close()
            return None
        self.reconnects += 1
        log.info("%s: reconnected after %d attempt(s)", self.name, self.backoff.attempts)
        self.backoff.reset()
        self._retry_at = None
        self.state = "streaming"
        return None

    def _schedule(self, why: str) -> None:
        self._safe_close()
        delay = self.backoff.next_delay()
        self._retry_at = time.monotonic() + delay
        self.state = "reconnecting"
        log.warning("%s: %s; reconnecting in %.1f s", self.name, why, delay)

    def _safe_close(self) -> None:
        try:
            self.inner.close()
        except Exception as exc:  # a half-dead connection may fail to close; the reconnect still goes on
            log.debug("%s: closing the lost stream failed: %s", self.name, exc)

    def close(self) -> None:
        self._closed = True
        self.inner.close()
