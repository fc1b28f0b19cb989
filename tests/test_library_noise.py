"""What LiteRT and ONNX Runtime print themselves: hidden at the default level, logged (clean) at DEBUG."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from test_cli import ROOT, edgepose

XNNPACK = "Created TensorFlow Lite XNNPACK delegate for CPU"
ORT_WARNING = "tf_half_pixel_for_nn"  # ONNX Runtime warns about this attribute while loading the YOLO ONNX export
ANSI = "\x1b["


def _stderr_lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_run_hides_the_xnnpack_line_at_the_default_level(shipped_movenet):
    proc = edgepose("run", "--source", "sample", "--output", "-", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "XNNPACK" not in proc.stderr, proc.stderr
    assert proc.stdout.count("\n") == 2  # the run itself is untouched: one line per sample image


@pytest.mark.parametrize("how", ["flag", "config"])
def test_run_logs_the_xnnpack_line_at_debug(tmp_path, shipped_movenet, how):
    if how == "flag":
        args = ["--log-level", "DEBUG"]
    else:
        cfg = tmp_path / "debug.yaml"
        cfg.write_text("logging:\n  level: DEBUG\n")
        args = ["--config", str(cfg)]
    proc = edgepose("run", "--source", "sample", "--output", "-", "-q", *args)
    assert proc.returncode == 0, proc.stderr
    lines = _stderr_lines_with(proc.stderr, XNNPACK)
    assert len(lines) == 1 and " DEBUG " in lines[0] and "edge.runtime.tflite" in lines[0], proc.stderr


def test_onnx_runtime_warnings_hidden_by_default_and_clean_at_debug(yolo_onnx):
    quiet = edgepose("models", "check", str(yolo_onnx))
    assert quiet.returncode == 0, quiet.stderr
    assert ORT_WARNING not in quiet.stderr and "onnxruntime" not in quiet.stderr and ANSI not in quiet.stderr
    loud = edgepose("models", "check", str(yolo_onnx), "--log-level", "debug")
    assert loud.returncode == 0, loud.stderr
    lines = _stderr_lines_with(loud.stderr, ORT_WARNING)
    assert len(lines) == 1, loud.stderr  # ORT warns once per node: repeats are counted, not repeated
    assert " DEBUG " in lines[0] and "edge.runtime.onnx" in lines[0] and "times)" in lines[0]
    assert ANSI not in loud.stderr  # ONNX Runtime's colour codes are stripped


def test_models_check_on_tflite_is_quiet_by_default(movenet_tflite):
    proc = edgepose("models", "check", str(movenet_tflite))
    assert proc.returncode == 0 and "XNNPACK" not in proc.stderr, proc.stderr
    loud = edgepose("models", "check", str(movenet_tflite), "--log-level", "DEBUG")
    assert len(_stderr_lines_with(loud.stderr, XNNPACK)) == 1, loud.stderr


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_capture_reemits_unknown_output_loudly_and_restores_fd2():
    """A real error printed by native code is never swallowed, even when the call raises."""
    proc = _python("""
        import logging, os
        from edge.logsetup import setup_logging
        from edge.runtime.native_log import LITERT_CHATTER, native_stderr
        setup_logging("INFO")
        log = logging.getLogger("edge.runtime.tflite")
        try:
            with native_stderr(log, LITERT_CHATTER, "LiteRT"):
                os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
                os.write(2, b"ERROR: Didn't find op for builtin opcode 'FOO'\\n")
                raise RuntimeError("load failed")
        except RuntimeError:
            pass
        os.write(2, b"fd 2 is back\\n")
    """)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.splitlines()
    assert any("WARNING" in line and "LiteRT: ERROR: Didn't find op" in line for line in err), proc.stderr
    assert not any("XNNPACK" in line for line in err)  # the known info line: DEBUG, hidden at INFO
    assert err[-1] == "fd 2 is back"


def test_capture_keeps_other_threads_log_lines_out(shipped_movenet):
    """Another thread's log line during a model load waits for fd 2, and comes out once, at its own level."""
    proc = _python("""
        import logging, threading, time
        from edge.logsetup import setup_logging
        from edge.runtime import native_log
        from edge.runtime.base import load_backend
        setup_logging("INFO")
        entered, calls = threading.Event(), []
        original = native_log._flush_stderr
        def flush_and_signal():  # called before fd 2 is redirected and again before it is put back
            original()
            calls.append(1)
            if len(calls) == 2:  # fd 2 still points at the capture: the other thread tries to log now
                entered.set()
                time.sleep(0.2)
        native_log._flush_stderr = flush_and_signal
        t = threading.Thread(target=lambda: (entered.wait(), logging.getLogger("other").info("from another thread")))
        t.start()
        load_backend("models/movenet-lightning-int8.tflite")
        t.join()
    """)
    assert proc.returncode == 0, proc.stderr
    lines = _stderr_lines_with(proc.stderr, "from another thread")
    assert len(lines) == 1 and " INFO " in lines[0] and "WARNING" not in lines[0], proc.stderr
    assert "XNNPACK" not in proc.stderr
