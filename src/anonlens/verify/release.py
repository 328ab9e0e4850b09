"""The pair check: one original and its anonymized image, judged face by face and text by text.

This is the one judgement behind the release gate (:mod:`anonlens.assess.gate`), ``score``'s
identity columns, the report, the service, and the anonymizer's own last verification
(:meth:`anonlens.pipeline.Anonymizer.verify_release`), so that they cannot disagree.

Faces are counted in the original by every face detector anonlens has (the multi-scale
CenterFace and dlib's HOG detector from a score of ``dlib_min_score``, merged). Each face gets a
record (:func:`face_record`): the identity test that applied (:func:`anonlens.reid.judge_image`:
``measured by <attacker>``, ``not a face``, ``unmeasurable pose``), whether an attacker
re-identifies it, the residual face score at its box in the anonymized image
(:meth:`FaceVerifier.residual`), and whether its pixels changed at all.

Text (:func:`check_text`): every text region the text detector finds in the original is read
there and at the same place in the anonymized image. A reading is **legible** when it has at least
:data:`LEGIBLE_CHARS` letters or digits at a recogniser confidence of at least
:data:`LEGIBLE_CONFIDENCE` (measured on the 12 photos of ``benchmarks/photos.py``: textures,
hair, cups and crowds read as one or two characters, or as three at 0.29 at most; street signs
and a shirt's print as words at 0.72-0.87; the astronaut's name tag, EILEEN M. COLLINS at 13 px
high, which a person reads in part, as "UNV.GE" at 0.41). A text region is **readable** when the original's reading is
legible and the anonymized image reads the same there (similarity >= :data:`TEXT_SIMILARITY`),
**detected** when the text detector still finds text there. The text itself is never recorded.
In a photo whose faces say it is turned a quarter or half (:func:`face_turn`: its orientation tag
was lost), text is also searched with the photo stood upright (:func:`text_regions`).

An image with an alpha channel is measured in every view (:func:`anonlens.io.images.composite_views`).
"""

from __future__ import annotations

import difflib
from typing import Any, Sequence

import numpy as np

from ..detectors import create_detector
from ..detectors.centerface import TURNED_MARGIN
from ..detectors.text import TextRecognizer, rotated_crop
from .._version import __version__
from ..errors import AnonlensError
from ..identity import DLIB_MATCH_THRESHOLD, face_embedder
from ..io.images import composite_views
from ..options import parse_options
from ..pool import MODELS
from ..reid import ATTACKERS, CRITERIA, Attacker, DlibAttacker, FaceJudgement, create_attacker, judge_image, locate_regions
from ..regions import Region, box_iou, rot90_points_back
from .residual import FaceVerifier

__all__ = ["PairChecker", "pair_checker", "check_pair", "original_record", "original_cache", "face_turn", "text_regions", "check_text", "people_without_faces", "face_boxes_of", "person_detector", "face_record", "region_changed", "identity_figures",
           "parse_attacker", "AttackerSpec", "DEFAULT_ATTACKERS", "TEXT_SIMILARITY", "LEGIBLE_CHARS", "LEGIBLE_CONFIDENCE", "legible"]

#: a text region counts as still readable when what is read there matches the original this much
TEXT_SIMILARITY = 0.8
#: a reading is legible from this many letters or digits ...
LEGIBLE_CHARS = 3
#: ... read at this recogniser confidence or more
LEGIBLE_CONFIDENCE = 0.35


def legible(reading: str, confidence: float) -> bool:
    """Whether a recogniser's reading is text a person could read: :data:`LEGIBLE_CHARS` letters or
    digits or more, at :data:`LEGIBLE_CONFIDENCE` or more."""
    return sum(ch.isalnum() for ch in reading) >= LEGIBLE_CHARS and float(confidence) >= LEGIBLE_CONFIDENCE


#: an attacker as the gate builds it: its registry name and its options (sorted ``(key, value)`` pairs)
AttackerSpec = tuple[str, tuple[tuple[str, Any], ...]]
DEFAULT_ATTACKERS: tuple[AttackerSpec, ...] = (("dlib", ()),)


def parse_attacker(text: str) -> AttackerSpec:
    """``"NAME[:key=value,...]"`` (``check --attacker``) -> an :data:`AttackerSpec`; an unknown
    name or a bad option is a one-line error.

    >>> parse_attacker("dlib:tau=0.5")
    ('dlib', (('tau', 0.5),))
    """
    name, _, rest = str(text).partition(":")
    name = name.strip()
    entry = ATTACKERS.get(name)
    options = parse_options([p for p in rest.split(",") if p.strip()], "attacker", target=entry)
    ATTACKERS.check_options(name, options)
    return name, tuple(sorted(options.items()))


class PairChecker:
    """The face detectors, the attackers and the identity model of the pair check, loaded once
    (:func:`pair_checker`)."""

    def __init__(self, threshold: float, residual_threshold: float, dlib_min_score: float,
                 attackers: Sequence[AttackerSpec] = DEFAULT_ATTACKERS, criterion: str = "rank1"):
        if criterion not in CRITERIA:
            raise AnonlensError(f"criterion must be one of {', '.join(CRITERIA)}; got {criterion!r}")
        self.threshold = threshold
        self.dlib_min_score = dlib_min_score
        self.criterion = criterion
        self.embedder = face_embedder(upsample=1)
        self.verifier = FaceVerifier(threshold=residual_threshold)
        self.attackers = [self._attacker(name, dict(options)) for name, options in (attackers or DEFAULT_ATTACKERS)]

    def _attacker(self, name: str, options: dict[str, Any]) -> Attacker:
        if name == "dlib":  # the gate's threshold is dlib's tau unless the spec sets one
            return DlibAttacker(**{"tau": self.threshold, **options}, embedder=self.embedder)
        return create_attacker(name, **options)

    def face_boxes(self, image, *, upright=None) -> list[tuple[tuple[float, ...], str, float]]:
        """``(box, found_by, detector score)`` of every face a detector finds in ``image``: CenterFace's
        (with its score), then dlib's that CenterFace missed (score 1: dlib found a face there).
        ``upright``: see :meth:`~anonlens.verify.FaceVerifier.faces`."""
        return self.faces_and_turn(image, upright=upright)[0]

    def faces_and_turn(self, image, *, upright=None) -> tuple[list[tuple[tuple[float, ...], str, float]], int]:
        """:meth:`face_boxes`, and the quarter turns that stand the photo upright by its faces
        (:func:`face_turn`; 0: upright)."""
        regions = self.verifier.faces(image, upright=upright)
        found = [(tuple(float(v) for v in r.box), "centerface", float(r.score)) for r in regions]
        # dlib doubles images up to DLIB_UPSAMPLE_MAX_SIDE (faces from about 40 px); larger ones it
        # searches as they are (faces from about 80 px: CenterFace finds the smaller ones)
        upsample = 1 if max(image.shape[:2]) <= DLIB_UPSAMPLE_MAX_SIDE else 0
        for box, _score in self.embedder.detect(image, min_score=self.dlib_min_score, upsample=upsample):
            if not any(box_iou(box, b) > 0.3 for b, _, _ in found):
                found.append((tuple(float(v) for v in box), "dlib", 1.0))
        return found, face_turn(regions)

    def locate(self, original, boxes) -> list:
        return locate_regions(original, [b for b, _, _ in boxes], [s for _, _, s in boxes], embedder=self.embedder)

    def judge(self, original, anonymized, boxes, locations) -> list[FaceJudgement]:
        return judge_image(original, anonymized, [b for b, _, _ in boxes], [s for _, _, s in boxes], attackers=self.attackers,
                           criterion=self.criterion, locations=locations, embedder=self.embedder)

    def check_faces(self, original, anonymized, boxes: list[tuple[tuple[float, ...], str, float]], locations=None) -> list[dict[str, Any]]:
        """Each face of the original judged in the anonymized image (:func:`anonlens.reid.judge_image`)
        and its residual face score (``locations``: :meth:`locate`'s of ``boxes``, when known)."""
        if not boxes:
            return []
        judged = self.judge(original, anonymized, boxes, self.locate(original, boxes) if locations is None else locations)
        return [face_record(box, found_by, score, j, self.verifier.residual(anonymized, box), self.verifier.threshold,
                            region_changed(original, anonymized, box), self.embedder.engine)
                for (box, found_by, score), j in zip(boxes, judged)]


def face_turn(faces: Sequence[Region]) -> int:
    """``k`` such that ``np.rot90(image, k)`` stands the photo upright, judged by its faces'
    landmarks (eyes above the mouth in an upright face), or 0: the detection scores of the faces
    turned that way outweigh the upright ones by :data:`~anonlens.detectors.centerface.TURNED_MARGIN`
    (a photo whose orientation tag was lost; one person lying down does not turn a photo).

    >>> face = lambda eyes_y, mouth_y: Region((0, 0, 9, 9), 0.9, "face", landmarks=[[2, eyes_y], [6, eyes_y], [4, 5], [3, mouth_y], [5, mouth_y]])
    >>> face_turn([face(2, 8)]), face_turn([face(8, 2)])
    (0, 2)
    """
    mass = [0.0, 0.0, 0.0, 0.0]
    for r in faces:
        if r.landmarks is None:
            continue
        lm = np.asarray(r.landmarks, float).reshape(5, 2)
        up = (lm[0] + lm[1]) / 2 - (lm[3] + lm[4]) / 2  # mouth to eyes
        if abs(up[1]) >= abs(up[0]):
            k = 0 if up[1] < 0 else 2
        else:  # eyes to the left of the mouth: the picture was turned a quarter counter-clockwise
            k = 3 if up[0] < 0 else 1
        mass[k] += float(r.score)
    best = max((1, 2, 3), key=lambda k: mass[k])
    return best if mass[best] >= mass[0] + TURNED_MARGIN else 0


def region_changed(original, anonymized, box) -> bool:
    """Whether any pixel of ``box`` differs between the two images (False: not anonymized at all)."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box[:4])
    x1, y1 = max(0, x1), max(0, y1)
    a, b = np.asarray(original)[y1:y2, x1:x2], np.asarray(anonymized)[y1:y2, x1:x2]
    return a.size == 0 or not np.array_equal(a, b)


def face_record(box, found_by: str, score: float, judgement: FaceJudgement, residual: float, residual_threshold: float,
                changed: bool, engine: str) -> dict[str, Any]:
    """The gate's record of one face: the identity test and its verdict, and the residual detection."""
    j = judgement.to_dict()
    return {
        "box": [round(v, 1) for v in box],
        "found_by": found_by,
        "detector_score": round(float(score), 4),
        "identity": judgement.test,
        "measured": judgement.measured,
        "reidentified": bool(judgement.reidentified),
        "attacker": judgement.attacker,
        "criterion": judgement.criterion,
        "identity_distance": j["distance"],
        "rank": judgement.rank,
        "rank1": judgement.rank1,
        "nearest_impostor_distance": j["nearest_impostor_distance"],
        "nearest_featureless_distance": j["nearest_featureless_distance"],
        "impostors": judgement.impostors,
        "tau": judgement.tau,
        "tau_match": judgement.tau_match,
        "orientation": judgement.orientation,
        **({"by_attacker": j["by_attacker"]} if "by_attacker" in j else {}),
        "residual_score": residual,
        "residual": residual >= residual_threshold,
        "region_changed": bool(changed),
        "identity_engine": engine,
    }


def identity_figures(faces: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run's re-identification figures from the gate's face records: ``reid_rate`` (re-identified
    / measured faces, under the criterion applied), the counts per identity test, and the
    fixed-threshold rate ``reid_rate@<tau>`` (the first attacker's tau) as a second named figure."""
    measured = [f for f in faces if f.get("measured")]
    reid = [f for f in measured if f["reidentified"]]
    tau_hits = [f for f in measured if f.get("tau_match")]
    tau = next((f["tau"] for f in measured if f.get("tau") is not None), None)
    tests: dict[str, int] = {}
    for f in faces:
        tests[f.get("identity", "")] = tests.get(f.get("identity", ""), 0) + 1
    return {
        "faces": len(faces),
        "faces_measured": len(measured),
        "faces_reidentified": len(reid),
        "reid_rate": round(len(reid) / len(measured), 6) if measured else None,
        "criterion": next((f["criterion"] for f in measured), None),
        "identity_tests": tests,
        **({f"reid_rate@{tau:g}": round(len(tau_hits) / len(measured), 6)} if tau is not None else {}),
    }


MODELS.define("pair-checker", size=2)
MODELS.define("pair-text", size=1)


def pair_checker(threshold: float = DLIB_MATCH_THRESHOLD, residual_threshold: float = 0.2, dlib_min_score: float = 0.5, *,
                 attackers: Sequence[AttackerSpec] = DEFAULT_ATTACKERS, criterion: str = "rank1") -> _Checker:
    """The pair check's detectors, attackers and identity model for these settings, from the model
    pool (one set per process and settings: the anonymizer, the gate, ``score`` and the report
    share it; the service preloads it)."""
    key = (float(threshold), float(residual_threshold), float(dlib_min_score), tuple(attackers or DEFAULT_ATTACKERS), str(criterion))
    return MODELS.get("pair-checker", key, lambda: PairChecker(*key))


#: the pair check's text detector reads images up to this size (its small-text pass on a 1920 px
#: photo runs at 1.33x, not 2x): on the 12 photos of ``benchmarks/photos.py`` the same legible
#: texts are found (street signs, a shirt's print, the astronaut's name tag) for 40 % less CPU
TEXT_MAX_SIDE = 2560
#: the pair check's dlib face search doubles images whose larger side is at most this (4x the cost)
DLIB_UPSAMPLE_MAX_SIDE = 1024


def _build_text_models():
    return create_detector("text", max_side=TEXT_MAX_SIDE), TextRecognizer()


def _text_models():
    """The text detector and recognizer the gate reads text with (pooled: one pair per process)."""
    return MODELS.get("pair-text", None, _build_text_models)


def text_regions(original, *, turn: int = 0) -> list[Region]:
    """The text detector's regions in ``original``; in a photo its faces say is turned (``turn``,
    :func:`face_turn`), also those found with the photo stood upright, mapped back (their
    quadrilaterals keep the text's own corner order, so the crop read is upright text)."""
    detector = _text_models()[0]
    found = detector.detect(original)
    if turn % 4:
        h, w = original.shape[:2]
        for r in detector.detect(np.ascontiguousarray(np.rot90(original, turn))):
            q = np.asarray(r.polygon, np.float32)
            xs, ys = rot90_points_back(q[:, 0], q[:, 1], turn, w, h)
            box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
            if not any(box_iou(box, f.box) > 0.5 for f in found):
                found.append(Region(box, r.score, "text", polygon=np.stack([xs, ys], axis=1).astype(np.float32)))
    return found


def check_text(original, anonymized, kept_boxes: Sequence = (), *, found: Sequence[Region] | None = None) -> list[dict[str, Any]]:
    """Every text region of the original (except those kept on purpose, ``kept_boxes``), checked
    in the anonymized image: still detected there, legible in the original and still read as the
    same text (the module docstring). The text itself is not recorded (it may be a name).
    ``found``: the text detector's regions in ``original``, when already known."""
    detector, recognizer = _text_models()
    found = detector.detect(original) if found is None else found
    found = [r for r in found if not any(box_iou(r.box, k) > 0.5 for k in kept_boxes)]
    if not found:
        return []
    # each crop read as cut, and one not legible so also turned half a turn (text upside down, or
    # turned the other way in a photo whose orientation tag was lost): the more confident reading counts
    crops = [rotated_crop(original, r.polygon) for r in found]
    before = recognizer(crops)
    again = [i for i, (a, conf) in enumerate(before) if not legible(a.strip(), conf)]
    half = [False] * len(found)
    for i, reading in zip(again, recognizer([np.ascontiguousarray(np.rot90(crops[i], 2)) for i in again]) if again else []):
        if reading[1] > before[i][1]:
            before[i], half[i] = reading, True
    after = recognizer([np.ascontiguousarray(np.rot90(rotated_crop(anonymized, r.polygon), 2 if t else 0)) for r, t in zip(found, half)])
    out = []
    for r, (a, conf), (b, _) in zip(found, before, after):
        a, b = a.strip(), b.strip()
        ok = legible(a, conf)
        sim = difflib.SequenceMatcher(None, a, b).ratio() if ok and b else 0.0
        score = detector.residual(anonymized, r.box)
        out.append({"box": [round(float(v), 1) for v in r.box], "score": round(float(r.score), 4), "residual_score": score,
                    "detected": score >= detector.threshold, "similarity": round(sim, 3), "legible": ok,
                    "readable": ok and sim >= TEXT_SIMILARITY})
    return out


MODELS.define("pair-person", size=1)

#: a person counts from this detector score (``ssd-person``'s own threshold)
PERSON_MIN_SCORE = 0.5
#: a face belongs to a person when its centre lies inside the person's box, in its upper part
PERSON_HEAD_SHARE = 0.5


def person_detector():
    """The person detector of the "person with no face found" rule (pooled: one per process)."""
    # conservative settings: one box per person (a fragment of a body would have no face in its head area)
    return MODELS.get("pair-person", None, lambda: create_detector("ssd-person", threshold=PERSON_MIN_SCORE, nms_threshold=0.45, inside=0.8))


def people_without_faces(original, face_boxes: Sequence, *, cache: dict | None = None) -> list[dict[str, Any]]:
    """The people the person detector finds in ``original`` whose head area holds none of
    ``face_boxes`` (the faces the pair check counts, :func:`face_boxes_of`: a face's centre inside
    the person's box, in its upper :data:`PERSON_HEAD_SHARE`): a back turned, a face hidden or missed. Each is
    ``{"box", "score"}``; a person must look at these (the release gate's ``person-without-face``).
    ``cache``: as :func:`check_pair`'s (the people found are kept at ``cache["people"]``)."""
    cache = {} if cache is None else cache
    if "people" not in cache:
        cache["people"] = person_detector().detect(original)
    out = []
    for person in cache["people"]:
        x1, y1, x2, y2 = person.box
        head_y = y1 + PERSON_HEAD_SHARE * (y2 - y1)
        has_face = False
        for box in face_boxes:
            cx, cy = (float(box[0]) + float(box[2])) / 2, (float(box[1]) + float(box[3])) / 2
            if x1 <= cx <= x2 and y1 <= cy <= head_y:
                has_face = True
                break
        if not has_face:
            out.append({"box": [round(float(v), 1) for v in person.box], "score": round(float(person.score), 4)})
    return out


def face_boxes_of(records: Sequence[dict[str, Any]]) -> list:
    """The boxes of the pair check's face records that hold a face (any identity test but
    ``not a face``: a hand CenterFace scores 0.23 does not make its person's face found)."""
    return [r["box"] for r in records if r.get("identity") != "not a face"]


def check_pair(checker: PairChecker, original, anonymized, *, text: bool = True, kept: Sequence = (), original_alpha=None,
               anonymized_alpha=None, faces: bool = True, cache: dict | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The face checks (``faces``) and the text checks (``text``) of one original/anonymized image
    pair, in every view when either has a non-constant alpha channel. Returns the face records
    and the text records (None: text not checked).

    ``cache``: a dict kept by a caller that checks several anonymized versions of one original
    (the anonymizer's rounds): what was measured in the original (its faces, their landmarks, its
    text regions) is kept there and not measured again. A caller that searched the original for
    faces upright puts ``(detector, detections)`` at ``cache["upright"]`` (:meth:`PairChecker.face_boxes`);
    :func:`original_record` and :func:`original_cache` carry what was found in an original from
    the anonymize run to ``anonlens check``."""
    cache = {} if cache is None else cache
    if len(composite_views(original, original_alpha)) == 1 and len(composite_views(anonymized, anonymized_alpha)) == 1:
        records = []
        if faces:
            if "boxes" not in cache:
                cache["boxes"], cache["turn"] = checker.faces_and_turn(original, upright=cache.get("upright"))
            if cache.get("located") is None:
                cache["located"] = checker.locate(original, cache["boxes"]) if cache["boxes"] else []
            records = checker.check_faces(original, anonymized, cache["boxes"], cache["located"])
        if text and "text" not in cache:
            cache["text"] = text_regions(original, turn=cache.get("turn", 0))
        return records, (check_text(original, anonymized, kept, found=cache["text"]) if text else None)
    before = dict(composite_views(original, original_alpha, always=True))
    after = dict(composite_views(anonymized, anonymized_alpha, always=True))
    records = _check_faces_in_views(checker, before, after, cache) if faces else []
    texts = None
    if text:
        texts = []
        for name in before:
            for t in check_text(before[name], after[name], kept):
                _merge_worst(texts, {**t, "view": name}, _text_badness)
    return records, texts


def _text_badness(t: dict[str, Any]) -> tuple:
    return (t["readable"], t["detected"], t["similarity"])


def _merge_worst(items: list[dict[str, Any]], new: dict[str, Any], badness) -> None:
    """Add ``new`` to ``items``, or replace the entry at the same place (IoU > 0.5) when it is worse."""
    for i, old in enumerate(items):
        if box_iou(old["box"], new["box"]) > 0.5:
            if badness(new) > badness(old):
                items[i] = new
            return
    items.append(new)


def _check_faces_in_views(checker, before: dict[str, Any], after: dict[str, Any], cache: dict) -> list[dict[str, Any]]:
    """Faces of an image with alpha: found in any view of the original (``before``, by view
    name), each judged in every view of the anonymized image (``after``) against its reference
    view (the colour when a detector finds it there, else the first view that shows it), and in
    each view that shows it against the same view of the original. One entry per face: the worst
    judgement (re-identified first, then the smallest distance; ``view``: the anonymized view,
    ``reference_view``: the original's), the highest residual score (``residual_view``). Each
    reference view is located once; :func:`anonlens.reid.judge_image` runs once per pair of views."""
    if "view_boxes" in cache:
        boxes, shown_in = cache["view_boxes"]
    else:
        boxes, shown_in = _boxes_in_views(checker, before)
        cache["view_boxes"] = boxes, shown_in
    if not boxes:
        return []
    return _judge_in_views(checker, before, after, boxes, shown_in, cache.setdefault("located_views", {}))


def _boxes_in_views(checker, before: dict[str, Any]) -> tuple[list, list[list[str]]]:
    """The faces of every view of an original (merged at IoU > 0.3) and the views that show each."""
    boxes: list[tuple[tuple[float, ...], str, float]] = []
    shown_in: list[list[str]] = []
    for name, view in before.items():
        for box, by, score in checker.face_boxes(view):
            for i, (b, _, _) in enumerate(boxes):
                if box_iou(b, box) > 0.3:
                    if name not in shown_in[i]:
                        shown_in[i].append(name)
                    break
            else:
                boxes.append((box, by, score))
                shown_in.append([name])
    return boxes, shown_in


def _judge_in_views(checker, before, after, boxes, shown_in, located: dict[str, list]) -> list[dict[str, Any]]:
    # (reference view, anonymized view) -> the faces compared there
    comparisons: dict[tuple[str, str], list[int]] = {}
    for i, views in enumerate(shown_in):
        for name in after:
            comparisons.setdefault((views[0], name), []).append(i)
        for v in views[1:]:
            comparisons.setdefault((v, v), []).append(i)
    worst: dict[int, tuple[tuple, FaceJudgement, str, str]] = {}
    for (ref, name), faces in comparisons.items():
        if ref not in located:
            located[ref] = checker.locate(before[ref], boxes)
        sub = [boxes[i] for i in faces]
        judged = checker.judge(before[ref], after[name], sub, [located[ref][i] for i in faces])
        for i, j in zip(faces, judged):
            badness = (j.reidentified, -(j.distance if j.distance is not None else float("inf")))
            if i not in worst or badness > worst[i][0]:
                worst[i] = (badness, j, name, ref)
    out = []
    for i, (box, found_by, score) in enumerate(boxes):
        residual = {name: checker.verifier.residual(view, box) for name, view in after.items()}
        res_view = max(residual, key=residual.get)
        _, j, name, ref = worst[i]
        changed = any(region_changed(before[v], after[v], box) for v in after if v in before)
        record = face_record(box, found_by, score, j, residual[res_view], checker.verifier.threshold, changed, checker.embedder.engine)
        out.append({**record, "view": name, "reference_view": ref, "residual_view": res_view})
    return out


#: raise when what the pair check finds in an original changes (detectors, their settings, the
#: merge rules): measurements recorded by an older revision are then measured again
ORIGINAL_REVISION = 2


def _original_key(checker: PairChecker) -> str:
    return (f"anonlens {__version__} r{ORIGINAL_REVISION}; dlib_min_score {checker.dlib_min_score}; "
            f"residual_threshold {checker.verifier.threshold}; text max_side {TEXT_MAX_SIDE}")


def _boxes(values) -> list[float]:
    return [float(v) for v in values]  # full precision: the check rounds its records as before


def original_record(checker: PairChecker, cache: dict) -> dict[str, Any] | None:
    """What the pair check found in an original (kept in ``cache`` by :func:`check_pair` and
    :func:`people_without_faces`), as a JSON record the anonymize run keeps in its manifest, so that
    ``anonlens check`` measures only the anonymized image (:func:`original_cache`): the faces' boxes,
    the finder and its score; the text regions' quadrilaterals and scores; the people's boxes.
    Geometry only: no landmarks, no identity descriptor, no text read. None for an image measured
    in several views (an alpha channel)."""
    if "boxes" not in cache:
        return None
    record: dict[str, Any] = {"key": _original_key(checker), "turn": int(cache.get("turn", 0)),
                              "faces": [[*_boxes(box), by, float(score)] for box, by, score in cache["boxes"]]}
    if "text" in cache:
        record["text"] = [[_boxes(np.asarray(r.polygon).ravel()), float(r.score)] for r in cache["text"]]
    if "people" in cache:
        record["people"] = [[*_boxes(r.box), float(r.score)] for r in cache["people"]]
    return record


def original_cache(checker: PairChecker, record: dict[str, Any] | None) -> dict:
    """A :func:`check_pair` cache seeded from an :func:`original_record` made with the same
    measurement (same anonlens, same detector settings); ``{}`` (measure again) otherwise or for a
    record that does not parse."""
    if not isinstance(record, dict) or record.get("key") != _original_key(checker):
        return {}
    try:
        cache: dict = {"boxes": [(tuple(float(v) for v in f[:4]), str(f[4]), float(f[5])) for f in record["faces"]],
                       "turn": int(record.get("turn", 0)) % 4}
        if "text" in record:
            quads = [(np.asarray(q, np.float32).reshape(4, 2), float(score)) for q, score in record["text"]]
            cache["text"] = [Region((float(q[:, 0].min()), float(q[:, 1].min()), float(q[:, 0].max()), float(q[:, 1].max())),
                                    score, "text", polygon=q) for q, score in quads]
        if "people" in record:
            cache["people"] = [Region(tuple(float(v) for v in p[:4]), float(p[4]), "person") for p in record["people"]]
    except (KeyError, TypeError, ValueError, IndexError):
        return {}
    return cache  # landmarks are measured again (they are not recorded)
