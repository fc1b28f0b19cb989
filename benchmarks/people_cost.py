"""The cost of each approach as people are added: top-down (detector + one run per person) against bottom-up.

Composites: every labelled person of coco8-pose with at least ``--min-keypoints`` visible keypoints is
cut out (its box padded by 10 % a side, clipped to the image; the parts of other labelled people's
boxes that fall outside the person's own box are painted gray, and a person whose padded crop holds
more than half of another labelled person is left out, so that "N people" means N people). N of
them (N = 1, 2, 4, 8) are pasted into a grid of ``--cell`` cells (1x1, 2x1, 2x2, 4x2: up to 1280x960
with 320x480 cells) on neutral gray, each scaled to fit its cell, and their ground-truth keypoints
and boxes are moved with them. ``--composites`` composites per N, drawn from a seeded shuffled deck
so that every person is used about as often.

Approaches (each loaded by edge.model.load_model from an ordinary config, ``--threads`` threads):

- top-down Lightning: ``model.path: default`` (the shipped Lightning INT8 behind the shipped MoveNet
  MultiPose INT8 person detector);
- top-down Thunder: ``movenet-thunder-int8`` behind the same detector;
- MoveNet MultiPose INT8 alone (``movenet-multipose-int8``);
- YOLO11n-pose INT8 (``../shared/models/yolo11n-pose_int8.tflite``).

ms per frame is the whole of ``Model.infer`` (prepare + backend runs + decode) on a composite as a
still: ``family.reset()`` before every call, so top-down runs its detector on every frame (as on
stills, and on the first frame of a video). Median over ``--repeats`` per composite, then the
median over the composites of an N. Every round runs every composite once with every approach, the
approaches' order rotated per composite and round, so machine noise hits them alike.

Top-down is also timed tracked: the composite as a ``--video-frames`` frame video (33 ms apart in
stream time, no reset), where the detector runs on the first frame only (unless someone is lost:
the runs are counted) and each person's crop follows their keypoints. "tracked" = the median ms of
frames 2.. (crops only).

PCK@0.1 follows ``edgepose eval``: predictions matched to the composited people with
edge.evaluate.match_people, PCK from pck_hits, counting only people at the family's operating
threshold (its default score_threshold: MoveNet / top-down 0.15, MultiPose 0.2, YOLO 0.25; the
models run at it). For tracked top-down it is pooled over frames 2.. of the first round.

    .venv/bin/python benchmarks/people_cost.py --json people_cost.json --plot docs/people_cost.png
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge.config import validate  # noqa: E402
from edge.evaluate import Person, load_yolo_pose, match_people, pck_hits  # noqa: E402
from edge.model import load_model  # noqa: E402
from edge.sysinfo import machine_info  # noqa: E402
from edge.types import Frame  # noqa: E402

SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "coco8-pose"
YOLO = SHARED / "models" / "yolo11n-pose_int8.tflite"
GRIDS = {1: (1, 1), 2: (2, 1), 4: (2, 2), 8: (4, 2)}  # N -> (columns, rows)
GRAY = 128
PAD = 0.10
FRAME_NS = 33_000_000
ALPHA = 0.1


@dataclass
class Cutout:
    image: np.ndarray  # RGB crop
    person: Person  # in crop coordinates
    source: str


@dataclass
class Composite:
    n: int
    index: int
    image: np.ndarray
    people: list[Person]
    sources: list[str]


def cutouts(root: Path, min_keypoints: int) -> list[Cutout]:
    out = []
    for s in load_yolo_pose(root):
        h, w = s.image.shape[:2]
        for i, p in enumerate(s.people):
            if int((p.keypoints[:, 2] > 0).sum()) < min_keypoints:
                continue
            x1, y1, x2, y2 = p.box
            bw, bh = x2 - x1, y2 - y1
            cx1, cy1 = int(max(0, np.floor(x1 - PAD * bw))), int(max(0, np.floor(y1 - PAD * bh)))
            cx2, cy2 = int(min(w, np.ceil(x2 + PAD * bw))), int(min(h, np.ceil(y2 + PAD * bh)))
            others = [q for j, q in enumerate(s.people) if j != i]
            if any(_inside((cx1, cy1, cx2, cy2), q.box) > 0.5 for q in others):
                continue  # a crowd in one crop: N would not be N
            crop = s.image[cy1:cy2, cx1:cx2].copy()
            mask = np.zeros(crop.shape[:2], bool)
            for q in others:
                qx1, qy1, qx2, qy2 = (int(round(v)) for v in q.box)
                mask[max(0, qy1 - cy1):max(0, qy2 - cy1), max(0, qx1 - cx1):max(0, qx2 - cx1)] = True
            mask[max(0, int(y1) - cy1):max(0, int(np.ceil(y2)) - cy1), max(0, int(x1) - cx1):max(0, int(np.ceil(x2)) - cx1)] = False
            crop[mask] = GRAY
            kp = p.keypoints.copy()
            kp[:, 0] -= cx1
            kp[:, 1] -= cy1
            out.append(Cutout(crop, Person((x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1), kp), f"{s.image_path.name}#{i}"))
    return out


def _inside(crop: tuple, box: tuple) -> float:
    """The share of ``box`` inside ``crop``."""
    w = max(0.0, min(crop[2], box[2]) - max(crop[0], box[0]))
    h = max(0.0, min(crop[3], box[3]) - max(crop[1], box[1]))
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)
    return w * h / area


def composite(cuts: list[Cutout], n: int, index: int, cell: tuple[int, int]) -> Composite:
    cols, rows = GRIDS[n]
    cw, ch = cell
    canvas = np.full((rows * ch, cols * cw, 3), GRAY, np.uint8)
    people = []
    for k, c in enumerate(cuts):
        col, row = k % cols, k // cols
        h, w = c.image.shape[:2]
        s = min(cw / w, ch / h)
        nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
        patch = cv2.resize(c.image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        ox, oy = col * cw + (cw - nw) // 2, row * ch + (ch - nh) // 2
        canvas[oy:oy + nh, ox:ox + nw] = patch
        sx, sy = nw / w, nh / h
        kp = c.person.keypoints.copy()
        kp[:, 0] = kp[:, 0] * sx + ox
        kp[:, 1] = kp[:, 1] * sy + oy
        x1, y1, x2, y2 = c.person.box
        people.append(Person((x1 * sx + ox, y1 * sy + oy, x2 * sx + ox, y2 * sy + oy), kp))
    return Composite(n, index, canvas, people, [c.source for c in cuts])


def build_composites(cuts: list[Cutout], ns: list[int], per_n: int, cell: tuple[int, int], seed: int) -> list[Composite]:
    rng = np.random.default_rng(seed)
    out = []
    for n in ns:
        if n > len(cuts):
            raise SystemExit(f"only {len(cuts)} people qualify; cannot composite {n}")
        deck: list[int] = []
        for i in range(per_n):
            chosen: list[int] = []
            while len(chosen) < n:
                if not deck:
                    deck = [int(v) for v in rng.permutation(len(cuts))]
                j = deck.pop()
                if j in chosen:
                    deck.insert(0, j)  # used in this composite already: back to the bottom of the deck
                    continue
                chosen.append(j)
            out.append(composite([cuts[j] for j in chosen], n, i, cell))
    return out


class CountingBackend:
    """The model's backend, counting its runs (top-down: one per posed crop)."""

    def __init__(self, inner):
        self._inner = inner
        self.runs = 0

    def run(self, inputs):
        self.runs += 1
        return self._inner.run(inputs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


APPROACHES = [  # key, label, model.path, top-down?
    ("td_lightning", "top-down Lightning INT8", "default", True),
    ("td_thunder", "top-down Thunder INT8", "movenet-thunder-int8", True),
    ("multipose", "MoveNet MultiPose INT8", "movenet-multipose-int8", False),
    ("yolo", "YOLO11n-pose INT8", str(YOLO), False),
]


def load(path: str, threads: int):
    model = load_model(validate({"model": {"path": path, "threads": threads}}))
    model.backend = CountingBackend(model.backend)
    return model


def still(model, comp: Composite) -> tuple[float, list, dict, int, int]:
    """One frame as a still: (ms, poses, timings, backend runs, detector runs)."""
    model.family.reset()
    det = getattr(model.family, "detector", None)
    runs0, det0 = model.backend.runs, det.runs if det else 0
    frame = Frame(comp.image, 0, time.monotonic_ns(), time.time())
    t0 = time.perf_counter_ns()
    poses, timings = model.infer(frame)
    ms = (time.perf_counter_ns() - t0) / 1e6
    return ms, poses, timings, model.backend.runs - runs0, (det.runs - det0) if det else 0


def video(model, comp: Composite, frames: int, base_ns: int) -> tuple[list[float], list[list], list[int], int]:
    """The composite as a video without reset: per-frame ms, poses and crops, and the detector's runs."""
    model.family.reset()
    det = model.family.detector
    det0 = det.runs
    ms, poses_all, crops = [], [], []
    for i in range(frames):
        frame = Frame(comp.image, i, base_ns + i * FRAME_NS, time.time())
        r0 = model.backend.runs
        t0 = time.perf_counter_ns()
        poses, _ = model.infer(frame)
        ms.append((time.perf_counter_ns() - t0) / 1e6)
        poses_all.append(poses)
        crops.append(model.backend.runs - r0)
    return ms, poses_all, crops, det.runs - det0


def pck_of(poses: list, people: list[Person], min_score: float) -> tuple[int, int]:
    kept = [p for p in poses if p.score >= min_score]
    hit = tot = 0
    for person, pred in zip(people, match_people(kept, people)):
        h, t = pck_hits(pred, person, ALPHA)
        hit, tot = hit + h, tot + t
    return hit, tot


def median(xs):
    return float(statistics.median(xs)) if xs else None


def run(a) -> dict:
    t_start = time.monotonic()
    cuts = cutouts(Path(a.data), a.min_keypoints)
    ns = [int(v) for v in a.people.split(",")]
    comps = build_composites(cuts, ns, a.composites, tuple(a.cell), a.seed)
    print(f"{len(cuts)} people qualify ({', '.join(c.source for c in cuts)}); {len(comps)} composites", file=sys.stderr)
    if a.save_composites:
        Path(a.save_composites).mkdir(parents=True, exist_ok=True)
        for c in comps:
            cv2.imwrite(str(Path(a.save_composites) / f"n{c.n}_{c.index}.jpg"), cv2.cvtColor(c.image, cv2.COLOR_RGB2BGR))
    wanted = [x for x in APPROACHES if x[0] in a.approaches.split(",")]
    models = {}
    for key, label, path, _ in wanted:
        models[key] = load(path, a.threads)
        print(f"{label}: {models[key].path} ({models[key].family.name}, threshold "
              f"{models[key].family.score_threshold})", file=sys.stderr)
    keys = list(models)
    # warm-up: every approach on one composite of every N
    for c in [next(c for c in comps if c.n == n) for n in ns]:
        for k in keys:
            for _ in range(a.warmup):
                still(models[k], c)
    stills: dict = {k: {c_id: [] for c_id in range(len(comps))} for k in keys}
    first: dict = {k: {} for k in keys}
    tracked: dict = {k: {c_id: [] for c_id in range(len(comps))} for k in keys if dict((x[0], x[3]) for x in wanted)[k]}
    video_first: dict = {k: {} for k in tracked}
    base_ns = 10**15
    for r in range(a.repeats):
        for ci, comp in enumerate(comps):
            rot = (r + ci) % len(keys)
            for k in keys[rot:] + keys[:rot]:
                ms, poses, timings, runs, det_runs = still(models[k], comp)
                stills[k][ci].append({"ms": ms, **timings, "backend_runs": runs, "detector_runs": det_runs})
                first[k].setdefault(ci, poses)
            if r < a.video_rounds:
                tk = list(tracked)
                for k in tk[r % len(tk):] + tk[:r % len(tk)] if tk else []:
                    base_ns += 10**12
                    ms, poses_all, crops, det_runs = video(models[k], comp, a.video_frames, base_ns)
                    tracked[k][ci].append({"ms": ms, "crops": crops, "detector_runs": det_runs})
                    video_first[k].setdefault(ci, poses_all)
        print(f"[{time.monotonic() - t_start:5.0f}s] round {r + 1}/{a.repeats}", file=sys.stderr)

    results: dict = {}
    for key, label, path, topdown in wanted:
        m = models[key]
        operating = m.family.default_score_threshold
        row = {"label": label, "model": str(m.path), "family": m.family.name, "topdown": topdown,
               "operating_threshold": operating, "by_n": {}}
        for n in ns:
            ids = [ci for ci, c in enumerate(comps) if c.n == n]
            per_comp = [median([s["ms"] for s in stills[key][ci]]) for ci in ids]
            hit = tot = 0
            for ci in ids:
                h, t = pck_of(first[key][ci], comps[ci].people, operating)
                hit, tot = hit + h, tot + t
            found = sum(sum(1 for p in first[key][ci] if p.score >= operating) for ci in ids)
            entry = {
                "ms_per_frame": median(per_comp),
                "ms_per_composite": per_comp,
                "ms_mean_over_composites": float(np.mean(per_comp)),
                "prepare_ms": median([median([s["prepare"] for s in stills[key][ci]]) for ci in ids]),
                "infer_ms": median([median([s["infer"] for s in stills[key][ci]]) for ci in ids]),
                "decode_ms": median([median([s["decode"] for s in stills[key][ci]]) for ci in ids]),
                "backend_runs_per_frame": float(np.mean([stills[key][ci][0]["backend_runs"] for ci in ids])),
                "people_reported_per_frame": found / len(ids),
                f"PCK@{ALPHA}": hit / tot if tot else None, "keypoints": tot,
            }
            if "multipose" in stills:  # the machine's speed drifts: the ratio to MultiPose within a round holds
                ref = stills["multipose"]
                entry["x_multipose"] = median([median([s["ms"] / ref[ci][r]["ms"] for r, s in enumerate(stills[key][ci])])
                                               for ci in ids])
                if topdown:
                    entry["tracked_x_multipose"] = median([median([median(v["ms"][1:]) / ref[ci][r]["ms"]
                                                                   for r, v in enumerate(tracked[key][ci])]) for ci in ids])
            if topdown:
                trk = [tracked[key][ci] for ci in ids]
                entry["tracked_ms_per_frame"] = median([median([median(v["ms"][1:]) for v in runs]) for runs in trk])
                entry["tracked_first_frame_ms"] = median([median([v["ms"][0] for v in runs]) for runs in trk])
                entry["tracked_crops_per_frame"] = float(np.mean([np.mean(v["crops"][1:]) for runs in trk for v in runs]))
                entry["tracked_detector_runs_per_video"] = float(np.mean([v["detector_runs"] for runs in trk for v in runs]))
                th = tt = 0
                for ci in ids:
                    for poses in video_first[key][ci][1:]:
                        h, t = pck_of(poses, comps[ci].people, operating)
                        th, tt = th + h, tt + t
                entry[f"tracked_PCK@{ALPHA}"] = th / tt if tt else None
            row["by_n"][str(n)] = entry
        results[key] = row
    for m in models.values():
        m.close()
    return {
        "machine": machine_info(), "date": time.strftime("%Y-%m-%d %H:%M %Z"), "command": " ".join(sys.argv),
        "settings": {"threads": a.threads, "people": ns, "composites_per_n": a.composites, "repeats": a.repeats,
                     "video_rounds": a.video_rounds, "video_frames": a.video_frames, "cell": a.cell, "seed": a.seed,
                     "min_keypoints": a.min_keypoints, "data": str(a.data)},
        "people_pool": [c.source for c in cuts],
        "composites": [{"n": c.n, "index": c.index, "size": [c.image.shape[1], c.image.shape[0]], "people": c.sources}
                       for c in comps],
        "results": results, "runtime_s": round(time.monotonic() - t_start, 1),
    }


def markdown(res: dict) -> str:
    ns = res["settings"]["people"]
    key = f"PCK@{ALPHA}"
    head = "| approach | " + " | ".join(f"ms, {n}" for n in ns) + " | " + " | ".join(f"PCK@0.1, {n}" for n in ns) + " |"
    lines = [head, "|---" * (1 + 2 * len(ns)) + "|"]

    def fmt(v, pct=False):
        return "–" if v is None else (f"{v:.2f}" if pct else f"{v:.1f}")

    for k, row in res["results"].items():
        b = row["by_n"]
        lines.append(f"| {row['label']}, still | " + " | ".join(fmt(b[str(n)]["ms_per_frame"]) for n in ns) + " | "
                     + " | ".join(fmt(b[str(n)][key], True) for n in ns) + " |")
        if row["topdown"]:
            lines.append(f"| {row['label']}, tracked | " + " | ".join(fmt(b[str(n)]["tracked_ms_per_frame"]) for n in ns)
                         + " | " + " | ".join(fmt(b[str(n)]["tracked_" + key], True) for n in ns) + " |")
    if all("x_multipose" in row["by_n"][str(ns[0])] for row in res["results"].values()):
        lines += ["", "ms per frame / MoveNet MultiPose's on the same composite in the same round (median):", "",
                  "| approach | " + " | ".join(f"N={n}" for n in ns) + " |", "|---" * (1 + len(ns)) + "|"]
        for k, row in res["results"].items():
            b = row["by_n"]
            lines.append(f"| {row['label']}, still | " + " | ".join(f"{b[str(n)]['x_multipose']:.2f}" for n in ns) + " |")
            if row["topdown"]:
                lines.append(f"| {row['label']}, tracked | "
                             + " | ".join(f"{b[str(n)]['tracked_x_multipose']:.2f}" for n in ns) + " |")
    lines += ["", "| approach | " + " | ".join(f"N={n}" for n in ns) + " |", "|---" * (1 + len(ns)) + "|"]
    for k, row in res["results"].items():
        b = row["by_n"]
        cell = []
        for n in ns:
            e = b[str(n)]
            s = f"{e['people_reported_per_frame']:.1f} people, {e['backend_runs_per_frame']:.1f} runs"
            if row["topdown"]:
                s += (f" (detector {e['prepare_ms']:.0f} ms + crops {e['infer_ms']:.0f} ms); tracked "
                      f"{e['tracked_crops_per_frame']:.1f} crops, {e['tracked_detector_runs_per_video']:.1f} detector runs")
            cell.append(s)
        lines.append(f"| {row['label']} | " + " | ".join(cell) + " |")
    return "\n".join(lines)


COLORS = {  # BGR
    "td_lightning": (40, 120, 230), "td_thunder": (150, 40, 150), "multipose": (170, 110, 30), "yolo": (60, 160, 60),
}


def _text(img, s, org, scale=0.5, color=(30, 30, 30), thick=1, anchor="left"):
    (w, h), _ = cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = org
    if anchor == "center":
        x -= w // 2
    elif anchor == "right":
        x -= w
    cv2.putText(img, s, (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def _line(img, p, q, color, thick, dashed):
    if not dashed:
        cv2.line(img, p, q, color, thick, cv2.LINE_AA)
        return
    d = np.hypot(q[0] - p[0], q[1] - p[1])
    steps = max(1, int(d // 9))
    for i in range(0, steps, 2):
        a = (int(p[0] + (q[0] - p[0]) * i / steps), int(p[1] + (q[1] - p[1]) * i / steps))
        b = (int(p[0] + (q[0] - p[0]) * min(i + 1, steps) / steps), int(p[1] + (q[1] - p[1]) * min(i + 1, steps) / steps))
        cv2.line(img, a, b, color, thick, cv2.LINE_AA)


def _nice_max(v: float) -> tuple[float, float]:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if v / step <= 8:
            return step * np.ceil(v / step), step
    return v, v / 5


def plot(res: dict, path: Path) -> None:
    """Two panels drawn with OpenCV: ms per frame against people, PCK@0.1 against people."""
    ns = res["settings"]["people"]
    W, H = 1500, 640
    img = np.full((H, W, 3), 255, np.uint8)
    series_ms, series_pck = [], []
    for k, row in res["results"].items():
        b = row["by_n"]
        c = COLORS.get(k, (90, 90, 90))
        series_ms.append((row["label"] + (", still" if row["topdown"] else ""), c, False,
                          [b[str(n)]["ms_per_frame"] for n in ns]))
        series_pck.append((row["label"] + (", still" if row["topdown"] else ""), c, False,
                           [b[str(n)][f"PCK@{ALPHA}"] for n in ns]))
        if row["topdown"]:
            series_ms.append((row["label"] + ", tracked", c, True, [b[str(n)]["tracked_ms_per_frame"] for n in ns]))
            series_pck.append((row["label"] + ", tracked", c, True, [b[str(n)][f"tracked_PCK@{ALPHA}"] for n in ns]))
    ymax_ms, step_ms = _nice_max(max(v for s in series_ms for v in s[3] if v is not None) * 1.05)
    panels = [("ms per frame (median)", series_ms, ymax_ms, step_ms, "{:.0f}", (70, 60)),
              ("PCK@0.1", series_pck, 1.0, 0.1, "{:.1f}", (620, 60))]
    pw, ph = 470, 470
    xmax = max(ns) + 0.5
    for title, series, ymax, step, fmt, (ox, oy) in panels:
        x0, y0 = ox + 10, oy + ph  # axes origin (bottom left)

        def to_px(x, y, x0=x0, y0=y0, ymax=ymax):
            return int(x0 + x / xmax * pw), int(y0 - y / ymax * ph)

        for yv in np.arange(0, ymax + 1e-9, step):
            _, py = to_px(0, yv)
            cv2.line(img, (x0, py), (x0 + pw, py), (228, 228, 228), 1)
            _text(img, fmt.format(yv), (x0 - 6, py + 5), 0.45, anchor="right")
        for n in ns:
            px, _ = to_px(n, 0)
            cv2.line(img, (px, y0), (px, y0 - ph), (238, 238, 238), 1)
            cv2.line(img, (px, y0), (px, y0 + 5), (30, 30, 30), 1)
            _text(img, str(n), (px, y0 + 22), 0.5, anchor="center")
        cv2.line(img, (x0, y0), (x0 + pw, y0), (30, 30, 30), 1)
        cv2.line(img, (x0, y0), (x0, y0 - ph), (30, 30, 30), 1)
        _text(img, title, (x0 + pw // 2, oy - 22), 0.65, thick=2, anchor="center")
        _text(img, "people in the frame", (x0 + pw // 2, y0 + 48), 0.5, anchor="center")
        for _, color, dashed, ys in series:
            pts = [to_px(n, v) for n, v in zip(ns, ys) if v is not None]
            for p, q in zip(pts, pts[1:]):
                _line(img, p, q, color, 2, dashed)
            for p in pts:
                if dashed:
                    cv2.circle(img, p, 5, (255, 255, 255), -1, cv2.LINE_AA)
                    cv2.circle(img, p, 5, color, 2, cv2.LINE_AA)
                else:
                    cv2.circle(img, p, 5, color, -1, cv2.LINE_AA)
    lx, ly = 1140, 80  # legend
    _text(img, "approach", (lx, ly - 12), 0.55, thick=2)
    for i, (label, color, dashed, _) in enumerate(series_ms):
        y = ly + 14 + i * 30
        _line(img, (lx, y), (lx + 40, y), color, 2, dashed)
        cv2.circle(img, (lx + 20, y), 5, (255, 255, 255) if dashed else color, -1, cv2.LINE_AA)
        if dashed:
            cv2.circle(img, (lx + 20, y), 5, color, 2, cv2.LINE_AA)
        _text(img, label, (lx + 50, y + 5), 0.45)
    s = res["settings"]
    notes = [f"{s['threads']} threads, LiteRT", f"{s['composites_per_n']} composites per N,",
             f"{s['repeats']} repeats each (stills)", "still: family.reset() per frame",
             "  (top-down: detector every frame)", f"tracked: frames 2-{s['video_frames']} of a",
             f"  {s['video_frames']}-frame video (crops; the detector", "  again only if someone is lost)", f"cells {s['cell'][0]}x{s['cell'][1]}, gray canvas",
             f"{res['date']}"]
    for i, t in enumerate(notes):
        _text(img, t, (lx, ly + 14 + len(series_ms) * 30 + 30 + i * 22), 0.42, color=(90, 90, 90))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise SystemExit(f"could not write {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA), help="YOLO-pose dataset the people are cut from")
    ap.add_argument("--people", default="1,2,4,8", help="people per composite (1, 2, 4, 8 have grids)")
    ap.add_argument("--composites", type=int, default=8, help="composites per N")
    ap.add_argument("--repeats", type=int, default=7, help="timed stills per composite and approach (rounds)")
    ap.add_argument("--video-rounds", type=int, default=5, help="tracked videos per composite and top-down approach")
    ap.add_argument("--video-frames", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cell", type=int, nargs=2, default=[320, 480], metavar=("W", "H"))
    ap.add_argument("--min-keypoints", type=int, default=8)
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--approaches", default=",".join(x[0] for x in APPROACHES))
    ap.add_argument("--json", nargs="?", const="-", help="write the results here ('-' or nothing: stdout)")
    ap.add_argument("--plot", default=str(ROOT / "docs" / "people_cost.png"), help="PNG plot ('' for none)")
    ap.add_argument("--save-composites", help="write the composites as JPEGs into this folder")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bad = [n for n in a.people.split(",") if int(n) not in GRIDS]
    if bad:
        ap.error(f"--people: no grid for {bad}; use {sorted(GRIDS)}")
    res = run(a)
    table = markdown(res)
    print(table)
    print(f"\nruntime {res['runtime_s']:.0f} s", file=sys.stderr)
    if a.plot:
        plot(res, Path(a.plot))
    if a.json == "-":
        print(json.dumps(res, indent=2))
    elif a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
