"""As picamera2/platform.py: which ISP this Pi has (VC4 = Pi 4 and older, PISP = Pi 5)."""

from enum import Enum


class Platform(Enum):
    VC4 = 0
    PISP = 1


def get_platform():
    return Platform.VC4
