"""A stand-in for libcamera's Python module (python3-libcamera): only the Transform picamera2 takes.

As the real binding: ``Transform(rotation=0, hflip=False, vflip=False, transpose=False)`` with read-write
``hflip``, ``vflip`` and ``transpose``; picamera2 compares transforms by these three (``__eq__``). The
constructor starts from transformFromRotation(rotation) (Rot90 = VFlip|Transpose, Rot270 = HFlip|Transpose)
and toggles each flag given, as the binding (src/py/libcamera/py_main.cpp) does.
"""

from __future__ import annotations

_ROTATIONS = {0: (False, False, False), 90: (False, True, True), 180: (True, True, False), 270: (True, False, True)}


class Transform:
    def __init__(self, rotation=0, hflip=False, vflip=False, transpose=False):
        if rotation % 360 not in _ROTATIONS:
            raise ValueError("Invalid rotation")  # std::invalid_argument, as pybind11 raises it
        rh, rv, rt = _ROTATIONS[rotation % 360]
        self.hflip = bool(hflip) != rh
        self.vflip = bool(vflip) != rv
        self.transpose = bool(transpose) != rt

    def __eq__(self, other):
        return isinstance(other, Transform) and (self.hflip, self.vflip, self.transpose) == (
            other.hflip, other.vflip, other.transpose)

    def __repr__(self):
        flags = [n for n in ("hflip", "vflip", "transpose") if getattr(self, n)]
        return f"<libcamera.Transform '{'/'.join(flags) or 'identity'}'>"


__all__ = ["Transform"]
