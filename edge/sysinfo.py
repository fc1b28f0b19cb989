"""What the machine says while a benchmark runs: process CPU % and RSS, SoC temperature, Pi
throttling, Jetson tegrastats, and a one-time description of the machine.

Every reading is a value or None with a reason, so a report says *why* a field is empty (an x86
server has no SoC thermal zone) instead of leaving it out. No threads: the caller samples.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np

THERMAL_ROOT = Path("/sys/class/thermal")
PI_THROTTLED_SYSFS = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
# Zone types that hold the SoC/CPU temperature on a Pi (cpu-thermal), Jetson (CPU-therm, cpu-thermal),
# Rockchip/Allwinner (soc-thermal) and Intel (x86_pkg_temp).
_PREFERRED_ZONES = ("cpu-thermal", "cpu_thermal", "cpu-therm", "soc-thermal", "soc_thermal", "x86_pkg_temp")

# vcgencmd get_throttled bits (Raspberry Pi firmware documentation).
THROTTLE_BITS = {
    0: "under_voltage", 1: "arm_freq_capped", 2: "throttled", 3: "soft_temp_limit",
    16: "under_voltage_occurred", 17: "arm_freq_capped_occurred", 18: "throttled_occurred",
    19: "soft_temp_limit_occurred",
}


@dataclass(frozen=True)
class Reading:
    """A value, or None and the reason it could not be read."""

    value: Any
    reason: str | None = None


def read_soc_temp(root: Path = THERMAL_ROOT) -> Reading:
    """SoC temperature in °C from the preferred /sys/class/thermal zone (else the first one)."""
    zones = sorted(root.glob("thermal_zone*")) if root.is_dir() else []
    if not zones:
        return Reading(None, f"no thermal zone under {root} (a VM or a machine without SoC sensors)")
    typed = []
    for z in zones:
        try:
            typed.append((z, (z / "type").read_text().strip().lower()))
        except OSError:
            continue
    ranked = sorted(typed, key=lambda zt: _PREFERRED_ZONES.index(zt[1]) if zt[1] in _PREFERRED_ZONES else 99)
    for zone, kind in ranked:
        try:
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        return Reading(round(milli / 1000.0, 1))
    return Reading(None, f"thermal zones under {root} exist but none can be read")


def decode_throttled(mask: int) -> dict:
    """``get_throttled`` bit mask -> {'raw': '0x50005', 'flags': [...names...]}."""
    return {"raw": hex(mask), "flags": [name for bit, name in THROTTLE_BITS.items() if mask & (1 << bit)]}


def parse_throttled(text: str) -> int | None:
    """'throttled=0x50005' (vcgencmd) or '50005' (sysfs, hex) -> int; None when unparsable."""
    m = re.search(r"(?:throttled=)?(0x[0-9a-fA-F]+|[0-9a-fA-F]+)\s*$", text.strip())
    return int(m.group(1), 16) if m else None


def read_throttled(sysfs: Path = PI_THROTTLED_SYSFS, run: Callable[..., Any] = subprocess.run) -> Reading:
    """Raspberry Pi throttling flags from sysfs, else ``vcgencmd get_throttled``."""
    try:
        mask = parse_throttled(sysfs.read_text())
        if mask is not None:
            return Reading(decode_throttled(mask))
    except OSError:
        pass
    if shutil.which("vcgencmd") is None:
        return Reading(None, f"not a Raspberry Pi: neither {sysfs} nor vcgencmd is present")
    try:
        out = run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2.0)
    except (OSError, subprocess.SubprocessError) as exc:
        return Reading(None, f"vcgencmd get_throttled failed: {exc}")
    mask = parse_throttled(out.stdout or "")
    if mask is None:
        return Reading(None, f"vcgencmd get_throttled printed {out.stdout.strip()!r} ({out.stderr.strip()})")
    return Reading(decode_throttled(mask))


class ProcessMeter:
    """CPU % of this process (all threads; 100 = one core) between calls, and its resident memory."""

    def __init__(self) -> None:
        self._last = self._now()

    @staticmethod
    def _now() -> tuple[float, int]:
        t = os.times()
        return t.user + t.system, time.monotonic_ns()

    def cpu_percent(self) -> float:
        cpu, ns = self._now()
        last_cpu, last_ns = self._last
        self._last = (cpu, ns)
        span = (ns - last_ns) / 1e9
        return round(100.0 * (cpu - last_cpu) / span, 1) if span > 0 else 0.0

    @staticmethod
    def rss_mb(status: Path = Path("/proc/self/status")) -> Reading:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return Reading(round(int(line.split()[1]) / 1024.0, 1))
        except (OSError, ValueError, IndexError):
            pass
        return Reading(None, f"{status} has no VmRSS line (not Linux?)")


_TEGRA_RAM = re.compile(r"RAM (\d+)/(\d+)MB")
_TEGRA_CPU = re.compile(r"CPU \[([^\]]*)\]")
_TEGRA_GPU = re.compile(r"GR3D_FREQ (\d+)%")
_TEGRA_TEMP = re.compile(r"([A-Za-z0-9_]+)@(-?[\d.]+)C")
_TEGRA_POWER = re.compile(r"(VDD_[A-Z0-9_]+|POM_5V_[A-Z]+) (\d+)mW")


def parse_tegrastats(line: str) -> dict:
    """One tegrastats line -> RAM, per-core CPU load, GPU load, temperatures and power rails."""
    out: dict[str, Any] = {}
    if m := _TEGRA_RAM.search(line):
        out["ram_used_mb"], out["ram_total_mb"] = int(m.group(1)), int(m.group(2))
    if m := _TEGRA_CPU.search(line):
        loads = [re.match(r"(\d+)%", c) for c in m.group(1).split(",")]
        out["cpu_percent"] = [int(x.group(1)) if x else None for x in loads]  # None = core offline
    if m := _TEGRA_GPU.search(line):
        out["gpu_percent"] = int(m.group(1))
    temps = {k.lower(): float(v) for k, v in _TEGRA_TEMP.findall(line)}
    if temps:
        out["temp_c"] = temps
    power = {k: int(v) for k, v in _TEGRA_POWER.findall(line)}
    if power:
        out["power_mw"] = power
    return out


class Tegrastats:
    """Runs ``tegrastats`` (Jetson) as a child process and returns its newest line on each poll."""

    def __init__(self, interval_ms: int = 1000):
        self.reason: str | None = None
        self._proc: subprocess.Popen | None = None
        self._buf = b""
        self._last: dict | None = None
        exe = shutil.which("tegrastats")
        if exe is None:
            self.reason = "tegrastats is not installed (not a Jetson)"
            return
        try:
            self._proc = subprocess.Popen([exe, "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
            os.set_blocking(self._proc.stdout.fileno(), False)  # type: ignore[union-attr]
        except OSError as exc:
            self.reason = f"tegrastats could not start: {exc}"
            self._proc = None

    def poll(self) -> Reading:
        if self._proc is None or self._proc.stdout is None:
            return Reading(None, self.reason or "tegrastats is not running")
        try:
            chunk = self._proc.stdout.read()
        except OSError:
            chunk = None
        if chunk:
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            for line in reversed(lines):
                if line.strip():
                    self._last = parse_tegrastats(line.decode("utf-8", "replace"))
                    break
        if self._last is None:
            return Reading(None, "tegrastats has printed nothing yet")
        return Reading(self._last)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None


class SystemSampler:
    """One call per interval from the benchmark's main thread: a flat dict of readings.

    Fields that cannot be read are None; ``unavailable`` maps each such field to its reason.
    """

    def __init__(self, tegrastats: bool = True):
        self._proc = ProcessMeter()
        self._tegra = Tegrastats() if tegrastats else None
        self.unavailable: dict[str, str] = {}
        if self._tegra is None:
            self.unavailable["tegrastats"] = "disabled"

    def sample(self) -> dict:
        rss = ProcessMeter.rss_mb()
        temp = read_soc_temp()
        thr = read_throttled()
        tegra = self._tegra.poll() if self._tegra is not None else Reading(None, "disabled")
        row = {
            "cpu_percent": self._proc.cpu_percent(), "rss_mb": rss.value, "soc_temp_c": temp.value,
            "throttled": thr.value, "tegrastats": tegra.value,
        }
        for name, r in (("rss_mb", rss), ("soc_temp_c", temp), ("throttled", thr), ("tegrastats", tegra)):
            if r.value is None and r.reason:
                self.unavailable[name] = r.reason
            elif r.value is not None:
                self.unavailable.pop(name, None)
        return row

    def close(self) -> None:
        if self._tegra is not None:
            self._tegra.close()


def summarize_samples(samples: list[dict], unavailable: dict[str, str]) -> dict:
    """Mean/max CPU and RSS, min/max/last temperature, every throttle flag seen, the last tegrastats."""
    def series(key):
        return [s[key] for s in samples if s.get(key) is not None]

    cpu, rss, temp = series("cpu_percent"), series("rss_mb"), series("soc_temp_c")
    throttles = [s["throttled"] for s in samples if s.get("throttled")]
    tegra = [s["tegrastats"] for s in samples if s.get("tegrastats")]
    return {
        "cpu_percent": {"mean": round(float(np.mean(cpu)), 1), "max": round(float(max(cpu)), 1)} if cpu else None,
        "rss_mb": {"mean": round(float(np.mean(rss)), 1), "max": round(float(max(rss)), 1)} if rss else None,
        "soc_temp_c": {"min": min(temp), "max": max(temp), "last": temp[-1]} if temp else None,
        "throttled": {"last": throttles[-1], "flags_seen": sorted({f for t in throttles for f in t["flags"]})}
        if throttles else None,
        "tegrastats": tegra[-1] if tegra else None,
        "unavailable": dict(unavailable),
    }


def _first_line(path: str, prefix: str) -> str | None:
    try:
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.lower().startswith(prefix.lower()):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """Which machine produced the figures: board/CPU, cores, OS, Python and runtime versions."""
    board = None
    try:
        board = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00 \n") or None
    except OSError:
        pass
    os_name = None
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "board": board,
        "cpu": _first_line("/proc/cpuinfo", "model name") or _first_line("/proc/cpuinfo", "Model") or platform.processor(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "os": os_name or platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in (
            "numpy", "opencv-python-headless", "ai-edge-litert", "tflite-runtime", "onnxruntime", "onnxruntime-gpu",
        ) if _version(name)},
    }
