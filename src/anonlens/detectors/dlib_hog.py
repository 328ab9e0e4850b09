"""dlib's HOG + linear SVM frontal face detector."""

from __future__ import annotations

import numpy as np

from ..checks import as_rgb_uint8
from ..regions import Region
from .base import Detector

__all__ = ["DlibHOG"]


class DlibHOG(Detector):
    """dlib's frontal face detector: good on frontal faces of 80 px and more, misses profiles.

    ``upsample`` doubles the image that many times first (finds smaller faces, 4x slower each);
    ``threshold`` is dlib's ``adjust_threshold`` (lower finds more).
    """

    name = "dlib-hog"
    label = "face"

    def __init__(self, *, upsample: int = 1, threshold: float = 0.0):
        import dlib

        self.upsample = int(upsample)
        self.threshold = float(threshold)
        self._detector = dlib.get_frontal_face_detector()

    def detect(self, image: np.ndarray, *, source: str | None = None) -> list[Region]:
        image = as_rgb_uint8(image)
        rects, scores, _ = self._detector.run(image, self.upsample, self.threshold)
        h, w = image.shape[:2]
        regions = [
            Region(
                (float(max(0, r.left())), float(max(0, r.top())), float(min(w, r.right() + 1)), float(min(h, r.bottom() + 1))),
                float(s),
                "face",
            )
            for r, s in zip(rects, scores)
        ]
        return sorted(regions, key=lambda r: -r.score)
