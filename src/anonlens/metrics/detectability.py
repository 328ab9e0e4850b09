"""Residual detectability and utility kept, measured around the faces of the original."""

from __future__ import annotations

import numpy as np

from ..detectors import create_detector
from ..pool import MODELS
from ..regions import region_mask
from ..verify import FaceVerifier
from . import functional as F
from .base import Metric, PairBatch
from ..regions import box_iou

__all__ = ["ResidualFace", "UtilityOutside"]


MODELS.define("face-detector", size=1)
MODELS.define("face-verifier", size=1)


def _build_face_detector():
    return create_detector("centerface", threshold=0.2)


def _build_verifier():
    return FaceVerifier()


def _shared_face_detector():
    """CenterFace at threshold 0.2, one per process (the model pool's)."""
    return MODELS.get("face-detector", ("centerface", 0.2), _build_face_detector)


def _shared_verifier():
    """The verification's residual measurement, one per process (the model pool's)."""
    return MODELS.get("face-verifier", None, _build_verifier)


class _FaceRegions:
    """Faces of the originals (CenterFace score >= ``threshold``), found once per batch and shared
    by the metrics below; one detector per process unless one is injected."""

    def __init__(self, detector=None, threshold: float = 0.5):
        self._injected = detector
        self.threshold = threshold

    @property
    def detector(self):
        return self._injected or _shared_face_detector()

    def original_faces(self, batch: PairBatch) -> list[list]:
        key = ("original_faces", id(self._injected), self.threshold)
        if key not in batch.cache:
            batch.cache[key] = [
                [r for r in self.detector.detect(img) if r.score >= self.threshold] for img in batch.original_images
            ]
        return batch.cache[key]


class ResidualFace(Metric):
    """Highest face-detector score left where the original had a face (0: nothing detectable).

    Lower: more private. The same measurement as the anonymizer's verification and the release
    gate (:meth:`anonlens.verify.FaceVerifier.residual`): CenterFace on a crop of the anonymized
    image around each face of the original, at the face's own resolution. (A strongly downscaled
    blurred face can still look like a face-shaped blob, which carries no identity.) With an
    injected ``detector``: that detector on the whole anonymized image, detections overlapping a
    face of the original (IoU > 0.3).
    """

    name = "residual_face_score"
    more_private = "lower"
    value_range = (0.0, 1.0)
    column_directions = {"residual_face_score": "lower"}

    def __init__(self, *, detector=None):
        self._faces = _FaceRegions(detector)
        self._injected = detector

    def __call__(self, batch: PairBatch):
        values = []
        for faces, anon in zip(self._faces.original_faces(batch), batch.anonymized_images):
            if not faces:
                values.append(None)
                continue
            if self._injected is None:
                values.append(max(_shared_verifier().residual(anon, f.box) for f in faces))
                continue
            scores = [d.score for d in self._faces.detector.detect(anon) if any(box_iou(d.box, f.box) > 0.3 for f in faces)]
            values.append(max(scores, default=0.0))
        return {self.name: values}


class UtilityOutside(Metric):
    """PSNR and SSIM of the image *outside* the original's faces (grown by ``margin``): how much
    of the rest of the picture was kept. Higher: more utility (``more_private`` is about the
    face inside, so it does not apply: declared "lower" only because more change means less kept).
    """

    name = "utility_outside"
    more_private = "lower"
    utility = True
    value_range = (-1.0, 1.0)
    column_directions = {"psnr_outside": "lower", "ssim_outside": "lower"}

    def __init__(self, *, margin: float = 0.25, detector=None):
        self.margin = float(margin)
        self._faces = _FaceRegions(detector)

    @property
    def columns(self):
        return ["psnr_outside", "ssim_outside"]

    def __call__(self, batch: PairBatch):
        psnrs, ssims = [], []
        all_faces = self._faces.original_faces(batch)
        for orig, anon, faces in zip(batch.original_images, batch.anonymized_images, all_faces):
            keep = np.ones(orig.shape[:2], bool)
            for f in faces:
                keep &= ~region_mask(f, orig.shape, shape="ellipse", margin=self.margin)
            if not keep.any():
                psnrs.append(None)
                ssims.append(None)
                continue
            x, y = orig.astype(np.float32) / 255.0, anon.astype(np.float32) / 255.0
            err = float(((x - y) ** 2).mean(axis=2)[keep].mean(dtype=np.float64))
            psnrs.append(float("inf") if err == 0 else float(10 * np.log10(1.0 / err)))
            ssims.append(float(F.ssim_map(x, y).mean(axis=2)[keep].mean(dtype=np.float64)))
        return {"psnr_outside": psnrs, "ssim_outside": ssims}


class FaceScore(Metric):
    """No-reference: the highest face-detector score anywhere in the anonymized image (0: no face
    detectable). Needs no original, so it can score a data set whose originals are gone."""

    name = "face-score"
    full_reference = False
    more_private = "lower"
    value_range = (0.0, 1.0)
    column_directions = {"face_score": "lower"}

    def __init__(self, *, detector=None):
        self._faces = _FaceRegions(detector)

    @property
    def columns(self):
        return ["face_score"]

    def __call__(self, batch: PairBatch):
        return {"face_score": [max((d.score for d in self._faces.detector.detect(img)), default=0.0) for img in batch.anonymized_images]}


class PeopleKept(Metric):
    """Utility for data sets meant to train person detectors: the share of the people found in
    the original (``ssd-person``, the default body detector) that the same detector still finds in the anonymized image
    (IoU >= 0.5). Empty when the original has no detected person. Higher: more utility kept."""

    name = "people_kept"
    more_private = "lower"
    utility = True
    value_range = (0.0, 1.0)
    column_directions = {"people_kept": "lower"}

    def __init__(self, *, detector: str = "ssd-person", iou: float = 0.5):
        self.detector = detector
        self.iou = float(iou)
        self._detector = create_detector(detector)

    def __call__(self, batch: PairBatch):
        values = []
        for orig, anon in zip(batch.original_images, batch.anonymized_images):
            people = self._detector.detect(orig)
            if not people:
                values.append(None)
                continue
            found = self._detector.detect(anon)
            kept = sum(any(box_iou(p.box, f.box) >= self.iou for f in found) for p in people)
            values.append(kept / len(people))
        return {"people_kept": values}
