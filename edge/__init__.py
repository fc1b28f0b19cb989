"""edgepose: real-time human pose estimation on edge devices.

Public API: ``Pipeline``, ``load_config`` and ``__version__``. Heavy modules (OpenCV, runtimes)
load only when ``Pipeline`` is first used, so ``import edge`` stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Pipeline", "load_config", "__version__"]


def __getattr__(name: str):
    if name == "Pipeline":
        from edge.pipeline import Pipeline

        return Pipeline
    if name == "load_config":
        from edge.config import load_config

        return load_config
    raise AttributeError(f"module 'edge' has no attribute {name!r}")
