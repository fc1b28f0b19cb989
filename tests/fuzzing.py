"""Hypothesis settings for the fuzz suite: a fixed seed, and a budget that CI raises.

The quick tier runs each property for a few seconds; .ci/run sets EDGEPOSE_FUZZ=ci, which runs
``CI_SCALE`` times as many examples. ``derandomize`` fixes the seed, so a run is reproducible and a
failure found in CI fails again on a laptop. No example database is kept, and hypothesis's own
cache goes to a temporary folder instead of .hypothesis/ in the checkout.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "edgepose-hypothesis"))

from hypothesis import HealthCheck, settings  # noqa: E402  (reads the variable above)

CI = os.environ.get("EDGEPOSE_FUZZ") == "ci"
CI_SCALE = 10


def fuzz_settings(quick_examples: int, **overrides) -> settings:
    """Settings for one property: ``quick_examples`` in the quick tier, CI_SCALE times that in CI."""
    return settings(
        max_examples=quick_examples * (CI_SCALE if CI else 1),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        **overrides,
    )
