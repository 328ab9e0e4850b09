"""The reference's crop geometry, shared by data preparation and the generator's inference."""

from __future__ import annotations

__all__ = ["crop_origin"]


def crop_origin(x_mid: int, y_mid: int, width: int, height: int, size: int = 256) -> tuple[int, int, int, int]:
    """The crop window ``(x1, y1, x2, y2)`` centred on the box centre, shifted inward at the frame's
    borders, computed as the reference's ``compute_cropped_offsets`` (its result can be smaller
    than ``size`` only when the frame is)."""
    half = size // 2

    def offsets(mid: int, extent: int) -> tuple[int, int]:
        if mid < half:
            lo = mid
        elif mid > extent - half:
            lo = size - (extent - mid)
        else:
            lo = half
        return lo, size - lo

    left, right = offsets(x_mid, width)
    top, bottom = offsets(y_mid, height)
    return max(0, x_mid - left), max(0, y_mid - top), x_mid + right, y_mid + bottom
