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

Every image gets one verdict, the worst that applies, in this order: ``not-evaluated`` (missing
or unreadable file, or no output was written), ``re-identified``, ``residual-face``,
``nothing-found`` (no detector finds a face in the original and no person has reviewed it) and
``passed``. A person accepts a nothing-found or not-evaluated image by listing it in a reviewed
file (one path per line). The release passes only when every image passes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..errors import AnonlensError
from ..identity import DLIB_MATCH_THRESHOLD, identity_distance
from ..regions import box_iou
from .pairs import Pair, split_manifest

__all__ = ["VERDICTS", "ImageVerdict", "GateResult", "release_gate", "read_reviewed", "manifest_pairs", "pairs_from_scores"]

#: worst first: an image's verdict is the first of these that applies
VERDICTS = ("not-evaluated", "re-identified", "residual-face", "nothing-found", "passed")
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
            "threshold": self.threshold,
            "residual_threshold": self.residual_threshold,
            "failing": [i.anonymized or i.original or i.key for i in self.failing],
        }

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
    for r in without:
        if r.get("status") == "ignored":
            continue
        why = f"no output was written ({r.get('status')}{': ' + r['error'] if r.get('error') else ''})"
        missing.append(ImageVerdict(r.get("key") or Path(r["input"]).name, None, r.get("input"), "not-evaluated", [why]))
    return pairs, missing


def pairs_from_scores(score_dir: str | os.PathLike) -> list[Pair]:
    """The pairs an `anonlens score` table was made from (its original and anonymized columns)."""
    import csv

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
        from ..identity import DlibFaceEmbedder
        from ..verify import FaceVerifier

        self.threshold = threshold
        self.dlib_min_score = dlib_min_score
        self.embedder = DlibFaceEmbedder(upsample=1)
        self.verifier = FaceVerifier(threshold=residual_threshold)

    def face_boxes(self, image) -> list[tuple[tuple[float, ...], str]]:
        found = [(tuple(float(v) for v in r.box), "centerface") for r in self.verifier.faces(image)]
        for box, _score in self.embedder.detect(image, min_score=self.dlib_min_score):
            if not any(box_iou(box, b) > 0.3 for b, _ in found):
                found.append((tuple(float(v) for v in box), "dlib"))
        return found

    def check_face(self, original, anonymized, box, found_by: str, anon_faces) -> dict[str, Any]:
        ref = self.embedder.embed_at(original, box)
        at = self.embedder.embed_at(anonymized, ref)
        d_at = identity_distance(ref.vector, at.vector)
        near = [identity_distance(ref.vector, f.vector) for f in anon_faces if box_iou(f.box, box) > 0.3]
        d_found = min(near) if near else None
        residual = self.verifier.residual(anonymized, box)
        return {
            "box": [round(v, 1) for v in box],
            "found_by": found_by,
            "identity_distance_at_position": round(d_at, 4),
            "identity_distance": None if d_found is None else round(d_found, 4),
            "reidentified": min(d for d in (d_at, d_found) if d is not None) < self.threshold,
            "residual_score": residual,
            "residual": residual >= self.verifier.threshold,
        }


@lru_cache(maxsize=2)
def _checker(threshold: float, residual_threshold: float, dlib_min_score: float) -> _Checker:
    """One set of models per process and settings (a report after a check loads nothing again)."""
    return _Checker(threshold, residual_threshold, dlib_min_score)


def release_gate(
    pairs: Sequence[Pair],
    *,
    threshold: float = DLIB_MATCH_THRESHOLD,
    residual_threshold: float = 0.2,
    dlib_min_score: float = 0.5,
    reviewed: Iterable[str] = (),
    unevaluated: Sequence[ImageVerdict] = (),
    progress: Callable[[int], None] | None = None,
) -> GateResult:
    """A verdict for every pair (and the ``unevaluated`` images from :func:`manifest_pairs`)."""
    from ..io import read_image

    reviewed = set(reviewed)
    checker = _checker(float(threshold), float(residual_threshold), float(dlib_min_score))
    items: list[ImageVerdict] = list(unevaluated)
    for n, pair in enumerate(pairs, 1):
        item = ImageVerdict(pair.key, str(pair.anonymized), None if pair.original is None else str(pair.original), "passed")
        items.append(item)
        try:
            if pair.error:
                raise AnonlensError(pair.error)
            if pair.original is None:
                raise AnonlensError("no original to compare with (give --original or a manifest)")
            original = read_image(pair.original).rgb
            anonymized = read_image(pair.anonymized).rgb
            if original.shape[:2] != anonymized.shape[:2]:
                raise AnonlensError(f"sizes differ: original {original.shape[1]}x{original.shape[0]}, anonymized {anonymized.shape[1]}x{anonymized.shape[0]}")
            boxes = checker.face_boxes(original)
            anon_faces = checker.embedder.embed_all(anonymized) if boxes else []
            item.faces = [checker.check_face(original, anonymized, b, by, anon_faces) for b, by in boxes]
        except AnonlensError as exc:
            item.verdict, item.problems = "not-evaluated", [str(exc)]
        except Exception as exc:  # fail closed: an image the gate could not check never passes
            item.verdict, item.problems = "not-evaluated", [f"{type(exc).__name__}: {exc}"]
        else:
            for i, f in enumerate(item.faces, 1):
                if f["reidentified"]:
                    d = min(v for v in (f["identity_distance"], f["identity_distance_at_position"]) if v is not None)
                    item.problems.append(f"face {i} at {f['box']} re-identified (identity distance {d:.3f} < {threshold})")
                if f["residual"]:
                    item.problems.append(f"face {i} at {f['box']} still detected as a face (score {f['residual_score']:.2f} >= {residual_threshold})")
            if any(f["reidentified"] for f in item.faces):
                item.verdict = "re-identified"
            elif any(f["residual"] for f in item.faces):
                item.verdict = "residual-face"
            elif not item.faces:
                item.verdict, item.problems = "nothing-found", ["no face detector finds a face in the original: a person must review it"]
        if progress is not None:
            progress(n)
    for item in items:
        if item.verdict in REVIEWABLE and _is_reviewed(item, reviewed):
            item.reviewed, item.verdict = True, "passed"
            item.problems.append("accepted by a person (reviewed list)")
    return GateResult(sorted(items, key=lambda i: (VERDICTS.index(i.verdict), i.key)), float(threshold), float(residual_threshold))
