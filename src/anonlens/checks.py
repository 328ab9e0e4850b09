"""The one image convention of anonlens, validated at the boundary.

Inside anonlens an image is a NumPy array of shape ``(H, W, 3)``, dtype ``uint8``, RGB channel
order, values 0..255: what image files hold, so that anonymization round-trips exactly. A region
mask is a boolean ``(H, W)`` array. Metrics (see :mod:`anonlens.metrics`) convert to float32 in
[0, 1] with an explicit ``data_range``. Public functions accept a few other layouts and convert
them here, raising :class:`TypeError`/:class:`ValueError` that say what was expected and got.
"""

from __future__ import annotations

import numpy as np

__all__ = ["as_rgb_uint8", "check_mask", "check_positive"]


def as_rgb_uint8(image: object, *, name: str = "image") -> np.ndarray:
    """Return ``image`` as a C-contiguous ``(H, W, 3)`` uint8 RGB array.

    Accepted: uint8 ``(H, W, 3)`` (returned as is), uint8 ``(H, W)`` grayscale (replicated),
    uint8 ``(H, W, 4)`` (alpha dropped), and floating point arrays with values in [0, 1]
    (scaled by 255 and rounded). Anything else raises.

    >>> as_rgb_uint8(np.zeros((2, 3), np.uint8)).shape
    (2, 3, 3)
    >>> as_rgb_uint8(np.ones((1, 1, 3)))[0, 0].tolist()
    [255, 255, 255]
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of shape (H, W, 3), got {type(image).__name__}")
    arr = image
    if arr.ndim == 2:
        arr = arr[:, :, None].repeat(3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(
            f"{name} must have shape (H, W), (H, W, 3) or (H, W, 4), got {tuple(image.shape)}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(image.shape)}")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if not np.isfinite(arr).all() or lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name} is floating point with values in [{lo:g}, {hi:g}]; expected [0, 1] "
                "(divide 0..255 data by 255, or pass uint8)"
            )
        return np.ascontiguousarray(np.rint(arr * 255.0).astype(np.uint8))
    raise TypeError(
        f"{name} has dtype {arr.dtype}; expected uint8 (0..255) or float (0..1). "
        "Convert 16-bit data with (x >> 8).astype(np.uint8)."
    )


def check_mask(mask: object, shape: tuple[int, ...], *, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as a boolean ``(H, W)`` array matching ``shape[:2]``."""
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of shape (H, W), got {type(mask).__name__}")
    if mask.shape != tuple(shape[:2]):
        raise ValueError(f"{name} has shape {mask.shape}; the image is {tuple(shape[:2])}")
    return mask if mask.dtype == bool else mask != 0


def check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    """Raise ``ValueError`` unless ``value`` is a finite number > 0 (or >= 0)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v
