"""The detector interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..regions import Region

__all__ = ["Detector", "nms", "ious"]


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

    def match_inputs(self, keys: list[str]) -> dict[str, Any]:
        """For detectors that look regions up by image key: before a batch runs, resolve their
        keys against the inputs' ``keys``. Returns ``sources`` ({input key: lookup key}),
        ``unmatched`` (their keys that match no input) and ``ambiguous`` (problems that stop the
        run). Image-only detectors have nothing to match."""
        return {}

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
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        order = rest[ious(boxes[i], boxes[rest]) < threshold]
    return np.asarray(keep, dtype=np.int64)


def ious(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(x1, y1, x2, y2)`` box with each row of ``boxes`` (0 where the union is empty).

    >>> ious(np.array([0, 0, 10, 10.]), np.array([[5, 0, 15, 10.], [20, 20, 30, 30.]])).round(3).tolist()
    [0.333, 0.0]
    """
    box, boxes = np.asarray(box, np.float64), np.asarray(boxes, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
