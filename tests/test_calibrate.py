"""`edgepose models calibrate`: diverse frames with people, from the configured source, with a manifest.

The people check is judged independently: YOLO11n-pose (not the MoveNet reference the command uses)
must find a person in the kept frames far more often than in the clip as a whole.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import need
from edge.cli import main
from edge.errors import ConfigError
from edge.quantize.calibrate import MANIFEST, CalibrateOptions, DiversityFilter, calibration_files, collect, thumbnail
from edge.config import SourceConfig


@pytest.fixture(scope="module")
def yolo_judge(yolo_tflite: Path):
    """An independent person detector: YOLO11n-pose INT8 at its default threshold."""
    from edge.config import Config
    from edge.pipeline import load_model
    from edge.types import Frame

    model = load_model(Config.model_validate({"model": {"path": str(yolo_tflite), "threads": 2}}))

    def has_person(rgb: np.ndarray) -> bool:
        model.family.reset()
        poses, _ = model.infer(Frame(rgb, 0, time.monotonic_ns(), time.time()))
        return any(p.score >= 0.5 for p in poses)

    return has_person


@pytest.fixture(scope="module")
def clip_calibration(busy_clip: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calib") / "clip"
    assert main(["models", "calibrate", "--source", str(busy_clip), "--frames", "30", "--out", str(out)]) == 0
    return out


@pytest.mark.slow  # ~17 s
def test_clip_calibration_keeps_diverse_frames_with_people(clip_calibration: Path, busy_clip: Path, yolo_judge):
    manifest = json.loads((clip_calibration / MANIFEST).read_text())
    frames, counts = manifest["frames"], manifest["counts"]
    assert 20 <= len(frames) <= 30 and counts["kept"] == len(frames)
    assert counts["no_person"] > 0 and counts["duplicates"] > 0  # the clip has empty and static stretches
    assert counts["looked_at"] == counts["kept"] + counts["no_person"] + counts["duplicates"]
    assert manifest["reference"] and manifest["source"]["path"] == str(busy_clip)
    indices = [f["frame"] for f in frames]
    assert indices == sorted(indices) and indices[-1] - indices[0] > 600  # spread over the clip, not its start
    kept = [cv2.cvtColor(cv2.imread(str(clip_calibration / f["file"])), cv2.COLOR_BGR2RGB) for f in frames]
    assert all(f["person_score"] >= 0.3 and f["people"] >= 1 for f in frames)
    with_people = np.mean([yolo_judge(img) for img in kept])
    cap = cv2.VideoCapture(str(busy_clip))
    clip, i = [], 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if i % 20 == 0:
            clip.append(yolo_judge(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
        i += 1
    assert with_people >= 0.9, f"only {with_people:.0%} of the kept frames show a person"
    assert with_people > np.mean(clip) + 0.1, (with_people, np.mean(clip))
    thumbs = [thumbnail(img) for img in kept]  # no two kept frames are near-duplicates of each other
    for a in range(len(thumbs)):
        for b in range(a + 1, len(thumbs)):
            assert (np.abs(thumbs[a] - thumbs[b]) > 16).mean() >= 0.01


def test_without_reference_empty_frames_are_kept(busy_clip: Path, tmp_path: Path):
    src = SourceConfig(type="file", path=str(busy_clip))
    m = collect(src, tmp_path / "all", CalibrateOptions(frames=15, reference=None, max_read=400))
    assert m.counts.no_person == 0 and m.reference is None
    assert all(f.people is None for f in m.frames) and len(calibration_files(tmp_path / "all")) == m.counts.kept


def test_near_duplicates_are_skipped(data_dir: Path, tmp_path: Path):
    images = tmp_path / "images"
    images.mkdir()
    bus = data_dir / "images" / "bus.jpg"
    need(bus.is_file(), str(bus))
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        shutil.copy(bus, images / name)
    shutil.copy(data_dir / "images" / "zidane.jpg", images / "d.jpg")
    m = collect(SourceConfig(type="images", path=str(images)), tmp_path / "out", CalibrateOptions(frames=10))
    assert m.counts.read == 4 and m.counts.duplicates == 2 and m.counts.kept == 2
    assert sorted(p.name for p in calibration_files(tmp_path / "out")) == ["frame_000000.jpg", "frame_000003.jpg"]


def test_diversity_filter_measures_changed_share():
    f = DiversityFilter(0.01)
    base = np.full((32, 32), 100.0, np.float32)
    assert f.difference(base) is None
    f.add(base)
    noisy = base + np.random.RandomState(0).uniform(-8, 8, base.shape).astype(np.float32)
    assert f.difference(noisy) == 0.0  # sensor noise is not a new scene
    moved = base.copy()
    moved[10:16, 4:8] = 200.0  # a small person: 24 of 1024 pixels
    assert f.difference(moved) == pytest.approx(24 / 1024)


def test_output_folder_is_not_silently_mixed(clip_calibration: Path, busy_clip: Path, tmp_path: Path, capsys):
    target = tmp_path / "again"
    shutil.copytree(clip_calibration, target)
    argv = ["models", "calibrate", "--source", str(busy_clip), "--frames", "3", "--out", str(target)]
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    assert len(calibration_files(target)) == 3 and len(list(target.glob("frame_*"))) == 3


def test_calibration_folder_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        calibration_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no images"):
        calibration_files(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MANIFEST).write_text("not json")
    with pytest.raises(ConfigError, match="not a calibration manifest"):
        calibration_files(tmp_path / "bad")
