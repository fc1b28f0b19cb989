"""What INT8 cost: keypoint drift against float, accuracy on a labelled set, speed, and the verdict.

Drift is measured on the *same* prepared inputs for both models, so it is the model's error alone (no
tracking or crop differences). It is given in frame pixels, in % of the person's box diagonal, and in
model-input pixels (BlazePose's "px in the 256 crop"). People float finds that INT8 misses, or invents,
are counted apart: a model whose scores collapsed must never pass on keypoint drift alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge.bench_pipeline import summarize_ms
from edge.types import Pose

MATCH_MAX = 0.5  # a person matches when mean keypoint distance < 50% of the float box diagonal


@dataclass
class Item:
    """One held-out model input with the float model's answer."""

    inputs: list[np.ndarray]
    transform: object
    poses: list[Pose]


@dataclass
class Drift:
    frames: int = 0
    people: int = 0  # people the float model reports at its operating threshold
    matched: int = 0
    missed: int = 0
    extra: int = 0
    keypoints: int = 0
    mean_px: float = 0.0
    p95_px: float = 0.0
    mean_pct: float = 0.0  # % of the float person's box diagonal
    p95_pct: float = 0.0
    mean_input_px: float = 0.0  # in model-input pixels
    p95_input_px: float = 0.0
    score_mae: float = 0.0  # mean |score INT8 - score float| of matched people
    pck: dict | None = None  # labelled set: {"float": {...}, "int8": {...}}

    @property
    def recall(self) -> float:
        return self.matched / self.people if self.people else 1.0

    @property
    def loss(self) -> float:
        """One number to minimise: drift (% diagonal) + 100 x people missed or invented per person + scores."""
        return (self.mean_pct + 100.0 * (self.missed + self.extra) / max(1, self.people) + 20.0 * self.score_mae
                + (max(0.0, self.pck_drop) if self.pck else 0.0))

    @property
    def pck_drop(self) -> float:
        """PCK@0.1 points (0..100) lost against float on the labelled set."""
        if not self.pck:
            return 0.0
        return 100.0 * (self.pck["float"]["PCK@0.1"] - self.pck["int8"]["PCK@0.1"])

    def to_dict(self) -> dict:
        d = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        d.update(recall=round(self.recall, 4), loss=round(self.loss, 4))
        if self.pck:
            d["pck_drop_points"] = round(self.pck_drop, 3)
        return d


@dataclass
class Target:
    max_drift_pct: float = 3.0  # the TF Lite converter's good MoveNet INT8 drifts 2.3% from float on camera frames
    max_drift_px: float | None = None  # mean drift in model-input pixels
    max_pck_drop: float = 1.0  # PCK@0.1 points, when a labelled set is given
    min_recall: float = 0.95
    min_speedup: float | None = None  # INT8 p50 latency must beat float by this factor (checked once, at the end)
    max_float_compute: float = 0.5  # the search may keep at most this share of the multiply-accumulates float

    def speed_problems(self, timing: dict) -> list[str]:
        got = timing.get("speedup_p50")
        if self.min_speedup is None or got is None or got >= self.min_speedup:
            return []
        return [f"INT8 is only {got:.2f}x as fast as float (< {self.min_speedup}x)"]

    def problems(self, d: Drift) -> list[str]:
        out = []
        if d.people == 0:
            out.append("the float model found nobody on the held-out frames: nothing to compare (use frames with "
                       "people: edgepose models calibrate keeps only those)")
        if d.recall < self.min_recall:
            out.append(f"INT8 finds {d.matched} of the {d.people} people float finds (recall {d.recall:.2f} < "
                       f"{self.min_recall})")
        if d.mean_pct > self.max_drift_pct:
            out.append(f"mean keypoint drift {d.mean_pct:.2f}% of the box diagonal > {self.max_drift_pct}%")
        if self.max_drift_px is not None and d.mean_input_px > self.max_drift_px:
            out.append(f"mean keypoint drift {d.mean_input_px:.2f} px in the model input > {self.max_drift_px} px")
        if d.pck and d.pck_drop > self.max_pck_drop:
            out.append(f"PCK@0.1 drops {d.pck_drop:.2f} points against float (> {self.max_pck_drop})")
        return out


def input_scale(transform) -> float:
    """Frame pixels per model-input pixel (mean of both axes; rotation-proof)."""
    origin, ex, ey = transform.to_frame(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    return float((np.linalg.norm(ex - origin) + np.linalg.norm(ey - origin)) / 2) or 1.0


def _diagonal(kp: np.ndarray, confident: np.ndarray) -> float:
    pts = kp[confident, :2] if confident.sum() >= 2 else kp[:, :2]
    return float(np.hypot(*(pts.max(axis=0) - pts.min(axis=0)))) or 1.0


def _match(ref: list[Pose], got: list[Pose], kp_min: float) -> list[tuple[int, int]]:
    pairs = []
    for i, a in enumerate(ref):
        conf = a.keypoints[:, 2] >= kp_min
        use = conf if conf.any() else np.ones(len(conf), bool)
        diag = _diagonal(a.keypoints, conf)
        for j, b in enumerate(got):
            d = float(np.linalg.norm(a.keypoints[use, :2] - b.keypoints[use, :2], axis=1).mean()) / diag
            if d < MATCH_MAX:
                pairs.append((d, i, j))
    used_i, used_j, out = set(), set(), []
    for _, i, j in sorted(pairs):
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            out.append((i, j))
    return out


def drift(items: list[Item], outputs: list[list[np.ndarray]], family, operating: float, kp_min: float) -> Drift:
    """Compare INT8 ``outputs`` (one list per item) with the float poses stored in ``items``.

    ``family`` decodes with a threshold of half ``operating``: a person float reports (score >= operating)
    counts as found when INT8 has them at >= operating/2, and INT8 invents one only at >= operating.
    """
    d = Drift(frames=len(items))
    px, pct, inpx, score_err = [], [], [], []
    for item, out in zip(items, outputs):
        got = family.decode(out, item.transform)
        ref_all = item.poses
        ref = [p for p in ref_all if p.score >= operating]
        d.people += len(ref)
        pairs = _match(ref, got, kp_min)
        d.matched += len(pairs)
        d.missed += len(ref) - len(pairs)
        loose = {j for _, j in _match(ref_all, got, kp_min)}
        d.extra += sum(1 for j, p in enumerate(got) if p.score >= operating and j not in loose)
        scale = input_scale(item.transform)
        for i, j in pairs:
            a, b = ref[i].keypoints, got[j].keypoints
            conf = a[:, 2] >= kp_min
            if not conf.any():
                continue
            dist = np.linalg.norm(a[conf, :2] - b[conf, :2], axis=1)
            px.extend(dist)
            pct.extend(100.0 * dist / _diagonal(a, conf))
            inpx.extend(dist / scale)
            score_err.append(abs(ref[i].score - got[j].score))
    d.keypoints = len(px)
    if px:
        d.mean_px, d.p95_px = float(np.mean(px)), float(np.percentile(px, 95))
        d.mean_pct, d.p95_pct = float(np.mean(pct)), float(np.percentile(pct, 95))
        d.mean_input_px, d.p95_input_px = float(np.mean(inpx)), float(np.percentile(inpx, 95))
        d.score_mae = float(np.mean(score_err))
    return d


def speed(float_backend, int8_backend, inputs: list[list[np.ndarray]], runs: int = 60, warmup: int = 5) -> dict:
    """Model-only latency of both, interleaved in blocks so that noise from other work hits both alike."""
    times: dict[str, list[float]] = {"float": [], "int8": []}
    pairs = (("float", float_backend), ("int8", int8_backend))
    for _, b in pairs:
        for i in range(warmup):
            b.run(inputs[i % len(inputs)])
    block = 10
    for start in range(0, runs, block):
        for name, b in pairs:
            for i in range(start, min(runs, start + block)):
                t0 = time.monotonic_ns()
                b.run(inputs[i % len(inputs)])
                times[name].append((time.monotonic_ns() - t0) / 1e6)
    out = {name: summarize_ms(v) for name, v in times.items()}
    out["speedup_p50"] = round(out["float"]["p50"] / out["int8"]["p50"], 3) if out["int8"]["p50"] else None
    out["runs"] = runs
    return out


@dataclass
class Report:
    model: str
    output: str | None
    family: str
    runtime: str
    threads: int
    calibration: dict
    holdout: dict
    target: dict
    search: dict
    drift: dict
    speed: dict
    kept_float: list[dict]
    met: bool
    problems: list[str]
    written: bool
    notes: list[str] = field(default_factory=list)
    preprocess: dict | None = None  # ONNX: what pre-processing ran before quantization (ran, symbolic_shapes, problem)

    def to_dict(self) -> dict:
        return asdict(self)

    def write(self, prefix: Path) -> tuple[Path, Path]:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        js, md = prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".md")
        js.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        md.write_text(markdown(self), encoding="utf-8")
        return js, md


def _ms(s: dict, key: str) -> str:
    v = s.get(key)
    return "-" if v is None else f"{v:.2f}"


def markdown(r: Report) -> str:
    d, s = r.drift, r.speed
    verdict = "target met" if r.met else "TARGET NOT MET"
    lines = [
        f"# INT8 quantization report: {Path(r.model).name}", "",
        f"- verdict: **{verdict}**" + ("" if r.met else f" ({'; '.join(r.problems)})"),
        f"- output: {r.output if r.written else 'not written' + (f' (would be {r.output})' if r.output else '')}",
        f"- family: {r.family}; runtime: {r.runtime}, {r.threads} thread(s)",
        f"- calibration: {r.calibration.get('frames')} frames ({r.calibration.get('samples')} model inputs) from "
        f"{r.calibration.get('folder')}",
        f"- held out: {r.holdout.get('frames')} frames ({r.holdout.get('samples')} model inputs) from "
        f"{r.holdout.get('folder')}",
        f"- target: {', '.join(f'{k} {v}' for k, v in r.target.items() if v is not None)}",
        f"- search: {r.search.get('stop_reason')}; {r.search.get('trials')} quantizations judged"
        + (f" ({r.search['unchanged']} more gave a model already judged)" if r.search.get("unchanged") else "")
        + f"; {100 * r.search.get('float_compute_share', 0):.1f}% of the multiply-accumulates stay float",
    ]
    if r.preprocess is not None:
        pre = r.preprocess
        if not pre.get("ran"):
            what = "FAILED, so the raw graph was quantized"
        elif pre.get("symbolic_shapes"):
            what = "shape inference (symbolic too) and ONNX Runtime's graph optimisations"
        else:
            what = "shape inference and ONNX Runtime's graph optimisations, WITHOUT symbolic shape inference"
        lines.append(f"- pre-processing: {what}" + (f" ({pre['problem']})" if pre.get("problem") else ""))
    lines += [
        "",
        "## Speed (model only, same runtime and threads, interleaved)", "",
        "| model | mean ms | p50 ms | p90 ms |", "|---|---|---|---|",
        f"| float | {_ms(s['float'], 'mean')} | {_ms(s['float'], 'p50')} | {_ms(s['float'], 'p90')} |",
        f"| INT8 | {_ms(s['int8'], 'mean')} | {_ms(s['int8'], 'p50')} | {_ms(s['int8'], 'p90')} |", "",
        f"Speed-up (p50): **{s.get('speedup_p50')}x** over {s.get('runs')} runs each.", "",
        "## Keypoint drift of INT8 against float (held-out frames)", "",
        "| | mean | p95 |", "|---|---|---|",
        f"| frame px | {d['mean_px']:.2f} | {d['p95_px']:.2f} |",
        f"| % of box diagonal | {d['mean_pct']:.2f} | {d['p95_pct']:.2f} |",
        f"| model-input px | {d['mean_input_px']:.2f} | {d['p95_input_px']:.2f} |", "",
        f"People: float {d['people']}, matched {d['matched']}, missed {d['missed']}, invented {d['extra']}; "
        f"{d['keypoints']} confident keypoints compared; mean |score difference| {d['score_mae']:.3f}.", "",
    ]
    if d.get("pck"):
        f, q = d["pck"]["float"], d["pck"]["int8"]
        lines += ["## Labelled set", "", f"{d['pck'].get('protocol', '')}", "",
                  "| model | PCK@0.1 | PCK@0.05 | OKS AP | AP50 |", "|---|---|---|---|---|",
                  f"| float | {f['PCK@0.1']:.3f} | {f['PCK@0.05']:.3f} | {f['AP']:.3f} | {f['AP50']:.3f} |",
                  f"| INT8 | {q['PCK@0.1']:.3f} | {q['PCK@0.05']:.3f} | {q['AP']:.3f} | {q['AP50']:.3f} |", "",
                  f"PCK@0.1 change: {-d['pck_drop_points']:+.2f} points.", ""]
    lines += ["## Ops kept in float", ""]
    if r.kept_float:
        lines += ["| op | type | damage when chosen |", "|---|---|---|"]
        lines += [f"| `{k['op'][:80]}` | {k['type']} | {k['damage']:.3f} |" for k in r.kept_float]
    else:
        lines.append("None: every op the quantizer handles is INT8.")
    lines += ["", "## Search", "", "Trial 0 is full INT8; each later trial keeps more ops float.", "",
              "| trial | ops kept float | drift % diag | drift input px | PCK drop | loss | target |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {i} | {t['kept_float']} | {t['drift_pct']:.2f} | {t['drift_input_px']:.2f} | "
              f"{'-' if t.get('pck_drop') is None else format(t['pck_drop'], '.2f')} | {t['loss']:.3f} | "
              f"{'met' if t['met'] else '-'} |" for i, t in enumerate(r.search.get("history", []))]
    lines += [""] + [f"- {n}" for n in r.notes]
    return "\n".join(lines).rstrip() + "\n"
