"""The detector interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..regions import Region

__all__ = ["Detector", "nms"]


class Detector(ABC):
    """Finds regions (faces, people, user boxes) in an ``(H, W, 3)`` uint8 RGB image.

    ``source`` is the image's key (its path relative to the input root) for detectors that look
    regions up, such as ``boxes``; image-only detectors ignore it.
    """

    name: ClassVar[str] = ""
    #: what the regions are: "face", "person" or "region"
    label: ClassVar[str] = "region"
    #: True when one instance already keeps every core busy (then the batch runner's automatic
    #: worker count is 1: more processes only add start-up time and contention)
    multithreaded: ClassVar[bool] = False

    @abstractmethod
    def detect(self, image: np.ndarray, *, source: str | None = None) -> list[Region]:
        """Regions found in ``image``, highest score first."""

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def runtime_info(self) -> dict[str, Any]:
        """What ran the model (library and version, numeric precision), for manifests: detections
        can differ slightly between runtimes and precisions. Empty for rule-based detectors."""
        return {}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices kept, highest score first.

    A box is dropped when its intersection over union with a kept, higher-scoring box is at
    least ``threshold`` (areas without the +1 convention).
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.float64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou < threshold]
    return np.asarray(keep, dtype=np.int64)
