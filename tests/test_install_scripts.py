"""The installers: shellcheck-clean, and their --dry-run plans (run here: not a Pi, root or not).

A real install is never run by these tests: without --dry-run the scripts change the
system. The one real invocation is as an unprivileged user, where they must stop at once.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import require_tool

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
PI, JETSON = SCRIPTS / "install-pi.sh", SCRIPTS / "install-jetson.sh"
INSTALLED = ["/opt/edgepose", "/etc/edgepose", "/etc/systemd/system/edgepose.service", "/var/lib/edgepose"]


def run(script: Path, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
    cmd = ["bash", str(script), *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def state() -> list[bool]:
    return [os.path.lexists(p) for p in INSTALLED] + [user_exists("edgepose")]


@pytest.fixture(scope="module")
def readable_copy():
    """The checkout's install files in a world-readable temp dir, for runs as user nobody."""
    top = Path(tempfile.mkdtemp(prefix="edgepose-install-"))
    dest = top / "edgepose"
    for rel in ("scripts", "systemd", "docs/INSTALL.md", "config.yaml"):
        src = REPO / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest / rel)
    for path in [top, *top.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or path.suffix == ".sh" else 0o644)
    yield dest
    shutil.rmtree(top)


def test_shellcheck_clean():
    exe = require_tool("shellcheck", "shellcheck")
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.sh")) + [str(SCRIPTS.parent / ".ci" / "run")]
    assert len(scripts) >= 4
    proc = subprocess.run([exe, "--external-sources", *scripts], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", [PI, JETSON], ids=["pi", "jetson"])
def test_bash_syntax(script):
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def _assert_common_plan(out: str, extras: str) -> None:
    assert "+ /usr/bin/python3 -m venv --system-site-packages /opt/edgepose/venv" in out
    if user_exists("edgepose"):
        assert "+ usermod --append --groups video,render edgepose" in out
    else:
        assert "+ useradd --system --user-group --home-dir /var/lib/edgepose" in out
        assert "--shell /usr/sbin/nologin --groups video,render edgepose" in out
    pip_line = next(line for line in out.splitlines() if f"-m pip install --disable-pip-version-check '{REPO}[{extras}]'" in line)
    np = subprocess.run(["/usr/bin/python3", "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True)
    if np.returncode == 0:  # the venv keeps the OS's numpy (apt's compiled modules need its ABI)
        assert pip_line.endswith(f" numpy=={np.stdout.strip()}")
    else:
        assert "no numpy in /usr/bin/python3 yet" in out
    assert "+ install -d -m 0750 -o root -g edgepose /etc/edgepose" in out
    if not os.path.exists("/etc/edgepose/config.yaml"):
        assert "/config.yaml /etc/edgepose/config.yaml" in out
    assert f"+ install -m 0644 -o root -g root {REPO}/systemd/edgepose.service /etc/systemd/system/edgepose.service" in out
    assert "+ systemctl daemon-reload" in out
    assert out.index("+ systemctl daemon-reload") < out.index("+ systemctl enable --now ")


def test_pi_dry_run_plan():
    before = state()
    proc = run(PI, "--dry-run", "--with-mosquitto")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    _assert_common_plan(out, "tflite,mqtt")
    for pkg in ("python3-picamera2", "python3-venv", "mosquitto"):
        installed = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if "ok installed" not in installed.stdout:
            assert pkg in out.split("apt-get install -y --no-install-recommends", 1)[1].splitlines()[0]
    assert "/etc/systemd/system/edgepose-kiosk.service" in out
    assert out.rstrip().splitlines()[-2] == "+ systemctl enable --now edgepose.service"
    assert state() == before, "a dry run changed the system"


def test_pi_kiosk_dry_run_enables_kiosk_unit():
    proc = run(PI, "--dry-run", "--kiosk")
    assert proc.returncode == 0, proc.stderr
    assert "+ systemctl enable --now edgepose-kiosk.service" in proc.stdout
    assert "+ systemctl enable --now edgepose.service" not in proc.stdout
    assert "/etc/edgepose/kiosk.yaml" in proc.stdout


def test_jetson_dry_run_plan():
    before = state()
    proc = run(JETSON, "--dry-run", "--ort-wheel", "/tmp/onnxruntime_gpu-1.20.0-cp310-cp310-linux_aarch64.whl")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    _assert_common_plan(out, "onnx,mqtt")
    assert "picamera2" not in out and "edgepose-kiosk" not in out
    plan = out.splitlines()
    i_extras = next(i for i, l in enumerate(plan) if "[onnx,mqtt]" in l)
    i_remove = plan.index("+ /opt/edgepose/venv/bin/python -m pip uninstall --yes onnxruntime onnxruntime-gpu")
    i_wheel = next(i for i, l in enumerate(plan) if l.endswith("onnxruntime_gpu-1.20.0-cp310-cp310-linux_aarch64.whl"))
    assert i_extras < i_remove < i_wheel  # the GPU wheel replaces the PyPI CPU one, not the reverse
    assert "TensorrtExecutionProvider" in out and "CUDAExecutionProvider" in out
    assert "+ write /etc/systemd/system/edgepose.service.d/10-jetson.conf" in out
    assert state() == before, "a dry run changed the system"


def test_jetson_dry_run_without_wheel_warns_that_it_is_required():
    proc = run(JETSON, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "no --ort-wheel given: a real run stops here" in proc.stderr
    assert "NVIDIA" in run(JETSON, "--help").stdout


@pytest.mark.parametrize("script", [PI, JETSON], ids=["pi", "jetson"])
def test_uninstall_dry_run_keeps_config_unless_purge(script):
    keep = run(script, "--dry-run", "--uninstall")
    assert keep.returncode == 0, keep.stderr
    assert "+ rm -rf /opt/edgepose" in keep.stdout
    assert "+ rm -f /etc/systemd/system/edgepose.service" in keep.stdout
    assert "kept /etc/edgepose" in keep.stdout and "rm -rf /etc/edgepose" not in keep.stdout
    purge = run(script, "--dry-run", "--uninstall", "--purge")
    assert purge.returncode == 0, purge.stderr
    assert "+ rm -rf /etc/edgepose /var/lib/edgepose" in purge.stdout


@pytest.mark.parametrize(
    "args, code, message",
    [(["--purge"], 2, "--purge only goes with --uninstall"), (["--bogus"], 2, "unknown option --bogus")],
)
def test_bad_options(args, code, message):
    proc = run(PI, "--dry-run", *args)
    assert proc.returncode == code and message in proc.stderr


@pytest.mark.parametrize("script", [PI, JETSON], ids=["pi", "jetson"])
def test_as_unprivileged_user(readable_copy, script):
    """Dry run works without root; a real run without root stops before touching anything."""
    copy = readable_copy / "scripts" / script.name
    user = None
    if os.geteuid() == 0:
        require_tool("setpriv", "util-linux")
        user = "nobody"
    dry = run(copy, "--dry-run", *(["--cpu-only"] if script == JETSON else []), user=user)
    assert dry.returncode == 0, dry.stderr
    assert "+ systemctl enable --now edgepose.service" in dry.stdout
    real = run(copy, *(["--cpu-only"] if script == JETSON else []), user=user)
    assert real.returncode == 1 and "run as root" in real.stderr
    assert real.stdout == ""
