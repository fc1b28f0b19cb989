"""benchmarks/soak.py: its leak detector on known slopes, its sampler on a process that leaks on purpose,
and a short end-to-end soak of the real `edgepose run` under client churn (mosquitto + live view).
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, require_tool

SOAK_PATH = ROOT / "benchmarks" / "soak.py"


def _load_soak():
    spec = importlib.util.spec_from_file_location("soak", SOAK_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


soak = _load_soak()

HOUR = 3600.0


def series(rss, n=174, span_s=1740.0, seed=0, fds=None, threads=None):
    """Samples like the soak's: ``rss(t_h, rng)`` in MB; fds/threads callables of (i, rng) or constants."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t_s = i * span_s / (n - 1)
        out.append({"t_s": t_s, "rss_mb": rss(t_s / HOUR, rng),
                    "fds": fds(i, rng) if callable(fds) else (fds or 12),
                    "threads": threads(i, rng) if callable(threads) else (threads or 15),
                    "fps": 30 + rng.gauss(0, 1)})
    return out


def test_linfit_recovers_a_known_slope_and_its_noise():
    rng = random.Random(3)
    t = [i / 100 for i in range(200)]  # 2 hours
    y = [50 + 7.0 * x + rng.gauss(0, 0.5) for x in t]
    f = soak.linfit(t, y)
    assert f["slope_per_h"] == pytest.approx(7.0, abs=0.2)
    assert f["resid_std"] == pytest.approx(0.5, rel=0.2)
    assert f["lower"] < 7.0 < f["upper"]
    assert f["r1"] < 0.3  # white noise: no widening to speak of


def test_t_quantile_matches_tables():
    # Student's t, one-sided 99%: 31.82 (1), 6.965 (2), 4.541 (3), 2.998 (7), 2.457 (30); normal 2.326
    for df, want in ((1, 31.82), (2, 6.965), (3, 4.541), (7, 2.998), (30, 2.457), (1e6, 2.326)):
        assert soak.t_quantile(0.99, df) == pytest.approx(want, rel=0.08 if df == 3 else 0.02)


@pytest.mark.parametrize("name, rss, leak", [
    ("flat, 1 MB noise", lambda t, r: 120 + r.gauss(0, 1), False),
    ("flat, 2 MB noise", lambda t, r: 120 + r.gauss(0, 2), False),
    ("20 MB/h leak", lambda t, r: 120 + 20 * t + r.gauss(0, 1), True),
    ("12 MB/h leak, 2 MB noise", lambda t, r: 120 + 12 * t + r.gauss(0, 2), True),
    ("20 MB/h in 1 MB steps", lambda t, r: 120 + int(20 * t) + r.gauss(0, 0.3), True),
    ("5 MB/h: below the limit", lambda t, r: 120 + 5 * t + r.gauss(0, 1), False),
    ("one 5 MB step early on", lambda t, r: 120 + (5 if t > 0.1 else 0) + r.gauss(0, 0.5), False),
    ("settling allocator (+8 MB, 6 min time constant)", lambda t, r: 128 - 8 * 2.718 ** (-t / 0.1) + r.gauss(0, 0.5),
     False),
])
def test_rss_verdict_on_30_minute_synthetic_runs(name, rss, leak):
    for seed in range(5):
        v = soak.judge(series(rss, seed=seed))
        assert v["rss_mb"]["leak"] is leak, (name, seed, v["rss_mb"])
        assert ("rss_mb" in v["leaks"]) is leak


def test_a_short_run_cannot_call_noise_a_leak():
    # 4 minutes of 1 MB noise extrapolate to large slopes per hour: significance and the 2 MB floor hold
    for seed in range(10):
        v = soak.judge(series(lambda t, r: 120 + r.gauss(0, 1), n=48, span_s=240, seed=seed))
        assert not v["rss_mb"]["leak"], v["rss_mb"]


def test_fd_and_thread_counts_must_not_grow_but_may_flicker():
    # transient connections: +0..3 at random samples; the window minimum ignores them
    flicker = series(lambda t, r: 120 + r.gauss(0, 1), fds=lambda i, r: 12 + r.choice((0, 0, 1, 2, 3)),
                     threads=lambda i, r: 15 + r.choice((0, 0, 1, 2)))
    v = soak.judge(flicker)
    assert v["ok"] and v["fds"]["window_growth"] == 0 and v["threads"]["window_growth"] == 0
    # one fd every 30 samples (5 min: 12 fds/h) and a thread every 40: a leak
    leaking = series(lambda t, r: 120 + r.gauss(0, 1), fds=lambda i, r: 12 + i // 30, threads=lambda i, r: 15 + i // 40)
    v = soak.judge(leaking)
    assert v["fds"]["leak"] and v["threads"]["leak"] and not v["rss_mb"]["leak"]
    assert v["leaks"] == ["fds", "threads"]
    assert v["fds"]["slope_per_h"] == pytest.approx(12, rel=0.15)


def test_warmup_samples_are_left_out():
    s = series(lambda t, r: 120 + r.gauss(0, 0.5))
    for x in s[:40]:
        x["warmup"] = True
        x["rss_mb"] += 50  # the start-up growth the warm-up is for
        x["fds"] -= 5
    v = soak.judge(s)
    assert v["samples"] == len(s) - 40 and v["ok"]


LEAKER = textwrap.dedent("""
    import os, sys, threading, time
    leak = sys.argv[1] == "leak"
    keep, fds = [], []
    print("ready", flush=True)
    while True:
        time.sleep(0.1)
        if leak:
            keep.append(bytearray(os.urandom(1)) * (1 << 20))  # 1 MB, touched
            fds.append(os.open(os.devnull, os.O_RDONLY))
            if len(fds) % 4 == 0:
                threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()
""")


@pytest.mark.parametrize("mode", ["leak", "steady"])
def test_the_sampler_finds_a_real_process_that_leaks(mode):
    proc = subprocess.Popen([sys.executable, "-c", LEAKER, mode], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        samples, t0 = [], time.monotonic()
        for _ in range(16):
            samples.append({"t_s": time.monotonic() - t0, **soak.proc_sample(proc.pid)})
            time.sleep(0.25)
    finally:
        proc.kill()
        proc.wait(10)
    v = soak.judge(samples)
    if mode == "leak":  # 10 MB, 10 fds and 2.5 threads a second
        assert v["leaks"] == ["rss_mb", "fds", "threads"], v
        assert v["rss_mb"]["slope_per_h"] == pytest.approx(10 * HOUR, rel=0.3)
        assert v["fds"]["window_growth"] >= 20
    else:
        assert v["ok"], v
        assert v["fds"]["window_growth"] == 0 and v["threads"]["window_growth"] == 0
    with pytest.raises(OSError):
        soak.proc_sample(proc.pid)  # gone: the soak reads that as "edgepose exited"


def test_metrics_parser_reads_labels():
    text = ('# HELP edgepose_fps x\nedgepose_fps 29.5\nedgepose_web_clients{endpoint="stream"} 2\n'
            'edgepose_dropped_total{stage="capture"} 7\n')
    m = soak.parse_metrics(text)
    assert m == {"edgepose_fps": 29.5, 'edgepose_web_clients{endpoint="stream"}': 2.0,
                 'edgepose_dropped_total{stage="capture"}': 7.0}


def _soak_cmd(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SOAK_PATH), "--quiet", "--json", str(tmp_path / "soak.json"), *extra]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.slow
def test_soak_end_to_end_with_client_churn(tmp_path, walk_clip, shipped_movenet):
    require_tool("mosquitto", "mosquitto")
    cmd = _soak_cmd(tmp_path, "--duration", "42", "--warmup", "8", "--interval", "2", "--source", str(walk_clip))
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    out = run.stdout + run.stderr
    r = json.loads((tmp_path / "soak.json").read_text())
    v, c = r["verdict"], r["clients"]

    # it ran end to end and sampled the real process
    assert not r.get("died"), out
    assert v["samples"] >= 12, out
    assert all(not x["warmup"] for x in r["samples"][-v["samples"]:])
    assert all(x["fps"] and x["fps"] > 1 for x in r["samples"][1:]), out  # frames kept flowing
    # fds and threads must not grow under the churn (the RSS slope of a 34 s window is too noisy to assert)
    assert not v["fds"]["leak"] and not v["threads"]["leak"], out
    assert set(v["leaks"]) <= {"rss_mb"} and run.returncode == (1 if v["leaks"] else 0), out
    assert "| RSS MB |" in run.stdout and ("PASS" in run.stdout or "FAIL" in run.stdout)

    # clients really connected and vanished, every way
    assert c["mqtt_connected"] >= 10 and c["mqtt_messages"] >= 100, c
    for how in ("close", "rst", "disconnect"):
        assert c[f"mqtt_vanished_{how}"] >= 1, c
    assert c["steady_poses"] >= 100, c
    for mode in ("polite", "rst", "half_close", "events", "connect_only", "stall", "slow_request"):
        assert c[f"web_{mode}"] >= 1, c
    assert c["web_frames"] >= 50 and c.get("web_status_503", 0) == 0, c
    assert c["poll_healthz_200"] >= 10 and c["poll_metrics_200"] >= 10, c
    assert not any(k.startswith("poll_healthz_5") for k in c), c
    # the server timed the staller out (client_timeout_s 10 s < its 13 s stall)
    assert r["samples"][-1]["web_clients_dropped"] >= 1, r["samples"][-1]

    # and everything was stopped
    assert r["edgepose"]["returncode"] == 0 and not r["edgepose"]["killed"], r["edgepose"]
    assert all(_gone(pid) for pid in r["pids"].values())
    assert "Traceback" not in r["edgepose"]["log"]["levels"], r["edgepose"]["log_tail"]


@pytest.mark.slow
def test_ctrl_c_stops_every_process(tmp_path, walk_clip, shipped_movenet):
    require_tool("mosquitto", "mosquitto")
    cmd = _soak_cmd(tmp_path, "--duration", "10m", "--warmup", "2", "--interval", "1", "--source", str(walk_clip))
    cmd.remove("--quiet")  # a line per sample: interrupt once the run is under way
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        first = proc.stdout.readline()
        assert first.startswith("soak: edgepose pid"), first
        pids = [int(x) for x in re.findall(r"\b(?:edgepose|mosquitto) pid (\d+)", first)]
        for line in proc.stdout:  # the first sample (or the end, if it died)
            if "RSS" in line:
                break
        time.sleep(2)  # clients running, a few samples taken
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest
    r = json.loads((tmp_path / "soak.json").read_text())
    assert r["interrupted"] == "SIGINT" and r["pids"] == {"edgepose": pids[0], "mosquitto": pids[1]}
    assert r["edgepose"]["returncode"] == 0, r["edgepose"]
    assert all(_gone(pid) for pid in pids)
    assert r["clients"].get("mqtt_connected", 0) >= 1
