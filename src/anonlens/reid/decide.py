"""Is this person still recognised? The decision, per face and per image.

A measured face (:mod:`anonlens.reid.measurable`) is **re-identified** under the ``rank1``
criterion (the default) when the attacker's descriptor of its anonymized chip is closer to the
descriptor of its own original than to every impostor (the release's other faces and the
built-in gallery, :mod:`anonlens.reid.gallery`) and to every *featureless* reference: rank-1
identification, as the papers measure re-identification. A tie counts as not re-identified.

The featureless references are the attacker's descriptors of chips that hold no face: uniform
black, mid-grey and white chips, and the face's own chip flattened to its mean colour. They stand
for "nothing of this face is left": an anonymized chip nearer to them than to its original carries
no identity. Without them a solid mask was "re-identified" whenever the descriptor of a black chip
happened to lie nearer to that person than to any impostor (one face of the benchmark photos,
found as two regions, with the built-in gallery alone: margins 0.005 and 0.009).

Under ``tau`` a face is re-identified when that distance is below the attacker's fixed
threshold; ``both`` applies the two tests and a face fails when either says so. An attacker with
no impostor at all (an ONNX attacker on a one-face image, with no gallery of its own) falls back
to ``tau``, and the record says so.

A region that is not a face, or a face no recogniser can measure, is never re-identified here:
its identity test says which (``"not a face"``, ``"unmeasurable pose"``) and the caller judges it by
detection alone.
"""

from __future__ import annotations

import weakref

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Literal, Sequence

import numpy as np

from ..checks import as_rgb_uint8
from ..identity import DlibFaceEmbedder, face_embedder
from .attackers import Attacker, DlibAttacker, default_attacker
from .gallery import Gallery
from .measurable import CONFIDENT_FACE_SCORE, WEAK_REGION_MIN_DLIB_SCORE, FaceLocation, identity_test, locate_face

__all__ = ["Criterion", "CRITERIA", "FaceJudgement", "rank1_reidentified", "tau_reidentified", "judge_face",
           "judge_image", "locate_regions", "featureless_chips"]

Criterion = Literal["rank1", "tau", "both"]
CRITERIA: tuple[str, ...] = ("rank1", "tau", "both")


def rank1_reidentified(d_anon: np.ndarray, d_orig: np.ndarray, impostors: np.ndarray,
                       distance: Callable[[np.ndarray, np.ndarray], Any]) -> tuple[bool, int, float]:
    """``(re-identified, rank, margin)``: the rank of the face's own original among itself and the
    ``impostors`` ``(M, D)``, by distance to the anonymized descriptor ``d_anon`` (1: nearest; an
    impostor at the same distance ranks first), and the margin ``nearest impostor - own distance``
    (positive when re-identified; ``inf`` without impostors).

    >>> dist = lambda a, b: np.linalg.norm(np.asarray(b) - a, axis=-1)
    >>> rank1_reidentified(np.array([0.0]), np.array([0.1]), np.array([[0.5], [-0.3]]), dist)
    (True, 1, 0.2)
    >>> rank1_reidentified(np.array([0.0]), np.array([0.3]), np.array([[0.5], [-0.3]]), dist)  # a tie
    (False, 2, 0.0)
    """
    own = float(distance(np.asarray(d_anon, np.float64), np.asarray(d_orig, np.float64)))
    imp = np.asarray(impostors, np.float64)
    if imp.size == 0:
        return True, 1, float("inf")
    others = np.atleast_1d(distance(np.asarray(d_anon, np.float64), imp.reshape(len(imp), -1)))
    rank = 1 + int(np.sum(others <= own))
    return rank == 1, rank, round(float(others.min()) - own, 12)


def tau_reidentified(distance: float, tau: float) -> bool:
    """The fixed-threshold test: re-identified when ``distance < tau``.

    >>> tau_reidentified(0.59, 0.6), tau_reidentified(0.6, 0.6)
    (True, False)
    """
    return float(distance) < float(tau)


@dataclass(frozen=True)
class FaceJudgement:
    """The identity verdict of one region (one attacker's, or the deciding one of several)."""

    test: str  # "measured by <attacker>" | "not a face" | "unmeasurable pose"
    attacker: str
    criterion: str  # the criterion applied ("tau" when an attacker had no impostors under "rank1")
    reidentified: bool
    detector_score: float
    orientation: int | None = None
    dlib_score: float | None = None
    distance: float | None = None  # anonymized descriptor to its own original
    rank: int | None = None
    rank1: bool | None = None
    nearest_impostor_distance: float | None = None  # anonymized descriptor to the nearest impostor
    nearest_featureless_distance: float | None = None  # ... to the nearest featureless reference
    impostors: int = 0
    tau: float | None = None
    tau_match: bool | None = None
    #: every attacker's own judgement when several judged the face (the deciding one is this record)
    by_attacker: tuple["FaceJudgement", ...] = field(default=(), repr=False)

    @property
    def measured(self) -> bool:
        return self.distance is not None

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "by_attacker"}
        for k in ("distance", "nearest_impostor_distance", "nearest_featureless_distance", "dlib_score", "detector_score"):
            if out[k] is not None and np.isfinite(out[k]):
                out[k] = round(float(out[k]), 4)
        if self.by_attacker:
            out["by_attacker"] = [j.to_dict() for j in self.by_attacker]
        return out


def judge_face(*, attacker: Attacker, location: FaceLocation | None, detector_score: float,
               d_orig: np.ndarray | None = None, d_anon: np.ndarray | None = None,
               impostors: np.ndarray | None = None, featureless: np.ndarray | None = None,
               criterion: Criterion = "rank1") -> FaceJudgement:
    """The verdict of one region for one attacker, from its location and descriptors: ``impostors``
    ``(M, D)`` (other people), ``featureless`` ``(K, D)`` (chips with no face; module docstring)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}; got {criterion!r}")
    test = identity_test(location, detector_score, attacker.name)
    if location is None:
        return FaceJudgement(test, attacker.name, criterion, False, float(detector_score))
    if d_orig is None or d_anon is None:
        raise ValueError("a measured face needs its original and anonymized descriptors")
    dim = len(d_orig)
    imp = np.zeros((0, dim)) if impostors is None or np.size(impostors) == 0 else np.asarray(impostors, np.float64)
    flat = np.zeros((0, dim)) if featureless is None or np.size(featureless) == 0 else np.asarray(featureless, np.float64)
    own = float(attacker.distance(d_anon, d_orig))
    tau_match = tau_reidentified(own, attacker.tau)
    nearest = float(np.min(attacker.distance(d_anon, imp))) if len(imp) else None
    nearest_flat = float(np.min(attacker.distance(d_anon, flat))) if len(flat) else None
    if len(imp):
        rank1, rank, _ = rank1_reidentified(d_anon, d_orig, np.concatenate([imp, flat]), attacker.distance)
        used = criterion
    else:  # no impostor: no rank-1 test
        rank1, rank, used = None, None, "tau"
    verdict = {"rank1": bool(rank1), "tau": tau_match, "both": bool(rank1) or tau_match}[used]
    return FaceJudgement(test, attacker.name, used if used == criterion else "tau (no impostors)", verdict,
                         float(detector_score), location.orientation, location.score, own, rank, rank1, nearest,
                         nearest_flat, len(imp), attacker.tau, tau_match)


_GREYS = (0, 128, 255)
#: each attacker's descriptors of the uniform chips (the same for every face: computed once)
_UNIFORM: "weakref.WeakKeyDictionary[Any, np.ndarray]" = weakref.WeakKeyDictionary()


def featureless_chips(chips: "Sequence[np.ndarray]") -> list[np.ndarray]:
    """The chips that hold no face: uniform black, mid-grey and white (shaped like ``chips[0]``),
    then each chip flattened to its mean colour (none when ``chips`` is empty).

    >>> [c[0, 0].tolist() for c in featureless_chips([np.full((2, 2, 3), [10, 20, 30], np.uint8)])]
    [[0, 0, 0], [128, 128, 128], [255, 255, 255], [10, 20, 30]]
    """
    if not len(chips):
        return []
    shape = np.shape(chips[0])
    uniform = [np.full(shape, g, np.uint8) for g in _GREYS]
    means = [np.broadcast_to(np.rint(np.asarray(c, np.float64).reshape(-1, shape[-1]).mean(0)), shape).astype(np.uint8)
             for c in chips]
    return uniform + means


def locate_regions(original: np.ndarray, boxes: Sequence, scores: Sequence[float] | None = None, *,
                   embedder: DlibFaceEmbedder | None = None, confident: float = CONFIDENT_FACE_SCORE,
                   weak_min_dlib_score: float = WEAK_REGION_MIN_DLIB_SCORE) -> list[FaceLocation | None]:
    """:func:`~anonlens.reid.measurable.locate_face` of every region: a region whose detector score
    is below ``confident`` needs a dlib score of ``weak_min_dlib_score``."""
    embedder = embedder if embedder is not None else face_embedder(upsample=1)
    scores = [1.0] * len(boxes) if scores is None else list(scores)
    return [locate_face(original, box, embedder=embedder, min_score=0.0 if s >= confident else weak_min_dlib_score)
            for box, s in zip(boxes, scores)]


def judge_image(original: np.ndarray, anonymized: np.ndarray, boxes: Sequence, scores: Sequence[float] | None = None, *,
                attackers: Sequence[Attacker] | None = None, gallery: Gallery | None = None,
                criterion: Criterion = "rank1", locations: Sequence[FaceLocation | None] | None = None,
                embedder: DlibFaceEmbedder | None = None) -> list[FaceJudgement]:
    """One :class:`FaceJudgement` per region of ``original`` (``boxes`` ``(x1, y1, x2, y2)`` and the
    face detector's ``scores``, 1 when None), as judged in ``anonymized``.

    Each region is located once (``locations`` when the caller has them); every attacker embeds
    the chips of all measured faces, original and anonymized, in one batch. A face's impostors are
    the release's other measured faces plus ``gallery`` (the built-in one when None), less those
    within the attacker's ``same_face`` distance of it; its chip is also compared with the
    featureless references (:func:`featureless_chips`). With several
    ``attackers`` (default: dlib) the record is the first attacker that re-identifies the face,
    else the first attacker's, with every attacker's judgement in ``by_attacker``.
    """
    original, anonymized = as_rgb_uint8(original, name="original"), as_rgb_uint8(anonymized, name="anonymized")
    if original.shape != anonymized.shape:
        raise ValueError(f"the original is {original.shape} and the anonymized image {anonymized.shape}: they must have the same size")
    scores = [1.0] * len(boxes) if scores is None else [float(s) for s in scores]
    if len(scores) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    attackers = list(attackers) if attackers else [default_attacker() if embedder is None else DlibAttacker(embedder=embedder)]
    gallery = Gallery.builtin() if gallery is None else gallery
    if locations is None:
        locations = locate_regions(original, boxes, scores, embedder=embedder)
    measured = [i for i, loc in enumerate(locations) if loc is not None]
    per_region: list[list[FaceJudgement]] = [[] for _ in boxes]
    for attacker in attackers:
        originals = [attacker.chip(original, locations[i]) for i in measured]
        anonymized_chips = [attacker.chip(anonymized, locations[i]) for i in measured]
        flats = featureless_chips(originals)
        cached = _UNIFORM.get(attacker)
        chips = originals + anonymized_chips + flats[len(_GREYS):] + (flats[:len(_GREYS)] if cached is None and flats else [])
        desc = attacker.describe(chips) if chips else np.zeros((0, 0))
        m = len(measured)
        orig, anon, own_flat = desc[:m], desc[m : 2 * m], desc[2 * m : 3 * m]
        if cached is None and m:
            cached = _UNIFORM[attacker] = desc[3 * m :]
        shared = cached if cached is not None else np.zeros((0, 0))
        row = {i: n for n, i in enumerate(measured)}
        for i, loc in enumerate(locations):
            if loc is None:
                per_region[i].append(judge_face(attacker=attacker, location=None, detector_score=scores[i], criterion=criterion))
                continue
            n = row[i]
            release = Gallery({attacker.name: np.delete(orig, n, axis=0)}) if m > 1 else Gallery()
            impostors = (release + gallery).impostors(attacker.name, orig[n], attacker.distance, same_face=attacker.same_face)
            if len(impostors) and impostors.shape[1] != orig.shape[1]:
                raise ValueError(f"the gallery's '{attacker.name}' descriptors have {impostors.shape[1]} values; "
                                 f"the attacker's have {orig.shape[1]}")
            per_region[i].append(judge_face(attacker=attacker, location=loc, detector_score=scores[i], d_orig=orig[n],
                                            d_anon=anon[n], impostors=impostors,
                                            featureless=np.concatenate([shared, own_flat[n : n + 1]]), criterion=criterion))
    out = []
    for judged in per_region:
        deciding = next((j for j in judged if j.reidentified), judged[0])
        out.append(deciding if len(judged) == 1 else replace(deciding, by_attacker=tuple(judged)))
    return out
