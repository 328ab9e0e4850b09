"""Re-identification risk from dlib's 128-d face-identity model.

Per pair, the original's largest face is embedded; then the anonymized image is measured twice:

- ``identity_distance``: the distance to the face dlib can still *find* in the anonymized image
  near the original face (empty, with ``anon_face_found = False``, when none is found: never 0
  or NaN);
- ``identity_distance_at_position``: the descriptor taken at the original face's exact landmarks
  (an attacker who knows where the face was; always available when the original has a face).

``identity_engine`` says which engine computed the descriptors (``torch`` or ``dlib``: the same
network and weights, the same distances to about 1e-6). A pair is ``reidentified`` when either distance is below ``threshold`` (dlib's 0.6 by default):
the conservative reading. Set-level rates (``reid-rate@τ``, rank-1 against a gallery of all
originals) are computed from these columns by :mod:`anonlens.assess`.
"""

from __future__ import annotations

import numpy as np

from ..identity import DLIB_MATCH_THRESHOLD, face_embedder, identity_distance
from ..regions import box_iou
from .base import Metric, PairBatch

__all__ = ["IdentityRisk", "box_iou"]


class IdentityRisk(Metric):
    """Face-identity distance between original and anonymized (higher: more private)."""

    name = "identity"
    more_private = "higher"
    value_range = (0.0, 2.0)
    column_directions = {"identity_distance": "higher", "identity_distance_at_position": "higher", "reidentified": "lower"}
    stateful = True  # keeps every pair's descriptors (original_vectors, anonymized_vectors)

    def __init__(self, *, threshold: float = DLIB_MATCH_THRESHOLD, upsample: int = 1, embedder=None, engine: str = "auto",
                 device: str = "cpu"):
        self.threshold = float(threshold)
        self.upsample = int(upsample)
        self._embedder = embedder or face_embedder(upsample=upsample, engine=engine, device=device)  # pooled: models only
        #: which engine computes the descriptors (torch: anonlens' PyTorch build of dlib's network; dlib: dlib-bin)
        self.engine = getattr(self._embedder, "engine", "dlib")
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
            "identity_engine",
        ]

    @staticmethod
    def _box(shape) -> tuple[int, int, int, int]:
        r = shape.rect
        return (r.left(), r.top(), r.right() + 1, r.bottom() + 1)

    def __call__(self, batch: PairBatch):
        """Faces are located per image (dlib's detector and landmarks), then every descriptor of
        the batch is computed in one call (one forward pass on the torch engine)."""
        out = {c: [] for c in self.columns}
        emb = self._embedder
        plans = []  # per pair: (ref shape or None, [anonymized shapes near it])
        items: list[tuple] = []
        for orig, anon in zip(batch.original_images, batch.anonymized_images):
            shapes = emb.locate_all(orig)
            ref = shapes[0] if shapes else None
            near = [s for s in emb.locate_all(anon) if box_iou(self._box(s), self._box(ref)) > 0.3] if ref is not None else []
            plans.append((ref, near))
            if ref is not None:
                items += [(orig, ref), (anon, ref)] + [(anon, s) for s in near]
        embedded = iter(emb.embed_shapes(items))
        for ref_shape, near in plans:
            ref = at = found = None
            if ref_shape is not None:
                ref, at = next(embedded), next(embedded)
                candidates = [next(embedded) for _ in near]
                found = min(candidates, key=lambda f: identity_distance(ref.vector, f.vector)) if candidates else None
            d_found = identity_distance(ref.vector, found.vector) if found is not None else None
            d_at = identity_distance(ref.vector, at.vector) if at is not None else None
            out["identity_distance"].append(d_found)
            out["identity_distance_at_position"].append(d_at)
            out["orig_face_found"].append(ref is not None)
            out["anon_face_found"].append(found is not None)
            out["reidentified"].append(
                None if ref is None else bool(min(d for d in (d_found, d_at) if d is not None) < self.threshold)
            )
            out["identity_engine"].append(self.engine)
            self.original_vectors.append(None if ref is None else ref.vector)
            self.anonymized_vectors.append(None if found is None else found.vector)
        return out
