"""The alignment as a differentiable warp: dlib's face chip (5-point landmarks, 150x150, padding
0.25) sampled from an image tensor with ``grid_sample``, so that gradients of the descriptor reach
the image's pixels.

dlib's ``get_face_chip_details`` gives the chip's rectangle and angle in the image; dlib maps the
rectangle's rotated top-left, top-right and bottom-right corners to the chip's corners
``(0, 0)``, ``(cols - 1, 0)`` and ``(cols - 1, rows - 1)``. The same affine map is used here, with
bilinear sampling. dlib itself first halves the image in a pyramid when the face is much larger
than the chip, so this chip is close to dlib's, not identical: it serves the gradient, while
distances are measured on dlib's own chip.
"""

from __future__ import annotations

import math

import dlib
import numpy as np
import torch
from torch.nn import functional as F

from .network import CHIP_SIZE

__all__ = ["chip_to_image_affine", "warp_chips"]


def chip_to_image_affine(shape, *, size: int = CHIP_SIZE, padding: float = 0.25) -> np.ndarray:
    """The ``(2, 3)`` affine map from chip pixel ``(x, y, 1)`` to image pixel coordinates."""
    details = dlib.get_face_chip_details(shape, size=size, padding=padding)
    rect, angle = details.rect, float(details.angle)
    cx, cy = (rect.left() + rect.right()) / 2.0, (rect.top() + rect.bottom()) / 2.0
    cos, sin = math.cos(angle), math.sin(angle)

    def rotated(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cos * dx - sin * dy + cx, sin * dx + cos * dy + cy

    src = np.array([rotated(rect.left(), rect.top()), rotated(rect.right(), rect.top()), rotated(rect.right(), rect.bottom())])
    cols, rows = details.cols, details.rows
    dst = np.array([[0.0, 0.0], [cols - 1.0, 0.0], [cols - 1.0, rows - 1.0]])
    # solve image = A @ [chip_x, chip_y, 1]
    design = np.hstack([dst, np.ones((3, 1))])
    return np.linalg.solve(design, src).T


def warp_chips(image: torch.Tensor, affines: np.ndarray | torch.Tensor, *, size: int = CHIP_SIZE) -> torch.Tensor:
    """Chips ``(N, C, size, size)`` from ``image`` ``(C, H, W)`` (or ``(1, C, H, W)``) at the
    ``(N, 2, 3)`` chip-to-image maps; differentiable with respect to ``image``."""
    if image.dim() == 3:
        image = image[None]
    _, c, h, w = image.shape
    a = torch.as_tensor(np.asarray(affines), dtype=image.dtype, device=image.device).reshape(-1, 2, 3)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=image.dtype, device=image.device),
                            torch.arange(size, dtype=image.dtype, device=image.device), indexing="ij")
    chip = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(-1, 3)  # (size*size, 3)
    pts = torch.einsum("nij,pj->npi", a, chip)  # (N, size*size, 2) image x, y
    grid = torch.stack([2 * pts[..., 0] / (w - 1) - 1, 2 * pts[..., 1] / (h - 1) - 1], dim=-1).reshape(-1, size, size, 2)
    return F.grid_sample(image.expand(len(a), c, h, w), grid, mode="bilinear", padding_mode="border", align_corners=True)
