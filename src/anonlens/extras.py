"""Optional extras: which packages each one adds, and the one-line error when one is missing.

The core install (``pip install anonlens``) anonymizes, inspects, scores with the classic,
identity and detectability metrics, checks and reports without PyTorch. Everything that needs
torch (learned metrics, LPIPS/FID/KID, EDI's saliency and white-box attacker, Mask R-CNN) is in the
``learn`` extra; videos (PyAV, 104 MB with its FFmpeg) in the ``video`` extra; the Ray engine
(about 240 MB) in the ``ray`` extra; the web service (FastAPI, uvicorn) in the ``service`` extra. Registry entries declare the extra they need (the ``extra`` tag), commands call
:func:`require_extra` first, so a missing extra is reported before any file is touched.

>>> EXTRAS["learn"][0]
'torch'
>>> require_extra("core-does-not-exist", "x")
Traceback (most recent call last):
...
ValueError: unknown extra 'core-does-not-exist'; known: learn, ray, service, tensorboard, video
"""

from __future__ import annotations

import importlib.util

from .errors import OptionalDependencyError

__all__ = ["EXTRAS", "MissingExtraError", "missing_modules", "has_extra", "require_extra"]

#: extra name -> the importable modules it installs (pyproject's optional dependencies)
EXTRAS: dict[str, tuple[str, ...]] = {
    "learn": ("torch", "torchvision", "torchmetrics", "captum", "pytorch_fid", "sklearn", "safetensors", "matplotlib"),
    "tensorboard": ("torch", "tensorboard"),
    "video": ("av",),
    "ray": ("ray",),
    "service": ("fastapi", "uvicorn", "python_multipart"),
}


class MissingExtraError(OptionalDependencyError):
    """A feature needs an optional extra that is not installed (the CLI exits with code 2)."""

    def __init__(self, feature: str, extra: str, missing: list[str]):
        self.feature, self.extra, self.missing = feature, extra, missing
        super().__init__(
            f"{feature} needs the '{extra}' extra (missing: {', '.join(missing)}): pip install 'anonlens[{extra}]'"
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a blocked import, or a module whose __spec__ is None
        return False


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (empty when it is installed)."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra '{extra}'; known: {', '.join(sorted(EXTRAS))}")
    return [m for m in EXTRAS[extra] if not _installed(m)]


def has_extra(extra: str) -> bool:
    return not missing_modules(extra)


def require_extra(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` naming ``feature`` and the pip command when ``extra`` is
    not fully installed; do nothing otherwise. Cheap: looks modules up without importing them."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(feature, extra, missing)
