"""The real unit files, checked by systemd itself (verify, security) and against the issue's rules.

``systemd-analyze verify`` insists that every Exec*= binary exists, so the units are verified
unchanged inside a temporary root (``--root=``) that holds systemd's own units, the real unit
files, and stub executables at the paths the units name. Warnings count as failures.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import require_tool

REPO = Path(__file__).resolve().parents[1]
UNITS = {name: REPO / "systemd" / name for name in ("edgepose.service", "edgepose-kiosk.service")}
MAX_EXPOSURE = 4.0


def parse_unit(path: Path) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values in order; systemd allows repeated keys."""
    out: dict[tuple[str, str], list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


def one(unit: dict, section: str, key: str) -> str:
    values = unit.get((section, key), [])
    assert len(values) == 1, f"[{section}] {key}= should be set once, got {values}"
    return values[0]


def _stub(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)


def make_root(tmp_path: Path, units: dict[str, Path], dropins: dict[str, str] | None = None) -> Path:
    """A minimal root for `systemd-analyze --root`: systemd's units, ours, and stubs for Exec*= binaries."""
    root = tmp_path / "root"
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            shutil.copytree(candidate, root / "usr/lib/systemd/system", symlinks=True)
            break
    else:
        pytest.fail("systemd's own units (sysinit.target) not found: apt-get install -y systemd")
    for d in ("bin", "sbin", "lib"):  # merged /usr, as on Debian 12 and Pi OS Bookworm
        (root / "usr" / d).mkdir(parents=True, exist_ok=True)
        (root / d).symlink_to(f"usr/{d}")
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for name, src in units.items():
        shutil.copy(src, etc / name)
        for key, values in parse_unit(src).items():
            if key[1].startswith("Exec"):
                for value in values:
                    binary = value.lstrip("-@:+!").split()[0]
                    _stub(root / binary.lstrip("/"))
    for rel, text in (dropins or {}).items():
        (etc / rel).parent.mkdir(parents=True, exist_ok=True)
        (etc / rel).write_text(text)
    return root


def verify(root: Path, unit: str) -> subprocess.CompletedProcess:
    exe = require_tool("systemd-analyze", "systemd")
    return subprocess.run([exe, "verify", f"--root={root}", unit], capture_output=True, text=True, timeout=60)


def exposure(root: Path, unit: str) -> tuple[float, subprocess.CompletedProcess]:
    """Overall exposure from `systemd-analyze security --offline=yes` (systemd >= 250)."""
    exe = require_tool("systemd-analyze", "systemd")
    helptext = subprocess.run([exe, "--help"], capture_output=True, text=True).stdout
    if "--offline" not in helptext:
        message = "systemd-analyze has no --offline (systemd < 250): install Debian 12's systemd package"
        if os.environ.get("EDGEPOSE_ALLOW_SKIP") == "1":
            pytest.skip(message)
        pytest.fail(message)
    threshold = int(MAX_EXPOSURE * 10)  # --threshold is on the 0..100 scale
    proc = subprocess.run(
        [exe, "security", "--offline=yes", f"--root={root}", f"--threshold={threshold}", "--no-pager", unit],
        capture_output=True, text=True, timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1)), proc


@pytest.mark.parametrize("name", sorted(UNITS))
def test_verify_passes_without_warnings(tmp_path, name):
    proc = verify(make_root(tmp_path, UNITS), name)
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "", proc.stdout + proc.stderr


def test_verify_would_catch_a_bad_directive(tmp_path):
    """Guards the harness: a misspelled key and a bad device right must show up."""
    bad = tmp_path / "edgepose.service"
    text = UNITS["edgepose.service"].read_text()
    bad.write_text(text.replace("WatchdogSec=", "WatchdogSecs=").replace("char-media rw", "char-media rwx"))
    proc = verify(make_root(tmp_path, {"edgepose.service": bad}), "edgepose.service")
    assert "Unknown key" in proc.stderr and "Invalid device rights" in proc.stderr


@pytest.mark.parametrize("name", sorted(UNITS))
def test_security_exposure(tmp_path, name):
    level, proc = exposure(make_root(tmp_path, UNITS), name)
    assert proc.returncode == 0 and level <= MAX_EXPOSURE, proc.stdout[-3000:]


def test_jetson_dropin_verifies_and_stays_under_threshold(tmp_path):
    """The drop-in install-jetson.sh writes (taken from its dry-run) on top of the real unit."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts/install-jetson.sh"), "--dry-run", "--cpu-only"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    text = "".join(line[6:] + "\n" for line in proc.stdout.splitlines() if line.startswith("    | "))
    assert "[Service]" in text and "DevicePolicy=auto" in text
    root = make_root(tmp_path, {"edgepose.service": UNITS["edgepose.service"]}, {"edgepose.service.d/10-jetson.conf": text})
    checked = verify(root, "edgepose.service")
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    level, sec = exposure(root, "edgepose.service")
    assert level <= MAX_EXPOSURE
    assert "Service has no device ACL" in sec.stdout  # the drop-in really lifts the allow-list


# --- the rules, directive by directive -------------------------------------------------


@pytest.fixture(params=sorted(UNITS))
def unit(request):
    return parse_unit(UNITS[request.param])


def test_notify_watchdog_and_restart_policy(unit):
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert re.fullmatch(r"\d+s", one(unit, "Service", "WatchdogSec"))
    assert one(unit, "Service", "Restart") == "on-failure"
    assert "2" in one(unit, "Service", "RestartPreventExitStatus").split()
    assert int(one(unit, "Unit", "StartLimitBurst")) >= 1
    assert one(unit, "Unit", "StartLimitIntervalSec")
    assert one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_paths_user_and_credentials(unit):
    assert one(unit, "Service", "ExecStart").startswith("/opt/edgepose/venv/bin/edgepose run --config /etc/edgepose/")
    assert one(unit, "Service", "User") == "edgepose"
    assert one(unit, "Service", "SupplementaryGroups").split() == ["video", "render"]
    assert one(unit, "Service", "StateDirectory") == "edgepose"
    assert "EDGEPOSE_MODELS=%S/edgepose" in unit[("Service", "Environment")]
    assert one(unit, "Service", "LoadCredential") == "mqtt_password:/etc/edgepose/mqtt_password"


def test_hardening(unit):
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "CapabilityBoundingSet": "",
        "DevicePolicy": "closed",
    }
    for key, value in expected.items():
        assert one(unit, "Service", key) == value, key
    assert set(one(unit, "Service", "RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert ("Service", "PrivateDevices") not in unit  # it would hide the camera


def test_device_allow_lists():
    capture = {"char-video4linux rw", "char-media rw", "char-dma_heap rw"}
    assert set(parse_unit(UNITS["edgepose.service"])[("Service", "DeviceAllow")]) == capture
    assert set(parse_unit(UNITS["edgepose-kiosk.service"])[("Service", "DeviceAllow")]) == capture | {"char-fb rw"}


def test_kiosk_differs_only_where_it_must():
    main, kiosk = (parse_unit(UNITS[n]) for n in ("edgepose.service", "edgepose-kiosk.service"))
    differing = {key for key in main.keys() | kiosk.keys() if main.get(key) != kiosk.get(key)}
    assert differing == {("Unit", "Description"), ("Unit", "Conflicts"), ("Service", "ExecStart"), ("Service", "DeviceAllow")}
    assert one(kiosk, "Unit", "Conflicts") == "edgepose.service"
    assert one(kiosk, "Service", "ExecStart").endswith("--config /etc/edgepose/kiosk.yaml")
