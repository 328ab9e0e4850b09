"""Is the region a face the recogniser can judge? Where exactly, and at which rotation?

:func:`locate_face` runs dlib's HOG face detector (the pooled
:func:`anonlens.identity.face_embedder`) on a *view* of the original around a region: the region
grown by ``context`` of its size on every side, rescaled so that the region's larger side is
``side`` pixels (small faces are upsampled, large ones reduced), and turned by 0, 90, 180 and 270
degrees (``np.rot90``). A dlib face whose box, mapped back to the image, overlaps the region
(IoU >= ``min_iou``) makes the region measurable. The :class:`FaceLocation` holds everything needed
to cut the same view out of the anonymized image (same crop, same scale, same rotation) and to take
the aligned chip at the same landmarks: the attacker who knows where the face was.

Which identity test applies to a region (:func:`identity_test`):

- ``"measured by <attacker>"``: dlib found the face (in some orientation);
- ``"not a face"``: the face detector's score at the region is low (< 0.5) and dlib finds nothing
  (or, at such a weak region, only a weak HOG response: see :data:`WEAK_REGION_MIN_DLIB_SCORE`);
- ``"unmeasurable pose"``: the face detector is confident (>= 0.5) but dlib finds no face in any
  orientation (a profile, a face looking down).

Only a measured face can be re-identified by the identity test; the other two are judged by
detection alone (the residual face-detector score), by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import cv2
import numpy as np

from ..checks import as_rgb_uint8
from ..identity import DlibFaceEmbedder
from ..regions import box_iou, rot90_points_back

__all__ = ["FaceLocation", "locate_face", "view_of", "identity_test", "IdentityTest", "NOT_A_FACE",
           "UNMEASURABLE_POSE", "CONFIDENT_FACE_SCORE", "WEAK_REGION_MIN_DLIB_SCORE", "measured_by"]

NOT_A_FACE = "not a face"
UNMEASURABLE_POSE = "unmeasurable pose"
IdentityTest = str  # "measured by <attacker>" | "not a face" | "unmeasurable pose"

#: a face detector score at or above this is a confident face (CenterFace's scores are in [0, 1])
CONFIDENT_FACE_SCORE = 0.5
#: at a region the face detector is *not* confident about, dlib's HOG response must reach this to
#: call it a face: dlib gives 0.12-0.13 to a mission patch and a badge in the benchmark photos
#: (whose descriptors sit close to a black chip's, so that masking them looked like a
#: re-identification), and 0.26-2.4 to the real faces there
WEAK_REGION_MIN_DLIB_SCORE = 0.5


def measured_by(attacker: str) -> str:
    """The identity-test label of a measured face: ``"measured by dlib"``."""
    return f"measured by {attacker}"


@dataclass(frozen=True, eq=False)
class FaceLocation:
    """Where dlib found the face of a region, in a view of the image.

    The view is ``np.rot90(resize(image[crop], scale), orientation // 90)``: ``crop`` is
    ``(x1, y1, x2, y2)`` in image pixels, ``scale`` the resize factor, ``orientation`` the
    counter-clockwise turn (0, 90, 180, 270 degrees) that makes the face upright. ``face_box``
    (dlib's box) and ``landmarks`` (dlib's 5 points, ``(5, 2)`` x/y) are in view pixels; ``box`` is
    dlib's box mapped back to image pixels, ``iou`` its overlap with the region.
    """

    orientation: int
    score: float
    landmarks: np.ndarray = field(repr=False)
    face_box: tuple[int, int, int, int]
    crop: tuple[int, int, int, int]
    scale: float
    view_size: tuple[int, int]  # (width, height) of the view before the turn
    box: tuple[float, float, float, float]
    iou: float

    def to_dict(self) -> dict:
        return {"orientation": self.orientation, "dlib_score": round(self.score, 4), "iou": round(self.iou, 4),
                "box": [round(float(v), 2) for v in self.box]}


def _view(image: np.ndarray, crop: tuple[int, int, int, int], scale: float, k: int) -> np.ndarray:
    x1, y1, x2, y2 = crop
    part = image[y1:y2, x1:x2]
    if scale != 1.0:
        size = (max(1, int(round((x2 - x1) * scale))), max(1, int(round((y2 - y1) * scale))))
        part = cv2.resize(part, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return np.ascontiguousarray(np.rot90(part, k))


def view_of(image: np.ndarray, location: FaceLocation) -> np.ndarray:
    """The view of ``image`` in which ``location``'s face is upright (same crop, scale and turn)."""
    image = as_rgb_uint8(image)
    view = _view(image, location.crop, location.scale, location.orientation // 90)
    expected = location.view_size if location.orientation in (0, 180) else location.view_size[::-1]
    if (view.shape[1], view.shape[0]) != tuple(expected):
        raise ValueError(f"the image is {image.shape[1]}x{image.shape[0]}: it does not hold the crop {location.crop} "
                         "its face was located in (the original and the anonymized image must have the same size)")
    return view


def locate_face(original: np.ndarray, box, *, embedder: DlibFaceEmbedder, context: float = 0.5, side: float = 120.0,
                max_scale: float = 4.0, min_iou: float = 0.3, min_score: float = 0.0) -> FaceLocation | None:
    """dlib's face at the region ``box`` ``(x1, y1, x2, y2)`` of ``original``, in the orientation
    where dlib is most confident, or None when dlib finds no face overlapping the region in any of
    the four orientations (module docstring).

    ``min_score``: the least HOG score that counts as a face (dlib's own default is 0).
    """
    image = as_rgb_uint8(original)
    h, w = image.shape[:2]
    bx1, by1, bx2, by2 = (float(v) for v in box)
    bw, bh = bx2 - bx1, by2 - by1
    if bw <= 0 or bh <= 0:
        return None
    crop = (max(0, int(np.floor(bx1 - context * bw))), max(0, int(np.floor(by1 - context * bh))),
            min(w, int(np.ceil(bx2 + context * bw))), min(h, int(np.ceil(by2 + context * bh))))
    if crop[2] - crop[0] < 8 or crop[3] - crop[1] < 8:
        return None
    scale = min(float(max_scale), float(side) / max(bw, bh))
    view0 = _view(image, crop, scale, 0)
    vh, vw = view0.shape[:2]
    best: FaceLocation | None = None
    for k in range(4):
        view = np.ascontiguousarray(np.rot90(view0, k))
        for fbox, score in embedder.detect(view, min_score=min_score):
            xs, ys = rot90_points_back(np.array([fbox[0], fbox[2]], float), np.array([fbox[1], fbox[3]], float), k, vw, vh)
            xs, ys = xs / scale + crop[0], ys / scale + crop[1]
            mapped = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
            iou = box_iou(mapped, (bx1, by1, bx2, by2))
            if iou < min_iou or (best is not None and score <= best.score):
                continue
            shape = embedder.shape_at(view, fbox)
            pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
            best = FaceLocation(90 * k, float(score), pts, tuple(int(v) for v in fbox), crop, scale, (vw, vh), mapped, iou)
    return best


def identity_test(location: FaceLocation | None, detector_score: float, attacker: str, *,
                  confident: float = CONFIDENT_FACE_SCORE) -> IdentityTest:
    """Which identity test applies to a region: ``"measured by <attacker>"`` when dlib located the
    face, else ``"unmeasurable pose"`` when the face detector is confident (``detector_score`` >=
    ``confident``), else ``"not a face"``.

    >>> identity_test(None, 0.3, "dlib"), identity_test(None, 0.9, "dlib")
    ('not a face', 'unmeasurable pose')
    """
    if location is not None:
        return measured_by(attacker)
    return UNMEASURABLE_POSE if float(detector_score) >= confident else NOT_A_FACE

