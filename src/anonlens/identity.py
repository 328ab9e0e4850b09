"""Face identity embeddings from dlib's 128-d face-recognition ResNet (face-recognition-models).

Two faces of the same person are usually closer than 0.6 (Euclidean); dlib reports 99.38 % on LFW
at that threshold. The embedder can find faces itself (dlib HOG), or take a known face position
(a box or the landmarks from the original) so that an anonymized face is measured exactly where
the person was, even when no detector finds it any more.

Two engines compute the descriptor from dlib's aligned 150x150 chip: ``torch`` (anonlens' PyTorch
build of the same network from the same weights file, :mod:`anonlens.facenet`: the same
descriptors to about 1e-6, batched over many faces, differentiable) and ``dlib`` (dlib-bin, one face
at a time). ``auto`` takes torch when it is installed. Face detection and landmarks are dlib's in
both; descriptors with jitter > 0 are dlib's (its random crops).
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from .checks import as_rgb_uint8
from .errors import AnonlensError
from .extras import has_extra, require_extra
from .pool import MODELS
from .weights import resolve_weights

__all__ = ["DlibFaceEmbedder", "FaceEmbedding", "DLIB_MATCH_THRESHOLD", "IDENTITY_ENGINES", "identity_distance", "match_distances",
           "match_distances_many",
           "resolve_engine", "torch_network", "face_embedder"]

DLIB_MATCH_THRESHOLD = 0.6
IDENTITY_ENGINES = ("auto", "torch", "dlib")


def resolve_engine(engine: str = "auto", *, jitter: int = 0) -> str:
    """``torch`` or ``dlib``: ``auto`` is torch where it is installed (and jitter is 0)."""
    if engine not in IDENTITY_ENGINES:
        raise AnonlensError(f"unknown identity engine '{engine}'; known: {', '.join(IDENTITY_ENGINES)}")
    torch_ok = has_extra("learn")
    if engine == "torch":
        if not torch_ok:
            require_extra("learn", "the torch identity engine")
        if jitter:
            raise AnonlensError("jitter > 0 is dlib's random crops: use the dlib identity engine")
        return "torch"
    if engine == "dlib" or jitter or not torch_ok:
        return "dlib"
    return "torch"


MODELS.define("dlib-resnet")
MODELS.define("face-embedder", size=4)


def _build_torch_network(device: str):
    from .facenet.network import DlibResNet

    return DlibResNet.from_file(resolve_weights("dlib-face-recognition")).to(device)


def torch_network(device: str = "cpu"):
    """dlib's face-recognition ResNet in PyTorch (:mod:`anonlens.facenet`), built once per process
    and device (the model pool's)."""
    return MODELS.get("dlib-resnet", device, lambda: _build_torch_network(device))


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
    return match_distances_many(embedder, [ref], anonymized, [faces])[0]


def match_distances_many(embedder: "DlibFaceEmbedder", refs: "list[FaceEmbedding]", anonymized: np.ndarray,
                         faces: "list[list[FaceEmbedding]]") -> list[tuple[float, float | None]]:
    """:func:`match_distances` for several faces of one image (``faces[i]``: the faces found that
    may be ``refs[i]``), the descriptors at the references' landmarks in one batch."""
    at = embedder.describe_many([(as_rgb_uint8(anonymized), ref.shape) for ref in refs])
    return [(identity_distance(ref.vector, v), min((identity_distance(ref.vector, f.vector) for f in found), default=None))
            for ref, v, found in zip(refs, at, faces)]


class DlibFaceEmbedder:
    """dlib face detection (HOG) + 5-point alignment + 128-d ResNet descriptor.

    ``jitter`` > 0 averages the descriptor over that many random crops (slower, steadier).
    """

    def __init__(self, *, upsample: int = 1, jitter: int = 0, padding: float = 0.25, engine: str = "auto", device: str = "cpu"):
        import dlib

        self.upsample = int(upsample)
        self.jitter = int(jitter)
        self.padding = float(padding)
        self.engine = resolve_engine(engine, jitter=self.jitter)
        self.device = str(device)
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(resolve_weights("dlib-landmarks-5")))
        self._net = dlib.face_recognition_model_v1(str(resolve_weights("dlib-face-recognition")))
        self._torch_net = torch_network(self.device) if self.engine == "torch" else None

    def chip(self, image: np.ndarray, shape) -> np.ndarray:
        """dlib's aligned ``(150, 150, 3)`` uint8 chip of the face at ``shape`` (5-point landmarks)."""
        return np.asarray(self._dlib.get_face_chip(as_rgb_uint8(image), shape, size=150, padding=self.padding))

    def describe_chips(self, chips: "list[np.ndarray] | np.ndarray") -> np.ndarray:
        """``(N, 128)`` descriptors of aligned chips, in batches of 64 (torch) or one by one (dlib)."""
        chips = [np.ascontiguousarray(c) for c in chips]
        if not chips:
            return np.zeros((0, 128))
        if self._torch_net is None:
            return np.stack([np.asarray(self._net.compute_face_descriptor(c, self.jitter), np.float64) for c in chips])
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(chips), 64):
                x = torch.from_numpy(np.stack(chips[i : i + 64])).to(self.device).permute(0, 3, 1, 2).float()
                out.append(self._torch_net(x).double().cpu().numpy())
        return np.concatenate(out)

    def describe_many(self, items: "list[tuple[np.ndarray, object]]") -> list[np.ndarray]:
        """Descriptors of many ``(image, shape)`` faces, batched on the torch engine."""
        if self._torch_net is None:
            return [self._describe(image, shape) for image, shape in items]
        return list(self.describe_chips([self.chip(image, shape) for image, shape in items]))

    def _describe(self, image: np.ndarray, shape) -> np.ndarray:
        if self._torch_net is not None:
            return self.describe_chips([self.chip(image, shape)])[0]
        vec = self._net.compute_face_descriptor(image, shape, self.jitter, self.padding)
        return np.asarray(vec, dtype=np.float64)

    def _embedding(self, image: np.ndarray, shape, vector: np.ndarray | None = None) -> FaceEmbedding:
        rect = shape.rect
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        return FaceEmbedding(
            self._describe(image, shape) if vector is None else vector, (rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1), pts, shape
        )

    def locate_all(self, image: np.ndarray) -> list:
        """dlib's landmarks (5 points) of every face its detector finds, largest first (no descriptor)."""
        image = as_rgb_uint8(image)
        rects = sorted(self._detector(image, self.upsample), key=lambda r: -r.area())
        return [self._shape(image, r) for r in rects]

    def locate_near(self, image: np.ndarray, boxes, *, context: float = 0.5) -> list:
        """Like :meth:`locate_all`, but dlib's detector runs only around ``boxes`` (each grown by
        ``context`` of its size on every side): the faces that can overlap them, for a fraction of
        the cost on a large photo. Landmarks are predicted on the whole image."""
        image = as_rgb_uint8(image)
        h, w = image.shape[:2]
        found: list = []
        for x1, y1, x2, y2 in boxes:
            cw, ch = (x2 - x1) * context, (y2 - y1) * context
            ox, oy = max(0, int(x1 - cw)), max(0, int(y1 - ch))
            ex, ey = min(w, int(np.ceil(x2 + cw))), min(h, int(np.ceil(y2 + ch)))
            if ex - ox < 8 or ey - oy < 8:
                continue
            for r in self._detector(np.ascontiguousarray(image[oy:ey, ox:ex]), self.upsample):
                rect = self._dlib.rectangle(r.left() + ox, r.top() + oy, r.right() + ox, r.bottom() + oy)
                if not any(rect == f for f in found):
                    found.append(rect)
        found.sort(key=lambda r: -r.area())
        return [self._shape(image, r) for r in found]

    def shape_at(self, image: np.ndarray, box: tuple[float, float, float, float]):
        """dlib's landmarks predicted inside ``box`` of ``image``."""
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        return self._shape(as_rgb_uint8(image), self._dlib.rectangle(x1, y1, x2 - 1, y2 - 1))

    def embed_shapes(self, items: "list[tuple[np.ndarray, object]]") -> list[FaceEmbedding]:
        """:class:`FaceEmbedding` of many ``(image, shape)`` faces, their descriptors in one batch."""
        items = [(as_rgb_uint8(image), shape) for image, shape in items]
        vectors = self.describe_many(items)
        return [self._embedding(image, shape, v) for (image, shape), v in zip(items, vectors)]

    def detect(self, image: np.ndarray, *, min_score: float = 0.0, upsample: int | None = None) -> list[tuple[tuple[int, int, int, int], float]]:
        """Face boxes dlib's HOG detector finds, with its scores (at least ``min_score``;
        ``upsample``: this many doublings of the image first, default the embedder's)."""
        rects, scores, _ = self._detector.run(as_rgb_uint8(image), self.upsample if upsample is None else int(upsample), float(min_score))
        return [((r.left(), r.top(), r.right() + 1, r.bottom() + 1), float(sc)) for r, sc in zip(rects, scores)]

    def embed_all(self, image: np.ndarray) -> list[FaceEmbedding]:
        """Every face dlib finds in ``image``, largest first."""
        image = as_rgb_uint8(image)
        return self.embed_shapes([(image, shape) for shape in self.locate_all(image)])

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
        return self._embedding(image, self.shape_at(image, where))


def face_embedder(*, upsample: int = 1, jitter: int = 0, padding: float = 0.25, engine: str = "auto",
                  device: str = "cpu") -> DlibFaceEmbedder:
    """The process's :class:`DlibFaceEmbedder` for these settings, from the model pool (its models
    load once; it keeps nothing of the images it embeds)."""
    key = (int(upsample), int(jitter), float(padding), resolve_engine(engine, jitter=int(jitter)), str(device))
    return MODELS.get("face-embedder", key, lambda: DlibFaceEmbedder(upsample=key[0], jitter=key[1], padding=key[2],
                                                                     engine=key[3], device=key[4]))
