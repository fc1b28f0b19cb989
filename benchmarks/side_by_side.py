"""Side by side, in one run, with the same model file, clip and thread count:

  (d) model-only   edgepose's backend.run alone on prepared frames: the ceiling
  (a) pipeline     edgepose Pipeline, realtime: false, no outputs
  (a+) pipeline    the same with a draw + JPEG + JSON-line output (DrawPublish)
  (c) naive        single-threaded read -> infer -> draw -> publish (benchmarks/naive_loop.py)
  (b) ultralytics  YOLO(file, task="pose").predict(source=clip, stream=True), own venv (YOLO .tflite only)
  (a~) paced       the pipeline with realtime: true (the clip at its own 10 fps, like a camera): for
                   latency only, run once per block on ``--paced-frames`` frames

Each variant processes the same frames: ``--warmup`` frames, then ``--frames`` timed ones. The
machine is shared and noisy, so the variants are interleaved (order rotated each round) and
repeated; a run during which other processes used more than ``--max-foreign`` of the CPUs (from
/proc/stat, minus our own CPU time) is kept but marked noisy, and rounds go on until every variant
has ``--repeats`` clean runs (or ``--max-repeats`` rounds). The tables quote medians of the clean
runs, and "x ceiling" is the median over rounds of FPS / model-only FPS from the same round.

    python3 benchmarks/side_by_side.py --threads 1,2 --repeats 3 --json side_by_side.json --markdown side_by_side.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edge.bench import Case, case_config, model_only, pipeline_bench, read_frames  # noqa: E402
from edge.config import SourceConfig  # noqa: E402
from edge.sysinfo import machine_info  # noqa: E402
from naive_loop import DrawPublish, naive_loop  # noqa: E402

SHARED = Path(os.environ.get("EDGEPOSE_SHARED", ROOT.parent / "shared"))
CLIP = SHARED / "data/video/intel_one-by-one-person-detection.mp4"
MODELS = [SHARED / "models/yolo11n-pose_int8.tflite", SHARED / "models/movenet_singlepose_lightning_int8_4.tflite"]
ULTRA_PY = Path.home() / ".cache/edgepose-bench/ultra-venv/bin/python"
VARIANTS = ("model_only", "pipeline", "pipeline_out", "naive", "ultralytics")
NAMES = {"model_only": "(d) model-only ceiling", "pipeline": "(a) edgepose pipeline, no outputs",
         "pipeline_out": "(a+) edgepose pipeline + draw/JPEG/JSON output",
         "naive": "(c) naive loop: read, infer, draw/JPEG/JSON", "ultralytics": "(b) Ultralytics predict(stream=True)",
         "paced": "(a~) edgepose pipeline, realtime: true (10 fps)"}


def run_variant(name: str, case: Case, clip: Path, frames: int, warmup: int, prepared, ultra_py: Path) -> dict:
    if name == "model_only":
        r = model_only(case, prepared, frames, warmup)
        return {"fps": r["fps"], "frame_ms": r["ms"]["mean"], "p50_ms": r["ms"]["p50"]}
    if name in ("pipeline", "pipeline_out", "paced"):
        cfg = case_config(case, None, "auto", **{
            "source.type": "file", "source.path": str(clip), "source.realtime": name == "paced", "outputs": [],
            "pipeline.max_frames": warmup + frames, "logging.level": "WARNING",
        })
        sinks = [DrawPublish()] if name == "pipeline_out" else []
        r = pipeline_bench(cfg, seconds=3600, warmup=warmup, interval_s=1.0, extra_sinks=sinks)
        return {"fps": r["fps"], "frame_ms": r["frame_ms"]["mean"], "latency_p50_ms": r["latency_ms"]["p50"],
                "latency_p99_ms": r["latency_ms"]["p99"], "cpu_percent": (r["cpu_percent"] or {}).get("mean"),
                "stage_ms": {k: (v or {}).get("mean") for k, v in r["stage_ms"].items()}, "drops": r["dropped_total"]}
    if name == "naive":
        r = naive_loop(case.model, case.backend, case.threads, str(clip), frames, warmup)
        return {"fps": r["fps"], "frame_ms": r["frame_ms"]["mean"]}
    if name == "ultralytics":
        cmd = [str(ultra_py), str(Path(__file__).with_name("ultralytics_predict.py")), "--model", str(case.model),
               "--source", str(clip), "--threads", str(case.threads), "--frames", str(frames), "--warmup", str(warmup)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"ultralytics run failed: {out.stderr.strip()[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        return {"fps": r["fps"], "frame_ms": r["frame_ms"]["mean"], "ultralytics": r["ultralytics"]}
    raise ValueError(name)


def cpu_idle(seconds: float = 1.0) -> float:
    """Share of all cores idle over ``seconds`` (from /proc/stat), to tell whether others load the machine."""
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)
    i0, t0 = read()
    time.sleep(seconds)
    i1, t1 = read()
    return (i1 - i0) / max(1, t1 - t0)


class ForeignCpu:
    """The share of the machine's CPU that OTHER processes used during a run (/proc/stat busy time
    minus this process's and its children's): a run above ``--max-foreign`` is counted as noisy."""

    @staticmethod
    def _now() -> tuple[float, float, float]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
        t = os.times()
        return (sum(v) - v[3] - v[4]) / hz, sum(v) / hz, t.user + t.system + t.children_user + t.children_system

    def __enter__(self) -> "ForeignCpu":
        self._start = self._now()
        return self

    def __exit__(self, *exc) -> None:
        busy, total, own = (b - a for a, b in zip(self._start, self._now()))
        self.share = round(max(0.0, busy - own) / max(total, 1e-9), 3)


def wait_quiet(max_wait_s: float, min_idle: float = 0.8) -> float:
    """Wait (up to ``max_wait_s``) until the machine is mostly idle; returns the idle share seen last."""
    deadline = time.monotonic() + max_wait_s
    idle = cpu_idle()
    while idle < min_idle and time.monotonic() < deadline:
        idle = cpu_idle(2.0)
    return round(idle, 2)


def clean(runs: list[dict]) -> list[dict]:
    """The runs that other processes did not disturb (all of them when none was clean)."""
    return [r for r in runs if r["clean"]] or runs


def summarize(runs: list[dict]) -> dict:
    use = clean(runs)
    fps = [r["fps"] for r in use]
    med = statistics.median(fps)
    best = min(use, key=lambda r: abs(r["fps"] - med))  # the run closest to the median, for its details
    return {"fps_median": round(med, 2), "fps_runs": fps, "frame_ms_median": round(1000.0 / med, 2),
            "clean_runs": sum(r["clean"] for r in runs), "all_runs": len(runs), "detail": best}


def paired(runs: dict[str, list[dict]], a: str, b: str) -> float:
    """Median over repeats of FPS(a) / FPS(b) measured in the same repeat, minutes apart at most:
    steadier than the ratio of medians when other processes load the machine in waves."""
    pairs = [(x, y) for x, y in zip(runs[a], runs[b]) if x["clean"] and y["clean"]] or list(zip(runs[a], runs[b]))
    return round(statistics.median(x["fps"] / y["fps"] for x, y in pairs), 3)


def ratios(v: dict, yolo: bool) -> dict:
    """The issue's targets, as ratios between medians."""
    fps = {k: s["fps_median"] for k, s in v.items() if k != "paced"}
    ms = {k: 1000.0 / f for k, f in fps.items()}
    out = {"pipeline/model_only": fps["pipeline"] / fps["model_only"],
           "pipeline_out/naive": fps["pipeline_out"] / fps["naive"]}
    lat = v["pipeline"]["detail"].get("latency_p50_ms")
    out["latency_p50 - model_ms"] = lat - ms["model_only"] if lat is not None else None
    if "paced" in v:
        out["paced latency_p50 - model_ms"] = v["paced"]["detail"]["latency_p50_ms"] - ms["model_only"]
    if "ultralytics" in fps:
        out["pipeline/ultralytics"] = fps["pipeline"] / fps["ultralytics"]
        over_b = ms["ultralytics"] - ms["model_only"]
        out["overhead_ms pipeline"] = ms["pipeline"] - ms["model_only"]
        out["overhead_ms ultralytics"] = over_b
        out["overhead pipeline/ultralytics"] = out["overhead_ms pipeline"] / over_b if over_b > 0 else None
    out["target naive"] = 1.1 if yolo else 1.3
    return {k: (round(x, 3) if isinstance(x, float) else x) for k, x in out.items()}


def markdown(result: dict) -> str:
    lines = []
    for block in result["blocks"]:
        lines += [f"**{block['model']}, {block['threads']} thread(s)**", "",
                  "| variant | FPS median | FPS of the clean runs | clean / all runs | ms/frame | x ceiling (paired) "
                  "| latency p50 / p99 ms |", "|---|---|---|---|---|---|---|"]
        for k, s in block["variants"].items():
            runs = ", ".join(f"{x:.1f}" for x in s["fps_runs"])
            d = s["detail"]
            lat = f"{d['latency_p50_ms']:.1f} / {d['latency_p99_ms']:.1f}" if "latency_p50_ms" in d else ""
            ratio = "" if k == "paced" else f"{paired(block['runs'], k, 'model_only'):.3f}"
            lines.append(f"| {NAMES[k]} | {s['fps_median']:.1f} | {runs} | {s['clean_runs']} / {s['all_runs']} "
                         f"| {s['frame_ms_median']:.1f} | {ratio} | {lat} |")
        lines += ["", "Ratios: " + "; ".join(f"{k} = {v}" for k, v in block["ratios"].items()), ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="model file(s) (default: YOLO11n-pose and MoveNet INT8 TFLite)")
    ap.add_argument("--clip", default=str(CLIP))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3, help="clean runs wanted per variant")
    ap.add_argument("--max-repeats", type=int, default=12, help="give up on clean runs after this many rounds")
    ap.add_argument("--max-foreign", type=float, default=0.10,
                    help="a run during which other processes used more than this share of the CPUs is noisy")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {','.join(VARIANTS)},paced")
    ap.add_argument("--paced-frames", type=int, default=100, help="frames of the paced (latency) run; 0: none")
    ap.add_argument("--quiet-wait", type=float, default=0.0,
                    help="before each run, wait up to this many seconds for the CPUs to be >= 80%% idle")
    ap.add_argument("--ultra-python", default=str(ULTRA_PY), help="python of the Ultralytics venv")
    ap.add_argument("--json", help="write the full results here")
    ap.add_argument("--markdown", help="write the tables here")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    models = [Path(m) for m in (a.model or MODELS)]
    threads = [int(t) for t in a.threads.split(",")]
    wanted = [v for v in a.variants.split(",") if v]
    clip = Path(a.clip)
    prepared = read_frames(SourceConfig(type="file", path=str(clip)), 16)
    result = {"machine": machine_info(), "clip": str(clip), "frames": a.frames, "warmup": a.warmup,
              "repeats": a.repeats, "max_foreign": a.max_foreign, "command": " ".join(sys.argv), "blocks": []}
    t0 = time.monotonic()
    for model in models:
        is_yolo = "yolo" in model.name.lower()
        names = [v for v in wanted if v != "ultralytics" or (is_yolo and model.suffix == ".tflite")]
        if "ultralytics" in names and not Path(a.ultra_python).is_file():
            print(f"skipping ultralytics: {a.ultra_python} not found (see benchmarks/ultralytics_predict.py)",
                  file=sys.stderr)
            names.remove("ultralytics")
        for t in threads:
            case = Case(model, "tflite" if model.suffix == ".tflite" else "onnx", t)
            runs: dict[str, list[dict]] = {n: [] for n in names}
            for rep in range(a.max_repeats):
                if rep >= a.repeats and all(sum(r["clean"] for r in runs[n]) >= a.repeats for n in names):
                    break
                order = names[rep % len(names):] + names[:rep % len(names)]
                for n in order:
                    idle = wait_quiet(a.quiet_wait) if a.quiet_wait > 0 else None
                    with ForeignCpu() as load:
                        r = run_variant(n, case, clip, a.frames, a.warmup, prepared, Path(a.ultra_python))
                    r.update(idle_before=idle, foreign_cpu=load.share, clean=load.share <= a.max_foreign)
                    runs[n].append(r)
                    print(f"[{time.monotonic() - t0:6.0f}s] {model.name} {t}t rep {rep + 1} {n}: {r['fps']:.1f} FPS"
                          f" (others used {load.share:.0%} of the CPUs)", file=sys.stderr)
            if a.paced_frames > 0 and "pipeline" in names:
                with ForeignCpu() as load:
                    r = run_variant("paced", case, clip, a.paced_frames, a.warmup, prepared, Path(a.ultra_python))
                runs["paced"] = [{**r, "foreign_cpu": load.share, "clean": load.share <= a.max_foreign}]
                names_all = [*names, "paced"]
            else:
                names_all = names
            variants = {n: summarize(runs[n]) for n in names_all}
            block = {"model": model.name, "threads": t, "variants": variants, "runs": runs}
            block["ratios"] = ratios(variants, is_yolo) if set(VARIANTS[:4]) <= set(names) else {}
            for x, y in (("pipeline", "model_only"), ("pipeline_out", "naive"), ("pipeline", "ultralytics")):
                if x in names and y in names:
                    block["ratios"][f"paired {x}/{y}"] = paired(runs, x, y)
            result["blocks"].append(block)
    result["elapsed_s"] = round(time.monotonic() - t0, 1)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    if a.markdown:
        Path(a.markdown).write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
