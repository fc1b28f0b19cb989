"""Damaged model files: `edgepose run` and `models check` refuse them with exit 2 and a message, or run them.

What fuzzing found (tests/fuzzing.py budget): LiteRT verifies a flatbuffer's structure itself, so a
damaged offset or a cut file is a clean error, but well-formed values can still kill the process in
``allocate_tensors``: an operator input of -1 (SIGSEGV), a quantization scale of 1e30 or one whose
ratio to its neighbours XNNPACK cannot take (SIGABRT, "double free or corruption"), an INT8 zero
point out of range (SIGSEGV), a huge dimension (GBs allocated), and a constant with no data fails
only at invoke. edge/runtime/tflite_check.py checks those values and probes the rest in a child
process. ONNX Runtime rejected or ran every mutation tried.

A mutation may be harmless (a flipped bit in a weight): the model then still loads and runs, and
exit 0 is right; its output is judged by the run's output monitor and by `models check`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import need
from edge.config import Config
from edge.errors import ModelError
from edge.model import load_model
from edge.types import Frame
from fuzzing import fuzz_settings
from test_cli import assert_user_error, edgepose

MODELS = {"movenet.tflite": "movenet_singlepose_lightning_int8_4.tflite", "yolo.tflite": "yolo11n-pose_int8.tflite",
          "movenet.onnx": "onnx/movenet_singlepose_lightning_int8_4_qdq.onnx",
          "yolo.onnx": "onnx/yolo11n-pose_int8_nhwc.onnx"}


# -- mutations ---------------------------------------------------------------------------------------
@st.composite
def mutations(draw, size: int):
    """(kind, [(offset, value...)]): byte flips, a cut, or a zeroed range; half of them near the ends, where much
    of the structure (flatbuffer root and tables, protobuf graph, appended metadata) lives, half anywhere."""
    def offset():
        where = draw(st.sampled_from(["head", "tail", "any", "any"]))
        if where == "head":
            return draw(st.integers(0, min(size, 65536) - 1))
        if where == "tail":
            return draw(st.integers(max(0, size - 65536), size - 1))
        return draw(st.integers(0, size - 1))

    kind = draw(st.sampled_from(["flip", "cut", "zero"]))
    if kind == "flip":
        return kind, [(offset(), draw(st.integers(0, 255))) for _ in range(draw(st.sampled_from([1, 1, 2, 4, 16])))]
    if kind == "cut":
        return kind, [(draw(st.integers(0, size - 1)),)]
    start = offset()
    return kind, [(start, draw(st.sampled_from([1, 4, 16, 256, 4096, 65536])))]


def mutate(data: bytes, mutation) -> bytes:
    kind, edits = mutation
    out = bytearray(data)
    if kind == "cut":
        return bytes(out[: edits[0][0]])
    for offset, value in edits:
        if kind == "flip":
            out[offset] = value if value != out[offset] else value ^ 0xFF
        else:
            out[offset: offset + value] = bytes(len(out[offset: offset + value]))
    return bytes(out)


def _model_file(models_dir: Path, name: str) -> Path:
    path = models_dir / MODELS[name]
    need(path.is_file(), str(path))
    return path


FRAME = Frame(np.random.RandomState(0).randint(0, 256, (480, 640, 3), dtype=np.uint8), 0, 0, 0.0)


def load_and_infer(path: Path) -> str:
    """'refused' (ModelError) or 'ran'; any other exception (or a crash) is the bug this looks for."""
    try:
        model = load_model(Config.model_validate({"model": {"path": str(path), "threads": 1}}))
    except ModelError:
        return "refused"
    try:
        poses, _ = model.infer(FRAME)
    except ModelError:
        return "refused"
    finally:
        model.backend.close()
    for p in poses:
        assert np.isfinite(p.keypoints).all() and np.isfinite(p.score)
    return "ran"


@pytest.mark.parametrize("name, examples", [("movenet.onnx", 12), ("yolo.onnx", 6), ("movenet.tflite", 5),
                                            ("yolo.tflite", 4)])
def test_damaged_model_is_refused_or_runs_in_process(models_dir, tmp_path_factory, name, examples):
    """load_model + one frame: a ModelError or poses, never another exception, a hang or a crash."""
    path = _model_file(models_dir, name)
    data = path.read_bytes()
    out = tmp_path_factory.mktemp("fuzz") / f"m{path.suffix}"
    seen = []

    @fuzz_settings(examples)
    @given(mutations(len(data)))
    def check(mutation):
        out.write_bytes(mutate(data, mutation))
        seen.append(load_and_infer(out))

    check()
    assert seen


def _cli_outcome(proc) -> None:
    assert proc.returncode in (0, 2), f"exit {proc.returncode}\n{proc.stderr[-3000:]}"  # < 0: killed by a signal
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    if proc.returncode == 2:
        assert "edgepose: " in proc.stderr  # one paragraph that says what is wrong


@pytest.mark.parametrize("name", ["movenet.tflite", "movenet.onnx"])
def test_damaged_model_cli_exits_0_or_2(models_dir, data_dir, tmp_path_factory, name):
    """The CLI in a subprocess (a crash there shows as a negative exit code): few examples, each runs twice."""
    path = _model_file(models_dir, name)
    data = path.read_bytes()
    folder = tmp_path_factory.mktemp("cli")
    image = data_dir / "images" / "bus.jpg"

    @fuzz_settings(2)
    @given(mutations(len(data)))
    def check(mutation):
        model = folder / f"m{path.suffix}"
        model.write_bytes(mutate(data, mutation))
        out = folder / "o.jsonl"
        run = edgepose("run", "--source", str(image), "--model", str(model), "--output", str(out), "-q", timeout=180)
        _cli_outcome(run)
        if run.returncode == 0:
            for line in out.read_text().splitlines():
                json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the JSONL"))
        _cli_outcome(edgepose("models", "check", str(model), timeout=180))

    check()


# -- the values fuzzing found, one by one: each crashed the process before the checks -----------------
def _schema():
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        pytest.skip("ai_edge_litert (its TFLite schema) is not installed")
    return schema_py_generated


def _vector(table, slot: int) -> int:
    return table.Vector(table.Offset(slot))


def _edit(data: bytes, what: str, index: int, value) -> bytes:
    """Write ``value`` into one field of the MoveNet file's flatbuffer (LiteRT's verifier still accepts it)."""
    s = _schema()
    model = s.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    out = bytearray(data)
    if what == "op_input0":  # operator ``index``'s first input
        struct.pack_into("<i", out, _vector(graph.Operators(index)._tab, 6), value)
    elif what in ("scale", "zero_point"):
        q = graph.Tensors(index).Quantization()
        pos = _vector(q._tab, 8 if what == "scale" else 10)
        struct.pack_into("<f" if what == "scale" else "<q", out, pos, value)
    elif what == "dim2":
        struct.pack_into("<i", out, _vector(graph.Tensors(index)._tab, 4) + 8, value)
    elif what == "buffer":
        t = graph.Tensors(index)._tab
        struct.pack_into("<I", out, t.Pos + t.Offset(8), value)
    return bytes(out)


@pytest.mark.parametrize("what, index, value, message", [
    ("op_input0", 14, -1, "has no tensor for its input 0"),  # was SIGSEGV
    ("scale", 280, 1e30, "quantization scale"),  # was SIGABRT
    ("zero_point", 175, -300, "zero point outside -128..127"),  # was SIGSEGV
    ("dim2", 247, 8388620, "over 1 GB"),  # was 6 GB allocated
    ("buffer", 23, 1, "a constant with no data"),  # was a RuntimeError traceback at the first frame
    ("scale", 203, 1e-9, "crashes LiteRT"),  # fine alone, but XNNPACK aborts on the ratio: only the probe sees it
])
def test_values_that_crashed_litert_are_refused(movenet_tflite, tmp_path, what, index, value, message):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(_edit(movenet_tflite.read_bytes(), what, index, value))
    for args in (["models", "check", str(bad)], ["run", "--source", "sample", "--model", str(bad), "-q"]):
        proc = edgepose(*args, timeout=180)
        assert_user_error(proc, 2, str(bad), message)


def test_tflite_header_is_checked_before_litert_sees_the_file(tmp_path, movenet_tflite):
    from edge.runtime.base import load_backend

    data = bytearray(movenet_tflite.read_bytes())
    data[4:8] = b"XXXX"
    bad = tmp_path / "h.tflite"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="lacks the 'TFL3' identifier"):
        load_backend(bad)
    data[4:8], data[0:4] = b"TFL3", (len(data) + 5).to_bytes(4, "little")
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="root offset"):
        load_backend(bad)


def test_a_damaged_onnx_file_leaves_stdout_to_the_jsonl(tmp_path, yolo_onnx):
    """ONNX Runtime printed "EP Error ... Falling back and retrying" to stdout, where `--output -` writes JSON."""
    data = bytearray(yolo_onnx.read_bytes())
    at = data.find(b"images")  # the input's name: invalid UTF-8 there fails the load after a retry
    data[at + 1] = 0x91
    bad = tmp_path / "u8.onnx"
    bad.write_bytes(bytes(data))
    proc = edgepose("run", "--source", "sample", "--model", str(bad), "--output", "-", "-q")
    assert_user_error(proc, 2, str(bad), "could not be loaded by ONNX Runtime")  # 1.26+ also names the UTF-8; 1.23 not
    assert proc.stdout == ""
