"""Typed configuration: pydantic v2 models that reject unknown keys, loaded from YAML.

Every error names the key path, the bad value and what is allowed. Stages are chosen by a
``type`` key (discriminated unions), the way Frigate's detector plugins declare their config.
An echoed value is capped (edge.errors.brief) and a secret never echoed: a key named like one
(password, token, ...; WebOutput.token is the one such field today), URL user-info, or the value
of either anywhere else in the message. The file itself is read by edge.config_yaml, which bounds it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from edge import config_yaml
from edge.analytics.config import AnalyticsConfig, AnglesAnalytics, RepsAnalytics, ZonesAnalytics  # noqa: F401 (re-exported)
from edge.configbase import Strict as _Strict
from edge.idle import IdleConfig  # noqa: F401 (re-exported)
from edge.errors import ECHO_CAP, MASK, ConfigError, brief, is_secret_key, redact, safe_repr, url_secrets
from edge.outputs.mqtt_config import MqttHass, MqttOutput, MqttTls  # noqa: F401 (re-exported)


class SourceConfig(_Strict):
    """Where frames come from. ``type: auto`` tries picamera2, then /dev/video*, then the bundled sample."""

    type: Literal["auto", "file", "images", "device", "picamera", "network", "gstreamer", "sample"] = "auto"
    path: str | None = Field(None, description="video file, image file/folder/glob, device index or /dev/videoN, "
                             "network URL (rtsp://, http://...) or GStreamer pipeline ending in appsink")
    realtime: bool = Field(True, description="files: pace frames at the file's fps like a camera; false = as fast as possible")
    loop: bool = Field(False, description="files and images: start again at the end")
    fps: float | None = Field(None, gt=0, description="pacing for images, request for devices and picamera")
    width: int | None = Field(None, gt=0, description="devices and picamera (main stream): requested frame width")
    height: int | None = Field(None, gt=0)
    fourcc: str | None = Field(None, min_length=4, max_length=4, description="devices: e.g. MJPG")
    read_timeout_s: float = Field(2.0, gt=0, description="a camera read slower than this is an error (picamera) or a "
                                  "lost stream that is reconnected (devices, network), never a hang")
    camera: int | str | None = Field(None, description="picamera: camera index (0, 1) or sensor model (e.g. imx708); "
                                     "default the first camera")
    lores: bool | Literal["auto"] | tuple[int, int] = Field(
        "auto", description="picamera: a second stream for the model, resized by the ISP; auto/true = at the model's "
        "input size, [w, h] = that size, false = none")
    controls: dict[str, bool | int | float | str | list[int]] = Field(
        default_factory=dict, description="picamera: libcamera controls, e.g. ExposureTime (µs), AnalogueGain, "
        "AwbEnable, AwbMode (auto, daylight, cloudy, indoor, ...), ScalerCrop [x, y, w, h]")
    buffer_count: int = Field(4, ge=1, le=32, description="picamera: frame buffers; fewer use less CMA memory")
    open_timeout_s: float = Field(10.0, gt=0, description="network: give up one connection attempt after this long")
    reconnect_initial_s: float = Field(1.0, gt=0, description="devices and network: first wait before reconnecting")
    reconnect_max_s: float = Field(30.0, gt=0, description="devices and network: the wait doubles up to this")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="network: RTSP over TCP (robust) or UDP")
    decode_threads: int | None = Field(None, ge=0, le=64, description="files and network streams: FFmpeg decoder "
                                       "threads; default 1 for a file with realtime: false (the model keeps the other "
                                       "cores), FFmpeg's own choice otherwise (a live stream must keep up); 0 = FFmpeg's")
    rotate: Literal[0, 90, 180, 270] = Field(0, description="every source: turn each frame this many degrees "
                                             "clockwise as it is read, before the flips (a camera mounted sideways "
                                             "or upside down); the model, keypoints and outputs see the turned "
                                             "picture. width/height stay the camera's own")
    hflip: bool = Field(False, description="every source: mirror each frame left-right, after the rotation")
    vflip: bool = Field(False, description="every source: mirror each frame top-bottom, after the rotation "
                        "(picamera: flips and rotate 180 are done by the ISP, free)")

    # Field validators, not a model validator: an error then echoes one value, never the whole section
    # (whose path may hold a camera password).
    @field_validator("reconnect_max_s")
    @classmethod
    def _cap_at_least_initial(cls, v: float, info: ValidationInfo) -> float:
        if v < info.data.get("reconnect_initial_s", 0):
            raise ValueError("must be >= reconnect_initial_s")
        return v

    @field_validator("lores")
    @classmethod
    def _lores_size(cls, v):
        if isinstance(v, tuple) and min(v) < 2:
            raise ValueError("[width, height] must both be at least 2")
        return v


class ModelConfig(_Strict):
    path: str = Field("default", description="model file (.tflite/.onnx) or 'default' for the shipped MoveNet INT8")
    family: Literal["auto", "movenet", "movenet_multipose", "yolo", "yolo_e2e", "blazepose"] = "auto"
    backend: Literal["auto", "tflite", "onnx"] = "auto"
    threads: int = Field(2, ge=1, le=64, description="threads per model copy (XNNPACK / ONNX Runtime intra-op)")
    workers: Annotated[int, Field(ge=1, le=16)] | Literal["auto"] = Field(
        1, description="copies of the model that take frames in turn (results kept in frame order); auto = as many "
        "as the cores hold, see edge/workers.py; `edgepose bench --tune` measures the best on this device")
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    score_threshold: float | None = Field(
        None, ge=0, le=1, description="minimum person score; null = the family's default (MoveNet 0.15, YOLO 0.25)"
    )
    keypoint_threshold: float = Field(0.2, ge=0, le=1, description="keypoints below this are low-confidence")
    iou_threshold: float = Field(0.7, gt=0, le=1, description="NMS overlap for multi-person models (Ultralytics' 0.7)")
    max_people: int = Field(10, ge=1, le=300)
    movenet_tracking: bool = Field(True, description="MoveNet: crop around the previous pose, as Google's reference does")
    detector: str | None = Field(
        None, description="BlazePose: the person detector file; null = pose_detection.tflite beside the model "
        "or in the model folders (scripts/fetch_blazepose.py)")
    coco17_view: bool = Field(False, description="BlazePose: emit the 17 COCO keypoints instead of all 33 landmarks")
    person_detector: str = Field(
        "auto", description="top-down multi-person for single-person MoveNet models (edge/poses/topdown.py): a person "
        "detector finds each person and the model poses each crop. auto = the shipped MoveNet MultiPose INT8 boxes; "
        "a file or zoo id of a MoveNet MultiPose model (which also puts BlazePose's landmark model top-down; with auto "
        "BlazePose keeps its own one-person detector); none = pose the whole frame as one person")
    detector_score: float = Field(
        0.03, ge=0, le=1, description="top-down: a detector box this sure is posed; the pose model's own score "
        "(score_threshold) then decides, so a low value finds small and half-hidden people")
    redetect_s: float = Field(
        1.0, ge=0, description="top-down: while people are tracked, look for newcomers this often (stream seconds); "
        "0 = every frame. The detector also runs whenever nobody is tracked or someone was lost")


class JsonlOutput(_Strict):
    type: Literal["jsonl"]
    path: str = Field(..., description="file to append one JSON line per processed frame; '-' for stdout")
    flush_every: int = Field(1, ge=1, description="flush after this many lines")
    append: bool = Field(False, description="append to an existing file instead of starting it anew")


class ConsoleOutput(_Strict):
    type: Literal["console"]
    interval_s: float = Field(1.0, gt=0, description="at most one status line per interval")


class _DisplayOutput(_Strict):
    """What every output that draws skeletons shares (see edge/outputs/draw.py)."""

    min_score: float = Field(0.2, ge=0, le=1, description="keypoints below this score are not drawn")
    badge: bool = Field(True, description="draw the FPS / latency / people badge")


class WebOutput(_DisplayOutput):
    """HTTP live view: page, MJPEG stream, Server-Sent Events, /healthz and /metrics."""

    type: Literal["web"]
    host: str = Field("127.0.0.1", description="127.0.0.1 = this device only; 0.0.0.0 exposes it on the network")
    port: int = Field(8080, ge=0, le=65535, description="0 = any free port")
    token: str | None = Field(None, min_length=8, description="require 'Authorization: Bearer TOKEN' or ?token=TOKEN")
    jpeg_quality: int = Field(80, ge=10, le=100)
    max_fps: float = Field(15.0, gt=0, le=120, description="at most this many frames (MJPEG) and events (SSE) a second")
    overlay: bool = Field(True, description="draw skeletons into /stream.mjpg (?overlay=0 per request turns it off)")
    max_clients: int = Field(16, ge=1, le=1000, description="streams (/stream.mjpg, /events) at once; more get 503 "
                             "with Retry-After. /healthz, /metrics and the page are never refused for want of one")
    max_clients_per_address: int = Field(6, ge=1, le=1000, description="streams at once from one client address "
                                         "(a browser opens at most 6); behind a proxy, all clients share its address")
    request_timeout_s: float = Field(5.0, gt=0, le=300, description="a connection that has not sent its whole "
                                     "request this long after connecting is closed (idle or dribbling clients)")
    client_timeout_s: float = Field(10.0, gt=0, description="a stream client that does not read for this long is "
                                    "dropped")
    stale_after_s: float = Field(5.0, gt=0, description="/healthz turns 503 when no frame came for this long")

    @field_validator("token", mode="before")
    @classmethod
    def _numeric_token(cls, v):  # YAML reads `token: 12345678` as a number; it is still the token
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class FramebufferOutput(_DisplayOutput):
    """Annotated frames straight to a Linux framebuffer (HDMI on a kiosk with no desktop)."""

    type: Literal["framebuffer"]
    device: str = Field("/dev/fb0", description="framebuffer device; its sysfs entry is <sysfs_root>/class/graphics/fbN")
    sysfs_root: str = Field("/sys", description="where sysfs is mounted (tests point it at a fake)")
    pixel_format: Literal["auto", "rgb565", "xrgb8888", "xbgr8888"] = Field(
        "auto", description="auto = from the driver (16 bpp: rgb565, 32 bpp: xrgb8888 unless the driver says otherwise)"
    )


class WindowOutput(_DisplayOutput):
    """An OpenCV window: only with a GUI OpenCV build (opencv-python) and a desktop session."""

    type: Literal["window"]
    title: str = "edgepose"


OutputConfig = Annotated[
    Union[JsonlOutput, ConsoleOutput, WebOutput, FramebufferOutput, WindowOutput, MqttOutput], Field(discriminator="type")
]


class PipelineConfig(_Strict):
    sink_queue: int = Field(8, ge=1, le=10000, description="per-sink queue length; the oldest item is dropped when full")
    max_frames: int | None = Field(None, ge=1, description="stop after this many processed frames")
    stop_timeout_s: float = Field(1.0, gt=0)
    opencv_threads: int = Field(1, ge=0, le=64, description="OpenCV's worker threads (process-wide) while the pipeline "
                                "runs; 1 keeps resize/convert off the model's cores, 0 = OpenCV's default (one per core)")


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class TrackingConfig(_Strict):
    """Stable person IDs: box IoU + keypoint similarity (OKS), optimal assignment (edge/post/tracking.py)."""

    enabled: bool = True
    iou_weight: float = Field(0.5, ge=0, description="weight of box IoU in the match score")
    oks_weight: float = Field(0.5, ge=0, description="weight of keypoint similarity (COCO OKS) in the match score")
    match_threshold: float = Field(0.2, gt=0, le=1, description="weighted score (0..1) a pose needs to continue a track")
    min_hits: int = Field(3, ge=1, le=1000, description="frames in a row a new track needs before it gets an ID (SORT: 3)")
    max_misses: int = Field(30, ge=0, le=100000, description="frames a track survives without a match")

    @model_validator(mode="after")
    def _weights(self) -> "TrackingConfig":
        if self.iou_weight + self.oks_weight <= 0:
            raise ValueError("iou_weight and oks_weight are both 0; give at least one a positive weight")
        return self


class SmoothingConfig(_Strict):
    """One Euro keypoint smoothing per track; defaults are MediaPipe's pose landmark filter (edge/post/smoothing.py)."""

    enabled: bool = True
    min_cutoff: float = Field(0.1, gt=0, description="Hz; lower = smoother when still")
    beta: float = Field(40.0, ge=0, description="how fast the cutoff rises with speed (object sizes/s); higher = less lag")
    d_cutoff: float = Field(1.0, gt=0, description="Hz; cutoff of the speed estimate")
    keypoint_threshold: float | None = Field(
        None, ge=0, le=1, description="keypoints below this score pass through unsmoothed; null = model.keypoint_threshold")
    keep_raw: bool = Field(False, description="also emit the unsmoothed keypoints as keypoints_raw")




class Config(_Strict):
    source: SourceConfig = Field(default_factory=SourceConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    outputs: list[OutputConfig] = Field(default_factory=lambda: [ConsoleOutput(type="console")])
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    analytics: list[AnalyticsConfig] = Field(default_factory=list)
    idle: IdleConfig = Field(default_factory=IdleConfig)  # nearly free when nobody is there (edge/idle.py)

    @field_validator("analytics")  # a field validator echoes this section only, never a camera URL's password
    @classmethod
    def _analytics(cls, v, info: ValidationInfo):
        names = [a.name for a in v]
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique, got {names}; set name: on each entry")
        tracking = info.data.get("tracking")
        if v and tracking is not None and not tracking.enabled:
            raise ValueError("analytics need a stable person: set tracking.enabled: true")
        return v


MAX_LISTED = 20  # errors listed in one message; a 5000-item list of bad values gives 20 lines and a count


def _describe(err: dict[str, Any]) -> str:
    tags = ("jsonl", "console", "web", "framebuffer", "window", "mqtt",  # union tags pydantic puts in the path
            "angles", "reps", "zones")
    loc = err["loc"]  # a tag follows a list index (outputs.0.mqtt); a field may share a tag's name (zones.0.zones)
    path = ".".join(str(p) for i, p in enumerate(loc)
                    if not (isinstance(p, str) and p in tags and i and isinstance(loc[i - 1], int)))
    path = redact(path, ECHO_CAP, ECHO_CAP)  # keys come from the file too: a 5 MB key, a URL with a password
    secret = any(is_secret_key(p) for p in loc)  # the web token, an inline password: never echoed, even if numeric
    value = MASK if secret else brief(err.get("input"))
    msg = redact(err["msg"], 300, 300)  # a union tag or a validator's message may quote the value
    if err["type"] == "extra_forbidden":
        if secret and "mqtt" in loc:
            return (f"{path}: unknown key (value {value}); the MQTT password is never written inline: put it in "
                    "a file (password_file), a variable (password_env) or a systemd credential (password_credential)")
        return f"{path}: unknown key (value {value}); remove it or check the spelling against config.yaml"
    return f"{path}: {msg} (got {value})"


def _secrets(data: Any, limit: int = 10_000) -> set[str]:
    """The values under secret-named keys, and URL passwords: scrubbed from a message whatever quotes them."""
    found: set[str] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack and limit > 0:  # iterative and bounded: no recursion on whatever validate() was handed
        node, secret = stack.pop()
        limit -= 1
        if isinstance(node, dict):
            stack += [(v, secret or is_secret_key(k)) for k, v in node.items()]
        elif isinstance(node, (list, tuple)):
            stack += [(v, secret) for v in node]
        elif secret and node is not None and not isinstance(node, bool):
            found.add(node if isinstance(node, str) else safe_repr(node))
        elif isinstance(node, str) and "@" in node:
            found.update(url_secrets(node))
    return {s for s in found if len(s) >= 4}  # shorter ones are masked where they stand, not hunted elsewhere


def validate(data: dict[str, Any] | None, origin: str = "config") -> Config:
    """Validate a plain dict; raise ConfigError listing every bad key path (values capped, secrets masked)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        lines = [_describe(e) for e in errors[:MAX_LISTED]]
        if len(errors) > MAX_LISTED:
            lines.append(f"... and {len(errors) - MAX_LISTED} more errors")
        text = f"{origin} is invalid:\n  " + "\n  ".join(lines)
        for secret in sorted(_secrets(data), key=len, reverse=True):
            for form in {secret, repr(secret)[1:-1]}:
                text = text.replace(form, MASK)
        raise ConfigError(text) from None


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Load YAML from ``path`` (None = built-in defaults); size, depth, aliases and duplicate keys are bounded."""
    if path is None:
        return Config()
    return validate(config_yaml.load_file(path), origin=str(Path(path)))


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
    return validate(data, origin="the command line")
