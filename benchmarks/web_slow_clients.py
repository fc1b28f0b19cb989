"""Do live-view clients that connect and never read slow the pipeline down? (issue 6: by no more than 5%)

The pipeline runs a real model on a real clip as fast as it can (``realtime: false``), so its FPS
is CPU-bound and any cost the web output adds shows. Variants, with the web output in every one:

  idle          nobody connected
  stuck         10 clients request /stream.mjpg (annotated, the costliest) and never read
  viewer        one client reads /stream.mjpg at full speed
  viewer+stuck  the same reader plus the 10 stuck clients

The stuck clients are kept for the whole run (client_timeout_s is raised to 600 s here; by
default the server drops them after 10 s, which only helps; max_clients_per_address is raised to
16, as they all come from 127.0.0.1). The machine is shared and noisy, so
each variant runs right next to its baseline (order alternating) and the ratio is the median of
those pairs. Two less noisy figures back it up: the process's CPU time per frame (a CPU-bound
pipeline's FPS scales with its inverse) and the CPU time the live view's own threads used.

    python3 benchmarks/web_slow_clients.py --repeats 8 --seconds 6 --json web_slow_clients.json

``--idle N`` measures something else: can a monitor still reach /healthz and /metrics while N TCP
connections sit open and send nothing? It holds them, polls both endpoints, and reports each
poll's latency (failures count at their timeout), the answers, and the process's thread count:

    python3 benchmarks/web_slow_clients.py --idle 64 --polls 40
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.config import validate  # noqa: E402
from edge.pipeline import Pipeline, load_model  # noqa: E402

SHARED = Path(os.environ.get("EDGEPOSE_SHARED", ROOT.parent / "shared"))
VARIANTS = ("idle", "stuck", "viewer", "viewer+stuck")


def stuck_clients(port: int, n: int, path: str) -> list[socket.socket]:
    """Clients that send a request and then never call recv()."""
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        out.append(s)
    return out


VIEWER = """
import sys, urllib.request
n = 0
with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    while chunk := r.read(65536):
        n += len(chunk)
"""


def start_viewer(url: str) -> subprocess.Popen:
    """A client, in its own process (its CPU is not ours), that reads the stream as fast as it comes."""
    return subprocess.Popen([sys.executable, "-c", VIEWER, url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def web_threads_cpu_s() -> float:
    """CPU seconds used so far by the live view's threads (listener + one per stream), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for t in threading.enumerate():
        if t.name.startswith("web-") or "process_request_thread" in t.name:
            try:
                fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def process_threads() -> int:
    """Threads of this process, as the kernel counts them (every thread, not only Python's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return threading.active_count()


def timed_get(url: str, timeout: float) -> tuple[int | None, float]:
    """(HTTP status or None when it failed or timed out, seconds it took)."""
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = None
    return status, time.monotonic() - t0


class IdleHerd:
    """``n`` connections that send nothing; one the server closes is opened again (as an attacker would)."""

    def __init__(self, port: int, n: int):
        self.port, self.reopened = port, 0
        self.socks = [self._open() for _ in range(n)]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._keep, daemon=True)
        self.thread.start()

    def _open(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def _keep(self) -> None:
        while not self.stop.wait(0.2):
            for i, s in enumerate(self.socks):
                s.setblocking(False)
                try:
                    closed = s.recv(4096) == b""  # data (a 503) or EOF: the server is done with it
                except BlockingIOError:
                    continue
                except OSError:
                    closed = True
                if closed:
                    s.close()
                    try:
                        self.socks[i] = self._open()
                        self.reopened += 1
                    except OSError:
                        pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for s in self.socks:
            s.close()


def health_under_idle(model, args) -> dict:
    """Hold ``args.idle`` silent connections, then poll /healthz and /metrics ``args.polls`` times each."""
    cfg = validate({
        "source": {"type": "file", "path": str(args.clip), "loop": True, "realtime": True},
        "model": {"path": str(args.model), "threads": args.threads},
        "outputs": [{"type": "web", "port": 0}],
    })
    pipe = Pipeline(cfg, model=model).start()
    web = pipe.sinks[0]
    idle = None
    try:
        time.sleep(args.warmup)
        threads_before = process_threads()
        t0 = time.monotonic()
        idle = IdleHerd(web.server.port, args.idle)
        connect_s = time.monotonic() - t0
        time.sleep(0.5)
        threads_idle = process_threads()
        polls: dict[str, list[tuple[int | None, float]]] = {"healthz": [], "metrics": []}
        for _ in range(args.polls):
            for path in polls:
                polls[path].append(timed_get(web.url + path, args.poll_timeout))
            time.sleep(0.1)
        threads_end = process_threads()
        reopened = idle.reopened
    finally:
        if idle is not None:
            idle.close()
        pipe.stop()
    out = {"idle_connections": args.idle, "connect_s": round(connect_s, 2), "polls": args.polls, "poll_timeout_s": args.poll_timeout,
           "threads_before": threads_before, "threads_with_idle": threads_idle, "threads_at_end": threads_end,
           "reopened": reopened}
    for path, got in polls.items():
        lat = [t for _, t in got]
        out[path] = {"ok": sum(1 for s, _ in got if s == 200), "answers": sorted({str(s) for s, _ in got}),
                     "median_ms": round(1000 * statistics.median(lat), 1), "max_ms": round(1000 * max(lat), 1),
                     "failed_polls": [i for i, (s, _) in enumerate(got) if s != 200]}
    return out


def run_once(model, args, variant: str) -> dict:
    cfg = validate({
        "source": {"type": "file", "path": str(args.clip), "loop": True, "realtime": False},
        "model": {"path": str(args.model), "threads": args.threads},
        "outputs": [{"type": "web", "port": 0, "client_timeout_s": 600, "max_clients_per_address": 16}],
    })
    model.family.reset()
    pipe = Pipeline(cfg, model=model).start()
    web = pipe.sinks[0]
    clients, view = [], None
    try:
        if "viewer" in variant:
            view = start_viewer(web.url + "stream.mjpg")
        if "stuck" in variant:
            clients = stuck_clients(web.server.port, args.clients, args.path)
        time.sleep(args.warmup)
        f0, t0, c0, w0 = pipe.stats.frames_processed, time.monotonic_ns(), time.process_time_ns(), web_threads_cpu_s()
        time.sleep(args.seconds)
        f1, t1, c1, w1 = pipe.stats.frames_processed, time.monotonic_ns(), time.process_time_ns(), web_threads_cpu_s()
        open_streams = web.server.client_counts()["stream"]
    finally:
        for s in clients:
            s.close()
        if view is not None:
            view.terminate()
            view.wait(10)
        pipe.stop()
    frames, secs = max(1, f1 - f0), (t1 - t0) / 1e9
    return {"variant": variant, "fps": frames / secs, "cpu_ms_per_frame": (c1 - c0) / 1e6 / frames,
            "web_cpu_ms_per_s": 1000 * (w1 - w0) / secs, "open_streams": open_streams}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=SHARED / "models/movenet_singlepose_lightning_int8_4.tflite")
    p.add_argument("--clip", type=Path, default=SHARED / "data/video/intel_walk.mkv")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--path", default="/stream.mjpg", help="what the stuck clients request")
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--seconds", type=float, default=6.0, help="measured time per run")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured time per run, after the clients connect")
    p.add_argument("--json", type=Path, help="write every run and the summary here")
    p.add_argument("--idle", type=int, default=0, help="instead: hold this many silent connections, poll /healthz")
    p.add_argument("--polls", type=int, default=40, help="with --idle: polls of /healthz and of /metrics")
    p.add_argument("--poll-timeout", type=float, default=5.0, help="with --idle: seconds a poll may take")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    model = load_model(validate({"model": {"path": str(args.model), "threads": args.threads}}))
    if args.idle:
        got = health_under_idle(model, args)
        print(json.dumps(got, indent=2))
        if args.json:
            args.json.write_text(json.dumps(got, indent=2))
        return 0
    runs: list[dict] = []
    pairs = {"stuck": "idle", "viewer+stuck": "viewer"}  # each variant is run right next to its baseline
    ratios: dict[str, dict[str, list[float]]] = {v: {"fps": [], "cpu": []} for v in pairs}
    for r in range(args.repeats):
        for variant, base in pairs.items():
            order = (base, variant) if r % 2 == 0 else (variant, base)
            got = {v: run_once(model, args, v) for v in order}
            for v in order:
                x = got[v]
                runs.append({**x, "repeat": r + 1})
                print(f"repeat {r + 1}: {v:13s} {x['fps']:7.1f} fps  {x['cpu_ms_per_frame']:6.2f} CPU ms/frame  "
                      f"web threads {x['web_cpu_ms_per_s']:6.1f} CPU ms/s  (open streams {x['open_streams']})",
                      flush=True)
            ratios[variant]["fps"].append(got[variant]["fps"] / got[base]["fps"])
            ratios[variant]["cpu"].append(got[base]["cpu_ms_per_frame"] / got[variant]["cpu_ms_per_frame"])

    def med(variant: str, key: str) -> float:
        return statistics.median(x[key] for x in runs if x["variant"] == variant)

    summary = {v: {"median_fps": round(med(v, "fps"), 1),
                   "median_cpu_ms_per_frame": round(med(v, "cpu_ms_per_frame"), 2),
                   "median_web_cpu_ms_per_s": round(med(v, "web_cpu_ms_per_s"), 1)} for v in VARIANTS}
    for v in pairs:
        summary[v]["paired_fps_ratio"] = round(statistics.median(ratios[v]["fps"]), 3)
        summary[v]["paired_cpu_ratio"] = round(statistics.median(ratios[v]["cpu"]), 3)
    print("\n| variant | median FPS | CPU ms/frame | web threads CPU ms/s | FPS vs. baseline (paired median) "
          "| same, from CPU per frame |\n|---|---|---|---|---|---|")
    for v in VARIANTS:
        x = summary[v]
        tail = f"{x['paired_fps_ratio']:.3f} | {x['paired_cpu_ratio']:.3f}" if v in pairs else "baseline | baseline"
        label = v.replace("stuck", f"{args.clients} stuck")
        print(f"| {label} | {x['median_fps']:.1f} | {x['median_cpu_ms_per_frame']:.2f} | "
              f"{x['median_web_cpu_ms_per_s']:.1f} | {tail} |")
    if args.json:
        info = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                "model": args.model.name, "clip": args.clip.name, "threads": args.threads,
                "seconds": args.seconds, "warmup": args.warmup, "repeats": args.repeats,
                "load_avg": os.getloadavg()}
        args.json.write_text(json.dumps({"info": info, "runs": runs, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
