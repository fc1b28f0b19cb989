"""Sink protocol and registry. A sink receives every PoseResult on its own thread (see pipeline.py).

Sinks never see threads or queues: ``open`` once, ``write`` per result, ``close`` once.
Config picks a sink by its ``type`` key; each sink module registers a factory under that name.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from edge.errors import ConfigError
from edge.types import PoseResult, StreamMeta


class Sink(Protocol):
    """Optional attribute ``queue_length``: the sink's own queue size (displays use 1)."""

    name: str

    def open(self, meta: StreamMeta) -> None:
        """Called once before the first result. ``meta`` describes the model and stream."""

    def write(self, result: PoseResult) -> None: ...

    def close(self) -> None: ...


SinkFactory = Callable[[Any], Sink]  # takes the sink's own pydantic config section
_REGISTRY: dict[str, SinkFactory] = {}


def register(name: str) -> Callable[[SinkFactory], SinkFactory]:
    def deco(factory: SinkFactory) -> SinkFactory:
        _REGISTRY[name] = factory
        return factory

    return deco


def build_sink(cfg: Any) -> Sink:
    """Build the sink for one ``outputs:`` entry (its ``type`` selects the factory)."""
    from edge.outputs import console, framebuffer, jsonl, mqtt, web, window  # noqa: F401  (register built-in sinks)

    try:
        factory = _REGISTRY[cfg.type]
    except KeyError:
        raise ConfigError(f"outputs: unknown type '{cfg.type}'; choose one of {sorted(_REGISTRY)}") from None
    return factory(cfg)
