"""OpenCV's HOG people detector (Dalal-Triggs)."""

from __future__ import annotations

import cv2
import numpy as np

from ..checks import as_rgb_uint8
from ..regions import Region
from .base import Detector, nms

__all__ = ["HOGPerson"]


class HOGPerson(Detector):
    """OpenCV HOG people detector: upright, mostly unoccluded people of 100 px and taller.

    It is weak: it misses sitting, partly hidden and small people, and fires on some poles and
    trees. Use it only where nothing better is available, review the "nothing found" list, and
    prefer ``--on-empty full`` or your own boxes (``boxes``) for a release.
    ``max_side`` runs it on a smaller copy of large images (faster, misses small people).
    """

    name = "hog-person"
    label = "person"

    def __init__(
        self,
        *,
        threshold: float = 0.0,
        scale: float = 1.05,
        win_stride: int = 8,
        max_side: int | None = 1280,
        nms_threshold: float = 0.45,
    ):
        self.threshold = float(threshold)
        self.scale = float(scale)
        self.win_stride = int(win_stride)
        self.max_side = None if max_side is None else int(max_side)
        self.nms_threshold = float(nms_threshold)
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, image: np.ndarray, *, source: str | None = None) -> list[Region]:
        image = as_rgb_uint8(image)
        h, w = image.shape[:2]
        f = 1.0
        work = image
        if self.max_side is not None and max(h, w) > self.max_side:
            f = self.max_side / max(h, w)
            work = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        if work.shape[0] < 128 or work.shape[1] < 64:
            return []  # smaller than the detector's 64x128 window
        rects, weights = self._hog.detectMultiScale(
            work,
            hitThreshold=self.threshold,
            winStride=(self.win_stride, self.win_stride),
            padding=(8, 8),
            scale=self.scale,
        )
        if len(rects) == 0:
            return []
        rects = np.asarray(rects, dtype=np.float64) / f
        boxes = np.column_stack([rects[:, 0], rects[:, 1], rects[:, 0] + rects[:, 2], rects[:, 1] + rects[:, 3]])
        boxes = np.clip(boxes, 0, [w, h, w, h])
        scores = np.asarray(weights, dtype=np.float64).reshape(-1)
        keep = nms(boxes, scores, self.nms_threshold)
        return [Region(tuple(float(v) for v in boxes[i]), float(scores[i]), "person") for i in keep]
