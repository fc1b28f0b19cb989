"""Calibration frames from the configured source: diverse, with people in them, stored with a manifest.

Post-training quantization takes every activation range from these frames, so they must look like what the
deployed camera sees. They are read from the same Source the pipeline uses (camera, clip, images); a frame
too like one already kept (a static scene teaches the ranges nothing new) is skipped, and so is a frame in
which a reference model finds nobody (an empty room would set ranges for nobody).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edge import __version__
from edge.capture.base import IMAGE_SUFFIXES, EndOfStream, build_source, to_rgb8
from edge.config import SourceConfig
from edge.errors import ConfigError
from edge.types import Frame

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
THUMB = 32  # side of the grayscale thumbnail compared for near-duplicates
CHANGED = 16  # a thumbnail pixel "changed" when its gray level moved by more than this (noise stays below)
MAX_MISSES = 50  # consecutive empty reads (no frame in time) before giving up


@dataclass
class CalibrateOptions:
    frames: int = 200
    every: int | None = None  # look at every k-th frame; None = files: spread over the clip, live: every frame
    min_change: float = 0.01  # share of 32x32 gray thumbnail pixels that must differ from every kept frame
    min_interval_s: float = 0.0  # live sources: at least this long (capture clock) between kept frames
    reference: str | None = "default"  # model that tells whether someone is there; None = keep empty frames too
    min_person_score: float = 0.3
    max_read: int | None = None  # stop after reading this many frames
    image_format: str = "jpg"  # jpg (quality 95) or png (lossless)
    overwrite: bool = False


@dataclass
class Counts:
    read: int = 0
    looked_at: int = 0
    duplicates: int = 0
    no_person: int = 0
    kept: int = 0


@dataclass
class KeptFrame:
    file: str
    frame: int
    t_ms: float
    width: int
    height: int
    diff: float | None
    people: int | None
    person_score: float | None


@dataclass
class Manifest:
    source: dict
    options: dict
    reference: str | None
    counts: Counts = field(default_factory=Counts)
    frames: list[KeptFrame] = field(default_factory=list)
    edgepose: str = __version__
    kind: str = "edgepose-calibration"
    created: str = ""

    def write(self, folder: Path) -> Path:
        self.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        path = folder / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path


def thumbnail(image: np.ndarray) -> np.ndarray:
    """A 32x32 float grayscale thumbnail: cheap to compare, blind to noise and small motion."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)


class DiversityFilter:
    """Keeps a frame only when its thumbnail differs enough from every thumbnail kept so far.

    The measure is the share of thumbnail pixels that changed by more than CHANGED gray levels: a person
    walking through a fixed camera's view changes a few percent of them, sensor noise and compression none,
    while a mean difference would drown a small person in the static background.
    """

    def __init__(self, min_change: float):
        self.min_change = min_change
        self._thumbs: list[np.ndarray] = []

    def difference(self, thumb: np.ndarray) -> float | None:
        """Changed share against the closest kept thumbnail (None when nothing is kept yet)."""
        if not self._thumbs:
            return None
        return float((np.abs(np.stack(self._thumbs) - thumb) > CHANGED).mean(axis=(1, 2)).min())

    def add(self, thumb: np.ndarray) -> None:
        self._thumbs.append(thumb)


class PersonJudge:
    """A reference model (any supported family, tracking off) that says whether a frame shows someone."""

    def __init__(self, model: str, min_score: float, threads: int = 2):
        from edge.config import Config
        from edge.model import load_model

        cfg = Config.model_validate({"model": {"path": model, "threads": threads, "score_threshold": 0.0,
                                               "movenet_tracking": False}})
        self.model = load_model(cfg)
        self.min_score = min_score
        self.name = str(self.model.path)

    def __call__(self, frame: Frame) -> tuple[int, float]:
        """(people scoring at least min_score, best person score)."""
        self.model.family.reset()
        poses, _ = self.model.infer(frame)
        scores = [p.score for p in poses]
        return sum(s >= self.min_score for s in scores), max(scores, default=0.0)


def auto_every(cfg: SourceConfig, frames: int) -> int:
    """For a video file: look at about four times as many frames as wanted, spread over the whole clip."""
    if cfg.type != "file" or not cfg.path:
        return 1
    cap = cv2.VideoCapture(cfg.path)
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    return max(1, count // max(1, 4 * frames))


def _prepare_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"calibrate --out {out}: exists and is not a folder; choose a folder")
    old = [p for p in out.iterdir() if p.name == MANIFEST or p.suffix.lower() in IMAGE_SUFFIXES] if out.is_dir() else []
    if old and not overwrite:
        raise ConfigError(f"calibrate --out {out}: the folder already holds {len(old)} frame(s) or a manifest; "
                          "choose an empty folder or pass --overwrite")
    for p in old:
        p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def collect(source: SourceConfig, out: str | Path, options: CalibrateOptions,
            progress: Callable[[Counts], None] | None = None) -> Manifest:
    """Read frames from ``source`` until ``options.frames`` diverse frames with people are stored in ``out``."""
    out = Path(out)
    if options.frames < 1:
        raise ConfigError(f"calibrate --frames: must be at least 1, got {options.frames}")
    if options.image_format not in ("jpg", "png"):
        raise ConfigError(f"calibrate --format: jpg or png, got {options.image_format!r}")
    if source.type in ("file", "images"):
        source = source.model_copy(update={"realtime": False, "loop": False})
    every = options.every or auto_every(source, options.frames)
    judge = PersonJudge(options.reference, options.min_person_score) if options.reference else None
    _prepare_folder(out, options.overwrite)
    manifest = Manifest(source=source.model_dump(mode="json"), options={**asdict(options), "every": every},
                        reference=judge.name if judge else None)
    counts, diversity = manifest.counts, DiversityFilter(options.min_change)
    src = build_source(source)
    src.open()
    last_kept_ns, misses = None, 0
    try:
        while counts.kept < options.frames and (options.max_read is None or counts.read < options.max_read):
            try:
                got = src.read()
            except EndOfStream:
                break
            if got is None:
                misses += 1
                if misses >= MAX_MISSES:
                    log.warning("calibrate: %s gave no frame %d times in a row; stopping", src.name, misses)
                    break
                continue
            misses = 0
            image, t_ns = got
            index = counts.read
            counts.read += 1
            if index % every:
                continue
            if src.live and last_kept_ns is not None and (t_ns - last_kept_ns) / 1e9 < options.min_interval_s:
                continue
            counts.looked_at += 1
            thumb = thumbnail(image)
            diff = diversity.difference(thumb)
            if diff is not None and diff < options.min_change:
                counts.duplicates += 1
                continue
            people, score = (None, None)
            if judge is not None:
                people, score = judge(Frame(image, index, t_ns, time.time()))
                if people == 0:
                    counts.no_person += 1
                    continue
            name = f"frame_{index:06d}.{options.image_format}"
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if options.image_format == "jpg" else []
            if not cv2.imwrite(str(out / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params):
                raise ConfigError(f"calibrate --out {out}: cannot write {name}; check the folder's permissions and space")
            diversity.add(thumb)
            last_kept_ns = t_ns
            counts.kept += 1
            manifest.frames.append(KeptFrame(name, index, round(t_ns / 1e6, 3), image.shape[1], image.shape[0],
                                             None if diff is None else round(diff, 4), people,
                                             None if score is None else round(float(score), 4)))
            if progress:
                progress(counts)
    finally:
        src.close()
    manifest.write(out)
    log.debug("calibrate: kept %d of %d frames read (%d near-duplicates, %d without people)",
             counts.kept, counts.read, counts.duplicates, counts.no_person)
    return manifest


def calibration_files(folder: str | Path) -> list[Path]:
    """The frames of a calibration folder: those its manifest lists, else every image in it (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"calibration folder {folder} does not exist; make one with: "
                          "edgepose models calibrate --source SRC --frames N --out DIR")
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            names = [f["file"] for f in json.loads(manifest.read_text(encoding="utf-8"))["frames"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{manifest} is not a calibration manifest ({exc}); delete it or calibrate again") from None
        files = [folder / n for n in names if (folder / n).is_file()]
    else:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"calibration folder {folder} holds no images; fill it with: "
                          "edgepose models calibrate --source SRC --frames N --out DIR")
    return files


def read_frame(path: Path, index: int = 0) -> Frame:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ConfigError(f"calibration image {path} cannot be read; delete it or calibrate again")
    return Frame(to_rgb8(image, bgr=True, what=str(path)), index, time.monotonic_ns(), time.time())


def cli_calibrate(args, out) -> int:
    """`edgepose models calibrate`: the config's source (or --source), frames and manifest into --out."""
    from edge.capture.base import guess_type
    from edge.config import load_config, override

    cfg = load_config(args.config)
    if args.source:
        cfg = override(cfg, **{"source.path": None if args.source in ("auto", "sample") else args.source,
                               "source.type": guess_type(args.source)})
    opts = CalibrateOptions(frames=args.frames, every=args.every, min_change=args.min_change,
                            min_interval_s=args.min_interval,
                            reference=None if str(args.reference).lower() == "none" else args.reference,
                            min_person_score=args.min_person_score, max_read=args.max_read,
                            image_format=args.image_format, overwrite=args.overwrite)
    m = collect(cfg.source, args.out, opts)
    c = m.counts
    out.write(f"kept {c.kept} frames in {args.out} (read {c.read}, looked at {c.looked_at}: {c.duplicates} "
              f"near-duplicates and {c.no_person} without people skipped)\n")
    out.write(f"manifest: {Path(args.out) / MANIFEST}\n")
    if c.kept < opts.frames:
        out.write(f"note: fewer than the {opts.frames} frames asked for; the source ended or held too few "
                  "diverse frames with people\n")
    return 0 if c.kept else 2
