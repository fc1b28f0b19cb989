"""systemd integration without dependencies: an sd_notify client and the watchdog rule.

Why our own: python-systemd/sdnotify are extra packages for ~60 lines of protocol (one
datagram per message, see sd_notify(3)); nobodd does the same. Everything here is read at
call time (no import-time side effects), never raises on a missing or broken socket (a
notification is advisory) and uses only the monotonic clock.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping

from edge.errors import redact
from edge.stats import drops_text, people_text, rate

log = logging.getLogger(__name__)

__all__ = ["Notifier", "Supervisor", "watchdog_ping_due"]


class Notifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING to $NOTIFY_SOCKET; a no-op when it is unset.

    Meant for the main thread's loop: ``ready()`` once the pipeline runs, ``status(text)`` now
    and then, ``watchdog()`` when ``watchdog_ping_due`` says so, ``stopping()`` on SIGTERM.
    """

    def __init__(self, address: str | None, watchdog_usec: int = 0):
        self._address = _socket_address(address) if address else None
        self.watchdog_usec = watchdog_usec if self._address else 0
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, pid: int | None = None) -> "Notifier":
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID like sd_watchdog_enabled(3)."""
        env = os.environ if environ is None else environ
        usec = _int(env.get("WATCHDOG_USEC"))
        wd_pid = _int(env.get("WATCHDOG_PID"))
        if wd_pid and wd_pid != (os.getpid() if pid is None else pid):
            usec = 0  # the watchdog is meant for another process (e.g. our parent)
        return cls(env.get("NOTIFY_SOCKET") or None, usec)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_enabled(self) -> bool:
        return self.watchdog_usec > 0

    def notify(self, message: str) -> bool:
        """Send one datagram; False (logged, never raised) when it could not be sent."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode("utf-8"), self._address)
            return True
        except OSError as exc:
            log.warning("sd_notify %r to %r failed: %s", message.split("=", 1)[0], self._address, exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def reloading(self, monotonic_usec: int) -> bool:
        """Before re-reading config on SIGHUP; send ``ready()`` when done (Type=notify reload protocol)."""
        return self.notify(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")

    def extend_timeout(self, usec: int) -> bool:
        """Ask for more start/stop time (slow model load or TensorRT engine build)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(usec)}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_ping_due(now_ns: int, last_frame_ns: int | None, last_ping_ns: int | None, watchdog_usec: int) -> bool:
    """True when a WATCHDOG=1 should be sent now.

    Only while frames flow: the last processed frame must be younger than half the watchdog
    period, so a stalled camera or a hung inference stops the pings and systemd restarts us.
    Pings are spaced by a quarter period, well inside the timeout. All times: monotonic ns.
    """
    if watchdog_usec <= 0 or last_frame_ns is None:
        return False
    period_ns = watchdog_usec * 1000
    if now_ns - last_frame_ns >= period_ns // 2:
        return False
    return last_ping_ns is None or now_ns - last_ping_ns >= period_ns // 4


def _socket_address(address: str) -> str | bytes | None:
    if address.startswith("@"):
        return b"\0" + address[1:].encode()  # abstract namespace
    if address.startswith("/"):
        return address
    log.warning("NOTIFY_SOCKET=%r is neither a path nor an @abstract name; notifications disabled", address)
    return None


def _int(value: str | None) -> int:
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        return 0


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class Supervisor:
    """The main thread's loop around a running pipeline: signals, sd_notify, watchdog and reload.

    SIGINT/SIGTERM stop; SIGHUP reloads: the new config is validated and its model loaded while
    the old pipeline keeps running, and only then is the old one swapped out. A config that does
    not validate, or a model that does not load, is logged (masked: it reaches the journal) and the old
    pipeline goes on.
    ``build(reloading)`` returns a validated config; ``make(cfg, old)`` returns an unstarted
    pipeline (reusing ``old``'s model when the model section did not change).
    """

    STATUS_EVERY_S = 5.0

    def __init__(self, build, make, notifier: Notifier | None = None):
        self.build, self.make = build, make
        self.notifier = notifier or Notifier.from_env()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.reloads = 0

    def request_stop(self, *_args) -> None:
        self._stop.set()

    def request_reload(self, *_args) -> None:
        self._reload.set()

    def run(self, pipeline):
        """Start ``pipeline`` and supervise it until it ends or a stop is requested; returns the last pipeline."""
        handlers = {signal.SIGINT: self.request_stop, signal.SIGTERM: self.request_stop}
        if hasattr(signal, "SIGHUP"):
            handlers[signal.SIGHUP] = self.request_reload
        previous = {s: signal.signal(s, h) for s, h in handlers.items()}
        n = self.notifier
        ready, last_ping, last_status = False, None, 0
        try:
            pipeline.start()
            while not self._stop.is_set() and not pipeline.wait(0.1):
                now = time.monotonic_ns()
                stats = pipeline.stats
                if not ready and stats.frames_processed:
                    ready = n.ready(self._status(stats)) or True
                if ready and now - last_status >= self.STATUS_EVERY_S * 1e9:
                    n.status(self._status(stats))
                    last_status = now
                if watchdog_ping_due(now, max(stats.last_processed_ns, stats.last_idle_ns) or None, last_ping, n.watchdog_usec):
                    n.watchdog()
                    last_ping = now
                if self._reload.is_set():
                    self._reload.clear()
                    pipeline = self._reloaded(pipeline)
        finally:
            if self._stop.is_set():
                n.stopping()
            pipeline.stop()
            for s, h in previous.items():
                signal.signal(s, h)
        return pipeline

    def _reloaded(self, old):
        n = self.notifier
        n.reloading(time.monotonic_ns() // 1000)
        try:
            cfg = self.build(True)
            new = self.make(cfg, old)
        except Exception as exc:  # a bad new config never takes the service down
            log.error("reload rejected, the running pipeline continues unchanged: %s", redact(str(exc)))
            n.ready(self._status(old.stats))
            return old
        old.stop()
        try:
            new.start()
        except Exception as exc:
            log.error("reloaded pipeline failed to start (%s); restarting the previous configuration", redact(str(exc)))
            new = self.make(old.cfg, old)
            new.start()
        self.reloads += 1
        log.info("configuration reloaded")
        n.ready(self._status(new.stats))
        return new

    @staticmethod
    def _status(stats) -> str:
        snap = stats.snapshot()
        return f"{rate(snap) or '- fps'}, {people_text(snap['people'])}, {drops_text(snap)}"
