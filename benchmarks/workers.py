"""model.workers against one interpreter, the model alone and Ultralytics, paired and interleaved (issue 19).

Each round runs every variant once on the same model file, clip and frames, in an order rotated
per round; ratios are taken within a round and their median quoted (the machine is shared).

  mo1, mo2       model-only ceiling: backend.run alone on prepared frames, 1 and 2 threads
  pipe_1x1/1x2   the pipeline with one interpreter (workers: 1), 1 and 2 threads
  pipe_auto      the pipeline with workers: auto (a file read as fast as possible: one 1-thread copy per core)
  ultra1, ultra2 Ultralytics YOLO(file).predict(stream=True), 1 and 2 threads (YOLO only; its own venv,
                 see benchmarks/ultralytics_predict.py)

Every pipeline run also gives the process's CPU per frame and the FPS bound it sets on these cores
(cores / CPU per frame): for a model as short as MoveNet Lightning that bound, not the model, caps FPS.

    python3 benchmarks/workers.py --model ../shared/models/yolo11n-pose_int8.tflite --frames 100 --rounds 3
    python3 benchmarks/workers.py --model ../shared/models/movenet_singlepose_lightning_int8_4.tflite --frames 600
    python3 benchmarks/workers.py --memory --model ../shared/models/yolo11n-pose_int8.tflite
    python3 benchmarks/workers.py --paced --model ../shared/models/movenet_singlepose_lightning_int8_4.tflite --frames 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edge.bench import Case, case_config, pipeline_bench, read_frames  # noqa: E402
from edge.config import SourceConfig  # noqa: E402
from side_by_side import CLIP, ULTRA_PY, ForeignCpu, run_variant, wait_quiet  # noqa: E402

PIPES = {"pipe_1x1": (1, 1), "pipe_1x2": (1, 2), "pipe_auto": ("auto", 1)}
PACED = {"paced_1x2": (1, 2), "paced_2x2": (2, 2)}  # --paced: a camera-like 10 fps; does a second copy add latency?


def pipeline_run(model: Path, clip: Path, frames: int, warmup: int, workers, threads: int, paced: bool = False) -> dict:
    cfg = case_config(Case(model, "tflite", threads), None, "auto", **{
        "source.type": "file", "source.path": str(clip), "source.realtime": paced, "outputs": [],
        "pipeline.max_frames": warmup + frames, "logging.level": "WARNING", "model.workers": workers})
    r = pipeline_bench(cfg, seconds=3600, warmup=warmup, interval_s=1.0)
    return {"fps": r["fps"], "workers": r["workers"], "threads": r["threads"],
            "latency_p50_ms": r["latency_ms"]["p50"], "latency_p99_ms": r["latency_ms"]["p99"],
            "cpu_ms_per_frame": r["cpu_ms_per_frame"], "cpu_bound_fps": r["cpu_bound_fps"],
            "cpu_cores_used": r["cpu_cores_used"], "drops": r["dropped_total"],
            "stage_ms": {k: (v or {}).get("p50") for k, v in r["stage_ms"].items()}}


def one(name: str, model: Path, clip: Path, frames: int, warmup: int, prepared) -> dict:
    if name in PIPES:
        return pipeline_run(model, clip, frames, warmup, *PIPES[name])
    if name in PACED:
        return pipeline_run(model, clip, frames, warmup, *PACED[name], paced=True)
    threads = int(name[-1])
    kind = "model_only" if name.startswith("mo") else "ultralytics"
    return run_variant(kind, Case(model, "tflite", threads), clip, frames, warmup, prepared, ULTRA_PY)


def rounds(args) -> dict:
    yolo = "yolo" in args.model.name.lower()
    names = ["mo1", "mo2", "pipe_1x1", "pipe_1x2", "pipe_auto"] + (["ultra1", "ultra2"] if yolo and ULTRA_PY.exists() else [])
    if args.paced:
        names = list(PACED)
    prepared = read_frames(SourceConfig(type="file", path=str(args.clip)), 16)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            idle = wait_quiet(args.quiet_wait)
            with ForeignCpu() as fc:
                res = one(n, args.model, args.clip, args.frames, args.warmup, prepared)
            res.update(round=r, foreign=fc.share, idle_before=idle)
            runs[n].append(res)
            print(f"round {r} {n}: {res['fps']:.2f} FPS (others {fc.share:.0%})", file=sys.stderr, flush=True)
    return {"model": args.model.name, "clip": args.clip.name, "frames": args.frames, "rounds": args.rounds, "runs": runs}


def report(res: dict) -> str:
    runs = res["runs"]
    n = res["rounds"]
    med = {k: statistics.median(x["fps"] for x in v) for k, v in runs.items()}

    def paired(a: str, *bs: str) -> tuple[float, float, float]:
        """Median (min, max) over rounds of FPS(a) / the best FPS among bs in the same round."""
        r = [runs[a][i]["fps"] / max(runs[b][i]["fps"] for b in bs) for i in range(n)]
        return round(statistics.median(r), 3), round(min(r), 3), round(max(r), 3)

    lines = [f"**{res['model']}**, {res['clip']}, {res['frames']} frames per run, {n} rounds", "",
             "| variant | FPS median | FPS per round | CPU ms/frame | CPU-bound FPS | cores used | latency p50 ms |",
             "|---|---|---|---|---|---|---|"]
    for k, v in runs.items():
        d = v[len(v) // 2]
        cpu = [x.get("cpu_ms_per_frame") for x in v if x.get("cpu_ms_per_frame")]
        bound = [x.get("cpu_bound_fps") for x in v if x.get("cpu_bound_fps")]
        used = [x.get("cpu_cores_used") for x in v if x.get("cpu_cores_used")]
        lat = [x.get("latency_p50_ms") for x in v if x.get("latency_p50_ms")]
        label = k if k not in PIPES and k not in PACED else f"{k} ({d['workers']} x {d['threads']})"
        lines.append(f"| {label} | {med[k]:.1f} | {', '.join(format(x['fps'], '.1f') for x in v)} | "
                     + " | ".join(f"{statistics.median(c):.2f}" if c else "" for c in (cpu, bound, used, lat)) + " |")
    ceiling = [k for k in ("mo1", "mo2") if k in runs]
    if not ceiling:  # --paced
        lat = {k: statistics.median(x["latency_p50_ms"] for x in v) for k, v in runs.items()}
        p99 = {k: statistics.median(x["latency_p99_ms"] for x in v) for k, v in runs.items()}
        return "\n".join(lines + ["", "latency p50 / p99 ms (median of rounds): " + "; ".join(
            f"{k} {lat[k]:.1f} / {p99[k]:.1f}" for k in runs)]) + "\n"
    lines += ["", f"- pipe_auto / best model-only (paired median, min, max): {paired('pipe_auto', *ceiling)}",
              f"- pipe_1x2 / best model-only: {paired('pipe_1x2', *ceiling)}",
              f"- pipe_auto / best one-interpreter pipeline: {paired('pipe_auto', 'pipe_1x1', 'pipe_1x2')}"]
    if "ultra1" in runs:
        lines.append(f"- pipe_auto / best Ultralytics: {paired('pipe_auto', 'ultra1', 'ultra2')}")
    bound = [x["fps"] / x["cpu_bound_fps"] for x in runs["pipe_auto"] if x.get("cpu_bound_fps")]
    if bound:
        lines.append(f"- pipe_auto FPS / its own CPU bound: {statistics.median(bound):.3f}")
    return "\n".join(lines) + "\n"


def memory(model: Path, counts=(1, 2, 3, 4)) -> str:
    """RSS of a started pipeline with N workers, each in a fresh process; the step is the cost per worker."""
    code = ("import resource,sys,os; sys.path.insert(0,%r)\n"
            "from edge.config import validate\nfrom edge.pipeline import Pipeline\n"
            "p=Pipeline(validate({'source':{'type':'file','path':%r,'realtime':False},'model':{'path':%r,'workers':%d,"
            "'threads':1},'outputs':[],'pipeline':{'max_frames':20},'logging':{'level':'WARNING'}}),sinks=[])\n"
            "p.run()\nprint([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    rows = []
    for n in counts:
        out = subprocess.run([sys.executable, "-c", code % (str(ROOT), str(CLIP), str(model), n)],
                             capture_output=True, text=True, check=True)
        rows.append((n, int(out.stdout.strip().splitlines()[-1]) / 1024))
    lines = [f"**{model.name}**: peak RSS of a 20-frame run", "", "| workers | peak RSS MB | + per added worker MB |",
             "|---|---|---|"]
    for i, (n, mb) in enumerate(rows):
        step = "" if i == 0 else f"{(mb - rows[0][1]) / (n - 1):.1f}"
        lines.append(f"| {n} | {mb:.1f} | {step} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quiet-wait", type=float, default=10.0, help="wait up to this long for idle CPUs before a run")
    ap.add_argument("--memory", action="store_true", help="peak RSS with 1-4 workers instead of speed")
    ap.add_argument("--paced", action="store_true", help="the clip at its 10 fps (a camera): latency with 1 and 2 copies")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.memory:
        print(memory(args.model))
        return 0
    res = rounds(args)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
