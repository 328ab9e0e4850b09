"""Re-identification risk from dlib's 128-d face-identity model.

Per pair, the original's largest face is embedded; then the anonymized image is measured twice:

- ``identity_distance``: the distance to the face dlib can still *find* in the anonymized image
  near the original face (empty, with ``anon_face_found = False``, when none is found: never 0
  or NaN);
- ``identity_distance_at_position``: the descriptor taken at the original face's exact landmarks
  (an attacker who knows where the face was; always available when the original has a face).

A pair is ``reidentified`` when either distance is below ``threshold`` (dlib's 0.6 by default):
the conservative reading. Set-level rates (``reid-rate@τ``, rank-1 against a gallery of all
originals) are computed from these columns by :mod:`anonlens.assess`.
"""

from __future__ import annotations

import numpy as np

from ..identity import DLIB_MATCH_THRESHOLD, DlibFaceEmbedder, identity_distance
from ..regions import box_iou
from .base import Metric, PairBatch

__all__ = ["IdentityRisk", "box_iou"]


class IdentityRisk(Metric):
    """Face-identity distance between original and anonymized (higher: more private)."""

    name = "identity"
    more_private = "higher"
    value_range = (0.0, 2.0)
    column_directions = {"identity_distance": "higher", "identity_distance_at_position": "higher", "reidentified": "lower"}

    def __init__(self, *, threshold: float = DLIB_MATCH_THRESHOLD, upsample: int = 1, embedder=None):
        self.threshold = float(threshold)
        self.upsample = int(upsample)
        self._embedder = embedder or DlibFaceEmbedder(upsample=upsample)
        #: per pair, the embeddings kept for set-level rates (rank-1 against the gallery)
        self.original_vectors: list[np.ndarray | None] = []
        self.anonymized_vectors: list[np.ndarray | None] = []

    @property
    def columns(self):
        return [
            "identity_distance",
            "identity_distance_at_position",
            "orig_face_found",
            "anon_face_found",
            "reidentified",
        ]

    def __call__(self, batch: PairBatch):
        out = {c: [] for c in self.columns}
        for orig, anon in zip(batch.original_images, batch.anonymized_images):
            ref = self._embedder.embed(orig)
            found = None
            if ref is not None:
                near = [f for f in self._embedder.embed_all(anon) if box_iou(f.box, ref.box) > 0.3]
                found = min(near, key=lambda f: identity_distance(ref.vector, f.vector)) if near else None
            at = self._embedder.embed_at(anon, ref) if ref is not None else None
            d_found = identity_distance(ref.vector, found.vector) if found is not None else None
            d_at = identity_distance(ref.vector, at.vector) if at is not None else None
            out["identity_distance"].append(d_found)
            out["identity_distance_at_position"].append(d_at)
            out["orig_face_found"].append(ref is not None)
            out["anon_face_found"].append(found is not None)
            out["reidentified"].append(
                None if ref is None else bool(min(d for d in (d_found, d_at) if d is not None) < self.threshold)
            )
            self.original_vectors.append(None if ref is None else ref.vector)
            self.anonymized_vectors.append(None if found is None else found.vector)
        return out
