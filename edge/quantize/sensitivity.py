"""Sensitivity search: keep the ops that INT8 damages most in float, one group at a time.

After a full-INT8 pass, every op output of the INT8 model is compared with the float model on held-out
frames. An op's *local* damage is how much relative error its output has beyond the worst of its inputs,
so an error is blamed where it starts, not on everything downstream. An op that is not quantized itself
(ArgMax, Cast, a gather) but turns small input errors into wrong indices passes its damage on to the
quantized ops that feed it. Relative tensor error does not say how much an op matters for the poses
(a coordinate sum with a 0.3% error moves keypoints more than a backbone layer with 30%), so the worst
ops are then *tried*: each alone and in growing groups, re-quantized and judged on the pose outputs. The
ranking can point at ops whose float copy changes nothing (an activation the quantizer fuses into the
convolution before it, a reshape whose tensors its neighbours quantize anyway), so each round also tries
the *tail*: every still-quantized op from the n-th last op with weights to the outputs, n = 1, 2, 4, ...
(errors pile up toward the outputs, and the heads that decode poses are small). A candidate that quantizes
to the same model as one already judged is not judged again. The best candidate stays float and the next
round starts from it. The search stops when the accuracy target is met, when no candidate helps, or after
``max_rounds``.

This is the automatic form of the fix that rescued MoveNet MultiPose, whose peak finding and box
offsets must stay float: no per-model deny list is written anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

log = logging.getLogger(__name__)

MIN_DAMAGE = 1e-3  # local relative error below this is noise, not worth a float op
MAX_ERROR = 10.0  # cap for a relative error (a float tensor that is ~0 everywhere)


@dataclass(frozen=True)
class OpInfo:
    """One op of the float model, as the search sees it."""

    key: str  # what the quantizer needs to keep this op float (a TFLite op scope, an ONNX node name)
    index: int
    type: str
    outputs: tuple[str, ...]
    inputs: tuple[str, ...]  # activation (non-constant) inputs
    quantizable: bool  # the quantizer would make this op INT8
    cost: int = 0  # multiply-accumulates, roughly: weight elements x output positions (0 for weightless ops)


class Engine(Protocol):
    """A quantizer for one float model (TFLiteQuantizer, OnnxQuantizer)."""

    ops: list[OpInfo]

    def quantize(self, keep_float: set[str]) -> bytes: ...

    def tensor_errors(self, int8: bytes, samples: list[list[np.ndarray]]) -> dict[str, float]: ...


class ErrorAccumulator:
    """Relative RMS error per tensor over many samples; for integer tensors the share of elements that differ."""

    def __init__(self):
        self._se: dict[str, float] = {}
        self._ref: dict[str, float] = {}
        self._n: dict[str, int] = {}
        self._int: set[str] = set()

    def add(self, name: str, ref: np.ndarray, got: np.ndarray) -> None:
        ref, got = np.asarray(ref), np.asarray(got)
        if ref.shape != got.shape:
            return
        if np.issubdtype(ref.dtype, np.integer) or ref.dtype == np.bool_:
            self._int.add(name)
            self._se[name] = self._se.get(name, 0.0) + float(np.count_nonzero(ref != got))
        else:
            d = got.astype(np.float64) - ref.astype(np.float64)
            self._se[name] = self._se.get(name, 0.0) + float(np.sum(d * d))
            self._ref[name] = self._ref.get(name, 0.0) + float(np.sum(ref.astype(np.float64) ** 2))
        self._n[name] = self._n.get(name, 0) + ref.size

    def errors(self) -> dict[str, float]:
        out = {}
        for name, se in self._se.items():
            if name in self._int:
                out[name] = se / max(1, self._n[name])
            else:
                ref = self._ref.get(name, 0.0)
                out[name] = min(MAX_ERROR, math.sqrt(se / ref)) if ref > 0 else (0.0 if se == 0 else MAX_ERROR)
        return out


def op_damage(ops: list[OpInfo], errors: dict[str, float]) -> dict[str, float]:
    """Local damage per quantizable op key (see the module docstring)."""
    producer = {t: op for op in ops for t in op.outputs}
    damage: dict[str, float] = {}

    def blame(op: OpInfo, amount: float, depth: int = 0) -> None:
        if op.quantizable:
            damage[op.key] = damage.get(op.key, 0.0) + amount
            return
        if depth >= 4:
            return
        feeders = [producer[t] for t in op.inputs if t in producer]
        for p in feeders:
            blame(p, amount / len(feeders), depth + 1)

    for op in ops:
        out_err = max((errors.get(t, 0.0) for t in op.outputs), default=0.0)
        in_err = max((errors.get(t, 0.0) for t in op.inputs), default=0.0)
        local = out_err - in_err
        if local > MIN_DAMAGE:
            blame(op, local)
    return damage


@dataclass
class Trial:
    """One quantized candidate: which ops stayed float and how its poses compare with float."""

    keep_float: frozenset[str]
    metrics: object  # report.Drift (anything with .loss)
    met: bool
    added: tuple[str, ...] = ()
    model: bytes = field(default=b"", repr=False)

    @property
    def loss(self) -> float:
        return float(self.metrics.loss)


@dataclass
class SearchResult:
    best: Trial
    trials: list[Trial]
    stop_reason: str
    damage: dict[str, float] = field(default_factory=dict)  # of the ops kept float, when they were chosen
    unchanged: int = 0  # candidates that quantized to a model already judged (not judged again, not in trials)


def _doublings(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return out + [n] if n else out


def tail_groups(ops: list[OpInfo], keep: frozenset[str]) -> list[tuple[str, ...]]:
    """Every still-quantized op from the n-th last op with weights to the end of the graph, n = 1, 2, 4, ...
    (``ops`` in execution order, as both engines list them)."""
    live = [op for op in sorted(ops, key=lambda o: o.index) if op.quantizable and op.key not in keep]
    weighted = [i for i, op in enumerate(live) if op.cost > 0]
    return [tuple(dict.fromkeys(op.key for op in live[weighted[-n]:])) for n in _doublings(len(weighted))]


def candidates(ranked: list[str], ops: list[OpInfo], keep: frozenset[str], singles: int = 6) -> list[tuple[str, ...]]:
    """Groups to try next: the worst ops one by one; the 2, 4, 8, ... worst together (an error that several
    ops share only goes away when all of them are float); every still-quantized op of one type (a kind
    of op the quantizer handles badly, wherever it sits); and the tail of the graph (see ``tail_groups``)."""
    groups = [(k,) for k in ranked[:singles]]
    groups += [tuple(ranked[:n]) for n in _doublings(len(ranked)) if n > 1]
    by_type: dict[str, list[str]] = {}
    for op in ops:
        if op.quantizable and op.key not in keep:
            by_type.setdefault(op.type, []).append(op.key)
    groups += [tuple(dict.fromkeys(keys)) for _, keys in sorted(by_type.items()) if len(set(keys)) > 1]
    groups += tail_groups(ops, keep)
    unique: dict[frozenset[str], tuple[str, ...]] = {}
    for g in groups:
        unique.setdefault(frozenset(g), g)
    return list(unique.values())


def choose(best: Trial, tried: list[Trial], cost: dict[str, float]) -> Trial:
    """The cheapest candidate that meets the target; else the best gain per share of compute kept float
    (a float ADD costs nothing, a float convolution costs its share of the INT8 speed-up)."""
    met = [t for t in tried if t.met]
    if met:
        return min(met, key=lambda t: (sum(cost.get(k, 0.0) for k in t.added), t.loss))

    def value(t: Trial) -> float:
        return (best.loss - t.loss) / (sum(cost.get(k, 0.0) for k in t.added) + 0.02)

    return max(tried, key=value)


def search(engine: Engine, judge: Callable[[bytes], tuple[object, bool]], samples: list[list[np.ndarray]],
           max_rounds: int = 12, enabled: bool = True, max_candidates: int = 32, max_float_share: float = 1.0,
           progress: Callable[[str], None] | None = None) -> SearchResult:
    """Full INT8 first; then, each round, rank ops by local damage, try the worst ones (alone and in growing
    groups), whole op types and the graph's tail in float, and keep the candidate whose poses come closest
    to float, until ``judge`` says the target is met or no candidate helps. ``judge(model_bytes) ->
    (metrics, target_met)``; ``samples`` are held-out model inputs. No candidate may keep more than
    ``max_float_share`` of the model's multiply-accumulates float: past that, "INT8" would be INT8 in name only.
    """
    say = progress or (lambda msg: log.info("%s", msg))
    judged: set[bytes] = set()  # digests of the models judged so far
    unchanged = 0

    def attempt(keep: frozenset[str], added: tuple[str, ...]) -> Trial | None:
        """The judged candidate, or None when it quantizes to a model that was judged already (an op whose
        float copy changes nothing): it can only tie, and judging it again costs a full held-out run."""
        nonlocal unchanged
        model = engine.quantize(set(keep))
        digest = hashlib.sha256(model).digest()
        if digest in judged:
            unchanged += 1
            return None
        judged.add(digest)
        metrics, met = judge(model)
        return Trial(keep, metrics, met, added, model)

    best = attempt(frozenset(), ())
    trials = [best]
    say(f"full INT8: loss {best.loss:.3f}, target {'met' if best.met else 'not met'}")
    if best.met or not enabled:
        return SearchResult(best, trials, "target met by full INT8" if best.met else "search disabled")
    types = {op.key: op.type for op in engine.ops}
    total = sum(op.cost for op in engine.ops if op.quantizable) or 1
    cost = {op.key: op.cost / total for op in engine.ops}
    chosen_damage: dict[str, float] = {}
    reason = f"stopped after {max_rounds} rounds"
    for round_no in range(1, max_rounds + 1):
        damage = op_damage(engine.ops, engine.tensor_errors(best.model, samples))
        ranked = sorted((k for k, d in damage.items() if d > MIN_DAMAGE and k not in best.keep_float),
                        key=lambda k: -damage[k])[:max_candidates]
        if not ranked:
            reason = "nothing left to gain: no quantized op adds measurable error"
            break
        tried = []
        spent = sum(cost.get(k, 0.0) for k in best.keep_float)
        groups = [g for g in candidates(ranked, engine.ops, best.keep_float)
                  if spent + sum(cost.get(k, 0.0) for k in g) <= max_float_share + 1e-9]
        if not groups:
            reason = (f"nothing left to gain within the limit of {100 * max_float_share:.0f}% of the compute kept "
                      "float")
            break
        for group in sorted(groups, key=lambda g: sum(cost.get(k, 0.0) for k in g)):
            trial = attempt(best.keep_float | frozenset(group), group)
            if trial is None:
                continue
            tried.append(trial)
            if trial.met:
                break  # the cheapest candidate that meets the target: no need to try dearer ones
        if not tried:
            reason = (f"nothing left to gain: keeping any of the {len(groups)} candidate groups float leaves the "
                      "model as it is")
            break
        trials += tried
        pick = choose(best, tried, cost)
        for t in tried:
            if t is not pick:
                t.model = b""  # keep memory flat: only the best candidate's bytes are needed
        if pick.loss >= best.loss - 1e-6 and not (pick.met and not best.met):
            reason = (f"nothing left to gain: none of the {len(tried)} candidates (the {len(ranked)} most damaging "
                      "ops, op types, the graph's tail) kept float did better")
            break
        kinds = ", ".join(sorted({types.get(k, "?") for k in pick.added}))
        say(f"round {round_no}: kept {len(pick.added)} more op(s) float ({kinds}) out of {len(tried)} candidates: "
            f"loss {best.loss:.3f} -> {pick.loss:.3f}, target {'met' if pick.met else 'not met'}")
        chosen_damage.update({k: damage.get(k, 0.0) for k in pick.added})
        best = pick
        if best.met:
            reason = f"target met after {round_no} round(s)"
            break
    return SearchResult(best, trials, reason, chosen_damage, unchanged)
