"""sd_notify client against real unix datagram sockets, the watchdog rule, and journald-friendly logging."""

from __future__ import annotations

import io
import logging
import os
import socket
import uuid

import pytest

from edge.errors import ConfigError
from edge.logsetup import setup_logging
from edge.service import Notifier, watchdog_ping_due

S = 1_000_000_000  # ns per second
WD = 30_000_000  # WatchdogSec=30s, as WATCHDOG_USEC


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2.0)
    return sock


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path, monkeypatch):
    """A bound receiver and NOTIFY_SOCKET naming it: a file path, or an '@' abstract name."""
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock, env_value = _receiver(address), address
    else:
        name = f"edgepose-test-{uuid.uuid4().hex}"
        sock, env_value = _receiver(b"\0" + name.encode()), "@" + name
    monkeypatch.setenv("NOTIFY_SOCKET", env_value)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


MESSAGES = [
    (lambda n: n.ready(), b"READY=1"),
    (lambda n: n.ready("running: 12.5 fps"), b"READY=1\nSTATUS=running: 12.5 fps"),
    (lambda n: n.status("12.5 fps, 2 people, 0 drops"), b"STATUS=12.5 fps, 2 people, 0 drops"),
    (lambda n: n.status("camera\nstalled  "), b"STATUS=camera stalled"),  # one datagram line per field
    (lambda n: n.watchdog(), b"WATCHDOG=1"),
    (lambda n: n.stopping(), b"STOPPING=1"),
    (lambda n: n.reloading(123456789), b"RELOADING=1\nMONOTONIC_USEC=123456789"),
    (lambda n: n.extend_timeout(90_000_000), b"EXTEND_TIMEOUT_USEC=90000000"),
]


@pytest.mark.parametrize("send, expected", MESSAGES, ids=[m[1].decode().split("\n")[-1] for m in MESSAGES])
def test_sends_exact_bytes(notify_socket, send, expected):
    notifier = Notifier.from_env()
    assert notifier.enabled
    assert send(notifier) is True
    assert notify_socket.recv(4096) == expected
    notifier.close()


def test_lifecycle_sequence_in_order(notify_socket):
    notifier = Notifier.from_env()
    notifier.ready()
    notifier.status("running")
    notifier.watchdog()
    notifier.stopping()
    got = [notify_socket.recv(4096) for _ in range(4)]
    assert got == [b"READY=1", b"STATUS=running", b"WATCHDOG=1", b"STOPPING=1"]
    notifier.close()


def test_noop_without_notify_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", str(WD))
    notifier = Notifier.from_env()
    assert not notifier.enabled and not notifier.watchdog_enabled
    assert [notifier.ready(), notifier.status("x"), notifier.watchdog(), notifier.stopping()] == [False] * 4


def test_missing_socket_is_logged_not_raised(tmp_path, caplog):
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="edge.service"):
        assert notifier.ready() is False
    assert "sd_notify 'READY' to" in caplog.text


def test_unsupported_address_disables(caplog):
    with caplog.at_level(logging.WARNING, logger="edge.service"):
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": str(WD)})
    assert not notifier.enabled and notifier.watchdog_usec == 0
    assert "notifications disabled" in caplog.text


OWN_PID = 4242


@pytest.mark.parametrize(
    "env, expected_usec",
    [
        ({"WATCHDOG_USEC": str(WD)}, WD),
        ({"WATCHDOG_USEC": str(WD), "WATCHDOG_PID": str(OWN_PID)}, WD),
        ({"WATCHDOG_USEC": str(WD), "WATCHDOG_PID": "1"}, 0),  # meant for another process
        ({"WATCHDOG_USEC": "not-a-number"}, 0),
        ({"WATCHDOG_USEC": "-5"}, 0),
        ({}, 0),
    ],
)
def test_watchdog_env(env, expected_usec):
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "/run/systemd/notify", **env}, pid=OWN_PID)
    assert notifier.watchdog_usec == expected_usec
    assert notifier.watchdog_enabled == (expected_usec > 0)


def test_from_env_reads_os_environ_at_call_time(monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", "@x")
    monkeypatch.setenv("WATCHDOG_USEC", str(WD))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier.from_env().watchdog_usec == WD


# (now, last processed frame, last ping, WATCHDOG_USEC) -> ping due?  All monotonic ns.
PING_CASES = [
    ("watchdog off", 100 * S, 100 * S, None, 0, False),
    ("negative usec", 100 * S, 100 * S, None, -1, False),
    ("no frame yet (still starting)", 100 * S, None, None, WD, False),
    ("fresh frame, first ping", 100 * S, 99 * S, None, WD, True),
    ("fresh frame, pinged 1 s ago", 100 * S, 99 * S, 99 * S, WD, False),
    ("fresh frame, pinged just under a quarter", 100 * S, 99 * S, 100 * S - 7_500_000_000 + 1, WD, False),
    ("fresh frame, pinged a quarter ago", 100 * S, 99 * S, 100 * S - 7_500_000_000, WD, True),
    ("frame just under half the period old", 100 * S, 100 * S - 15 * S + 1, 90 * S, WD, True),
    ("frame exactly half the period old: stalled", 100 * S, 85 * S, 90 * S, WD, False),
    ("camera stalled for a minute", 100 * S, 40 * S, 50 * S, WD, False),
    ("hung inference, never pinged", 100 * S, 10 * S, None, WD, False),
]


@pytest.mark.parametrize("now, last_frame, last_ping, usec, due", [c[1:] for c in PING_CASES], ids=[c[0] for c in PING_CASES])
def test_watchdog_ping_due(now, last_frame, last_ping, usec, due):
    assert watchdog_ping_due(now, last_frame, last_ping, usec) is due


def test_stall_stops_pings_before_the_timeout():
    """Simulated main loop at 10 Hz: frames flow for 60 s, then stop; systemd must time out."""
    last_ping = None
    pings = []
    for tick in range(0, 120 * 10):
        now = tick * S // 10
        last_frame = min(now, 60 * S)  # frames stop at t=60 s
        if watchdog_ping_due(now, last_frame, last_ping, WD):
            last_ping = now
            pings.append(now)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < WD * 1000 / 2  # steady pings well inside WatchdogSec while frames flow
    assert pings[-1] < 60 * S + WD * 1000 // 2  # the last ping comes within half a period of the stall
    assert 120 * S - pings[-1] > WD * 1000  # so systemd's watchdog fires


# --- logging -------------------------------------------------------------------------------------


@pytest.fixture
def root_logger():
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    yield root
    for h in list(root.handlers):
        if h not in saved_handlers:
            root.removeHandler(h)
    root.setLevel(saved_level)


def test_terminal_format_has_short_timestamp(root_logger):
    out = io.StringIO()
    setup_logging("info", stream=out, environ={})
    logging.getLogger("edge.test").info("hello")
    logging.getLogger("edge.test").debug("hidden")
    line = out.getvalue().rstrip("\n")
    assert "hidden" not in line
    time_part, rest = line.split(" ", 1)
    assert len(time_part) == len("12:34:56.789") and time_part[2] == ":" and time_part[8] == "."
    assert rest == "INFO    edge.test: hello"


def test_journal_format_has_priority_and_no_timestamp(root_logger, tmp_path):
    with open(tmp_path / "journal", "w") as out:
        st = os.fstat(out.fileno())
        setup_logging("DEBUG", stream=out, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        log = logging.getLogger("edge.test")
        log.debug("d")
        log.info("i")
        log.warning("w")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("failed")
    lines = (tmp_path / "journal").read_text().splitlines()
    assert lines[:4] == ["<7>edge.test: d", "<6>edge.test: i", "<4>edge.test: w", "<3>edge.test: failed"]
    assert all(line.startswith("<3>") for line in lines[3:])  # the traceback keeps the error priority
    assert lines[-1] == "<3>RuntimeError: boom"


def test_journal_stream_of_another_file_keeps_timestamps(root_logger, tmp_path):
    """JOURNAL_STREAM is inherited: it counts only if it names our stderr (dev:inode)."""
    other = tmp_path / "other"
    other.write_text("")
    st = os.stat(other)
    with open(tmp_path / "mine", "w") as out:
        setup_logging("info", stream=out, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        logging.getLogger("edge.test").info("hello")
    assert not (tmp_path / "mine").read_text().startswith("<")


def test_setup_twice_keeps_one_handler(root_logger):
    setup_logging("info", stream=io.StringIO(), environ={})
    handler = setup_logging("warning", stream=io.StringIO(), environ={})
    ours = [h for h in root_logger.handlers if getattr(h, "_edgepose_handler", False)]
    assert ours == [handler] and root_logger.level == logging.WARNING


def test_bad_level_names_the_fix(root_logger):
    with pytest.raises(ConfigError, match="logging.level: 'loud'.*DEBUG, INFO"):
        setup_logging("loud", stream=io.StringIO(), environ={})
