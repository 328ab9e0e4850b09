"""The face recognisers that try to re-identify a person: :data:`ATTACKERS`.

Every attacker takes the aligned chip of a located face (:class:`~anonlens.reid.measurable.FaceLocation`:
the same view and landmarks in the original and in the anonymized image) and turns it into a
descriptor:

- ``dlib`` (the default, offline): dlib's 128-d face-recognition ResNet on dlib's 150x150 chip
  (:func:`anonlens.identity.face_embedder`), Euclidean distance, ``tau`` 0.6 (dlib's LFW threshold);
- ``onnx``: an ArcFace/SFace-family recogniser the user supplies as an ONNX file (``model=path``),
  run by OpenVINO: input ``(N, 3, 112, 112)``, the chip aligned by a similarity transform of dlib's
  5 landmarks (the two eye centres and the nose) onto the standard ArcFace 112x112 template,
  pixels ``(x - mean) / std`` (default ``(x - 127.5) / 127.5``, RGB), output L2-normalised, cosine
  distance ``1 - cos``, ``tau`` 0.6 by default (set it for the model: ``tau=``).

The interface (:class:`Attacker`): ``name``, ``tau``, ``same_face``, ``chip(image, location)``,
``describe(chips) -> (N, D)`` (one batch), ``distance(a, b)`` (``b`` may be ``(M, D)``: then ``(M,)``).

>>> sorted(ATTACKERS.names())
['dlib', 'onnx']
"""

from __future__ import annotations

import os
import threading
from typing import Any, Literal, Protocol, runtime_checkable

import cv2
import numpy as np

from .. import runtime
from ..errors import AnonlensError
from ..identity import DLIB_MATCH_THRESHOLD, DlibFaceEmbedder, face_embedder
from ..pool import MODELS
from ..registry import Registry
from ..weights import WeightSpec, register_weights, resolve_weights
from .measurable import FaceLocation, view_of

__all__ = ["Attacker", "ATTACKERS", "DlibAttacker", "OnnxAttacker", "create_attacker", "default_attacker", "list_attackers",
           "ARCFACE_TEMPLATE", "arcface_transform", "euclidean", "cosine_distance"]


@runtime_checkable
class Attacker(Protocol):
    """A face recogniser (module docstring)."""

    name: str
    #: the fixed-threshold test: descriptors closer than this are the same person
    tau: float
    #: descriptors closer than this are the same photo of the same face (never an impostor)
    same_face: float

    def chip(self, image: np.ndarray, location: FaceLocation) -> np.ndarray: ...
    def describe(self, chips: "list[np.ndarray]") -> np.ndarray: ...
    def distance(self, a: np.ndarray, b: np.ndarray) -> "float | np.ndarray": ...


def euclidean(a: np.ndarray, b: np.ndarray) -> "float | np.ndarray":
    """Euclidean distance of ``a`` ``(D,)`` to ``b`` ``(D,)`` (a float) or to each row of ``b`` ``(M, D)``.

    >>> euclidean(np.array([0.0, 0.0]), np.array([[3.0, 4.0], [0.0, 1.0]])).tolist()
    [5.0, 1.0]
    """
    d = np.linalg.norm(np.asarray(b, np.float64) - np.asarray(a, np.float64), axis=-1)
    return float(d) if np.ndim(d) == 0 else d


def cosine_distance(a: np.ndarray, b: np.ndarray) -> "float | np.ndarray":
    """``1 - cos`` of ``a`` ``(D,)`` and ``b`` ``(D,)`` or each row of ``b`` ``(M, D)`` (in [0, 2]).

    >>> cosine_distance(np.array([1.0, 0.0]), np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])).tolist()
    [0.0, 1.0, 2.0]
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na = np.linalg.norm(a)
    nb = np.linalg.norm(b, axis=-1)
    d = 1.0 - (b @ a) / np.maximum(na * nb, 1e-12)
    return float(d) if np.ndim(d) == 0 else d


ATTACKERS: Registry[Attacker] = Registry("attacker", check_types=True)


class DlibAttacker:
    """dlib's 128-d descriptor of dlib's aligned 150x150 chip; Euclidean distance."""

    name = "dlib"

    def __init__(self, *, tau: float = DLIB_MATCH_THRESHOLD, same_face: float = 0.2,
                 embedder: DlibFaceEmbedder | None = None):
        self.tau = float(tau)
        self.same_face = float(same_face)
        self.embedder = embedder if embedder is not None else face_embedder(upsample=1)

    def chip(self, image: np.ndarray, location: FaceLocation) -> np.ndarray:
        import dlib  # slow at `anonlens --help`, which imports this module (through the pipeline's check)

        view = view_of(image, location)
        x1, y1, x2, y2 = location.face_box
        shape = dlib.full_object_detection(dlib.rectangle(x1, y1, x2 - 1, y2 - 1),
                                           dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in location.landmarks]))
        return self.embedder.chip(view, shape)

    def describe(self, chips: "list[np.ndarray]") -> np.ndarray:
        return self.embedder.describe_chips(chips)

    def distance(self, a: np.ndarray, b: np.ndarray) -> "float | np.ndarray":
        return euclidean(a, b)

    def __repr__(self) -> str:
        return f"DlibAttacker(tau={self.tau}, engine={self.embedder.engine!r})"


#: ArcFace's 112x112 alignment template (insightface ``arcface_dst``): left eye, right eye, nose
#: tip, left and right mouth corners, as (x, y) in the chip
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)


def arcface_transform(landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform taking dlib's 5 landmarks (two corners of each eye, the bottom
    of the nose) to the ArcFace template: the eye centres onto its eyes, the nose onto its nose tip
    (least squares, Umeyama).

    >>> pts = np.array([[80, 52], [74, 52], [38, 52], [44, 52], [56, 72]], float)  # dlib's order
    >>> m = arcface_transform(pts)
    >>> np.round(m @ [41, 52, 1], 1).tolist(), np.round(m @ [77, 52, 1], 1).tolist()
    ([39.0, 52.6], [74.2, 50.8])
    """
    pts = np.asarray(landmarks, np.float64)
    if pts.shape != (5, 2):
        raise ValueError(f"expected dlib's 5 landmarks as a (5, 2) array; got shape {pts.shape}")
    eyes = sorted([pts[0:2].mean(0), pts[2:4].mean(0)], key=lambda p: p[0])  # image-left eye first
    src = np.array([eyes[0], eyes[1], pts[4]])
    dst = ARCFACE_TEMPLATE[:3]
    # Umeyama's similarity (rotation, uniform scale, translation) in closed form
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sv, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sv) @ sign) / s0.var(0).sum()
    out = np.zeros((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


MODELS.define("onnx-face-recognizer", size=4)
_INFER_LOCK = threading.Lock()

ONNX_RECOGNIZER = register_weights(WeightSpec(
    name="onnx-face-recognizer",
    filename="face_recognizer.onnx",
    license="the user's own file (an ArcFace/SFace-family ONNX model); none ships with anonlens",
    description="a 112x112 face recogniser (ArcFace/SFace family) for the onnx attacker",
))


def _compile_onnx(path: str) -> tuple[Any, bool]:
    """The OpenVINO model for ``path`` with a free batch size when the graph allows it (else 1),
    after checking its input is ``(N, 3, 112, 112)``."""
    import openvino as ov  # slow at `anonlens --help`, which imports this module (through the pipeline's check)

    core = ov.Core()
    try:
        model = core.read_model(path)
    except Exception as exc:  # OpenVINO raises RuntimeError with pages of text on a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnonlensError(f"attacker 'onnx': {path} is not a readable ONNX model ({first[:160]})") from None
    if len(model.inputs) != 1:
        raise AnonlensError(f"attacker 'onnx': {path} has {len(model.inputs)} inputs; expected one (N, 3, 112, 112) image input")
    shape = model.inputs[0].get_partial_shape()
    dims = [d.get_length() if d.is_static else -1 for d in shape] if shape.rank.is_static else []
    if len(dims) != 4 or dims[1:] != [3, 112, 112]:
        raise AnonlensError(f"attacker 'onnx': {path} takes input {dims or 'of unknown rank'}; expected (N, 3, 112, 112) "
                            "(an ArcFace/SFace-family recogniser on 112x112 RGB chips)")
    batched = True
    try:
        model.reshape({model.inputs[0].any_name: ov.PartialShape([-1, 3, 112, 112])})
    except Exception:  # a graph with the batch size baked in: run one chip at a time
        batched = False
    return core.compile_model(model, "CPU", runtime.openvino_cpu_config()), batched


class OnnxAttacker:
    """An ArcFace/SFace-family recogniser from an ONNX file (module docstring)."""

    def __init__(self, *, model: str | None = None, tau: float = 0.6, mean: float = 127.5, std: float = 127.5,
                 channels: Literal["rgb", "bgr"] = "rgb", same_face: float = 0.02, name: str = ""):
        if model is not None and not os.path.isfile(os.path.expanduser(str(model))):
            raise AnonlensError(f"attacker 'onnx': model file not found: {model} (an ArcFace/SFace-family ONNX "
                                "recogniser with a (N, 3, 112, 112) input; pass model=path.onnx)")
        path = resolve_weights(ONNX_RECOGNIZER, path=model)
        if float(std) == 0:
            raise AnonlensError("attacker 'onnx': std must not be 0")
        self.path = str(path)
        self.tau = float(tau)
        self.same_face = float(same_face)
        self.mean, self.std, self.channels = float(mean), float(std), channels
        self.name = name or f"onnx:{os.path.splitext(os.path.basename(self.path))[0]}"
        st = os.stat(self.path)
        self._compiled, self._batched = MODELS.get("onnx-face-recognizer", (self.path, st.st_size, st.st_mtime_ns),
                                                   lambda: _compile_onnx(self.path))

    def chip(self, image: np.ndarray, location: FaceLocation) -> np.ndarray:
        import dlib  # slow at `anonlens --help`, which imports this module (through the pipeline's check)

        view = view_of(image, location)
        return cv2.warpAffine(view, arcface_transform(location.landmarks), (112, 112), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def describe(self, chips: "list[np.ndarray]") -> np.ndarray:
        chips = [np.asarray(c) for c in chips]
        if not chips:
            return np.zeros((0, 0))
        x = np.stack(chips).astype(np.float32)
        if self.channels == "bgr":
            x = x[..., ::-1]
        x = ((x - self.mean) / self.std).transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x, np.float32)
        with _INFER_LOCK:  # a compiled model's default request is not shared by threads
            if self._batched:
                out = np.asarray(self._compiled(x)[0])
            else:
                out = np.concatenate([np.asarray(self._compiled(x[i : i + 1])[0]) for i in range(len(x))])
        out = out.reshape(len(x), -1).astype(np.float64)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def distance(self, a: np.ndarray, b: np.ndarray) -> "float | np.ndarray":
        return cosine_distance(a, b)

    def __repr__(self) -> str:
        return f"OnnxAttacker(model={self.path!r}, tau={self.tau})"


ATTACKERS.add("dlib", DlibAttacker, summary="dlib's 128-d face descriptor (offline default); Euclidean distance, tau 0.6",
              offline=True, weights="dlib-face-recognition", ranges={"tau": "> 0", "same_face": ">= 0"})
ATTACKERS.add("onnx", OnnxAttacker, summary="an ArcFace/SFace-family ONNX recogniser (model=path.onnx, 112x112); cosine distance",
              offline=True, weights="onnx-face-recognizer", ranges={"tau": "(0, 2)", "same_face": "[0, 2)", "std": "> 0"})


MODELS.define("reid-attacker", size=4)


def default_attacker() -> DlibAttacker:
    """The process's ``dlib`` attacker with its defaults (the model pool's)."""
    return MODELS.get("reid-attacker", "dlib", DlibAttacker)


def create_attacker(name: str, **options: Any) -> Attacker:
    """The attacker registered as ``name`` (``"dlib"``, ``"onnx"``) with ``options``."""
    return ATTACKERS.create(name, **options)


def list_attackers() -> list[str]:
    return ATTACKERS.names()
