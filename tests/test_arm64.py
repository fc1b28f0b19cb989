"""scripts/test-arm64.sh, which proves edgepose in an emulated arm64 Pi OS root, catches what a Pi would.

.ci/run runs the whole script; here it is shown to fail clearly on a dependency that has no aarch64
build: a wheel tagged for x86_64 only, like a package that publishes no aarch64 wheel.
"""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, SHARED, need


def x86_only_wheel(folder: Path) -> Path:
    """A real, installable wheel (on x86_64) whose only platform tag is manylinux x86_64."""
    wheel = folder / "x86only-1.0-py3-none-manylinux_2_17_x86_64.whl"
    files = {
        "x86only/__init__.py": "",
        "x86only-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: x86only\nVersion: 1.0\n",
        "x86only-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: edgepose-test\nRoot-Is-Purelib: false\n"
                                       "Tag: py3-none-manylinux_2_17_x86_64\n",
    }
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr("x86only-1.0.dist-info/RECORD", "".join(f"{n},,\n" for n in files) + "x86only-1.0.dist-info/RECORD,,\n")
    return wheel


@pytest.mark.slow  # builds the arm64 root the first time (~4 min), then installs the venv emulated (~1-2 min)
def test_a_dependency_without_an_aarch64_wheel_fails_with_a_clear_message(tmp_path):
    need(os.geteuid() == 0, "root (debootstrap, chroot and binfmt_misc need it)")
    need(SHARED.is_dir(), f"{SHARED} (the shared models and data)")
    venv = Path(os.environ.get("EDGEPOSE_VENV", ROOT / ".venv"))
    need((venv / "bin" / "edgepose").is_file(), f"the test venv {venv} (scripts/test.sh makes it)")
    wheel = x86_only_wheel(tmp_path)
    env = {**os.environ, "ARM64_EXTRA_REQUIREMENT": str(wheel), "EDGEPOSE_VENV": str(venv)}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "test-arm64.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "platform: aarch64" in proc.stdout  # it did run inside the emulated root
    err = proc.stderr
    assert "pip cannot install edgepose's dependencies on aarch64" in err, err[-3000:]
    assert f"{wheel.name} is not a supported wheel on this platform" in err
    assert "must publish an aarch64 (manylinux_*_aarch64) wheel" in err
    assert "Traceback" not in err
    assert "the README's first command" not in proc.stdout  # it stopped at the install
