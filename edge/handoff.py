"""The hand-offs between the pipeline's threads: a one-frame slot, and the in-order gate after the model workers.

No thread lives here (edge/pipeline.py starts them all); these are the places where they meet, each
with a timeout on every wait so that one stop event ends everything.
"""

from __future__ import annotations

import threading

from edge.capture.base import EndOfStream
from edge.stats import Stats

POLL_S = 0.05  # the longest any thread blocks before re-checking the stop event


class FrameSlot:
    """Holds one item (a frame on its way through). ``put`` either replaces an unread one (counted) or waits.

    ``get`` stamps each item it hands out with a ticket (0, 1, 2, ...): the order in which the model
    workers took their frames, which InOrder restores after them.
    """

    def __init__(self, stats: Stats, stop: threading.Event):
        self._cond = threading.Condition()
        self._frame = None
        self._closed = False
        self._stats = stats
        self._stop = stop
        self._tickets = 0

    def put(self, frame, wait_for_reader: bool) -> None:
        with self._cond:
            if wait_for_reader:
                while self._frame is not None and not self._stop.is_set():
                    self._cond.wait(POLL_S)
            elif self._frame is not None:
                self._stats.drop("capture")
            self._frame = frame
            self._cond.notify_all()

    def wait_empty(self) -> None:
        """Block until the reader has taken the held frame (or stop)."""
        with self._cond:
            while self._frame is not None and not self._stop.is_set():
                self._cond.wait(POLL_S)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self):
        """The newest frame, or None after POLL_S; raises EndOfStream once closed and drained."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(POLL_S)
            frame, self._frame = self._frame, None
            if frame is None and self._closed:
                raise EndOfStream("source finished")
            if frame is not None:
                if hasattr(frame, "ticket"):
                    frame.ticket = self._tickets
                    self._tickets += 1
                # only when the slot was emptied (a waiting writer may go on): a notify on every empty
                # poll would wake the other model workers, whose empty polls wake this one, and so on (a spin)
                self._cond.notify_all()
            return frame


class InOrder:
    """Results of several model workers, handed on in the order their frames were taken (by ticket).

    A worker that finished early waits while it is ``window`` tickets or more ahead of the next one
    due, so that at most ``window`` results are held; the worker holding the due ticket never waits,
    so this cannot deadlock. With one worker it is a lossless one-item hand-off.
    """

    def __init__(self, workers: int, stop: threading.Event, window: int | None = None):
        self._cond = threading.Condition()
        self._held: dict[int, object] = {}
        self._next = 0
        self._open = workers
        self._window = window or max(1, workers)
        self._stop = stop

    def put(self, ticket: int, item) -> None:
        with self._cond:
            while ticket - self._next >= self._window and not self._stop.is_set():
                self._cond.wait(POLL_S)
            self._held[ticket] = item
            self._cond.notify_all()

    def close(self) -> None:
        """One worker has finished (each calls this once)."""
        with self._cond:
            self._open -= 1
            self._cond.notify_all()

    def get(self):
        """The next result in order, or None after POLL_S; EndOfStream once every worker closed and all are out."""
        with self._cond:
            if self._next not in self._held and self._open > 0:
                self._cond.wait(POLL_S)
            item = self._held.pop(self._next, None)
            if item is not None:
                self._next += 1
                self._cond.notify_all()
                return item
            if self._open <= 0:
                if self._held:  # a worker died holding a ticket: go on with the next result we have
                    self._next = min(self._held)
                    return self._pop_next()
                raise EndOfStream("model workers finished")
            return None

    def _pop_next(self):
        item = self._held.pop(self._next)
        self._next += 1
        self._cond.notify_all()
        return item
