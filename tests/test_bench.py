"""`edgepose bench` on the real models and clips: the report's structure, and figures that are
positive and consistent with each other. No timing thresholds: speed goes to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import need
from edge import bench, sysinfo
from edge.bench_report import format_tables, write_report
from edge.cli import main

MODEL_FIELDS = {"model", "path", "family", "backend", "threads", "input", "frames", "warmup", "iterations", "ms", "fps"}
PIPELINE_FIELDS = {
    "model", "backend", "threads", "source", "realtime", "frames", "duration_s", "fps", "frame_ms", "stage_ms",
    "drops", "dropped_total", "latency_ms", "cpu_percent", "rss_mb", "soc_temp_c", "throttled", "tegrastats",
    "unavailable", "samples", "latencies_ms", "model_only_fps", "ratio_to_model_only",
}
SAMPLE_FIELDS = {"t_s", "fps", "cpu_percent", "rss_mb", "soc_temp_c", "throttled", "tegrastats"}


def close(a: float, b: float, rel: float = 0.10) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def check_ms(ms: dict) -> None:
    assert ms["min"] > 0 and ms["mean"] > 0
    assert ms["min"] <= ms["p50"] <= ms["p90"] <= ms["p99"] <= ms["max"]


def existing(path: Path) -> Path:
    need(path.is_file(), str(path))
    return path


@pytest.fixture(scope="module")
def movenet_onnx(models_dir: Path) -> Path:
    return existing(models_dir / "onnx" / "movenet_singlepose_lightning_int8_4_qdq.onnx")


@pytest.fixture(scope="module")
def pipeline_report(tmp_path_factory, movenet_tflite: Path, walk_clip: Path) -> dict:
    """One short pipeline run through the CLI, shared by the tests that read its JSON."""
    out = tmp_path_factory.mktemp("bench")
    rc = main(["bench", "--model", str(movenet_tflite), "--threads", "1", "--iterations", "20", "--warmup", "3",
               "--source", str(walk_clip), "--pipeline", "--seconds", "2.5", "--loop",
               "--output", str(out / "o.jsonl"), "--json", str(out / "bench.json")])
    assert rc == 0
    report = json.loads((out / "bench.json").read_text())
    report["_jsonl"] = str(out / "o.jsonl")
    return report


@pytest.mark.parametrize("model_fixture", ["movenet_tflite", "yolo_tflite"])
def test_model_only_runs_both_backends(request, tmp_path: Path, capsys, model_fixture: str, movenet_onnx, yolo_onnx):
    model = request.getfixturevalue(model_fixture)
    rc = main(["bench", "--model", str(model), "--backend", "tflite,onnx", "--threads", "1,2", "--iterations", "4",
               "--warmup", "1", "--json", "-"])
    assert rc == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["schema"] == bench.SCHEMA and not report["notes"]
    rows = report["model_only"]
    assert [(r["backend"], r["threads"]) for r in rows] == [("tflite", 1), ("tflite", 2), ("onnx", 1), ("onnx", 2)]
    assert {Path(r["path"]).suffix for r in rows} == {".tflite", ".onnx"}
    for r in rows:
        assert MODEL_FIELDS <= set(r)
        assert r["iterations"] == 4 and r["family"] == ("yolo" if "yolo" in model.name else "movenet")
        check_ms(r["ms"])
        assert close(r["fps"], 1000.0 / r["ms"]["mean"])
    assert "model only" in captured.err and rows[0]["model"] in captured.err  # the table went to stderr


def test_pipeline_json_has_every_field(pipeline_report: dict):
    assert pipeline_report["machine"]["cores"] >= 1 and pipeline_report["machine"]["python"]
    (p,) = pipeline_report["pipeline"]
    assert PIPELINE_FIELDS <= set(p)
    assert p["realtime"] is False and p["source"].endswith("intel_walk.mkv")
    assert p["frames"] >= 2 and p["duration_s"] > 0
    assert p["dropped_total"] == sum(p["drops"].values()) == 0  # a file at full speed applies back-pressure
    assert set(p["stage_ms"]) == set(bench.STAGES)
    for stage in ("capture", "prepare", "infer", "decode", "outputs"):
        assert p["stage_ms"][stage]["mean"] > 0, stage
    assert p["samples"] and all(SAMPLE_FIELDS <= set(s) for s in p["samples"])


def test_pipeline_figures_are_consistent(pipeline_report: dict):
    (p,) = pipeline_report["pipeline"]
    assert p["fps"] > 0
    assert close(p["fps"], 1000.0 / p["frame_ms"]["mean"])
    assert close(p["fps"], (p["frames"] - 1) / p["duration_s"])
    check_ms(p["frame_ms"])
    lat = p["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"]
    assert len(p["latencies_ms"]) == p["frames"]
    assert close(lat["p50"], float(np.median(p["latencies_ms"])), 0.01)
    # a frame's time on the inference thread cannot exceed its capture -> output latency
    infer_path = sum(p["stage_ms"][s]["p50"] for s in ("prepare", "infer", "decode"))
    assert infer_path <= lat["p50"]
    assert p["cpu_percent"]["mean"] > 0 and p["rss_mb"]["max"] > 10
    assert close(p["ratio_to_model_only"], p["fps"] / p["model_only_fps"], 0.01)
    outputs = [q for q in pipeline_report["model_only"] if q["threads"] == p["threads"]]
    assert outputs and outputs[0]["fps"] == p["model_only_fps"]


def test_pipeline_output_file_matches_frames(pipeline_report: dict):
    (p,) = pipeline_report["pipeline"]
    lines = Path(pipeline_report["_jsonl"]).read_text().splitlines()
    assert len(lines) >= p["frames"] + p["warmup_frames"]
    assert json.loads(lines[-1])["timings_ms"]["infer"] > 0


def test_unreadable_fields_are_null_with_a_reason(pipeline_report: dict):
    (p,) = pipeline_report["pipeline"]
    for field in ("soc_temp_c", "throttled", "tegrastats"):
        if p[field] is None:
            assert p["unavailable"][field], field
            assert all(s[field] is None for s in p["samples"])
        else:
            assert field not in p["unavailable"]
    for stage, value in p["stage_ms"].items():
        assert value is not None or p["unavailable"][f"stage_ms.{stage}"]


def test_tables_and_markdown_report(pipeline_report: dict, tmp_path: Path):
    text = format_tables(pipeline_report)
    assert "model only" in text and "whole pipeline" in text and "movenet" in text
    for reason in pipeline_report["pipeline"][0]["unavailable"].values():
        assert reason in text
    md = write_report(pipeline_report, tmp_path / "rep").read_text()
    assert md.startswith("# edgepose bench") and "## Model only" in md and "## Whole pipeline" in md
    assert "| model | backend | threads | FPS |" in md
    need(_has_matplotlib(), "matplotlib (pip install 'edgepose[plots]') for the report's plots")
    for name in ("latency_0.png", "timeline_0.png"):
        assert f"]({name})" in md
        image = cv2.imread(str(tmp_path / "rep" / name))
        assert image is not None and image.shape[0] > 100 and image.std() > 5
    assert json.loads((tmp_path / "rep" / "bench.json").read_text())["schema"] == bench.SCHEMA


def _has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def test_backend_without_a_twin_file_is_skipped_with_a_note(tmp_path: Path, movenet_tflite: Path):
    lone = tmp_path / "lone.tflite"
    lone.write_bytes(movenet_tflite.read_bytes())
    cases, notes = bench.plan_cases([str(lone)], ["tflite", "onnx"], [1])
    assert [(c.model, c.backend) for c in cases] == [(lone, "tflite")]
    assert len(notes) == 1 and "onnx" in notes[0] and "lone.tflite" in notes[0]


def test_twin_finds_the_other_format(movenet_tflite: Path, movenet_onnx: Path):
    assert bench.twin(movenet_tflite, "onnx") == movenet_onnx
    assert bench.twin(movenet_onnx, "tflite") == movenet_tflite


# -- sysinfo: fakes only stand in for hardware that is not here (Pi firmware, Jetson, SoC sensors) --
def test_soc_temperature_prefers_the_cpu_zone(tmp_path: Path):
    assert sysinfo.read_soc_temp(tmp_path / "none").value is None
    assert "thermal" in sysinfo.read_soc_temp(tmp_path / "none").reason
    for i, (kind, milli) in enumerate([("gpu-thermal", "61000"), ("cpu-thermal", "54321")]):
        zone = tmp_path / f"thermal_zone{i}"
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(milli + "\n")
    assert sysinfo.read_soc_temp(tmp_path) == sysinfo.Reading(54.3)


def test_pi_throttling_flags(tmp_path: Path):
    assert sysinfo.decode_throttled(0x50005) == {
        "raw": "0x50005", "flags": ["under_voltage", "throttled", "under_voltage_occurred", "throttled_occurred"]}
    assert sysinfo.parse_throttled("throttled=0x80008\n") == 0x80008
    sysfs = tmp_path / "get_throttled"
    sysfs.write_text("20002\n")
    assert sysinfo.read_throttled(sysfs).value["flags"] == ["arm_freq_capped", "arm_freq_capped_occurred"]
    missing = sysinfo.read_throttled(tmp_path / "absent")
    if missing.value is None:  # on a real Pi, vcgencmd answers instead
        assert "vcgencmd" in missing.reason


def test_tegrastats_line_is_parsed():
    line = ("RAM 2447/3956MB (lfb 4x4MB) SWAP 0/1978MB (cached 0MB) CPU [12%@1479,3%@1479,off,7%@1479] "
            "EMC_FREQ 0% GR3D_FREQ 45% PLL@39C CPU@41.5C PMIC@50C GPU@40C AO@47C thermal@40.75C "
            "POM_5V_IN 3172/3172 POM_5V_GPU 79/79 VDD_CPU_GPU_CV 1234mW")
    got = sysinfo.parse_tegrastats(line)
    assert got["ram_used_mb"] == 2447 and got["ram_total_mb"] == 3956
    assert got["cpu_percent"] == [12, 3, None, 7]
    assert got["gpu_percent"] == 45 and got["temp_c"]["cpu"] == 41.5
    assert got["power_mw"] == {"VDD_CPU_GPU_CV": 1234}


def test_process_meter_reads_this_process():
    meter = sysinfo.ProcessMeter()
    np.linalg.svd(np.random.default_rng(0).random((300, 300)))  # some CPU work to measure
    assert meter.cpu_percent() > 0
    rss = sysinfo.ProcessMeter.rss_mb()
    assert rss.value is not None and rss.value > 10
    info = sysinfo.machine_info()
    assert info["cores"] >= 1 and info["arch"] and "numpy" in info["packages"]


def test_timed_source_passes_the_model_size_to_the_camera():
    """The pipeline sizes a picamera's lores stream through the bench's wrapper; it must reach the camera."""
    from types import SimpleNamespace

    from edge.bench_pipeline import Recorder, TimedSource

    camera = SimpleNamespace(model_input_size=None, model_image="lores", name="cam")
    wrapped = TimedSource(camera, Recorder())
    assert hasattr(wrapped, "model_input_size")
    wrapped.model_input_size = (192, 192)
    assert camera.model_input_size == (192, 192) and wrapped.model_image == "lores"
