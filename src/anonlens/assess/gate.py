"""The release gate: a verdict for every image of a release, and the files that fail it.

Faces are counted in each original by every face detector anonlens has (the multi-scale
CenterFace and dlib's HOG detector, merged: a face either finds counts), not by dlib alone, so
profiles and small or large faces are counted too. dlib's detections count from a HOG score of
``dlib_min_score`` (0.5): below that they are mostly textures and emblems (measured: the
astronaut's mission patch scores 0.12, her face 1.16), which would fail every release. Each face is then checked in the anonymized
image:

- **re-identified**: dlib's 128-d identity descriptor, taken at the original face's landmarks and
  on any face dlib still finds there, is closer than ``threshold`` (0.6) to the original's;
- **residual face**: the face detector still finds a face there (score >= 0.2, the verification
  of :mod:`anonlens.verify`).

An image with an alpha channel is measured in every way it can be seen
(:func:`anonlens.io.images.composite_views`): the colour, the alpha as a grey image, and the
image alpha-premultiplied over black and over white. Faces are counted in every view of the
original; each is checked in every view of the anonymized image against the original's colour
(or the first view that shows it) and against the same view of the original, and the worst
comparison is the face's result (its ``view`` names it), so an output whose alpha still carries
the face fails even when its colour is anonymized.

Text (when the run's scope had text, or ``check --text``): every text region the text detector
finds in the original is checked in the anonymized image at the same place:

- **text-readable**: the recogniser reads there what it reads in the original (similarity >= 0.8,
  at least 2 characters): the text is still readable;
- **residual-text**: the text detector still finds text there (score >= its threshold, 0.5).

Regions the run kept on purpose (``--keep-text``, recorded in the manifest) are not counted.

Every image gets one verdict, the worst that applies, in this order: ``not-evaluated`` (missing
or unreadable file, or no output was written), ``re-identified``, ``text-readable``,
``residual-face``, ``residual-text``, ``nothing-found`` (no detector finds a face, nor text when
text is checked, in the original and no person has reviewed it) and ``passed``. A person accepts a nothing-found or not-evaluated image by listing it in a reviewed
file (one path per line). The release passes only when every image passes.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..audit import find_manifest
from ..detectors import create_detector
from ..detectors.text import TextRecognizer, rotated_crop
from ..errors import AnonlensError
from ..identity import DLIB_MATCH_THRESHOLD, face_embedder, identity_distance, match_distances_many
from ..io import is_video, read_image
from ..io.images import composite_views
from ..pipeline import parse_scope
from ..pool import MODELS
from ..regions import box_iou
from ..verify import FaceVerifier
from ..video.io import paired_frames
from .pairs import Pair, split_manifest

__all__ = ["VERDICTS", "ImageVerdict", "GateResult", "release_gate", "check_images", "read_reviewed", "manifest_pairs", "pairs_from_scores", "gate_checker"]

#: worst first: an image's verdict is the first of these that applies
VERDICTS = ("not-evaluated", "re-identified", "text-readable", "residual-face", "residual-text", "nothing-found", "passed")
#: a text region counts as still readable when what is read there matches the original this much
TEXT_SIMILARITY = 0.8
#: verdicts a person may accept by listing the image in the reviewed file
REVIEWABLE = ("not-evaluated", "nothing-found")


@dataclass
class ImageVerdict:
    key: str
    anonymized: str | None
    original: str | None
    verdict: str
    problems: list[str] = field(default_factory=list)
    faces: list[dict[str, Any]] = field(default_factory=list)
    reviewed: bool = False
    texts: list[dict[str, Any]] | None = None  # None: text not checked

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"


@dataclass
class GateResult:
    images: list[ImageVerdict]
    threshold: float
    residual_threshold: float

    @property
    def verdict(self) -> str:
        return "pass" if self.images and all(i.passed for i in self.images) else "fail"

    @property
    def failing(self) -> list[ImageVerdict]:
        return [i for i in self.images if not i.passed]

    def counts(self) -> dict[str, int]:
        return {v: sum(i.verdict == v for i in self.images) for v in VERDICTS}

    def summary(self) -> dict[str, Any]:
        faces = [f for i in self.images for f in i.faces]
        reid = [f for f in faces if f["reidentified"]]
        return {
            "verdict": self.verdict,
            "images": len(self.images),
            "counts": self.counts(),
            "faces": len(faces),
            "faces_reidentified": len(reid),
            "reid_rate": round(len(reid) / len(faces), 6) if faces else None,
            "faces_with_residual_detection": sum(f["residual"] for f in faces),
            **self._text_summary(),
            "threshold": self.threshold,
            "residual_threshold": self.residual_threshold,
            "failing": [i.anonymized or i.original or i.key for i in self.failing],
        }

    def _text_summary(self) -> dict[str, Any]:
        checked = [i for i in self.images if i.texts is not None]
        if not checked:
            return {"text_checked": False}
        texts = [t for i in checked for t in i.texts]
        return {"text_checked": True, "text_regions": len(texts), "text_readable": sum(t["readable"] for t in texts),
                "text_still_detected": sum(t["detected"] for t in texts)}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "per_image": [asdict(i) for i in self.images]}


def read_reviewed(path: str | os.PathLike) -> set[str]:
    """Paths a person has looked at and accepts, one per line (blank lines and ``#`` comments
    ignored); matched against an image's key, anonymized path and original path."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AnonlensError(f"{path}: cannot read the reviewed list ({exc})") from None
    return {line.strip() for line in lines if line.strip() and not line.strip().startswith("#")}


def _is_reviewed(item: ImageVerdict, reviewed: set[str]) -> bool:
    names = {item.key, item.anonymized, item.original}
    names |= {str(Path(n).resolve()) for n in list(names) if n}
    return bool(names & (reviewed | {str(Path(r).resolve()) for r in reviewed}))


def manifest_pairs(manifest_path: str | os.PathLike) -> tuple[list[Pair], list[ImageVerdict]]:
    """Pairs of an `anonlens anonymize` run, and a not-evaluated verdict for each image of the
    run that has no output (failed or skipped): a gate never passes an image it did not see."""
    pairs, without = split_manifest(manifest_path)

    missing = []
    records = {}
    try:
        doc = json.loads(find_manifest(manifest_path).read_text(encoding="utf-8"))
        scope = (doc.get("options", {}).get("anonymize") or {}).get("scope", "face")
        records = {str(Path(r["output"])): r for r in doc.get("images", []) if r.get("output")}
        has_text = "text" in parse_scope(scope)
    except (AnonlensError, ValueError, OSError):
        has_text = False
    for pair in pairs:
        rec = records.get(str(pair.anonymized), {})
        pair.extra["check_text"] = has_text
        pair.extra["kept_text"] = [k["box"] for k in rec.get("kept_text", [])]
        frames = set()
        for t in rec.get("tracks", []):
            frames |= {t["first_frame"], t["last_frame"]} | {f for r in t.get("filled_frames", []) for f in r}
        pair.extra["frames"] = sorted(frames)
    for r in without:
        if r.get("status") == "ignored":
            continue
        why = f"no output was written ({r.get('status')}{': ' + r['error'] if r.get('error') else ''})"
        missing.append(ImageVerdict(r.get("key") or Path(r["input"]).name, None, r.get("input"), "not-evaluated", [why]))
    return pairs, missing


def pairs_from_scores(score_dir: str | os.PathLike) -> list[Pair]:
    """The pairs an `anonlens score` table was made from (its original and anonymized columns)."""
    table = Path(score_dir) / "scores.csv"
    try:
        with open(table, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise AnonlensError(f"{table}: cannot read ({exc.strerror or exc})") from None
    return [Pair(r.get("key", ""), Path(r["anonymized"]), Path(r["original"]) if r.get("original") else None) for r in rows]


class _Checker:
    """The detectors and the identity model, loaded once."""

    def __init__(self, threshold: float, residual_threshold: float, dlib_min_score: float):
        self.threshold = threshold
        self.dlib_min_score = dlib_min_score
        self.embedder = face_embedder(upsample=1)
        self.verifier = FaceVerifier(threshold=residual_threshold)

    def face_boxes(self, image) -> list[tuple[tuple[float, ...], str]]:
        found = [(tuple(float(v) for v in r.box), "centerface") for r in self.verifier.faces(image)]
        for box, _score in self.embedder.detect(image, min_score=self.dlib_min_score):
            if not any(box_iou(box, b) > 0.3 for b, _ in found):
                found.append((tuple(float(v) for v in box), "dlib"))
        return found

    def check_faces(self, original, anonymized, boxes: list[tuple[tuple[float, ...], str]]) -> list[dict[str, Any]]:
        """Each face of the original checked in the anonymized image: the identity distance at its
        landmarks and to any face dlib still finds near it (searched around the boxes only), and
        the residual face score (the descriptors in batches: references, faces found, at the references' landmarks)."""
        if not boxes:
            return []
        emb = self.embedder
        refs = emb.embed_shapes([(original, emb.shape_at(original, b)) for b, _ in boxes])
        found = emb.embed_shapes([(anonymized, s) for s in emb.locate_near(anonymized, [b for b, _ in boxes])])
        distances = match_distances_many(emb, refs, anonymized, [[f for f in found if box_iou(f.box, b) > 0.3] for b, _ in boxes])
        out = []
        for (box, found_by), (d_at, d_found) in zip(boxes, distances):
            residual = self.verifier.residual(anonymized, box)
            out.append({
                "box": [round(v, 1) for v in box],
                "found_by": found_by,
                "identity_distance_at_position": round(d_at, 4),
                "identity_distance": None if d_found is None else round(d_found, 4),
                "reidentified": min(d for d in (d_at, d_found) if d is not None) < self.threshold,
                "residual_score": residual,
                "residual": residual >= self.verifier.threshold,
                "identity_engine": emb.engine,
            })
        return out


MODELS.define("gate-checker", size=2)
MODELS.define("gate-text", size=1)


def gate_checker(threshold: float, residual_threshold: float, dlib_min_score: float) -> _Checker:
    """The gate's detectors and identity model for these settings, from the model pool (one set per
    process and settings: a report after a check loads nothing again; the service preloads it)."""
    key = (float(threshold), float(residual_threshold), float(dlib_min_score))
    return MODELS.get("gate-checker", key, lambda: _Checker(*key))


def release_gate(
    pairs: Sequence[Pair],
    *,
    threshold: float = DLIB_MATCH_THRESHOLD,
    residual_threshold: float = 0.2,
    dlib_min_score: float = 0.5,
    reviewed: Iterable[str] = (),
    unevaluated: Sequence[ImageVerdict] = (),
    progress: Callable[[int], None] | None = None,
    text: bool = False,
) -> GateResult:
    """A verdict for every pair (and the ``unevaluated`` images from :func:`manifest_pairs`).
    Text is checked when ``text`` or the pair says so (``pair.extra["check_text"]``: the run's
    scope had text)."""
    reviewed = set(reviewed)
    checker = gate_checker(threshold, residual_threshold, dlib_min_score)
    items: list[ImageVerdict] = list(unevaluated)
    for n, pair in enumerate(pairs, 1):
        item = ImageVerdict(pair.key, str(pair.anonymized), None if pair.original is None else str(pair.original), "passed")
        items.append(item)
        try:
            if pair.error:
                raise AnonlensError(pair.error)
            if pair.original is None:
                raise AnonlensError("no original to compare with (give --original or a manifest)")
            check_text = bool(text or pair.extra.get("check_text"))
            if is_video(pair.anonymized):
                item.faces, item.texts = [], [] if check_text else None
                for index, original, anonymized in paired_frames(pair.original, pair.anonymized, frames=pair.extra.get("frames", ())):
                    faces, texts = _check_images(checker, original, anonymized, check_text, pair.extra.get("kept_text", []))
                    item.faces += [{**f, "frame": index} for f in faces]
                    if texts is not None:
                        item.texts += [{**t, "frame": index} for t in texts]
            else:
                orig, anon = read_image(pair.original), read_image(pair.anonymized)
                original, anonymized = orig.rgb, anon.rgb
                if original.shape[:2] != anonymized.shape[:2]:
                    raise AnonlensError(f"sizes differ: original {original.shape[1]}x{original.shape[0]}, anonymized {anonymized.shape[1]}x{anonymized.shape[0]}")
                item.faces, item.texts = _check_images(checker, original, anonymized, check_text, pair.extra.get("kept_text", []),
                                                       orig.alpha, anon.alpha)
        except AnonlensError as exc:
            item.verdict, item.problems = "not-evaluated", [str(exc)]
        except Exception as exc:  # fail closed: an image the gate could not check never passes
            item.verdict, item.problems = "not-evaluated", [f"{type(exc).__name__}: {exc}"]
        else:
            _judge(item, threshold, residual_threshold)
        if progress is not None:
            progress(n)
    for item in items:
        if item.verdict in REVIEWABLE and _is_reviewed(item, reviewed):
            item.reviewed, item.verdict = True, "passed"
            item.problems.append("accepted by a person (reviewed list)")
    return GateResult(sorted(items, key=lambda i: (VERDICTS.index(i.verdict), i.key)), float(threshold), float(residual_threshold))


def _build_text_models():
    return create_detector("text"), TextRecognizer()


def _text_models():
    """The text detector and recognizer the gate reads text with (pooled: one pair per process)."""
    return MODELS.get("gate-text", None, _build_text_models)


def _check_text(original, anonymized, kept_boxes) -> list[dict[str, Any]]:
    """Every text region of the original (except those kept on purpose), checked in the
    anonymized image: still detected there, and still read as the same text. The text itself is
    not recorded (it may be a name)."""
    detector, recognizer = _text_models()
    found = [r for r in detector.detect(original) if not any(box_iou(r.box, k) > 0.5 for k in kept_boxes)]
    if not found:
        return []
    before = recognizer([rotated_crop(original, r.polygon) for r in found])
    after = recognizer([rotated_crop(anonymized, r.polygon) for r in found])
    out = []
    for r, (a, _), (b, _) in zip(found, before, after):
        a, b = a.strip(), b.strip()
        sim = difflib.SequenceMatcher(None, a, b).ratio() if len(a) >= 2 and b else 0.0
        score = detector.residual(anonymized, r.box)
        out.append({"box": [round(float(v), 1) for v in r.box], "score": round(float(r.score), 4), "residual_score": score,
                    "detected": score >= detector.threshold, "similarity": round(sim, 3), "readable": sim >= TEXT_SIMILARITY})
    return out


#: how a problem names the view of an image with alpha it was seen in
_VIEW_WORDS = {"alpha": " in the alpha channel", "over black": " composited over black", "over white": " composited over white"}


def _judge(item: ImageVerdict, threshold: float, residual_threshold: float) -> None:
    """Set ``item``'s verdict and problems from its face and text checks."""
    for i, f in enumerate(item.faces, 1):
        where = f" in frame {f['frame']}" if "frame" in f else ""
        if f["reidentified"]:
            d = min(v for v in (f["identity_distance"], f["identity_distance_at_position"]) if v is not None)
            item.problems.append(f"face {i}{where} at {f['box']} re-identified{_VIEW_WORDS.get(f.get('view'), '')} "
                                 f"(identity distance {d:.3f} < {threshold})")
        if f["residual"]:
            item.problems.append(f"face {i}{where} at {f['box']} still detected as a face{_VIEW_WORDS.get(f.get('residual_view'), '')} "
                                 f"(score {f['residual_score']:.2f} >= {residual_threshold})")
    texts = item.texts or []
    for i, t in enumerate(texts, 1):
        if t["readable"]:
            item.problems.append(f"text {i} at {t['box']} still readable (read back with similarity {t['similarity']:.2f})")
        elif t["detected"]:
            item.problems.append(f"text {i} at {t['box']} still detected as text (score {t['residual_score']:.2f})")
    if any(f["reidentified"] for f in item.faces):
        item.verdict = "re-identified"
    elif any(t["readable"] for t in texts):
        item.verdict = "text-readable"
    elif any(f["residual"] for f in item.faces):
        item.verdict = "residual-face"
    elif any(t["detected"] for t in texts):
        item.verdict = "residual-text"
    elif not item.faces and not texts:
        item.verdict, item.problems = "nothing-found", ["no face detector finds a face in the original: a person must review it"]


def check_images(
    original,
    anonymized,
    *,
    key: str = "image",
    threshold: float = DLIB_MATCH_THRESHOLD,
    residual_threshold: float = 0.2,
    dlib_min_score: float = 0.5,
    text: bool = False,
    kept_text: Sequence = (),
    original_alpha=None,
    anonymized_alpha=None,
) -> ImageVerdict:
    """The gate's verdict for one original/anonymized pair of decoded ``(H, W, 3)`` RGB images
    and their ``(H, W)`` alpha channels (None: none), measured in every view (see the module
    docstring; no files: the web service's check). Raises :class:`AnonlensError` when the sizes differ."""
    if original.shape[:2] != anonymized.shape[:2]:
        raise AnonlensError(f"sizes differ: original {original.shape[1]}x{original.shape[0]}, anonymized {anonymized.shape[1]}x{anonymized.shape[0]}")
    checker = gate_checker(threshold, residual_threshold, dlib_min_score)
    item = ImageVerdict(key, None, None, "passed")
    item.faces, item.texts = _check_images(checker, original, anonymized, text, list(kept_text), original_alpha, anonymized_alpha)
    _judge(item, threshold, residual_threshold)
    return item


def _check_images(checker, original, anonymized, check_text: bool, kept, original_alpha=None,
                  anonymized_alpha=None) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The face checks (and the text checks when asked) of one original/anonymized image pair,
    in every view when either has a non-constant alpha channel."""
    if len(composite_views(original, original_alpha)) == 1 and len(composite_views(anonymized, anonymized_alpha)) == 1:
        faces = checker.check_faces(original, anonymized, checker.face_boxes(original))
        return faces, (_check_text(original, anonymized, kept) if check_text else None)
    before = dict(composite_views(original, original_alpha, always=True))
    after = dict(composite_views(anonymized, anonymized_alpha, always=True))
    faces = _check_faces_in_views(checker, before, after)
    texts = None
    if check_text:
        texts = []
        for name in before:
            for t in _check_text(before[name], after[name], kept):
                _merge_worst(texts, {**t, "view": name}, _text_badness)
    return faces, texts


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


def _check_faces_in_views(checker, before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Faces of an image with alpha: found in any view of the original (``before``, by view
    name), each checked in every view of the anonymized image (``after``) against its reference
    view (the colour when a detector finds it there, else the first view that shows it), and in
    each view that shows it against the same view of the original. One entry per face: the worst
    identity comparison (``view``: the anonymized view, ``reference_view``: the original's), the
    highest residual score (``residual_view``). The descriptors are computed in three batches
    (references, faces found near the boxes, at the references' landmarks), as in
    :meth:`_Checker.check_faces`."""
    emb = checker.embedder
    boxes: list[tuple[tuple[float, ...], str]] = []
    shown_in: list[list[str]] = []
    for name, view in before.items():
        for box, by in checker.face_boxes(view):
            for i, (b, _) in enumerate(boxes):
                if box_iou(b, box) > 0.3:
                    if name not in shown_in[i]:
                        shown_in[i].append(name)
                    break
            else:
                boxes.append((box, by))
                shown_in.append([name])
    if not boxes:
        return []
    ref_keys = [(v, i) for i, views in enumerate(shown_in) for v in views]
    refs = dict(zip(ref_keys, emb.embed_shapes([(before[v], emb.shape_at(before[v], boxes[i][0])) for v, i in ref_keys])))
    near = {name: emb.locate_near(view, [b for b, _ in boxes]) for name, view in after.items()}
    found_keys = [(name, k) for name, shapes in near.items() for k in range(len(shapes))]
    found = emb.embed_shapes([(after[name], near[name][k]) for name, k in found_keys])
    found_by_view: dict[str, list] = {name: [] for name in after}
    for (name, _), f in zip(found_keys, found):
        found_by_view[name].append(f)
    # (reference view, box, anonymized view): the reference view against every view, each view against itself
    comparisons = [(shown_in[i][0], i, name) for i in range(len(boxes)) for name in after]
    comparisons += [(v, i, v) for i, views in enumerate(shown_in) for v in views[1:]]
    at = emb.describe_many([(after[name], refs[(v, i)].shape) for v, i, name in comparisons])
    residual = {(name, i): checker.verifier.residual(view, boxes[i][0]) for name, view in after.items() for i in range(len(boxes))}
    worst: dict[int, tuple[float, dict[str, Any]]] = {}
    for (v, i, name), vector in zip(comparisons, at):
        ref = refs[(v, i)]
        d_at = identity_distance(ref.vector, vector)
        d_found = min((identity_distance(ref.vector, f.vector) for f in found_by_view[name] if box_iou(f.box, boxes[i][0]) > 0.3), default=None)
        d = min(x for x in (d_at, d_found) if x is not None)
        if i not in worst or d < worst[i][0]:
            worst[i] = (d, {"identity_distance_at_position": round(d_at, 4), "identity_distance": None if d_found is None else round(d_found, 4),
                            "reidentified": d < checker.threshold, "view": name, "reference_view": v})
    out = []
    for i, (box, found_by) in enumerate(boxes):
        res_view = max(after, key=lambda name: residual[(name, i)])
        score = residual[(res_view, i)]
        out.append({"box": [round(v, 1) for v in box], "found_by": found_by, **worst[i][1], "residual_score": score,
                    "residual": score >= checker.verifier.threshold, "residual_view": res_view, "identity_engine": emb.engine})
    return out
