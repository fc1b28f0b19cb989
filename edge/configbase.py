"""The strict pydantic base every config section uses: unknown keys are errors, never ignored.

Numbers are checked by one rule for all sections, so a new field cannot forget it: every float
must be finite (``.inf`` and ``.nan`` are YAML floats, and ``read_timeout_s: .inf`` once passed
``check`` and then crashed ``run``); a field may opt out with ``Field(allow_inf_nan=True)``.
Durations (``*_s``) are at most a day and rates (``fps``, ``*_fps``, ``*_hz``) at least one a day:
beyond that the timers (threading, OpenCV's int milliseconds) overflow.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

MAX_SECONDS = 86400.0  # one day: int(ms) fits OpenCV's 32-bit timeouts, threading waits stay in range


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _sane_number(cls, v, info: ValidationInfo):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return v
        name = info.field_name or ""
        if name.endswith("_s") and v > MAX_SECONDS:
            raise ValueError(f"{v:g} s is more than a day; give at most {MAX_SECONDS:g}")
        if (name == "fps" or name.endswith(("_fps", "_hz"))) and 0 < v < 1 / MAX_SECONDS:
            raise ValueError(f"{v:g} is less than once a day; give at least {1 / MAX_SECONDS:.3g}")
        return v
