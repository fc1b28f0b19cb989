"""A model file loaded into its runtime and identified as a pose family: what every stage runs."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from edge.config import Config
from edge.errors import ModelError
from edge.poses.base import CropBatch, FamilyOptions, ModelSignature, PoseFamily
from edge.poses.detect import make_family
from edge.post.geometry import clip_to_frame
from edge.runtime.base import Backend, BackendOptions, load_backend
from edge.types import Frame
from edge.zoo import resolve_model

log = logging.getLogger("edge.pipeline")  # the name users already filter on
DEFAULT_PERSON_DETECTOR = "movenet-multipose-int8"  # shipped in models/ (scripts/build_models.py)
TOPDOWN_FAMILIES = ("movenet", "blazepose")  # single-person families that take a person detector (edge/poses/crops.py)


def run_prepared(backend: Backend, inputs: list) -> list:
    """The backend on what a family prepared: one run, or one per crop of a CropBatch (top-down)."""
    if isinstance(inputs, CropBatch):
        return [backend.run(x) for x in inputs]
    return backend.run(inputs)


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

    extra_backends: tuple = ()  # opened for the family (the top-down person detector): closed with the model

    def close(self) -> None:
        self.backend.close()
        for b in self.extra_backends:
            b.close()

    def copy_backend(self) -> Backend:
        """Another interpreter of the same file with the same options: one more model worker."""
        return load_backend(self.path, self.backend_kind, self.backend_options)

    def infer(self, frame: Frame) -> tuple[list, dict[str, float]]:
        t0 = time.perf_counter_ns()
        inputs, transform = self.family.prepare(frame)
        t1 = time.perf_counter_ns()
        outputs = run_prepared(self.backend, inputs)
        t2 = time.perf_counter_ns()
        poses = clip_to_frame(self.family.decode(outputs, transform), frame.width, frame.height)
        t3 = time.perf_counter_ns()
        return poses, {"prepare": (t1 - t0) / 1e6, "infer": (t2 - t1) / 1e6, "decode": (t3 - t2) / 1e6}


def load_model(cfg: Config, threads: int | None = None, topdown: bool = True) -> Model:
    """Resolve, load and identify the configured model (raises ModelError with the fix).

    ``threads`` overrides ``model.threads`` (``workers: auto`` may choose one thread per copy).
    ``topdown`` False keeps a single-person model on its own (check, bench and quantize judge the
    model itself); otherwise ``model.person_detector`` decides.
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
    extra: tuple = ()
    # auto: MoveNet goes top-down; BlazePose keeps its own one-person detector unless a MultiPose is named
    wanted = m.person_detector != "none" and (family.name == "movenet" or m.person_detector != "auto")
    if topdown and family.name in TOPDOWN_FAMILIES and wanted:
        try:
            family, detector_backend = with_person_detector(family, cfg, backend_options)
        except BaseException:
            backend.close()
            raise
        extra = (detector_backend,)
    return Model(path, backend, family, m.backend, backend_options, extra)


def with_person_detector(inner: PoseFamily, cfg: Config, backend_options: BackendOptions) -> tuple[PoseFamily, Backend]:
    """``inner`` top-down behind the configured person detector (edge/poses/topdown.py), and its backend."""
    from edge.poses.crops import crop_model
    from edge.poses.multipose import MoveNetMultiPose
    from edge.poses.topdown import MultiPoseDetector, TopDown

    m = cfg.model
    spec = DEFAULT_PERSON_DETECTOR if m.person_detector == "auto" else m.person_detector
    path = resolve_model(spec)
    det_backend = load_backend(path, "auto", backend_options)
    try:
        sig = ModelSignature(det_backend.inputs, det_backend.outputs, det_backend.metadata)
        det_family = make_family(sig, FamilyOptions(iou_threshold=m.iou_threshold, max_people=m.max_people),
                                 "auto", model_name=str(path))
        if not isinstance(det_family, MoveNetMultiPose):
            raise ModelError(f"model.person_detector {spec}: {path.name} is a {det_family.name} model; the person "
                             "detector must be a MoveNet MultiPose model (movenet-multipose-int8), or 'none'")
    except BaseException:
        det_backend.close()
        raise
    detector = MultiPoseDetector(det_family, det_backend, m.detector_score)
    log.info("top-down: person detector %s (%s) in front of the %s model; looks for newcomers every %.1f s",
             path.name, det_family.name, inner.name, m.redetect_s)
    family = TopDown(crop_model(inner), detector, redetect_s=m.redetect_s, max_people=m.max_people,
                     tracking=m.movenet_tracking)
    return family, det_backend
