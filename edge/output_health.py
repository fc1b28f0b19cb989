"""Is a model's raw output usable? One judgement for `edgepose models check` and for the running pipeline.

A broken model still loads and runs: it outputs NaN or Inf, one constant, the same tensor whatever
the image, or random numbers. ``judge`` names those problems from a handful of raw outputs;
``models check`` calls it on its reference images, and ``OutputMonitor`` calls it on windows of
the frames a pipeline runs, warning once per problem and counting the frames in ``Stats``.
"""

from __future__ import annotations

import logging

import numpy as np

from edge.poses.base import CropBatch
from edge.stats import Stats

log = logging.getLogger("edge.pipeline")  # the name users already filter on

MIN_SCORE = 0.05  # a person in view must score above this
# Real models' consecutive outputs correlate (Pearson r of the flattened raw tensors): MoveNet by 0.5 or
# more on average even across unrelated images, YOLO by 0.95 (its box channels follow the anchor grid).
# Noise averages ~0, and a deterministic model gives the same output twice for the same input.
NOISE_CORRELATION = 0.2
NOISE_PAIRS = 8  # image pairs before their mean correlation is trusted (one pair of unrelated images can be < 0.2)
REPEAT_CORRELATION = 0.99
INPUT_CHANGE = 0.02  # inputs differ when their mean absolute change is this share of their range (not sensor noise)
SAMPLE_VALUES = 4096  # values per frame the pipeline keeps to judge a window (a strided sample of each tensor)
WINDOW = 30  # frames the pipeline judges together
FIRST_FRAMES = 100  # frames after which a model that never scored anyone is reported

NONFINITE = "the model outputs NaN or Inf: the file is broken (often a failed quantization)"
CONSTANT = "every output value is the same constant: the model computes nothing useful"
IDENTICAL = "the outputs are identical for different images: the model ignores its input"
NOISE = ("the outputs look like random noise: they do not correlate from image to image, or the same image gives "
         "different outputs; the file is broken or was never trained")
KINDS = {NONFINITE: "nonfinite", CONSTANT: "constant", IDENTICAL: "constant", NOISE: "noise"}


def finite(outputs: list[np.ndarray]) -> bool:
    return all(np.isfinite(o).all() for o in outputs)


def flatten(outputs: list[np.ndarray], max_values: int | None = None) -> np.ndarray:
    """The outputs as one float64 vector; with ``max_values``, an evenly strided sample of each tensor."""
    parts = []
    for o in outputs:
        flat = np.asarray(o).reshape(-1)
        if max_values:
            flat = flat[:: max(1, flat.size // max(1, max_values // max(1, len(outputs))))]
        parts.append(flat.astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros(0)


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r of two equally long vectors; None when either is constant (r is undefined)."""
    if a.shape != b.shape or a.size < 2:
        return None
    da, db = a - a.mean(), b - b.mean()
    na, nb = float(np.sqrt((da * da).sum())), float(np.sqrt((db * db).sum()))
    if na == 0.0 or nb == 0.0:
        return None
    return float((da * db).sum() / (na * nb))


def judge(flats: list[np.ndarray], inputs_differ: bool = True,
          repeats: list[tuple[np.ndarray, np.ndarray]] = ()) -> list[str]:
    """The problems in raw outputs (one flattened vector per image, in order); [] when they look like a model's.

    ``inputs_differ``: the images differed clearly (otherwise equal outputs are no sign of trouble: an INT8
    model can give the very same output for a still scene). ``repeats``: pairs of outputs for the same input,
    which a deterministic model makes equal.
    """
    problems = []
    flats = [f for f in flats if f.size]  # an empty output (a dynamic shape with nobody) says nothing
    good = [f for f in flats if np.isfinite(f).all()]
    if len(good) < len(flats):
        problems.append(NONFINITE)
    if not good:
        return problems
    if all(float(np.ptp(f)) == 0.0 for f in good):
        problems.append(CONSTANT)
    elif inputs_differ and len(good) > 1 and all(np.array_equal(good[0], f) for f in good[1:]):
        problems.append(IDENTICAL)
    else:
        pairs = [r for a, b in zip(good, good[1:]) if (r := correlation(a, b)) is not None]
        same = [r for a, b in repeats if np.isfinite(a).all() and np.isfinite(b).all()
                and not np.array_equal(a, b) and (r := correlation(a, b) or 0.0) < REPEAT_CORRELATION]
        if same or (len(pairs) >= NOISE_PAIRS and float(np.mean(pairs)) < NOISE_CORRELATION):
            problems.append(NOISE)
    return problems


class OutputMonitor:
    """Watches a running model's raw outputs: counts frames with problems in ``stats`` and warns once per kind.

    Non-finite values are checked on every frame (the families drop them, so they never become
    people); constant, input-independent or noise-like outputs are judged on windows of WINDOW
    frames, from a small sample of each frame's values.
    """

    def __init__(self, stats: Stats, model_path: object, window: int = WINDOW):
        self.stats = stats
        self.model_path = model_path
        self.window = window
        self._flats: list[np.ndarray] = []
        self._inputs: list[np.ndarray] = []  # a sample of each frame's first input
        self._repeats: list[tuple[np.ndarray, np.ndarray]] = []  # outputs of consecutive frames with equal inputs
        self._last: tuple[list[np.ndarray], np.ndarray] | None = None  # the previous frame's inputs and outputs
        self._warned: set[str] = set()
        self._first_frames_checked, self._best_early_score = False, 0.0

    def observe_prepared(self, inputs: list, outputs: list, index: int) -> None:
        """``observe`` for what the pipeline ran: one run, or each crop of a top-down CropBatch
        (whose first crop stands for the frame in the constant / noise windows)."""
        if not isinstance(inputs, CropBatch):
            self.observe(inputs, outputs, index)
            return
        if not inputs:  # nobody proposed: nothing ran
            return
        self.observe(inputs[0], outputs[0], index)  # counts a non-finite first crop
        if finite(outputs[0]) and not all(finite(outs) for outs in outputs[1:]):  # one count a frame
            self.stats.model_output("nonfinite")
            self._warn(NONFINITE, f"frame {index}; NaN and Inf values are dropped, never reported as people")

    def observe(self, inputs: list[np.ndarray], outputs: list[np.ndarray], index: int) -> None:
        """One frame's model inputs and raw outputs, before decoding."""
        if not finite(outputs):
            self.stats.model_output("nonfinite")
            self._warn(NONFINITE, f"frame {index}; NaN and Inf values are dropped, never reported as people")
        flat, sample = flatten(outputs, SAMPLE_VALUES), flatten(inputs[:1], SAMPLE_VALUES)
        last = self._last
        if last is not None and self._inputs and np.array_equal(self._inputs[-1], sample) and len(last[0]) == len(inputs) \
                and all(np.array_equal(a, b) for a, b in zip(last[0], inputs)):  # the very same input (a looped still)
            self._repeats.append((last[1], flat))
        self._last = (inputs, flat)
        self._flats.append(flat)
        self._inputs.append(sample)
        if len(self._flats) >= self.window:
            self._judge()

    def people(self, poses: list) -> None:
        """Warn once when the first frames give no score above MIN_SCORE: the classic broken INT8 export."""
        if self._first_frames_checked:
            return
        self._best_early_score = max([self._best_early_score, *(p.score for p in poses)])
        if self.stats.frames_processed >= FIRST_FRAMES:
            self._report_first_frames()

    def finish(self) -> None:
        """The end of the run: judge the frames not judged yet (two or more) and the first-frames check."""
        if len(self._flats) >= 2:
            self._judge()
        if not self._first_frames_checked and self.stats.frames_processed:
            self._report_first_frames()

    def _report_first_frames(self) -> None:
        self._first_frames_checked = True
        if self._best_early_score <= MIN_SCORE:
            log.warning(
                "no person scored above %s in the first %d frames. If people were in view, the model's "
                "output may be degenerate (a broken INT8 export): run `edgepose models check %s`",
                MIN_SCORE, self.stats.frames_processed, self.model_path,
            )

    def _judge(self) -> None:
        flats, inputs, repeats = self._flats, self._inputs, self._repeats
        self._flats, self._inputs, self._repeats = [], [], []
        scale = max(float(np.ptp(inputs[0])) if inputs[0].size else 0.0, 1e-6)
        differ = any(x.shape != inputs[0].shape or float(np.abs(x - inputs[0]).mean()) > INPUT_CHANGE * scale
                     for x in inputs[1:])
        for problem in judge(flats, inputs_differ=differ, repeats=repeats):
            if problem == NONFINITE:  # already counted frame by frame
                continue
            self.stats.model_output(KINDS[problem], len(flats))
            self._warn(problem, f"over {len(flats)} frames")

    def _warn(self, problem: str, where: str) -> None:
        if problem in self._warned:
            return
        self._warned.add(problem)
        log.warning("model %s: %s (%s). Frames like these are counted in the stats (model_output '%s'); "
                    "check the model with: edgepose models check %s", self.model_path, problem, where,
                    KINDS[problem], self.model_path)
