"""Project exceptions. Each message tells the user what is wrong and how to fix it.

The CLI maps them to exit codes (see ``exit_code``): configuration and model errors are
permanent (2, so systemd does not restart in a loop), everything else is a runtime failure (1).
"""

from __future__ import annotations


class EdgeposeError(Exception):
    """Base class: a user-facing error whose message names the fix."""

    exit_code = 1


class ConfigError(EdgeposeError):
    """Invalid configuration: names the key path, the bad value and what is allowed."""

    exit_code = 2


class ModelError(EdgeposeError):
    """A model that is missing, corrupt or of an unknown layout: names the file and the tensors."""

    exit_code = 2


class SourceError(EdgeposeError):
    """A frame source that cannot be opened or read: names the device and a hint."""

    exit_code = 1


class OutputError(EdgeposeError):
    """An output sink that cannot be opened or written."""

    exit_code = 1


class FrameError(EdgeposeError):
    """A frame of a shape or dtype that cannot be converted to HxWx3 uint8 RGB."""

    exit_code = 1


def missing_dependency(module: str, extra: str, purpose: str) -> ModelError:
    """The error raised when an optional dependency is not installed."""
    return ModelError(
        f"{purpose} needs the Python package '{module}', which is not installed. "
        f"Install it with: pip install 'edgepose[{extra}]'"
    )


class SourceNotFoundError(ConfigError, SourceError):
    """A source file, folder or glob that names nothing: permanent (exit 2), unlike a camera that went away."""
