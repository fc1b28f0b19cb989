"""Backend protocol: tensors in, tensors out. A backend knows its runtime, never the model family.

Quantization is honoured here, once, for every runtime: ``run`` takes real-valued arrays
(whatever the family prepared: 0..255 or 0..1) and quantizes them with each input's own
scale and zero point; it returns outputs dequantized to float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from edge.errors import EdgeposeError, ModelError


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the runtime reports it."""

    name: str
    shape: tuple[int | None, ...]  # None (or -1 in the file) is a dynamic dimension
    dtype: np.dtype
    scale: float = 0.0  # 0.0 = not quantized
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        q = f" q(scale={self.scale:.6g}, zp={self.zero_point})" if self.quantized else ""
        return f"{self.name} [{dims}] {np.dtype(self.dtype).name}{q}"


def to_input(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Convert a real-valued array to what the model input expects (dtype, quantization)."""
    dtype = np.dtype(spec.dtype)
    if spec.quantized:
        info = np.iinfo(dtype)
        q = np.rint(array.astype(np.float32) / spec.scale) + spec.zero_point
        return np.clip(q, info.min, info.max).astype(dtype)
    if array.dtype == dtype:
        return array
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(array), info.min, info.max).astype(dtype)
    return array.astype(dtype)


def from_output(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Dequantize a model output to float32."""
    if spec.quantized:
        return (array.astype(np.float32) - spec.zero_point) * np.float32(spec.scale)
    return array if array.dtype == np.float32 else array.astype(np.float32)


class Backend(Protocol):
    """A loaded model in one runtime."""

    path: Path
    runtime: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    metadata: dict[str, str]

    def run(self, tensors: list[np.ndarray]) -> list[np.ndarray]: ...

    def close(self) -> None: ...


@dataclass
class BackendOptions:
    threads: int = 2
    providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])


BackendFactory = Callable[[Path, BackendOptions], Backend]
_REGISTRY: dict[str, BackendFactory] = {}


def register(name: str) -> Callable[[BackendFactory], BackendFactory]:
    def deco(factory: BackendFactory) -> BackendFactory:
        _REGISTRY[name] = factory
        return factory

    return deco


def backend_for(path: Path) -> str:
    """The runtime a file needs, by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return "tflite"
    if suffix == ".onnx":
        return "onnx"
    raise ModelError(
        f"model {path}: unknown file type '{suffix}'. edgepose reads .tflite (LiteRT) and .onnx "
        "(ONNX Runtime) files; convert the model to one of them."
    )


def load_backend(path: str | Path, kind: str = "auto", options: BackendOptions | None = None) -> Backend:
    """Open ``path`` in the requested runtime ('auto' picks by file suffix)."""
    from edge.runtime import onnx, tflite  # noqa: F401  (register the built-in runtimes)

    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"model file {path} does not exist. Check the path given by --model or model.path in the config."
        )
    name = backend_for(path) if kind == "auto" else kind
    if name not in _REGISTRY:
        raise ModelError(f"unknown backend '{name}'; choose one of: auto, {', '.join(sorted(_REGISTRY))}")
    expected = backend_for(path)
    if expected != name:
        raise ModelError(f"model {path} is a {expected} file but backend '{name}' was requested; use --backend {expected}")
    return _REGISTRY[name](path, options or BackendOptions())


def run_failure(path: Path, runtime: str, exc: BaseException, ran_before: bool) -> EdgeposeError:
    """The error for a failed inference. Before the first success it is the file (ModelError, exit 2: a
    restart cannot help); after it, a runtime failure (exit 1, so systemd restarts), such as a GPU out of
    memory on a Jetson."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if ran_before:
        return EdgeposeError(f"{runtime} failed to run model {path} on a frame after running it before: {first}. "
                             "This is a runtime failure (memory, device); restarting edgepose usually clears it.")
    return ModelError(f"model {path} loaded but {runtime} cannot run it: {first}. "
                      "The file is corrupt or truncated; download or export it again.")
