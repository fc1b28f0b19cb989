"""A model file loaded into its runtime and identified as a pose family: what every stage runs."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from edge.config import Config
from edge.poses.base import FamilyOptions, ModelSignature, PoseFamily
from edge.poses.detect import make_family
from edge.post.geometry import clip_to_frame
from edge.runtime.base import Backend, BackendOptions, load_backend
from edge.types import Frame
from edge.zoo import resolve_model

log = logging.getLogger("edge.pipeline")  # the name users already filter on


@dataclass
class Model:
    """A backend with its family: one call turns a frame into poses with stage timings.

    ``infer`` gives what the pipeline gives: decoded keypoints clipped to the frame.
    """

    path: Path
    backend: Backend
    family: PoseFamily
    backend_kind: str = "auto"
    backend_options: BackendOptions | None = None

    def copy_backend(self) -> Backend:
        """Another interpreter of the same file with the same options: one more model worker."""
        return load_backend(self.path, self.backend_kind, self.backend_options)

    def infer(self, frame: Frame) -> tuple[list, dict[str, float]]:
        t0 = time.perf_counter_ns()
        inputs, transform = self.family.prepare(frame)
        t1 = time.perf_counter_ns()
        outputs = self.backend.run(inputs)
        t2 = time.perf_counter_ns()
        poses = clip_to_frame(self.family.decode(outputs, transform), frame.width, frame.height)
        t3 = time.perf_counter_ns()
        return poses, {"prepare": (t1 - t0) / 1e6, "infer": (t2 - t1) / 1e6, "decode": (t3 - t2) / 1e6}


def load_model(cfg: Config, threads: int | None = None) -> Model:
    """Resolve, load and identify the configured model (raises ModelError with the fix).

    ``threads`` overrides ``model.threads`` (``workers: auto`` may choose one thread per copy).
    """
    m = cfg.model
    threads = threads or m.threads
    path = resolve_model(m.path)
    backend_options = BackendOptions(threads=threads, providers=list(m.providers))
    backend = load_backend(path, m.backend, backend_options)
    sig = ModelSignature(backend.inputs, backend.outputs, backend.metadata)
    options = FamilyOptions(
        score_threshold=m.score_threshold, keypoint_threshold=m.keypoint_threshold,
        iou_threshold=m.iou_threshold, max_people=m.max_people, tracking=m.movenet_tracking,
        model_path=str(path), detector=m.detector, backend=m.backend, backend_options=backend_options,
        coco17_view=m.coco17_view,
    )
    family = make_family(sig, options, m.family, model_name=str(path))
    log.info("model %s: %s family on %s, %d thread(s)", path.name, family.name, backend.runtime, threads)
    return Model(path, backend, family, m.backend, backend_options)
