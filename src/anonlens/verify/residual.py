"""Verified outputs: after anonymizing, look for faces again where they were, and fix what is left.

Every anonymized region is re-checked with the face detector on a crop of the output around it
(:meth:`FaceVerifier.residual`: the highest face score left there, recorded for every region).
A region that still detects as a face (score at or above the detector's threshold, 0.2) is the
operator's failure: the operator is applied again, from the pixels before it, on a documented
schedule (:data:`STRENGTHEN_STEPS` steps, each :meth:`anonlens.operators.Operator.stronger`:
blur sigma x2, pixelate and noise cells x2 larger, DP-Pix cells x2), re-checked after each step,
and replaced by a solid black mask if it still detects. When even the masked region detects (a
small face: the detector sees a head's outline, hair and shoulders around a black ellipse; seen on
30 px faces), the mask grows to the region's box plus :data:`WIDE_MASK_MARGIN` of its size on
every side. Nothing of the face is left under a mask; the residual score is recorded whatever it is.

Scopes that do not look for faces themselves (``body``, ``image``, user ``boxes``) also get a
face search over the whole output (:meth:`FaceVerifier.faces`): every face found there is
anonymized as a face region and verified the same way, so a face the face detector finds is never
left visible, whatever the body detector said.

"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..detectors import create_detector
from ..regions import Region, covers

__all__ = ["FaceVerifier", "STRENGTHEN_STEPS", "WIDE_MASK_MARGIN", "covers"]

#: how many times a region that still detects is anonymized more strongly before the solid mask
STRENGTHEN_STEPS = 2
#: a mask that still detects grows to the region's box plus this share of its size on every side
WIDE_MASK_MARGIN = 0.5


class FaceVerifier:
    """Re-detects faces in anonymized outputs.

    ``threshold``: a region whose residual score reaches it still counts as a face (CenterFace's
    own detection threshold by default). ``probe_threshold``: the lowest score looked at, so that
    residual scores under the threshold are recorded too. ``context``: the square crop around a
    region extends this share of its size on every side (at least ``min_crop`` px); it is resized
    to ``probe_size`` px, where the face is at most half of it (128 px), well inside the sizes
    CenterFace finds reliably.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.2,
        probe_threshold: float = 0.05,
        context: float = 0.5,
        min_crop: int = 128,
        probe_size: int = 256,
        detector_options: dict[str, Any] | None = None,
    ):
        opts = {k: v for k, v in (detector_options or {}).items() if k in ("backend", "precision", "model_path")}
        self.threshold = float(threshold)
        self.context = float(context)
        self.min_crop, self.probe_size = int(min_crop), int(probe_size)
        self._probe = create_detector("centerface", threshold=probe_threshold, multiscale=False, **opts)
        self._full = create_detector("centerface", threshold=self.threshold, orientations=4, **opts)

    def options(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "context": self.context, "strengthen_steps": STRENGTHEN_STEPS}

    def residual(self, image: np.ndarray, box) -> float:
        """Highest face score in ``image`` over the region ``box`` (0.0 when none).

        The crop is a square around the region (``context`` of its size on every side, at least
        ``min_crop`` px; black beyond the image's edges) resized to ``probe_size`` px, so the
        detector always runs at one input size (one compiled model, no per-size compilation)."""
        h, w = image.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box)
        size = max(x2 - x1, y2 - y1, 1.0)
        side = int(np.ceil(max(size * (1 + 2 * self.context), self.min_crop)))
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        X1, Y1 = int(round(cx - side / 2)), int(round(cy - side / 2))
        square = np.zeros((side, side, 3), np.uint8)
        sx1, sy1, sx2, sy2 = max(0, X1), max(0, Y1), min(w, X1 + side), min(h, Y1 + side)
        if sx2 - sx1 < 2 or sy2 - sy1 < 2:
            return 0.0
        square[sy1 - Y1 : sy2 - Y1, sx1 - X1 : sx2 - X1] = image[sy1:sy2, sx1:sx2]
        f = self.probe_size / side
        crop = cv2.resize(square, (self.probe_size, self.probe_size), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
        boxes, _ = self._probe.detect_arrays(crop)
        best = 0.0
        for b in boxes:
            det = (b[0] / f + X1, b[1] / f + Y1, b[2] / f + X1, b[3] / f + Y1)
            if covers(det, (x1, y1, x2, y2)):
                best = max(best, float(b[4]))
        return round(best, 4)

    def faces(self, image: np.ndarray, *, upright: tuple[Any, list[Region]] | None = None) -> list[Region]:
        """Faces the multi-scale face detector finds anywhere in ``image``, upright or turned by a
        quarter turn (``orientations=4``: a photo whose orientation tag was lost). ``upright``:
        ``(detector, its detections in image)`` when a detector already searched ``image``
        upright; used when its search is this one's (the anonymizer's CenterFace with its defaults)."""
        if upright is not None:
            detector, found = upright
            if type(detector) is type(self._full) and detector.search() == self._full.search():
                return self._full.detect_turned(image, found)
        return self._full.detect(image)


