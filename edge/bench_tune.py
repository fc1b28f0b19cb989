"""``edgepose bench --tune``: measure every workers x threads that fits the cores, on this device, and pick.

Each combination runs the whole pipeline on the given model and source, read as fast as it goes.
The rounds are interleaved (the order rotates each round) because a shared or throttling board
drifts; medians over rounds are compared. Two winners, because they differ:

- **throughput**: the most frames per second (a file, or a camera faster than one copy);
- **latency**: the shortest time one frame spends in prepare + infer + decode + post when it does
  not queue, which is what a camera that the model keeps up with sees.

``--write CONFIG`` puts the throughput winner into the config's ``model:`` section, keeping the
rest of the file (comments too) as it is.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
from pathlib import Path

from edge.bench import BenchOptions, Case, pipeline_config, plan_cases
from edge.bench_pipeline import Progress, pipeline_bench
from edge.errors import ConfigError
from edge.workers import Placement, combinations, placement, usable_cores

UNQUEUED = ("prepare", "infer", "decode", "post")


def tune(opts: BenchOptions, rounds: int = 2, progress: Progress | None = None, cores: int | None = None) -> dict:
    """Pipeline FPS and unqueued frame time for each combination; the best of each and what ``auto`` picks."""
    cases, notes = plan_cases(opts.models[:1], opts.backends[:1], [1])
    if not cases:
        raise ConfigError(f"bench --tune: nothing to measure ({'; '.join(notes)})")
    case = cases[0]
    cores = cores or usable_cores()
    combos = combinations(cores)
    runs: dict[Placement, list[dict]] = {p: [] for p in combos}
    for r in range(rounds):
        order = combos[r % len(combos):] + combos[:r % len(combos)]
        for p in order:
            cfg = pipeline_config(Case(case.model, case.backend, p.threads), opts.source, opts)
            cfg.model.workers = p.workers
            report = pipeline_bench(cfg, opts.seconds, opts.warmup, opts.sample_interval_s, progress=progress)
            unqueued = sum(report["stage_ms"].get(s, {}).get("p50", 0.0) or 0.0 for s in UNQUEUED)
            runs[p].append({"fps": report["fps"], "frame_ms": round(unqueued, 2),
                            "latency_p50_ms": report["latency_ms"]["p50"], "cpu_ms_per_frame": report.get("cpu_ms_per_frame")})
    rows = []
    for p in combos:
        rs = runs[p]
        rows.append({"workers": p.workers, "threads": p.threads, "rounds": len(rs),
                     "fps": round(statistics.median(x["fps"] for x in rs), 2),
                     "fps_runs": [x["fps"] for x in rs],
                     "frame_ms": round(statistics.median(x["frame_ms"] for x in rs), 2),
                     "latency_p50_ms": round(statistics.median(x["latency_p50_ms"] for x in rs), 2)})
    best_fps = max(rows, key=lambda x: x["fps"])
    best_latency = min(rows, key=lambda x: x["frame_ms"])
    live = bool(opts.realtime)
    auto = placement("auto", (opts.threads or [2])[0], live, cores)  # auto keeps --threads for a live source
    auto_row = next((x for x in rows if (x["workers"], x["threads"]) == (auto.workers, auto.threads)), None)
    return {
        "model": case.model.name, "backend": case.backend, "cores": cores, "rounds": rounds,
        "seconds": opts.seconds, "source": opts.source or "sample", "rows": rows, "notes": notes,
        "best_throughput": {"workers": best_fps["workers"], "threads": best_fps["threads"], "fps": best_fps["fps"]},
        "best_latency": {"workers": best_latency["workers"], "threads": best_latency["threads"],
                         "frame_ms": best_latency["frame_ms"]},
        "auto": {"workers": auto.workers, "threads": auto.threads, "live": live,
                 "fps": auto_row["fps"] if auto_row else None,
                 "of_best": round(auto_row["fps"] / best_fps["fps"], 3) if auto_row and best_fps["fps"] else None},
    }


def format_tune(t: dict) -> str:
    lines = [f"bench --tune: {t['model']} on {t['backend']}, {t['cores']} cores, {t['rounds']} round(s) of "
             f"{t['seconds']:g} s per combination, source {t['source']}", "",
             f"{'workers':>7}  {'threads':>7}  {'FPS':>8}  {'ms/frame unqueued':>17}  {'latency p50 ms':>14}"]
    for r in t["rows"]:
        lines.append(f"{r['workers']:>7}  {r['threads']:>7}  {r['fps']:>8.1f}  {r['frame_ms']:>17.1f}  {r['latency_p50_ms']:>14.1f}")
    b, lat, auto = t["best_throughput"], t["best_latency"], t["auto"]
    lines += ["", f"best for throughput: {Placement(b['workers'], b['threads'])} ({b['fps']:.1f} FPS)",
              f"best for latency:    {Placement(lat['workers'], lat['threads'])} ({lat['frame_ms']:.1f} ms a frame)",
              f"workers: auto picks  {Placement(auto['workers'], auto['threads'])} for a "
              f"{'live source' if auto['live'] else 'file read as fast as possible'}"
              + (f" ({auto['of_best'] * 100:.0f}% of the best FPS)" if auto["of_best"] else "")]
    return "\n".join(lines) + "\n"


# -- --write CONFIG ----------------------------------------------------------------------------
_TOP_MODEL = re.compile(r"^model\s*:\s*(#.*)?$")


def write_placement(path: str | Path, workers: int, threads: int) -> str:
    """Set model.workers and model.threads in the YAML at ``path`` (created if missing); returns what changed.

    A text edit, not a re-dump, so the user's comments and order survive; the result is validated
    before it replaces the file (atomically), so a failure leaves the file as it was.
    """
    from edge.config import validate
    from edge import config_yaml

    p = Path(path).resolve()  # a symlinked config is edited where it lives, and stays a symlink
    raw = p.read_bytes().decode("utf-8") if p.exists() else ""
    newline = "\r\n" if "\r\n" in raw else "\n"
    text = raw.replace("\r\n", "\n")
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _TOP_MODEL.match(line)), None)
    if start is None:
        if re.search(r"^model\s*:", text, re.M):
            raise ConfigError(f"{p}: its model: section is written inline; set model.workers: {workers} and "
                              f"model.threads: {threads} there by hand")
        lines += ([""] if lines and lines[-1].strip() else []) + ["model:", f"  workers: {workers}", f"  threads: {threads}"]
    else:
        end, indent = len(lines), None
        for i in range(start + 1, len(lines)):
            line = lines[i]
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not line[0].isspace():
                end = i
                break
            if indent is None:  # the first child's indent: deeper lines belong to nested blocks
                indent = line[: len(line) - len(line.lstrip())]
        indent = indent or "  "
        for key, value in (("workers", workers), ("threads", threads)):
            pattern = re.compile(rf"^({re.escape(indent)}){key}\s*:\s*[^#]*?(\s*#.*)?$")
            hit = next((i for i in range(start + 1, end) if pattern.match(lines[i])), None)
            if hit is not None:
                m = pattern.match(lines[hit])
                lines[hit] = f"{m.group(1)}{key}: {value}{m.group(2) or ''}"
            else:
                lines.insert(start + 1, f"{indent}{key}: {value}")
                end += 1
    new = "\n".join(lines) + "\n"
    cfg = validate(config_yaml.parse(new, str(p)), origin=str(p))  # a broken result never replaces the file
    if (cfg.model.workers, cfg.model.threads) != (workers, threads):
        raise ConfigError(f"{p}: could not set model.workers/threads by a text edit; set them by hand")
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(new.replace("\n", newline))
        if p.exists():  # the service's user must still read it: keep the file's mode and owner
            st = p.stat()
            os.chmod(tmp, st.st_mode & 0o7777)
            if hasattr(os, "chown") and os.geteuid() == 0:
                os.chown(tmp, st.st_uid, st.st_gid)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return f"model.workers: {workers}, model.threads: {threads}"
