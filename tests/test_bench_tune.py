"""edgepose bench --tune: every workers x threads that fits the cores, the best of each kind, and --write."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.cli import main
from edge.config import ConfigError, load_config
from edge.bench_tune import write_placement
from edge.workers import combinations, usable_cores


def test_tune_measures_each_combination_on_the_pipeline_and_writes_the_fastest(tmp_path: Path, capsys, movenet_tflite,
                                                                              busy_clip):
    cfg = tmp_path / "edgepose.yaml"
    cfg.write_text("# my camera\nmodel:\n  path: default  # the shipped one\n  threads: 2\n", encoding="utf-8")
    out = tmp_path / "tune.json"
    assert main(["bench", "--model", str(movenet_tflite), "--source", str(busy_clip), "--tune", "--seconds", "1.5",
                 "--rounds", "1", "--warmup", "2", "--json", str(out), "--write", str(cfg)]) == 0
    text = capsys.readouterr()
    result = json.loads(out.read_text())
    rows = {(r["workers"], r["threads"]): r for r in result["rows"]}
    assert set(rows) == {(p.workers, p.threads) for p in combinations(usable_cores())}
    assert all(r["fps"] > 0 and r["frame_ms"] > 0 for r in rows.values())
    best = result["best_throughput"]
    assert rows[(best["workers"], best["threads"])]["fps"] == max(r["fps"] for r in rows.values())
    lat = result["best_latency"]
    assert rows[(lat["workers"], lat["threads"])]["frame_ms"] == min(r["frame_ms"] for r in rows.values())
    assert "best for throughput" in text.out and "workers: auto picks" in text.out
    written = load_config(cfg)
    assert (written.model.workers, written.model.threads) == (best["workers"], best["threads"])
    assert "# my camera" in cfg.read_text() and "# the shipped one" in cfg.read_text()


def test_write_keeps_comments_and_order_and_replaces_existing_values(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n    path: default\n    workers: 3   # was three\n    threads: 4\nsource:\n  type: sample\n")
    write_placement(cfg, 2, 1)
    assert cfg.read_text() == "model:\n    path: default\n    workers: 2   # was three\n    threads: 1\nsource:\n  type: sample\n"


def test_write_under_a_model_block_that_ends_in_a_nested_list(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  path: default\n  providers:\n    - CPUExecutionProvider\nlogging:\n  level: INFO\n")
    write_placement(cfg, 2, 1)
    loaded = load_config(cfg)
    assert (loaded.model.workers, loaded.model.threads, loaded.model.providers) == (2, 1, ["CPUExecutionProvider"])


def test_write_keeps_the_mode_the_line_ends_and_a_symlink(tmp_path: Path):
    real = tmp_path / "real.yaml"
    real.write_bytes(b"model:\r\n  path: default\r\n")
    real.chmod(0o640)
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    write_placement(link, 2, 1)
    assert link.is_symlink() and (real.stat().st_mode & 0o777) == 0o640
    assert real.read_bytes().count(b"\r\n") == 4 and b"\n" not in real.read_bytes().replace(b"\r\n", b"")


def test_write_adds_a_model_section_or_creates_the_file(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source:\n  type: sample\n")
    write_placement(cfg, 2, 1)
    assert load_config(cfg).model.workers == 2 and load_config(cfg).source.type == "sample"
    new = tmp_path / "new.yaml"
    write_placement(new, 1, 2)
    assert (load_config(new).model.workers, load_config(new).model.threads) == (1, 2)


def test_write_refuses_an_inline_section_and_leaves_a_bad_file_as_it_was(tmp_path: Path):
    inline = tmp_path / "inline.yaml"
    inline.write_text("model: {path: default}\n")
    with pytest.raises(ConfigError, match="by hand"):
        write_placement(inline, 2, 1)
    assert inline.read_text() == "model: {path: default}\n"
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  path: default\n  colour: red\n")
    with pytest.raises(ConfigError, match="colour"):
        write_placement(broken, 2, 1)
    assert broken.read_text() == "model:\n  path: default\n  colour: red\n"
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_write_without_tune_is_a_usage_error(capsys, movenet_tflite, tmp_path: Path):
    assert main(["bench", "--model", str(movenet_tflite), "--write", str(tmp_path / "c.yaml")]) == 2
    assert "--tune" in capsys.readouterr().err
