"""Prometheus text exposition (format 0.0.4) of ``Stats.snapshot()``: what /metrics serves.

Durations are exported in seconds, the Prometheus base unit (``edgepose_stage_seconds``),
so Grafana's unit handling works without per-panel scaling.
"""

from __future__ import annotations

import math
from typing import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float | int | None) -> str:
    if value is None:
        return "NaN"
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(int(v)) if v.is_integer() and abs(v) < 2**53 else format(v, ".9g")


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[dict[str, str], float | int | None]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


SOURCE_STATES = ("starting", "streaming", "ended", "failed")


def format_metrics(snap: dict, info: dict, since_last_frame_s: float, clients: dict[str, int],
                   connections_dropped: dict[str, int]) -> str:
    """The /metrics body. ``info`` is StreamMeta.to_dict(); ``clients`` counts open connections by endpoint;
    ``connections_dropped`` counts the live view's closed or refused connections by reason."""
    w = _Writer()
    w.metric("edgepose_info", "gauge", "Model, family, runtime and version of the running pipeline.",
             [({k: str(info.get(k, "")) for k in ("model", "family", "runtime", "source", "version")}, 1)])
    w.metric("edgepose_fps", "gauge", "Processed frames per second over the rolling window.", [({}, snap["fps"])])
    w.metric("edgepose_frames_captured_total", "counter", "Frames read from the source.",
             [({}, snap["frames_captured"])])
    w.metric("edgepose_frames_processed_total", "counter", "Frames that went through the model.",
             [({}, snap["frames_processed"])])
    w.metric("edgepose_stage_seconds", "gauge", "Median time per pipeline stage over the rolling window.",
             [({"stage": k}, v / 1000.0) for k, v in sorted(snap["stage_ms"].items())])
    w.metric("edgepose_latency_seconds", "gauge", "Capture-to-result latency percentiles over the rolling window.",
             [({"quantile": "0.5"}, _ms(snap.get("latency_ms_p50"))),
              ({"quantile": "0.99"}, _ms(snap.get("latency_ms_p99")))])
    w.metric("edgepose_dropped_total", "counter", "Frames or results dropped, by the stage that dropped them.",
             [({"stage": k}, v) for k, v in sorted(snap["drops"].items())])
    w.metric("edgepose_model_output_frames_total", "counter",
             "Frames whose raw model output was judged broken, by kind: nonfinite, constant, noise.",
             [({"kind": k}, v) for k, v in sorted((snap.get("model_output") or {}).items())])
    w.metric("edgepose_people", "gauge", "People in the last processed frame.", [({}, snap["people"])])
    w.metric("edgepose_people_max", "gauge", "Most people seen in one frame since start.", [({}, snap["people_max"])])
    w.metric("edgepose_uptime_seconds", "gauge", "Seconds since the pipeline started.", [({}, snap["uptime_s"])])
    w.metric("edgepose_idle_frames_total", "counter", "Frames the model skipped because nobody was there (not drops).",
             [({}, snap.get("idle_frames", 0))])
    w.metric("edgepose_idle", "gauge", "1 while idle gating runs the model only on motion or at idle.fps.",
             [({}, int(snap.get("activity") == "idle"))])
    w.metric("edgepose_seconds_since_last_frame", "gauge",
             "Seconds since the last frame handled (processed, or skipped while idle).",
             [({}, since_last_frame_s)])
    state = snap.get("source_state", "")
    states = SOURCE_STATES if state in SOURCE_STATES else (*SOURCE_STATES, state)
    w.metric("edgepose_source_state", "gauge", "1 for the source's current state.",
             [({"state": s}, int(s == state)) for s in states])
    w.metric("edgepose_web_clients", "gauge", "Open live-view connections by endpoint.",
             [({"endpoint": k}, v) for k, v in sorted(clients.items())])
    w.metric("edgepose_web_clients_dropped_total", "counter",
             "Live-view connections closed or refused, all reasons (the sum of edgepose_web_connections_dropped_total).",
             [({}, sum(connections_dropped.values()))])
    w.metric("edgepose_web_connections_dropped_total", "counter",
             "Live-view connections closed or refused, by reason: request_timeout (no whole request in "
             "request_timeout_s), bad_request, pending_full, max_clients, max_clients_per_address (stream refused "
             "with 503), stalled (stopped reading a stream).",
             [({"reason": r}, n) for r, n in connections_dropped.items()])
    return w.text()


def _ms(value: float | None) -> float | None:
    return None if value is None else value / 1000.0
