"""Regions found by detectors, and the pixel masks anonymization operates on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

__all__ = ["Region", "Shape", "region_mask", "whole_image_region", "box_iou", "covers", "rot90_points_back", "rot90_box_back"]

Shape = Literal["auto", "ellipse", "box", "mask"]


def box_iou(a, b) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 when both are empty).

    >>> box_iou((0, 0, 10, 10), (5, 0, 15, 10))
    0.3333333333333333
    """
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def rot90_points_back(x: np.ndarray, y: np.ndarray, k: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Points of ``np.rot90(a, k)`` in ``a`` (``w`` x ``h`` pixels; continuous coordinates).

    One counter-clockwise turn of an array ``w_i`` wide maps ``(x, y)`` to ``(y, w_i - x)``: the
    turns are undone from the last one back.

    >>> [float(v[0]) for v in rot90_points_back(np.array([2.0]), np.array([10.0]), 1, 20, 30)]
    [10.0, 2.0]
    """
    sizes = [(w, h)]
    for _ in range(k % 4):
        sizes.append((sizes[-1][1], sizes[-1][0]))
    for i in range(k % 4, 0, -1):
        x, y = sizes[i - 1][0] - y, x
    return x, y


def rot90_box_back(box, k: int, w: int, h: int) -> tuple[float, float, float, float]:
    """The box ``(x1, y1, x2, y2)`` of ``np.rot90(a, k)`` as a box of ``a`` (``w`` x ``h`` pixels).

    >>> rot90_box_back((0.0, 0.0, 10.0, 5.0), 1, 20, 30)
    (15.0, 0.0, 20.0, 10.0)
    """
    xs, ys = rot90_points_back(np.array([box[0], box[2]], float), np.array([box[1], box[3]], float), k, w, h)
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


@dataclass(frozen=True, eq=False)
class Region:
    """One thing to anonymize.

    ``box`` is ``(x1, y1, x2, y2)`` in pixels of the image it was found in (x to the right, y
    down, ``x2``/``y2`` exclusive). ``mask`` (optional) is a boolean ``(H, W)`` array of the
    whole image; ``landmarks`` (optional) a ``(K, 2)`` array of ``(x, y)`` points.
    """

    box: tuple[float, float, float, float]
    score: float = 1.0
    label: str = "face"
    mask: np.ndarray | None = field(default=None, repr=False)
    landmarks: np.ndarray | None = field(default=None, repr=False)
    #: a (K, 2) outline in pixels (e.g. a rotated text line); rasterized on demand as the region's mask
    polygon: np.ndarray | None = field(default=None, repr=False)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def size(self) -> float:
        """The region's larger side in pixels: the reference for relative operator strength."""
        return max(self.width, self.height, 1.0)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "label": self.label,
            "has_mask": self.mask is not None,
        }
        if self.landmarks is not None:
            out["landmarks"] = np.round(np.asarray(self.landmarks, float), 2).tolist()
        if self.polygon is not None:
            out["polygon"] = np.round(np.asarray(self.polygon, float), 2).tolist()
        return out

    def outline_mask(self, height: int, width: int) -> np.ndarray | None:
        """The region's own mask, or its polygon rasterized (None when it has neither)."""
        if self.mask is not None:
            return np.asarray(self.mask, bool)
        if self.polygon is None:
            return None
        out = np.zeros((height, width), np.uint8)
        cv2.fillPoly(out, [np.rint(np.asarray(self.polygon, np.float64)).astype(np.int32)], 1)
        return out.astype(bool)


def whole_image_region(height: int, width: int) -> Region:
    return Region((0.0, 0.0, float(width), float(height)), 1.0, "image")


def _expanded_box(region: Region, margin: float, height: int, width: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = region.box
    dx, dy = region.width * margin, region.height * margin
    return (
        int(np.floor(max(0.0, x1 - dx))),
        int(np.floor(max(0.0, y1 - dy))),
        int(np.ceil(min(float(width), x2 + dx))),
        int(np.ceil(min(float(height), y2 + dy))),
    )


def region_mask(
    region: Region,
    image_shape: tuple[int, ...],
    *,
    shape: Shape = "auto",
    margin: float = 0.0,
) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels to anonymize for ``region``.

    ``margin`` grows the region by that fraction of its width/height on every side (0.25 makes a
    box 1.5 times as wide and as high). ``shape="auto"`` uses the region's own mask when it has one
    and an ellipse inscribed in the (grown) box otherwise. With ``shape="mask"`` the mask is
    dilated by ``margin`` times the region's size.

    >>> m = region_mask(Region((2, 2, 6, 6)), (8, 8), shape="box")
    >>> int(m.sum()), bool(m[2, 2]), bool(m[6, 6])
    (16, True, False)
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    own = region.mask is not None or region.polygon is not None
    if shape == "auto":
        shape = "mask" if own else "ellipse"
    if shape == "mask":
        if not own:
            raise ValueError("shape='mask' needs a region with a mask; this detector gives boxes only")
        mask = region.outline_mask(height, width)
        if mask.shape != (height, width):
            raise ValueError(f"region mask has shape {mask.shape}; the image is {(height, width)}")
        radius = int(round(margin * region.size))
        if radius > 0:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
            mask = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
        return mask
    out = np.zeros((height, width), dtype=bool)
    x1, y1, x2, y2 = _expanded_box(region, margin, height, width)
    if x2 <= x1 or y2 <= y1:
        return out
    if shape == "box":
        out[y1:y2, x1:x2] = True
        return out
    if shape != "ellipse":
        raise ValueError(f"shape must be one of auto, ellipse, box, mask; got {shape!r}")
    # Ellipse inscribed in the grown box, in box-local coordinates; computed on the unclipped box
    # so that a face at the border keeps its ellipse instead of a shrunken one.
    bx1, by1, bx2, by2 = region.box
    dx, dy = region.width * margin, region.height * margin
    cx, cy = (bx1 + bx2) / 2.0, (by1 + by2) / 2.0
    rx, ry = max(region.width / 2.0 + dx, 0.5), max(region.height / 2.0 + dy, 0.5)
    yy, xx = np.ogrid[y1:y2, x1:x2]
    inside = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2 <= 1.0
    out[y1:y2, x1:x2] = inside
    return out


def covers(det_box, box) -> bool:
    """A detection belongs to a region when they overlap (IoU > 0.3) or its centre lies in the box."""
    cx, cy = (det_box[0] + det_box[2]) / 2, (det_box[1] + det_box[3]) / 2
    return box_iou(det_box, box) > 0.3 or (box[0] <= cx <= box[2] and box[1] <= cy <= box[3])
