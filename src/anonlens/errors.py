"""Exceptions raised by anonlens.

Every error a user can cause is an :class:`AnonlensError` with a one-line message that says what
went wrong, with what, and how to fix it. The CLI prints that line; the library raises it.
"""

from __future__ import annotations

import os

from .display import display_name

__all__ = [
    "AnonlensError",
    "UnknownNameError",
    "ImageReadError",
    "ImageTooLargeError",
    "ImageWriteError",
    "WeightsUnavailableError",
    "DetectionError",
    "OperatorError",
    "OptionalDependencyError",
    "OptionError",
]


class AnonlensError(Exception):
    """Base class of every error anonlens raises on purpose."""


class UnknownNameError(AnonlensError, ValueError):
    """A registry was asked for a name it does not know."""


class ImageReadError(AnonlensError):
    """An input image could not be read or is not acceptable."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{display_name(self.path)}: {problem}" if self.path else problem)  # a name cannot inject a line


class ImageTooLargeError(ImageReadError):
    """An input image has more pixels than the limit allows (a decompression-bomb guard)."""


class ImageWriteError(AnonlensError):
    """An output could not be encoded or written."""


class WeightsUnavailableError(AnonlensError, FileNotFoundError):
    """A model's weights file is not on this machine and may not be downloaded."""


class DetectionError(AnonlensError):
    """A detector failed on an image."""


class OperatorError(AnonlensError):
    """An anonymization operator failed or was given invalid options."""


class OptionalDependencyError(AnonlensError, ImportError):
    """A feature needs a package that is not installed."""


class OptionError(AnonlensError, ValueError):
    """An option value has the wrong type or is out of its range (checked before any work)."""
