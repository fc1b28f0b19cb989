"""The quantize search's parts on synthetic graphs and drifts: no model, no runtime, milliseconds.

The end-to-end searches on real models are in tests/test_quantize.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.quantize.report import Drift, Item, drift
from edge.quantize.sensitivity import OpInfo, Trial, candidates, choose, op_damage, search, tail_groups


# -- the search's parts, table-driven ---------------------------------------------------------------
def _op(key, inputs, outputs, quantizable=True, cost=0, kind=None):
    return OpInfo(key, 0, kind or key.upper(), tuple(outputs), tuple(inputs), quantizable, cost)


def test_damage_is_blamed_where_error_starts():
    ops = [_op("conv1", ["in"], ["a"]), _op("conv2", ["a"], ["b"]), _op("argmax", ["b"], ["idx"], quantizable=False),
           _op("add", ["idx", "b"], ["out"])]
    errors = {"a": 0.05, "b": 0.06, "idx": 0.5, "out": 0.5}
    damage = op_damage(ops, errors)
    assert damage["conv1"] == pytest.approx(0.05)
    assert damage["conv2"] == pytest.approx(0.01 + 0.44)  # its own 0.01, plus the argmax flips it causes
    assert "argmax" not in damage and damage.get("add", 0.0) == 0.0


def test_candidates_and_choice():
    ops = [_op(k, [], [k], cost=c, kind=t) for k, c, t in (("a", 100, "CONV"), ("b", 0, "ADD"), ("c", 0, "CONV"),
                                                             ("d", 5, "ADD"), ("e", 0, "ADD"))]
    groups = candidates(["a", "b", "c"], ops, frozenset({"e"}))
    assert ("a",) in groups and ("a", "b") in groups and ("a", "b", "c") in groups
    assert ("b", "d") in groups and ("a", "c") in groups  # every still-quantized op of one type

    class M:
        def __init__(self, loss):
            self.loss = loss

    best = Trial(frozenset(), M(10.0), False)
    cost = {"a": 0.9, "b": 0.0, "c": 0.1}
    cheap = Trial(frozenset({"b"}), M(9.0), False, ("b",))
    dear = Trial(frozenset({"a"}), M(8.0), False, ("a",))
    assert choose(best, [dear, cheap], cost) is cheap  # gain per share of compute kept float
    good = Trial(frozenset({"a", "c"}), M(7.0), True, ("a", "c"))
    assert choose(best, [dear, cheap, good], cost) is good  # meeting the target beats everything


def test_tail_groups_grow_from_the_outputs():
    ops = [_op(k, [], [k], cost=c) for k, c in (("c1", 5), ("relu1", 0), ("c2", 5), ("add", 0), ("c3", 5), ("out", 0))]
    for i, op in enumerate(ops):
        object.__setattr__(op, "index", i)
    assert tail_groups(ops, frozenset()) == [("c3", "out"), ("c2", "add", "c3", "out"),
                                             ("c1", "relu1", "c2", "add", "c3", "out")]
    assert tail_groups(ops, frozenset({"out"}))[0] == ("c3",)
    assert ("c3", "out") in candidates(["relu1"], ops, frozenset())


class _Engine:
    """A quantizer whose damage ranking points at ops that change nothing (like activations the ONNX
    quantizer fuses into the convolution before them): only keeping weighted ops float helps."""

    def __init__(self):
        self.ops = [OpInfo(k, i, k.rstrip("0123456789").upper(), (k,), (), True, c)
                    for i, (k, c) in enumerate([("conv1", 10), ("relu1", 0), ("conv2", 10), ("relu2", 0),
                                                ("conv3", 1), ("relu3", 0)])]
        self.quantized = 0

    def quantize(self, keep_float: set[str]) -> bytes:
        self.quantized += 1
        return ",".join(sorted(k for k in keep_float if k.startswith("conv"))).encode()  # relus: no effect

    def tensor_errors(self, int8: bytes, samples) -> dict[str, float]:
        return {op.key: (0.5 if op.key.startswith("relu") else 0.0005) for op in self.ops}  # convs: below MIN_DAMAGE


def test_search_gets_past_ops_whose_float_copy_changes_nothing():
    class M:
        def __init__(self, loss):
            self.loss = loss

    judged = []

    def judge(model: bytes):
        judged.append(model)
        loss = 1.0 - 0.4 * (b"conv3" in model) - 0.1 * (b"conv2" in model)
        return M(loss), loss <= 0.6

    engine = _Engine()
    result = search(engine, judge, [[np.zeros(1)]], max_rounds=3, max_float_share=0.5)
    assert result.best.met and "conv3" in result.best.keep_float and result.stop_reason.startswith("target met")
    assert len(judged) == len(set(judged))  # a model is judged once, however many candidates quantize to it
    assert result.unchanged > 0 and len(result.trials) == len(judged)


def test_drift_counts_missed_and_invented_people():
    from edge.post.geometry import Transform
    from edge.types import Pose

    t = Transform(2.0, 2.0, 0.0, 0.0, 100, 100, 200, 200)
    kp = np.array([[10, 10, 0.9], [50, 10, 0.9], [10, 90, 0.9], [50, 90, 0.9]], np.float32)

    class Family:
        def __init__(self, poses):
            self.poses = poses

        def decode(self, outputs, transform):
            return self.poses

    ref = [Pose(kp.copy(), 0.8), Pose(kp + [100, 0, 0], 0.3)]
    moved = kp.copy()
    moved[:, 0] += 4.0  # 4 frame px = 2 input px
    item = Item([np.zeros(1)], t, ref)
    d = drift([item], [[0]], Family([Pose(moved, 0.7), Pose(kp + [0, 100, 0], 0.5)]), operating=0.25, kp_min=0.2)
    assert (d.people, d.matched, d.missed, d.extra) == (2, 1, 1, 1)
    assert d.mean_px == pytest.approx(4.0) and d.mean_input_px == pytest.approx(2.0)
    assert d.mean_pct == pytest.approx(100 * 4.0 / np.hypot(40, 80), rel=1e-4)
    assert isinstance(d, Drift) and d.loss > d.mean_pct
