"""Typed configuration: pydantic v2 models that reject unknown keys, loaded from YAML.

Every error names the key path, the bad value and what is allowed. Stages are chosen by a
``type`` key (discriminated unions), the way Frigate's detector plugins declare their config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceConfig(_Strict):
    """Where frames come from. ``type: auto`` tries picamera2, then /dev/video*, then the bundled sample."""

    type: Literal["auto", "file", "images", "device", "picamera", "sample"] = "auto"
    path: str | None = Field(None, description="video file, image file/folder/glob, or device index or /dev/videoN")
    realtime: bool = Field(True, description="files: pace frames at the file's fps like a camera; false = as fast as possible")
    loop: bool = Field(False, description="files and images: start again at the end")
    fps: float | None = Field(None, gt=0, description="pacing for images, request for devices")
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    fourcc: str | None = Field(None, min_length=4, max_length=4, description="devices: e.g. MJPG")
    read_timeout_s: float = Field(2.0, gt=0, description="a device read slower than this is an error, never a hang")


class ModelConfig(_Strict):
    path: str = Field("default", description="model file (.tflite/.onnx) or 'default' for the shipped MoveNet INT8")
    family: Literal["auto", "movenet", "yolo"] = "auto"
    backend: Literal["auto", "tflite", "onnx"] = "auto"
    threads: int = Field(2, ge=1, le=64)
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    score_threshold: float = Field(0.25, ge=0, le=1, description="minimum person score")
    keypoint_threshold: float = Field(0.2, ge=0, le=1, description="keypoints below this are low-confidence")
    iou_threshold: float = Field(0.5, gt=0, le=1, description="NMS overlap for multi-person models")
    max_people: int = Field(10, ge=1, le=300)
    movenet_tracking: bool = Field(True, description="MoveNet: crop around the previous pose, as Google's reference does")


class JsonlOutput(_Strict):
    type: Literal["jsonl"]
    path: str = Field(..., description="file to append one JSON line per processed frame; '-' for stdout")
    flush_every: int = Field(1, ge=1, description="flush after this many lines")


class ConsoleOutput(_Strict):
    type: Literal["console"]
    interval_s: float = Field(1.0, gt=0, description="at most one status line per interval")


OutputConfig = Annotated[Union[JsonlOutput, ConsoleOutput], Field(discriminator="type")]


class PipelineConfig(_Strict):
    sink_queue: int = Field(8, ge=1, le=10000, description="per-sink queue length; the oldest item is dropped when full")
    max_frames: int | None = Field(None, ge=1, description="stop after this many processed frames")
    stop_timeout_s: float = Field(1.0, gt=0)


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Config(_Strict):
    source: SourceConfig = Field(default_factory=SourceConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    outputs: list[OutputConfig] = Field(default_factory=lambda: [ConsoleOutput(type="console")])
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


def _describe(err: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in ("jsonl", "console")))
    value = err.get("input")
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key (value {value!r}); remove it or check the spelling against config.yaml"
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return f"{path}: {err['msg']} (got {value!r})"
    return f"{path}: {err['msg']} (got {value!r})"


def validate(data: dict[str, Any] | None, origin: str = "config") -> Config:
    """Validate a plain dict; raise ConfigError listing every bad key path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError(f"{origin} is invalid:\n  " + "\n  ".join(lines)) from None


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Load YAML from ``path`` (None = built-in defaults)."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist; pass an existing file or omit --config") from None
    except OSError as exc:
        raise ConfigError(f"config file {p} cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {p} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return validate(data, origin=str(p))


def override(cfg: Config, **changes: Any) -> Config:
    """Apply dotted-path overrides (e.g. ``{'model.threads': 4}``) and re-validate the result."""
    data = cfg.model_dump(mode="python")
    for dotted, value in changes.items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return validate(data, origin="command-line options")
