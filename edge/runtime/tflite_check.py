"""A TFLite file's values checked before LiteRT allocates it: what would crash the process, fails cleanly.

LiteRT verifies the flatbuffer's structure itself (a damaged offset or table is a clean
"not a valid Flatbuffer" error), but not every value in a well-formed file. Fuzzing the shipped
models (tests/test_fuzz_models.py) found values that pass its checks and then kill the process
in ``allocate_tensors``: an operator's first or second input set to -1 ("no tensor") segfaults,
a quantization scale of 1e30 aborts with "double free or corruption", an INT8 zero point out of
range segfaults, and a 2**23-wide dimension allocates gigabytes. ``check_header`` runs before the
file reaches LiteRT; ``check_model`` after LiteRT has verified and built it, before allocation.

Those checks cannot be complete: a scale that is fine alone aborts LiteRT when its ratio to a
neighbour's leaves the range an XNNPACK kernel accepts (1e-9 or 1e4 for one activation of MoveNet:
"double free or corruption" in the delegate's error path). So ``probe`` allocates and runs the model
once in a child process first: a crash there is a ModelError here, and this process never sees it.
A file that passed is remembered (path, size, modification time) for the rest of the process; the
shipped model and zoo downloads whose sha256 matches models/zoo.yaml skip the child (about 0.4 s here).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge.errors import ModelError

log = logging.getLogger(__name__)

MAX_TENSOR_BYTES = 1 << 30  # one tensor of a pose model is a few MB; GBs mean a damaged dimension
MAX_SCALE = 1e6  # quantization scales of real models are far below; 1e30 aborts LiteRT
# TensorType -> (bytes per element, zero-point range) for the types the checks cover
_TYPES = {0: (4, None), 1: (2, None), 2: (4, (-2**31, 2**31 - 1)), 3: (1, (0, 255)), 4: (8, None), 6: (1, None),
          7: (2, (-32768, 32767)), 9: (1, (-128, 127)), 10: (8, None), 16: (2, (0, 65535))}
# Builtin operators whose first two inputs may be absent (-1): the recurrent ones (e.g. CIFG LSTM)
_OPTIONAL_EARLY_INPUTS = {16, 35, 44, 46, 52}  # LSTM, RNN, UNIDIRECTIONAL_SEQUENCE_LSTM/RNN, BIDIRECTIONAL_SEQUENCE_LSTM
HINT = "The file is corrupt; download or export it again."
# Allocating and running a pose model once takes well under 5 s, even on a Pi 4. The bound stays under
# systemd's WatchdogSec=30s: during a reload the old pipeline keeps running but nobody pings.
PROBE_TIMEOUT_S = 25.0
_PROBE = """
import importlib, sys
import numpy as np
module, name, path, threads = sys.argv[1:5]
it = getattr(importlib.import_module(module), name)(model_path=path, num_threads=int(threads))
it.allocate_tensors()
for d in it.get_input_details():
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
it.invoke()
"""
_probed: set[tuple] = set()  # files that allocated and ran in a child process


def _schema():
    try:
        from ai_edge_litert import schema_py_generated

        return schema_py_generated
    except ImportError:
        pass
    try:
        from tensorflow.lite.python import schema_py_generated

        return schema_py_generated
    except ImportError:
        return None


def check_header(path: Path) -> None:
    """A TFLite file starts with a 4-byte root offset and the identifier 'TFL3' (bytes 4..8)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"model {path} cannot be read: {exc.strerror}") from None
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelError(f"model {path} is not a TFLite file: it lacks the 'TFL3' identifier at bytes 4..8 "
                         f"(truncated, damaged or another format). {HINT}")
    root = int.from_bytes(head[:4], "little")
    if not 8 <= root < size:
        raise ModelError(f"model {path} is damaged: its root offset {root} points outside the {size}-byte file. {HINT}")


def check_model(path: Path) -> None:
    """Raise ModelError for values that crash LiteRT natively. Call after LiteRT has built the model."""
    schema = _schema()
    if schema is None:  # tflite_runtime ships no schema module: LiteRT's own checks only
        log.debug("no TFLite schema module: %s is not checked beyond LiteRT's own verification", path)
        return
    data = path.read_bytes()
    try:
        problem = _problem(schema.Model.GetRootAsModel(data, 0))
    except Exception as exc:  # the structure LiteRT accepted still does not read: call it damaged
        problem = f"its structure cannot be read ({type(exc).__name__}: {exc})"
    if problem:
        raise ModelError(f"model {path} is damaged: {problem}. {HINT}")


def _problem(model) -> str | None:
    n_buffers = model.BuffersLength()
    codes = [max(c.BuiltinCode(), c.DeprecatedBuiltinCode())
             for c in (model.OperatorCodes(i) for i in range(model.OperatorCodesLength()))]
    for gi in range(model.SubgraphsLength()):
        g = model.Subgraphs(gi)
        tensors = [g.Tensors(ti) for ti in range(g.TensorsLength())]
        for ti, t in enumerate(tensors):
            if problem := _tensor_problem(t):
                return f"tensor {ti} ({t.Name().decode('utf-8', 'replace')[:80]}) {problem}"
        ops = [g.Operators(oi) for oi in range(g.OperatorsLength())]
        ins = [op.InputsAsNumpy().tolist() if op.InputsLength() else [] for op in ops]
        known = set(g.InputsAsNumpy().tolist()) if g.InputsLength() else set()  # graph inputs and op outputs
        for op in ops:
            if op.OutputsLength():
                known.update(op.OutputsAsNumpy().tolist())
        for oi, (op, inputs) in enumerate(zip(ops, ins)):
            code = codes[op.OpcodeIndex()] if op.OpcodeIndex() < len(codes) else None
            for k, ti in enumerate(inputs):
                if ti == -1 and k < 2 and code not in _OPTIONAL_EARLY_INPUTS:
                    return f"operator {oi} has no tensor for its input {k}"
                if 0 <= ti < len(tensors) and ti not in known and _no_data(model, tensors[ti], n_buffers):
                    return f"operator {oi} reads tensor {ti}, a constant with no data"
    return None


def _no_data(model, t, n_buffers: int) -> bool:
    if t.IsVariable() or (t.ShapeLength() and not int(np.prod(t.ShapeAsNumpy(), dtype=np.int64))):
        return False  # a variable, or a zero-element constant: no data is right
    b = t.Buffer()
    return b >= n_buffers or (model.Buffers(b).DataLength() == 0 and model.Buffers(b).Offset() <= 1)


def _tensor_problem(t) -> str | None:
    shape = t.ShapeAsNumpy().astype(np.int64) if t.ShapeLength() else np.zeros(0, np.int64)
    if (shape < 0).any():
        return f"has a negative dimension {shape.tolist()}"
    itemsize, zp_range = _TYPES.get(t.Type(), (1, None))
    if int(np.prod(shape, dtype=np.float64)) * itemsize > MAX_TENSOR_BYTES:
        return f"has shape {shape.tolist()}, over {MAX_TENSOR_BYTES >> 30} GB"
    q = t.Quantization()
    if q is None or not q.ScaleLength():
        return None
    scales = q.ScaleAsNumpy()
    if not (np.isfinite(scales).all() and (scales > 0).all() and (scales <= MAX_SCALE).all()):
        bad = scales[~(np.isfinite(scales) & (scales > 0) & (scales <= MAX_SCALE))]
        return f"has a quantization scale of {float(bad[0])!r} (scales must be positive, finite and sane)"
    if zp_range and q.ZeroPointLength():
        zps = q.ZeroPointAsNumpy()
        if (zps < zp_range[0]).any() or (zps > zp_range[1]).any():
            return f"has a zero point outside {zp_range[0]}..{zp_range[1]}"
    if q.ScaleLength() > 1 and not 0 <= q.QuantizedDimension() < max(1, len(shape)):
        return f"is quantized per channel along axis {q.QuantizedDimension()} of a {len(shape)}-D shape"
    return None


def probe(path: Path, interpreter_cls: type, threads: int = 1) -> None:
    """Allocate and run the model once in a child process; ModelError when LiteRT crashes or hangs there.

    A clean LiteRT error in the child is left to this process, which meets it again and reports it.
    """
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _probed:
        return
    if _in_zoo(path, st.st_size):  # the shipped model and verified downloads: known to run, no child needed
        _probed.add(key)
        return
    cmd = [sys.executable, "-c", _PROBE, interpreter_cls.__module__, interpreter_cls.__name__, str(path), str(threads)]
    try:
        # The unit sets PYTHONFAULTHANDLER; in the child its dump would hide LiteRT's own last words.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, cwd="/", env=env)
    except subprocess.TimeoutExpired:
        raise ModelError(f"model {path} did not finish loading and running once in {PROBE_TIMEOUT_S:.0f} s (LiteRT, "
                         f"in a test process): a damaged dimension can make it allocate gigabytes. {HINT}") from None
    except OSError as exc:  # no interpreter to start (an embedded build): LiteRT's own checks only
        log.debug("cannot probe %s in a child process: %s", path, exc)
        return
    if proc.returncode < 0:
        try:
            how = signal.Signals(-proc.returncode).name
        except ValueError:
            how = f"signal {-proc.returncode}"
        said = next((line for line in reversed(proc.stderr.splitlines()) if line.strip() and "INFO:" not in line), "")
        raise ModelError(f"model {path} crashes LiteRT ({how}{': ' + said.strip()[:120] if said else ''}) when it is "
                         f"loaded and run, so it was refused before it could take edgepose down: its values are "
                         f"damaged or beyond what LiteRT handles. {HINT}")
    if proc.returncode == 0:
        _probed.add(key)


def _in_zoo(path: Path, size: int) -> bool:
    """A file whose size and sha256 are a zoo entry's (models/zoo.yaml): the file that was tested, undamaged."""
    from edge.zoo import load_zoo, sha256_of  # lazy: only when a file has the size of a zoo entry

    sums = {e.sha256 for e in load_zoo().values() if e.size == size}
    return bool(sums) and sha256_of(path) in sums
