"""Face identity embeddings from dlib's 128-d face-recognition ResNet (face-recognition-models).

Two faces of the same person are usually closer than 0.6 (Euclidean); dlib reports 99.38 % on LFW
at that threshold. The embedder can find faces itself (dlib HOG), or take a known face position
(a box or the landmarks from the original) so that an anonymized face is measured exactly where
the person was, even when no detector finds it any more.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from .checks import as_rgb_uint8
from .weights import resolve_weights

__all__ = ["DlibFaceEmbedder", "FaceEmbedding", "DLIB_MATCH_THRESHOLD", "identity_distance", "match_distances"]

DLIB_MATCH_THRESHOLD = 0.6


@dataclass
class FaceEmbedding:
    """A face's 128-d descriptor, its box ``(x1, y1, x2, y2)`` and 5 landmarks ``(5, 2)``."""

    vector: np.ndarray
    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    shape: object  # dlib.full_object_detection, to measure another image at the same position


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors (dlib's measure; < 0.6 = same person)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def match_distances(embedder: "DlibFaceEmbedder", ref: "FaceEmbedding", anonymized: np.ndarray,
                    faces: "list[FaceEmbedding]") -> tuple[float, float | None]:
    """How close ``anonymized`` still is to the face ``ref``: the distance of the descriptor taken
    at ``ref``'s landmarks in ``anonymized`` (the attacker who knows where the face was), and the
    smallest distance to ``faces`` found in it (None when there are none)."""
    d_at = identity_distance(ref.vector, embedder.embed_at(anonymized, ref).vector)
    d_found = min((identity_distance(ref.vector, f.vector) for f in faces), default=None)
    return d_at, d_found


class DlibFaceEmbedder:
    """dlib face detection (HOG) + 5-point alignment + 128-d ResNet descriptor.

    ``jitter`` > 0 averages the descriptor over that many random crops (slower, steadier).
    """

    def __init__(self, *, upsample: int = 1, jitter: int = 0, padding: float = 0.25):
        import dlib

        self.upsample = int(upsample)
        self.jitter = int(jitter)
        self.padding = float(padding)
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(resolve_weights("dlib-landmarks-5")))
        self._net = dlib.face_recognition_model_v1(str(resolve_weights("dlib-face-recognition")))

    def _describe(self, image: np.ndarray, shape) -> np.ndarray:
        vec = self._net.compute_face_descriptor(image, shape, self.jitter, self.padding)
        return np.asarray(vec, dtype=np.float64)

    def _embedding(self, image: np.ndarray, shape) -> FaceEmbedding:
        rect = shape.rect
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        return FaceEmbedding(
            self._describe(image, shape), (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1), pts, shape
        )

    def detect(self, image: np.ndarray, *, min_score: float = 0.0) -> list[tuple[tuple[int, int, int, int], float]]:
        """Face boxes dlib's HOG detector finds, with its scores (at least ``min_score``)."""
        rects, scores, _ = self._detector.run(as_rgb_uint8(image), self.upsample, float(min_score))
        return [((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(sc)) for r, sc in zip(rects, scores)]

    def embed_all(self, image: np.ndarray) -> list[FaceEmbedding]:
        """Every face dlib finds in ``image``, largest first."""
        image = as_rgb_uint8(image)
        rects = self._detector(image, self.upsample)
        rects = sorted(rects, key=lambda r: -r.area())
        return [self._embedding(image, self._shape(image, r)) for r in rects]

    def embed(self, image: np.ndarray) -> FaceEmbedding | None:
        """The largest face in ``image``, or None when no face is found."""
        faces = self.embed_all(image)
        return faces[0] if faces else None

    def embed_at(self, image: np.ndarray, where: "FaceEmbedding | tuple[float, float, float, float]") -> FaceEmbedding:
        """Descriptor of ``image`` at a known face position.

        ``where`` is a :class:`FaceEmbedding` of the original (its landmarks are reused as they
        are: the strongest attacker, who knows exactly where the face was) or a box, in which case
        landmarks are predicted inside that box of ``image``.
        """
        image = as_rgb_uint8(image)
        if isinstance(where, FaceEmbedding):
            return self._embedding(image, where.shape)
        x1, y1, x2, y2 = (int(round(v)) for v in where)
        rect = self._dlib.rectangle(x1, y1, x2 - 1, y2 - 1)
        return self._embedding(image, self._shape(image, rect))
