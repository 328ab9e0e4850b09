"""The release gate: a verdict for every image of a release, and the files that fail it.

Faces are counted in each original by every face detector anonlens has (the multi-scale
CenterFace and dlib's HOG detector, merged: a face either finds counts), not by dlib alone, so
profiles and small or large faces are counted too. dlib's detections count from a HOG score of
``dlib_min_score`` (0.5): below that they are mostly textures and emblems (measured: the
astronaut's mission patch scores 0.12, her face 1.16), which would fail every release. Each face is then checked in the anonymized
image:

- **identity** (:func:`anonlens.reid.judge_image`): is the region a face a recogniser can measure
  in the original (dlib, trying the four 90-degree orientations)? Its record says which test
  applied (``identity``: ``"measured by dlib"``, ``"not a face"``, ``"unmeasurable pose"``). A measured
  face is **re-identified** when an attacker (``dlib`` by default; ``attackers``) places its
  anonymized chip nearer its own original than every impostor and every featureless reference
  (criterion ``rank1``, the default; ``tau``: nearer than the attacker's fixed threshold, 0.6 for
  dlib; ``both``). A face fails when any attacker re-identifies it; the record names the attacker;
- **residual face**: the face detector still finds a face there (score >= 0.2, the verification
  of :mod:`anonlens.verify`). A region that is not a face, or a face no recogniser can measure
  (a profile, a face looking down), is judged by this alone, and it also fails when its pixels
  are untouched (not anonymized at all).

The summary reports the re-identification rate per run (``reid_rate``: re-identified / measured
faces, under the criterion applied) with the counts per identity test, and the fixed-threshold
rate as a second named figure (``reid_rate@<tau>``). ``anonlens score``'s identity columns, the
report and the service take their verdicts from this same module.

An image with an alpha channel is measured in every way it can be seen
(:func:`anonlens.io.images.composite_views`): the colour, the alpha as a grey image, and the
image alpha-premultiplied over black and over white. Faces are counted in every view of the
original; each is checked in every view of the anonymized image against the original's colour
(or the first view that shows it) and against the same view of the original, and the worst
comparison is the face's result (its ``view`` names it), so an output whose alpha still carries
the face fails even when its colour is anonymized.

Text (by default: a name tag identifies a person; ``check --no-text`` leaves it out): every text region the text detector
finds in the original is checked in the anonymized image at the same place:

- **text-readable**: the original's reading is legible (3 letters or digits or more, at recogniser
  confidence 0.5 or more: :func:`anonlens.verify.legible`) and the recogniser reads the same there
  (similarity >= 0.8): the text is still readable;
- **residual-text**: the text detector still finds text there (score >= its threshold, 0.5). This
  counts only when the run's scope had text (the manifest says so, or the service's scope): a scope
  without text never meant to change text, and only legible text identifies anyone.

Regions the run kept on purpose (``--keep-text``, recorded in the manifest) are not counted.
The faces and text of a pair are judged by :func:`anonlens.verify.check_pair`, the check the
anonymizer runs on its own outputs before writing them.

Every image gets one verdict, the worst that applies, in this order: ``not-evaluated`` (missing
or unreadable file, or no output was written), ``re-identified``, ``text-readable``,
``residual-face``, ``residual-text``, ``nothing-found`` (no detector finds a face, nor legible text
when text is checked, in the original and no person has reviewed it) and ``passed``. A person
accepts a nothing-found or not-evaluated image, or a text-readable one whose faces all pass (a
street sign), by listing it in a reviewed file (one path per line). The release passes only when every image passes.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..audit import find_manifest
from ..errors import AnonlensError
from ..identity import DLIB_MATCH_THRESHOLD
from ..io import DEFAULT_MAX_PIXELS, decode_image, is_video, max_input_bytes, read_image, read_regular_file, sha256_bytes
from ..pipeline import normalize_scope
from ..verify import (DEFAULT_ATTACKERS, AttackerSpec, check_pair, face_boxes_of, identity_figures, original_cache, pair_checker,
                      parse_attacker, people_without_faces)
from ..video.io import paired_frames
from .pairs import Pair, split_manifest

__all__ = ["VERDICTS", "ImageVerdict", "GateResult", "release_gate", "check_images", "read_reviewed", "manifest_pairs", "pairs_from_scores",
           "parse_attacker"]

#: worst first: an image's verdict is the first of these that applies
VERDICTS = ("not-evaluated", "re-identified", "text-readable", "residual-face", "residual-text", "person-without-face", "nothing-found",
            "passed")
#: verdicts a person may accept by listing the image in the reviewed file (and ``text-readable``
#: when no face of the image fails)
REVIEWABLE = ("not-evaluated", "nothing-found", "person-without-face")


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
    people: list[dict[str, Any]] | None = None  # people with no face found; None: not looked for

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"


@dataclass
class GateResult:
    images: list[ImageVerdict]
    threshold: float
    residual_threshold: float
    #: originals whose faces, text and people the anonymize run had found (same file, same
    #: measurement): only their anonymized images were measured
    originals_reused: int = 0

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
        return {
            "verdict": self.verdict,
            "images": len(self.images),
            "counts": self.counts(),
            **identity_figures(faces),
            "faces_with_residual_detection": sum(f["residual"] for f in faces),
            "people_without_faces": sum(len(i.people or []) for i in self.images),
            **self._text_summary(),
            "threshold": self.threshold,
            "residual_threshold": self.residual_threshold,
            "originals_reused": self.originals_reused,
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


def _reviewable(item: ImageVerdict) -> bool:
    """A person may accept this image: nothing found, not evaluated, or text left readable when
    no face of it fails (a street sign, a shirt's print a person judged harmless)."""
    faces_ok = not any(f["reidentified"] or f["residual"] or not f.get("region_changed", True) for f in item.faces)
    return item.verdict in REVIEWABLE or (item.verdict == "text-readable" and faces_ok)


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
        has_text = normalize_scope(scope).endswith("text")
        face_scope = normalize_scope(scope).split(",")[0] == "face"
    except (AnonlensError, ValueError, OSError):
        has_text, face_scope = False, True
    for pair in pairs:
        rec = records.get(str(pair.anonymized), {})
        pair.extra["check_text"] = has_text
        pair.extra["check_people"] = face_scope
        pair.extra["kept_text"] = [k["box"] for k in rec.get("kept_text", [])]
        if (rec.get("release_check") or {}).get("original") and rec.get("input_sha256"):
            # what the run found in the original: reused by the gate while the original is the same file
            pair.extra["original_measured"] = (rec["input_sha256"], rec["release_check"]["original"])
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


def release_gate(
    pairs: Sequence[Pair],
    *,
    threshold: float = DLIB_MATCH_THRESHOLD,
    residual_threshold: float = 0.2,
    dlib_min_score: float = 0.5,
    reviewed: Iterable[str] = (),
    unevaluated: Sequence[ImageVerdict] = (),
    progress: Callable[[int], None] | None = None,
    text: bool = True,
    attackers: Sequence[AttackerSpec] = DEFAULT_ATTACKERS,
    criterion: str = "rank1",
    people: bool = True,
    reuse: bool = True,
) -> GateResult:
    """A verdict for every pair (and the ``unevaluated`` images from :func:`manifest_pairs`).
    Text is checked by default (a name tag identifies a person): ``text=False`` leaves it out,
    except where the pair says its run's scope had text (``pair.extra["check_text"]``).
    ``attackers`` (:func:`parse_attacker`) and ``criterion`` (``rank1``, ``tau``, ``both``) make the
    identity test (the module docstring). ``people`` (photos; not where the run's scope anonymized
    whole people, ``pair.extra["check_people"]`` False): people with no face found are a review item.
    ``reuse``: where the anonymize run recorded what it found in an original
    (``pair.extra["original_measured"]``: the original's sha256 and
    :func:`~anonlens.verify.original_record`) and the original is still that file, measured the
    same way, only the anonymized image is measured (its faces' identity and residual detection,
    its text, all as before); ``False`` measures every original again."""
    reviewed = set(reviewed)
    reused = 0
    checker = pair_checker(threshold, residual_threshold, dlib_min_score, attackers=attackers, criterion=criterion)
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
                    faces, texts = check_pair(checker, original, anonymized, text=check_text, kept=pair.extra.get("kept_text", []))
                    item.faces += [{**f, "frame": index} for f in faces]
                    if texts is not None:
                        item.texts += [{**t, "frame": index} for t in texts]
            else:
                data = read_regular_file(pair.original, max_bytes=max_input_bytes(DEFAULT_MAX_PIXELS))
                orig = decode_image(data, name=pair.original)
                anon = read_image(pair.anonymized)
                original, anonymized = orig.rgb, anon.rgb
                if original.shape[:2] != anonymized.shape[:2]:
                    raise AnonlensError(f"sizes differ: original {original.shape[1]}x{original.shape[0]}, anonymized {anonymized.shape[1]}x{anonymized.shape[0]}")
                sha, measured = pair.extra.get("original_measured") or (None, None)
                cache = original_cache(checker, measured) if reuse and sha is not None and sha == sha256_bytes(data) else {}
                reused += bool(cache)
                item.faces, item.texts = check_pair(checker, original, anonymized, text=check_text, kept=pair.extra.get("kept_text", []),
                                                    original_alpha=orig.alpha, anonymized_alpha=anon.alpha, cache=cache)
                if people and pair.extra.get("check_people", True):
                    item.people = people_without_faces(original, face_boxes_of(item.faces), cache=cache)
        except AnonlensError as exc:
            item.verdict, item.problems = "not-evaluated", [str(exc)]
        except Exception as exc:  # fail closed: an image the gate could not check never passes
            item.verdict, item.problems = "not-evaluated", [f"{type(exc).__name__}: {exc}"]
        else:
            _judge(item, residual_threshold, text_scope=bool(pair.extra.get("check_text")))
        if progress is not None:
            progress(n)
    for item in items:
        if _reviewable(item) and _is_reviewed(item, reviewed):
            item.reviewed, item.verdict = True, "passed"
            item.problems.append("accepted by a person (reviewed list)")
    return GateResult(sorted(items, key=lambda i: (VERDICTS.index(i.verdict), i.key)), float(threshold), float(residual_threshold),
                      originals_reused=reused)


#: how a problem names the view of an image with alpha it was seen in
_VIEW_WORDS = {"alpha": " in the alpha channel", "over black": " composited over black", "over white": " composited over white"}


def _why_reidentified(f: dict[str, Any]) -> str:
    d = f.get("identity_distance")
    dist = "n/a" if d is None else f"{d:.3f}"
    if f.get("criterion") == "rank1" or (f.get("criterion") == "both" and f.get("rank1")):
        near = f.get("nearest_impostor_distance")
        return (f"rank 1: distance {dist} to its own original, nearer than {f.get('impostors', 0)} impostor(s)"
                + ("" if near is None else f" (nearest {near:.3f})") + " and every featureless reference")
    return f"identity distance {dist} < tau {f.get('tau')}"


def _judge(item: ImageVerdict, residual_threshold: float, text_scope: bool = False) -> None:
    """Set ``item``'s verdict and problems from its face and text checks. Text still detected (but
    not readable) counts only where the run's scope had text (``text_scope``): elsewhere the text
    was never meant to change, and only legible text identifies anyone."""
    for i, f in enumerate(item.faces, 1):
        where = f" in frame {f['frame']}" if "frame" in f else ""
        if f["reidentified"]:
            item.problems.append(f"face {i}{where} at {f['box']} re-identified{_VIEW_WORDS.get(f.get('view'), '')} by {f['attacker']} "
                                 f"({_why_reidentified(f)})")
        if f["residual"]:
            item.problems.append(f"face {i}{where} at {f['box']} still detected as a face{_VIEW_WORDS.get(f.get('residual_view'), '')} "
                                 f"(score {f['residual_score']:.2f} >= {residual_threshold}; identity: {f['identity']})")
        elif not f.get("region_changed", True):
            item.problems.append(f"face {i}{where} at {f['box']} not anonymized (its pixels are those of the original; "
                                 f"identity: {f['identity']})")
    texts = item.texts or []
    for i, t in enumerate(texts, 1):
        if t["readable"]:
            item.problems.append(f"text {i} at {t['box']} still readable (read back with similarity {t['similarity']:.2f})")
        elif t["detected"] and text_scope:
            item.problems.append(f"text {i} at {t['box']} still detected as text (score {t['residual_score']:.2f})")
    for p in item.people or []:
        item.problems.append(f"a person at {p['box']} has no face found in the head area (a back turned, a face hidden or missed: "
                             "the person may still be recognised): a person must review it")
    if any(f["reidentified"] for f in item.faces):
        item.verdict = "re-identified"
    elif any(t["readable"] for t in texts):
        item.verdict = "text-readable"
    elif any(f["residual"] or not f.get("region_changed", True) for f in item.faces):
        item.verdict = "residual-face"
    elif text_scope and any(t["detected"] for t in texts):
        item.verdict = "residual-text"
    elif item.people:
        item.verdict = "person-without-face"
    elif not item.faces and not any(t.get("legible", True) for t in texts):
        # no face, and no legible text in the original (a texture, a logo): a person looks
        item.verdict, item.problems = "nothing-found", ["no face detector finds a face in the original: a person must review it"]


def check_images(
    original,
    anonymized,
    *,
    key: str = "image",
    threshold: float = DLIB_MATCH_THRESHOLD,
    residual_threshold: float = 0.2,
    dlib_min_score: float = 0.5,
    text: bool = True,
    kept_text: Sequence = (),
    original_alpha=None,
    anonymized_alpha=None,
    attackers: Sequence[AttackerSpec] = DEFAULT_ATTACKERS,
    criterion: str = "rank1",
    text_scope: bool = False,
    people: bool = True,
    original_measured: dict[str, Any] | None = None,
) -> ImageVerdict:
    """The gate's verdict for one original/anonymized pair of decoded ``(H, W, 3)`` RGB images
    and their ``(H, W)`` alpha channels (None: none), measured in every view (see the module
    docstring; no files: the web service's check; text is checked unless ``text=False``; ``text_scope``:
    the run anonymized text, so text still detected fails too; ``people``: people with no face found
    are a review item, as for a face scope; ``original_measured``: what the anonymizer found in this
    very original, :func:`~anonlens.verify.original_record`, not searched for again). Raises
    :class:`AnonlensError` when the sizes differ."""
    if original.shape[:2] != anonymized.shape[:2]:
        raise AnonlensError(f"sizes differ: original {original.shape[1]}x{original.shape[0]}, anonymized {anonymized.shape[1]}x{anonymized.shape[0]}")
    checker = pair_checker(threshold, residual_threshold, dlib_min_score, attackers=attackers, criterion=criterion)
    item = ImageVerdict(key, None, None, "passed")
    cache = original_cache(checker, original_measured)
    item.faces, item.texts = check_pair(checker, original, anonymized, text=text, kept=list(kept_text), original_alpha=original_alpha,
                                        anonymized_alpha=anonymized_alpha, cache=cache)
    if people:
        item.people = people_without_faces(original, face_boxes_of(item.faces), cache=cache)
    _judge(item, residual_threshold, text_scope=text_scope)
    return item


