"""Anonymize one image: detect regions, perturb them, and record exactly what was done.

>>> import numpy as np, anonlens
>>> img = np.full((64, 64, 3), 128, np.uint8)
>>> result = anonlens.anonymize(img, scope="image", operator="mask")
>>> result.action, int(result.image.max())
('anonymized', 0)

An image's alpha channel is image content too (a soft matte of a portrait is the portrait): when
one is given (:meth:`Anonymizer.__call__`, :func:`anonymize_encoded`), faces (and the scope's
regions) are searched for in the colour and in every view of :func:`anonlens.io.images.composite_views`
(the alpha as a grey image, the image composited over black and over white); inside every
anonymized region the alpha is replaced by 255 (fully opaque), so the output's alpha there is a
constant that carries nothing of the original, and the output composited over any background
equals the anonymized colour there; the verification re-detects over the composites too.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from .checks import as_rgb_uint8
from .detectors import DETECTORS, Detector, create_detector
from .detectors.text import TextRecognizer, rotated_crop
from .edi import EDIConfig, IdentityOracle, edi_anonymize, utility_record
from .errors import AnonlensError
from .identity import DLIB_MATCH_THRESHOLD, DlibFaceEmbedder, match_distances
from .io import DEFAULT_MAX_PIXELS, SUFFIX_BY_FORMAT, decode_image, encode_image, metadata_problems
from .io.images import ALPHA_FORMATS, composite_views
from .operators import Operator, create_operator
from .operators import functional as OF
from .pool import MODELS
from .regions import Region, Shape, box_iou, region_mask, whole_image_region
from .reid import CRITERIA
from .verify import (STRENGTHEN_STEPS, WIDE_MASK_MARGIN, FaceVerifier, check_pair, face_boxes_of, original_record, pair_checker,
                     people_without_faces)

__all__ = ["AnonymizeConfig", "AnonymizationResult", "Anonymizer", "anonymize", "anonymize_encoded", "EncodedResult", "SCOPE_DEFAULTS",
           "anonymizer_loads", "SCOPES", "MAX_MARGIN", "parse_scope", "normalize_scope", "AnonymizerParts", "Found", "build_parts"]

#: a base scope (face, body, person, image), ``text``, a base scope with text ("face,text"), or
#: ``all`` (= "person,text": faces, people and text)
Scope = str
BASE_SCOPES = ("face", "body", "person", "image")
OnEmpty = Literal["keep", "skip", "full"]
Method = Literal["uniform", "edi"]

#: per scope: default detector, region shape and margin (fraction of the box added on each side).
#: ``person`` is faces and bodies: the face detector always runs (with the face defaults for its
#: regions), ``--detector`` and these defaults are the body detector's.
SCOPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "face": {"detector": "centerface", "shape": "ellipse", "margin": 0.25},
    "body": {"detector": "ssd-person", "shape": "box", "margin": 0.05},
    "person": {"detector": "ssd-person", "shape": "box", "margin": 0.05},
    "image": {"detector": None, "shape": "box", "margin": 0.0},
    # text lines are rotated quadrilaterals already grown by the detector's unclip distance
    "text": {"detector": "text", "shape": "mask", "margin": 0.0},
}


#: the scopes a user names (the service lists them in ``GET /options``); ``all`` is person,text,
#: and :func:`parse_scope` also reads other spellings of these ("text,face", "FACE")
SCOPES = ("face", "person", "body", "image", "text", "face,text", "person,text", "body,text", "all")
#: the largest region margin a user may set (a fraction of the region's size added on each side)
MAX_MARGIN = 5.0


def parse_scope(scope: str) -> tuple[str, ...]:
    """A scope's parts: at most one base scope (face, body, person, image), then ``text`` if it has
    text; raises :class:`~anonlens.errors.AnonlensError` (one line) on anything else.

    >>> parse_scope("text, Face"), parse_scope("all"), parse_scope("text")
    (('face', 'text'), ('person', 'text'), ('text',))
    >>> [",".join(parse_scope(s)) for s in SCOPES]
    ['face', 'person', 'body', 'image', 'text', 'face,text', 'person,text', 'body,text', 'person,text']
    """
    parts = [p.strip().lower() for p in str(scope).split(",") if p.strip()]
    if "all" in parts:
        parts = [p for p in parts if p != "all"] + ["person", "text"]
    unknown = [p for p in parts if p not in SCOPE_DEFAULTS]
    if unknown or not parts:
        raise AnonlensError(f"scope must be one of {', '.join(SCOPE_DEFAULTS)}, a base scope with text "
                            f"(face,text), or all; got {scope!r}")
    bases = sorted({p for p in parts if p in BASE_SCOPES})
    if "person" in bases and "face" in bases:
        bases.remove("face")  # person already holds the faces
    if len(bases) > 1:
        raise AnonlensError(f"scope {scope!r} combines {' and '.join(bases)}: choose one of face, body, person, image (plus text)")
    if bases == ["image"] and "text" in parts:
        raise AnonlensError("scope image already covers the whole frame, text included; drop text")
    return tuple(bases + (["text"] if "text" in parts else []))


def normalize_scope(scope: str) -> str:
    """``"text,face"`` -> ``"face,text"``, ``"all"`` -> ``"person,text"`` (:func:`parse_scope`, joined)."""
    return ",".join(parse_scope(scope))


#: detectors whose regions are exact (the user's own): used as given unless shape/margin are set
EXACT_DETECTORS = {"boxes": {"shape": "box", "margin": 0.0}}


@dataclass(frozen=True)
class AnonymizeConfig:
    """Everything that decides how one image is anonymized (hashable, picklable, JSON-able).

    ``detector``/``shape``/``margin`` left as None take the scope's defaults (:data:`SCOPE_DEFAULTS`).
    ``on_empty`` says what happens when nothing is found: ``keep`` the image unchanged (flagged for
    review), ``skip`` it (no output), or anonymize the ``full`` frame.
    """

    scope: Scope = "face"
    detector: str | None = None
    detector_options: tuple[tuple[str, Any], ...] = ()
    operator: str = "blur"
    operator_options: tuple[tuple[str, Any], ...] = ()
    shape: Shape | None = None
    margin: float | None = None
    on_empty: OnEmpty = "keep"
    #: ``uniform`` (the operator over each whole region) or ``edi`` (EDI-Anon: only the pixels that
    #: reveal the identity, until an identity oracle no longer recognises the person)
    method: Method = "uniform"
    #: options of the method, see :class:`anonlens.edi.EDIConfig` (oracle, q, max_iters, saliency...)
    method_options: tuple[tuple[str, Any], ...] = ()
    #: re-detect faces in every anonymized region and strengthen what still detects, then run the
    #: release gate's pair check on each photo once every operator ran (:meth:`Anonymizer.verify_release`);
    #: False only on the user's explicit request (both checks off)
    verify: bool = True
    #: the identity test's criterion (:data:`anonlens.reid.CRITERIA`: rank1, tau, both)
    identity_criterion: str = "rank1"
    #: a scope without text: the last verification also reads the text of each photo
    #: (:func:`anonlens.verify.check_text`) and records what is still legible, so that the run lists
    #: the image for review (the gate fails readable text)
    text_review: bool = True
    #: a face scope (``face``, ``face,text``): the last verification also looks for people whose head
    #: area holds no face (:func:`anonlens.verify.people_without_faces`: a back turned, a face hidden
    #: or missed) and records them, so that the run lists the image for review
    person_review: bool = True
    #: with a text scope: keep (leave readable) the text regions whose recognised text matches this
    #: regular expression entirely; recognition runs only when it is set
    keep_text: str | None = None

    def __post_init__(self) -> None:
        if self.method not in ("uniform", "edi"):
            raise AnonlensError(f"method must be 'uniform' or 'edi'; got {self.method!r}")
        object.__setattr__(self, "scope", normalize_scope(self.scope))
        if self.keep_text is not None:
            if not self.has_text:
                raise AnonlensError("--keep-text needs a scope with text (e.g. --scope face,text)")
            try:
                re.compile(self.keep_text)
            except re.error as exc:
                raise AnonlensError(f"--keep-text {self.keep_text!r} is not a valid regular expression: {exc}") from None
        if self.identity_criterion not in CRITERIA:
            raise AnonlensError(f"identity criterion must be one of {', '.join(CRITERIA)}; got {self.identity_criterion!r}")
        if self.on_empty not in ("keep", "skip", "full"):
            raise AnonlensError(f"on_empty must be keep, skip or full; got {self.on_empty!r}")
        if self.shape is not None and self.shape not in ("auto", "ellipse", "box", "mask"):
            raise AnonlensError(f"shape must be auto, ellipse, box or mask; got {self.shape!r}")
        if self.margin is not None and not (0.0 <= float(self.margin) <= MAX_MARGIN):
            raise AnonlensError(f"margin must be between 0 and {MAX_MARGIN:g} (fraction of the box per side); got {self.margin!r}")
        # accept dicts for convenience; store sorted tuples so the config stays hashable
        for name in ("detector_options", "operator_options", "method_options"):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, tuple(sorted(value.items())))
            object.__setattr__(self, name, tuple((k, _freeze(v)) for k, v in getattr(self, name)))

    @property
    def scope_parts(self) -> tuple[str, ...]:
        """The scope's parts (:func:`parse_scope`): ``("face",)``, ``("person", "text")``, ``("text",)``."""
        return parse_scope(self.scope)

    @property
    def base_scope(self) -> str | None:
        """face, body, person or image; None for text alone."""
        base = self.scope_parts[0]
        return base if base in BASE_SCOPES else None

    @property
    def has_text(self) -> bool:
        return "text" in self.scope_parts

    @property
    def reviews_people(self) -> bool:
        """A face scope with the person review on: people with no face found are listed for review
        (in the person, body and image scopes the bodies are anonymized themselves)."""
        return self.person_review and self.base_scope == "face"

    @property
    def main_scope(self) -> str:
        return self.base_scope or "text"

    @property
    def detector_name(self) -> str | None:
        if self.main_scope == "image":
            return None
        return self.detector or SCOPE_DEFAULTS[self.main_scope]["detector"]

    def _default(self, key: str) -> Any:
        exact = EXACT_DETECTORS.get(self.detector_name or "")
        return (exact or SCOPE_DEFAULTS[self.main_scope])[key]

    @property
    def region_shape(self) -> Shape:
        return self.shape or self._default("shape")

    @property
    def region_margin(self) -> float:
        return float(self.margin if self.margin is not None else self._default("margin"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["detector"] = self.detector_name
        d["detector_options"] = dict(self.detector_options)
        d["operator_options"] = dict(self.operator_options)
        d["method_options"] = dict(self.method_options)
        d["shape"] = self.region_shape
        d["margin"] = self.region_margin
        return json.loads(json.dumps(d, default=_jsonable))


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)


@dataclass
class AnonymizationResult:
    """What :func:`anonymize` did to one image.

    ``action`` is ``anonymized`` (regions were perturbed), ``kept`` (nothing found, image unchanged,
    ``on_empty='keep'``), ``skipped`` (nothing found, no output, ``image`` is None) or ``full-frame``
    (nothing found, whole image perturbed). ``record`` is the JSON-able account for manifests.
    ``alpha`` is the output's alpha channel when one was given: the input's, made opaque (255) in
    every anonymized region (all of it for ``full-frame`` and the ``image`` scope).
    """

    image: np.ndarray | None
    regions: list[Region]
    action: str
    record: dict[str, Any] = field(default_factory=dict)
    alpha: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        """True when the detector found nothing (the image needs a person's review)."""
        return not self.regions and self.action != "anonymized"


@dataclass(frozen=True, eq=False)
class AnonymizerParts:
    """What an :class:`Anonymizer` is built from (:func:`build_parts`): every part always exists,
    None when the configuration does not use it."""

    operator: Operator
    #: the scope's own detector; None for the ``image`` scope (the whole frame is the region)
    detector: Detector | None = None
    #: ``person`` scope: the face detector runs too (its regions get the face defaults)
    face_detector: Detector | None = None
    #: a base scope with text: the text detector runs too (its regions get the text defaults)
    text_detector: Detector | None = None
    #: re-detects text in anonymized text regions (the scope's text detector; None without verification)
    text_probe: Detector | None = None
    #: ``keep_text``: reads text regions; ``keep`` is the compiled pattern their text must match entirely
    recognizer: TextRecognizer | None = None
    keep: re.Pattern[str] | None = None
    #: re-detects faces in every anonymized region and searches outputs for faces (uniform method, verify)
    verifier: FaceVerifier | None = None
    #: EDI-Anon (``method="edi"``): its options, its identity oracle and the optional attribute predictor
    edi: EDIConfig | None = None
    oracle: IdentityOracle | None = None
    attribute: Callable[[np.ndarray], Any] | None = None


def build_parts(config: AnonymizeConfig, *, detector: Detector | None = None, operator: Operator | None = None) -> AnonymizerParts:
    """Create (load) the parts ``config`` uses; ``detector``/``operator`` instances are used as
    given instead of the configured ones. Raises :class:`AnonlensError` for bad EDI options."""
    name = config.detector_name
    if detector is None and name is not None:
        detector = create_detector(name, **dict(config.detector_options))
    operator = operator or create_operator(config.operator, **_thaw(dict(config.operator_options)))
    face_detector = create_detector("centerface") if config.base_scope == "person" else None
    text_detector = create_detector("text") if config.has_text and config.base_scope else None
    text_probe = text_detector or (detector if detector is not None and detector.label == "text" else None)
    recognizer = TextRecognizer() if config.keep_text is not None else None
    verifier = None
    if config.verify and config.method != "edi":
        verifier = FaceVerifier(detector_options=dict(config.detector_options) if name == "centerface" else {})
    edi = oracle = attribute = None
    if config.method == "edi":
        try:
            edi = EDIConfig(**_thaw(dict(config.method_options)))
        except TypeError as exc:
            raise AnonlensError(f"EDI option error: {exc}") from None
        oracle = edi.create_oracle()
        edi.saliency_for(oracle)  # unknown saliency method or wrong oracle: fail now
        if edi.attribute_model:
            from .edi.classifier import attribute_predictor  # torch

            attribute = attribute_predictor(edi.attribute_model)
    return AnonymizerParts(operator, detector, face_detector, text_detector, text_probe if config.verify else None, recognizer,
                           None if config.keep_text is None else re.compile(config.keep_text), verifier, edi, oracle, attribute)


@dataclass
class Found:
    """The regions to anonymize in one image (:meth:`Anonymizer.find`, or a video's tracker): each
    with the part of the scope that found it (see :meth:`Anonymizer.detect_parts`) and the
    composited view it was seen in (None or ``colour``: the colour itself), and the text regions
    left readable on purpose (``keep_text``: their records, text included)."""

    regions: list[Region]
    parts: list[str]
    views: list[str | None] | None = None
    kept_text: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.views is None:
            self.views = [None] * len(self.regions)
        if not len(self.regions) == len(self.parts) == len(self.views):
            raise ValueError(f"one part and one view per region: got {len(self.regions)} regions, {len(self.parts)} parts, "
                             f"{len(self.views)} views")


class Anonymizer:
    """A detector and an operator loaded once, applied to many images (and video frames).

    Per image: :meth:`find` the regions (the scope's detectors over every view, ``keep_text``
    splits off the text to leave readable), then :meth:`anonymize_found` (the operator and the
    verification over each region, the face search of scopes that do not look for faces, the
    ``on_empty`` policy). Calling the anonymizer does both; a video finds on its detection frames
    and hands each frame's tracked regions to :meth:`anonymize_found`.

    >>> anon = Anonymizer(AnonymizeConfig(scope="image", operator="pixelate"))
    >>> anon(np.zeros((32, 32, 3), np.uint8)).action
    'anonymized'
    """

    def __init__(
        self,
        config: AnonymizeConfig | None = None,
        *,
        detector: Detector | None = None,
        operator: Operator | None = None,
    ):
        self.config = config or AnonymizeConfig()
        self.parts = build_parts(self.config, detector=detector, operator=operator)
        #: dlib's identity network, loaded on the first identity verification (operators that put a new face in)
        self._id_embedder: DlibFaceEmbedder | None = None

    @property
    def detector(self) -> Detector | None:
        """The scope's own detector (None: the ``image`` scope)."""
        return self.parts.detector

    @property
    def operator(self) -> Operator:
        return self.parts.operator

    @property
    def face_detector(self) -> Detector | None:
        return self.parts.face_detector

    @property
    def text_detector(self) -> Detector | None:
        return self.parts.text_detector

    @property
    def verifier(self) -> FaceVerifier | None:
        return self.parts.verifier

    @property
    def edi(self) -> EDIConfig | None:
        return self.parts.edi

    @property
    def oracle(self) -> IdentityOracle | None:
        return self.parts.oracle

    def match_inputs(self, keys: list[str]) -> dict[str, Any]:
        """Merge :meth:`Detector.match_inputs` over this anonymizer's detectors."""
        merged: dict[str, Any] = {"sources": {}, "unmatched": [], "ambiguous": []}
        for det in (self.detector, self.face_detector, self.text_detector):
            if det is not None:
                m = det.match_inputs(keys)
                merged["sources"].update(m.get("sources", {}))
                merged["unmatched"] += m.get("unmatched", [])
                merged["ambiguous"] += m.get("ambiguous", [])
        return merged

    def describe(self) -> dict[str, Any]:
        """Detector and operator with all their options (for manifests)."""
        return {
            "scope": self.config.scope,
            "detector": None if self.detector is None else {"name": self.detector.name, "options": _opts(self.detector),
                                                             **_runtime(self.detector)},
            "operator": {"name": self.operator.name, "options": _opts(self.operator)},
            "shape": self.config.region_shape,
            "margin": self.config.region_margin,
            "on_empty": self.config.on_empty,
            "method": self.config.method,
            "verify": None if self.verifier is None else {
                **self.verifier.options(),
                "release_check": {"attacker": "dlib", "criterion": self.config.identity_criterion, "gallery": "built-in + the image's other faces",
                                  "residual_threshold": RELEASE_RESIDUAL, "text": self.config.has_text or self.config.text_review,
                                  "people_without_faces": self.config.reviews_people}
                if self.checks_release else None},
            **({"text_detector": {"name": self.text_detector.name, "options": _opts(self.text_detector),
                                  **_runtime(self.text_detector)}} if self.text_detector is not None else {}),
            **({"keep_text": self.config.keep_text} if self.config.keep_text is not None else {}),
            **({"edi": {**json.loads(json.dumps(asdict(self.edi), default=_jsonable)), "oracle_options": _opts(self.oracle)}}
               if self.edi is not None else {}),
        }

    def detect(self, image: np.ndarray, *, source: str | None = None) -> list[Region]:
        return [r for r, _ in self.detect_parts(image, source=source)]

    def detect_parts(self, image: np.ndarray, *, source: str | None = None, skip: frozenset[str] = frozenset()) -> list[tuple[Region, str]]:
        """Regions with the part of the scope that found them: ``face`` (the face detector of the
        person scope), ``text`` (the text detector of a scope with text) or ``main`` (the scope's
        own detector). ``skip``: parts not run this time (a video's people between key frames)."""
        if self.detector is None:
            return [(whole_image_region(*image.shape[:2]), "main")]
        faces = [] if self.face_detector is None or "face" in skip else [(r, "face") for r in self.face_detector.detect(image)]
        texts = [] if self.text_detector is None or "text" in skip else [(r, "text") for r in self.text_detector.detect(image)]
        main = [] if "main" in skip else [(r, "main") for r in self.detector.detect(image, source=source)]
        return faces + main + texts

    def keep_readable(self, image: np.ndarray, found: list[tuple[Region, str]]) -> tuple[list[tuple[Region, str]], list[dict[str, Any]]]:
        """With ``keep_text``: split off the text regions whose recognised text matches it
        entirely; they stay readable and are recorded (their text included: it is in the release
        anyway). The text of the regions that are anonymized is never recorded."""
        recognizer, keep = self.parts.recognizer, self.parts.keep
        if recognizer is None or keep is None:
            return found, []
        texts = [i for i, (r, _) in enumerate(found) if r.label == "text" and r.polygon is not None]
        read = recognizer([rotated_crop(image, found[i][0].polygon) for i in texts])
        kept_idx, kept = set(), []
        for i, (text, conf) in zip(texts, read):
            if text.strip() and keep.fullmatch(text.strip()):
                kept_idx.add(i)
                kept.append({**found[i][0].to_dict(), "text": text.strip(), "confidence": round(conf, 4)})
        return [f for i, f in enumerate(found) if i not in kept_idx], kept

    def _geometry(self, region: Region, part: str) -> tuple[str, float]:
        """Region shape and margin: the user's, else the face defaults for faces the person scope
        or the verification found, else the scope's (or the exact detector's) defaults. A region
        without an outline of its own (a video track's filled-in box) gets its box where the
        shape would be its mask."""
        shape, margin = self._shape_and_margin(region, part)
        if shape == "mask" and region.mask is None and region.polygon is None:
            shape = "box"
        return shape, margin

    def _shape_and_margin(self, region: Region, part: str) -> tuple[str, float]:
        cfg = self.config
        if region.label == "image":
            return "box", 0.0
        if part == "text" or (region.label == "text" and cfg.main_scope == "text"):
            text = SCOPE_DEFAULTS["text"]
            return cfg.shape or text["shape"], float(cfg.margin if cfg.margin is not None else text["margin"])
        if part in ("face", "verification"):
            face = SCOPE_DEFAULTS["face"]
            return cfg.shape or face["shape"], float(cfg.margin if cfg.margin is not None else face["margin"])
        shape = cfg.region_shape
        if shape != "mask" and (region.mask is not None or region.polygon is not None) and cfg.shape is None:
            shape = "mask"  # a region with its own outline is anonymized by it unless told otherwise
        return shape, cfg.region_margin

    def apply(
        self, image: np.ndarray, regions: list[Region], *, source: str | None = None,
        parts: list[str] | None = None, rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Perturb ``regions`` of ``image`` (and verify each, see :mod:`anonlens.verify`); returns
        the new image and the parameters per region.

        ``source`` (the image's key) seeds random operators per image when they have a seed;
        ``parts`` says which part of the scope found each region (see :meth:`detect_parts`).
        """
        out, params, _ = self.apply_with_alpha(image, None, regions, source=source, parts=parts, rng=rng)
        return out, params

    def apply_with_alpha(
        self, image: np.ndarray, alpha: np.ndarray | None, regions: list[Region], *, source: str | None = None,
        parts: list[str] | None = None, rng: np.random.Generator | None = None,
        rngs: Sequence[np.random.Generator | None] | None = None,
    ) -> tuple[np.ndarray, list[dict[str, Any]], np.ndarray | None]:
        """:meth:`apply` to an image with an ``alpha`` channel (None: without): also returns the
        output's alpha, opaque (255) over every region's mask and every pixel the operator or the
        verification changed; each region is verified over the composited views too. ``rngs``
        (one per region, e.g. a video track's) replaces ``rng`` region by region."""
        out = image
        params = []
        alpha_out = None if alpha is None else np.array(alpha, dtype=np.uint8, copy=True)
        if rng is None:
            rng = self.operator.rng_for(source) if self.operator.stochastic else None
        if rngs is not None and len(rngs) != len(regions):
            raise ValueError(f"one random generator per region: got {len(rngs)} for {len(regions)} regions")
        for i, (region, part) in enumerate(zip(regions, parts or ["main"] * len(regions))):
            region_rng = rng if rngs is None else rngs[i]
            shape, margin = self._geometry(region, part)
            mask = region_mask(region, image.shape, shape=shape, margin=margin)
            entry: dict[str, Any] = {}
            before = out
            if alpha_out is not None:
                alpha_out[mask] = 255  # no matte of the region survives: the alpha there is a constant
            if self.edi is not None and region.label != "text":  # EDI's oracle judges identity, not text
                out, p, entry["edi"] = self._apply_edi(image, out, mask, region, region_rng)
            else:
                out, p = self.operator(out, mask, region, rng=region_rng)
            if self.verifier is not None or (region.label == "text" and self.parts.text_probe is not None):
                out, p, entry["verification"] = self._verify(before, out, mask, region, p, region_rng, alpha=alpha_out)
            if alpha_out is not None:
                alpha_out[(out != before).any(axis=2)] = 255  # what the verification changed beyond the mask
            if part == "verification":
                entry["found_by"] = "verification"
            params.append({**region.to_dict(), "shape": shape, "pixels": int(mask.sum()), "params": p, **entry})
        if out is image:
            out = image.copy()
        return out, params, alpha_out

    def _verify(self, before, out, mask, region, params, rng, alpha=None):
        """Re-detect a face (a text region: text) over ``region`` of ``out``; strengthen the
        operator on the schedule, then fall back to a solid mask, while it still detects
        (:mod:`anonlens.verify`). With an ``alpha`` (the output's, already opaque over ``mask``;
        updated in place where a wider mask is used), the highest score over the colour and the
        composited views counts."""
        if region.label != "text" and getattr(self.operator, "verification", "detection") == "identity":
            return self._verify_identity(before, out, mask, region, params)
        if region.label == "text":
            probe = self.parts.text_probe
            thr, score_at = probe.threshold, probe.residual
        else:
            thr, score_at = self.verifier.threshold, self.verifier.residual

        def residual(img):
            return _residual_in_views(score_at, img, alpha, region.box)
        score = residual(out)
        attempts = [score]
        action = "passed"
        step = 0
        while score >= thr and step < STRENGTHEN_STEPS:
            step += 1
            stronger = self.operator.stronger(params, step)
            if stronger is None:
                break
            out = self.operator.apply_params(before, mask, stronger, rng=rng)
            params, action = stronger, "strengthened"
            score = residual(out)
            attempts.append(score)
        if score >= thr:
            out = OF.fill(before, mask, color=(0, 0, 0))
            params, action = {"fallback": "mask", "color": [0, 0, 0], "operator_params": params}, "masked"
            score = residual(out)
            attempts.append(score)
        if score >= thr:  # the head's outline around the mask still looks like a face: mask wider
            wide = region_mask(region, before.shape, shape="box", margin=WIDE_MASK_MARGIN)
            if alpha is not None:
                alpha[wide] = 255
            out = OF.fill(before, mask | wide, color=(0, 0, 0))
            params = {**params, "wide_box_margin": WIDE_MASK_MARGIN}
            score = residual(out)
            attempts.append(score)
        return out, params, {"residual_score": score, "action": action, "scores": attempts}

    def _verify_identity(self, before, out, mask, region, params):
        """For operators that put a new face in the region (``agan``): the region fails when dlib
        still matches a face of the original (``before``) to the output, measured as the release
        gate measures it: at the original face's landmarks (for a face region, predicted in its box
        even when dlib does not detect it there) and at every face found in the output. A failing
        region falls back to a solid mask, then to a wider one, as the detection-based check does."""
        if self._id_embedder is None:
            self._id_embedder = DlibFaceEmbedder()
        emb = self._id_embedder
        h, w = before.shape[:2]
        x1, y1, x2, y2 = region.box
        pad = 0.25 * max(x2 - x1, y2 - y1)
        X1, Y1, X2, Y2 = int(max(0, x1 - pad)), int(max(0, y1 - pad)), int(min(w, x2 + pad)), int(min(h, y2 + pad))
        crop_before = before[Y1:Y2, X1:X2]
        refs = emb.embed_all(crop_before) if crop_before.size else []
        n_found = len(refs)
        if region.label == "face" and crop_before.size:
            refs.append(emb.embed_at(crop_before, (x1 - X1, y1 - Y1, x2 - X1, y2 - Y1)))

        def distance(img):
            crop = img[Y1:Y2, X1:X2]
            found = emb.embed_all(crop) if refs else []
            dists = [d for f in refs for d in match_distances(emb, f, crop, found) if d is not None]
            return round(min(dists), 4) if dists else None

        score = distance(out)
        scores, action = [score], "passed"
        if score is not None and score < DLIB_MATCH_THRESHOLD:
            out = OF.fill(before, mask, color=(0, 0, 0))
            params, action = {"fallback": "mask", "color": [0, 0, 0], "operator_params": params}, "masked"
            score = distance(out)
            scores.append(score)
            if score is not None and score < DLIB_MATCH_THRESHOLD:  # the head's outline still matches: mask wider
                out = OF.fill(before, mask | region_mask(region, before.shape, shape="box", margin=WIDE_MASK_MARGIN), color=(0, 0, 0))
                params = {**params, "wide_box_margin": WIDE_MASK_MARGIN}
                score = distance(out)
                scores.append(score)
        return out, params, {"check": "identity", "identity_distance": scores[0], "final_identity_distance": score,
                             "threshold": DLIB_MATCH_THRESHOLD, "faces_in_original": n_found, "action": action, "scores": scores}

    @property
    def checks_release(self) -> bool:
        """Whether photos get the last verification (:meth:`verify_release`): the verification is on
        and the operator is not one that judges identity itself (``agan``, per region)."""
        return self.verifier is not None and getattr(self.operator, "verification", "detection") != "identity"

    def verify_release(self, original: np.ndarray, out: np.ndarray, alpha: np.ndarray | None, out_alpha: np.ndarray | None,
                       regions: list[Region], parts: list[str], entries: list[dict[str, Any]], *, kept_text: Sequence[dict[str, Any]] = (),
                       rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """The last verification of one photo, once every operator has run on it: the release
        gate's own pair check (:func:`anonlens.verify.check_pair`) of ``original`` against ``out``,
        so that an output written here passes ``anonlens check``.

        A face the check fails (re-identified by the identity test, still detected at
        :data:`RELEASE_RESIDUAL` or more, or untouched) is fixed in the region that covers it: the
        operator again, stronger, on the verification's schedule (from the original pixels; text
        regions applied after it keep theirs), then a solid black mask, then the mask widened to the
        region's box plus :data:`~anonlens.verify.WIDE_MASK_MARGIN`; a face no region covers (found by
        the gate's detectors only) becomes a new face region. The check runs again after each round;
        a face still failing under the wide mask raises :class:`AnonlensError` (the image fails, no
        output). Then text: with text in the scope, a text region still readable or detected is
        masked (once; still failing: the image fails); without, the readable text is recorded
        (``text_review``) and the run lists the image for review.

        ``regions``, ``parts`` and ``entries`` are updated in place (an entry's ``release_check``:
        the actions and each round's result). Returns the image, its alpha and the check's record."""
        checker = pair_checker(criterion=self.config.identity_criterion)
        regions_in = len(regions)
        state: dict[int, dict[str, Any]] = {}
        text_masks: dict[int, np.ndarray] = {}  # measured only when a face must be fixed

        def texts_after(k: int) -> np.ndarray:
            """The pixels of the text regions applied after region ``k`` (they keep their own anonymization)."""
            after = np.zeros(original.shape[:2], bool)
            for t in range(k + 1, regions_in):
                if regions[t].label == "text":
                    if t not in text_masks:
                        text_masks[t] = self._mask_of(regions[t], parts[t], original.shape)
                    after |= text_masks[t]
            return after

        rounds = 0
        cache: dict = {}  # the original's faces and landmarks, measured once
        searched = self.face_detector if self.face_detector is not None else self.detector
        if alpha is None and searched is not None and searched.label == "face" and self.detector is not None:
            # the scope's face detector already searched the original upright: the check reuses what it found
            face_part = "face" if self.face_detector is not None else "main"
            cache["upright"] = (searched, [r for r, p in zip(regions[:regions_in], parts) if p == face_part and r.label == "face"])
        while True:
            faces, _ = check_pair(checker, original, out, text=False, original_alpha=alpha, anonymized_alpha=out_alpha, cache=cache)
            failing = [f for f in faces if _release_fails(f)]
            if not failing:
                break
            if rounds >= RELEASE_ROUNDS:
                raise AnonlensError(f"the face at {failing[0]['box']} still fails the release check after {rounds} rounds: nothing written")
            rounds += 1
            for f in failing:
                k = _covering_region(regions, f["box"])
                if k is None:  # a face only the gate's detectors found: anonymize it as a face region
                    region = Region(tuple(float(v) for v in f["box"]), score=float(f["detector_score"]), label="face")
                    out, extra, out_alpha = self.apply_with_alpha(out, out_alpha, [region], parts=["verification"], rng=rng)
                    regions.append(region)
                    parts.append("verification")
                    entries.append({**extra[0], "found_by": "release check"})
                    state[len(regions) - 1] = {"action": "added", "step": 0, "history": [_release_state(f)]}
                    continue
                st = state.setdefault(k, {"action": "passed", "step": 0, "history": []})
                st["history"].append(_release_state(f))
                out, out_alpha = self._escalate(original, out, out_alpha, regions[k], parts[k], entries[k], st, texts_after(k), f, rng)
        for k, st in state.items():
            entries[k]["release_check"] = {"action": st["action"], "history": st["history"]}
        record: dict[str, Any] = {"faces": len(faces), "rounds": rounds, "regions_added": len(regions) - regions_in,
                                  "identity": {"attacker": "dlib", "criterion": self.config.identity_criterion},
                                  "residual_threshold": RELEASE_RESIDUAL,
                                  "faces_measured": sum(bool(f["measured"]) for f in faces)}
        if self.config.has_text or self.config.text_review:
            kept = [tuple(float(v) for v in k["box"]) for k in kept_text]
            out, out_alpha, record["text"] = self._release_text(checker, original, out, alpha, out_alpha, regions, kept, cache)
        if self.config.reviews_people:
            record["people_without_faces"] = people_without_faces(original, face_boxes_of(faces), cache=cache)
        measured = original_record(checker, cache)  # what `anonlens check` need not find in this original again
        if measured is not None:
            record["original"] = measured
        return out, out_alpha, record

    def _mask_of(self, region: Region, part: str, shape) -> np.ndarray:
        geometry, margin = self._geometry(region, part)
        return region_mask(region, shape, shape=geometry, margin=margin)

    def _escalate(self, original, out, out_alpha, region: Region, part: str, entry: dict[str, Any], st: dict[str, Any], after_text,
                  face: dict[str, Any], rng) -> tuple[np.ndarray, np.ndarray | None]:
        """One step up for a region whose face still fails the release check: the operator stronger
        (on the verification's schedule), then a solid mask, then the wide mask; past that, fail."""
        mask = self._mask_of(region, part, original.shape)
        params = entry.get("params")
        masked = isinstance(params, dict) and "fallback" in params
        stronger = None
        if not masked and st["step"] < STRENGTHEN_STEPS and isinstance(params, dict):
            st["step"] += 1
            stronger = self.operator.stronger(st.setdefault("base", params), st["step"])
        new = out.copy()
        if stronger is not None:
            candidate = self.operator.apply_params(original, mask, stronger, rng=rng)
            keep = mask & ~after_text
            new[keep] = candidate[keep]
            entry["params"], st["action"] = stronger, "strengthened"
        elif not masked:
            new[mask] = 0
            entry["params"] = {"fallback": "mask", "color": [0, 0, 0], "operator_params": params}
            st["action"] = "masked"
        elif "wide_box_margin" not in params:
            new[mask | region_mask(region, original.shape, shape="box", margin=WIDE_MASK_MARGIN)] = 0
            entry["params"] = {**params, "wide_box_margin": WIDE_MASK_MARGIN}
            st["action"] = "masked"
        else:
            raise AnonlensError(f"the face at {face['box']} still fails the release check under a wide solid mask "
                                f"({_release_why(face)}): nothing written")
        if out_alpha is not None:
            out_alpha = out_alpha.copy()
            out_alpha[(new != out).any(axis=2)] = 255
        return new, out_alpha

    def _release_text(self, checker, original, out, alpha, out_alpha, regions, kept, cache) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
        """The text part of :meth:`verify_release` (``cache``: its :func:`check_pair` cache)."""
        _, texts = check_pair(checker, original, out, text=True, kept=kept, original_alpha=alpha, anonymized_alpha=out_alpha, faces=False,
                              cache=cache)
        if not self.config.has_text:
            readable = [t for t in texts or [] if t["readable"]]
            return out, out_alpha, {"checked": len(texts or []), "readable": len(readable), "boxes": [t["box"] for t in readable]}
        failing = [t for t in texts or [] if t["readable"] or t["detected"]]
        masked = []
        if failing:
            new = out.copy()
            for t in failing:
                box = Region(tuple(float(v) for v in t["box"]), label="text")
                new[region_mask(box, original.shape, shape="box", margin=0.1)] = 0
                masked.append(t["box"])
            if out_alpha is not None:
                out_alpha = out_alpha.copy()
                out_alpha[(new != out).any(axis=2)] = 255
            out = new
            _, texts = check_pair(checker, original, out, text=True, kept=kept, original_alpha=alpha, anonymized_alpha=out_alpha, faces=False,
                                  cache=cache)
            still = [t for t in texts or [] if t["readable"] or t["detected"]]
            if still:
                raise AnonlensError(f"the text at {still[0]['box']} is still {'readable' if still[0]['readable'] else 'detected'} "
                                    "under a solid mask: nothing written")
        return out, out_alpha, {"checked": len(texts or []), "readable": 0, "masked": masked, "boxes": []}

    @property
    def searches_faces(self) -> bool:
        """Whether a face detector runs on the input (face scope, person scope); otherwise (bodies,
        the whole image, user boxes) the verification searches the output for faces."""
        return self.face_detector is not None or (self.detector is not None and self.detector.label == "face")

    def search_faces(self, out: np.ndarray, alpha: np.ndarray | None = None, *, source: str | None = None,
                     rng: np.random.Generator | None = None) -> tuple[np.ndarray, list[dict[str, Any]], np.ndarray | None]:
        """When no face detector ran on the input (:attr:`searches_faces` False) and the verification
        is on: anonymize (and verify) every face the verification's detector finds in ``out``, in its
        colour and in every composited view with ``alpha``. Returns the image, the faces' entries
        (``found_by: verification``) and the alpha."""
        if self.verifier is None or self.searches_faces:
            return out, [], alpha
        faces: list[Region] = []
        views: list[str | None] = []
        for name, view in composite_views(out, alpha):
            for face in self.verifier.faces(view):
                if not any(box_iou(face.box, f.box) > 0.5 for f in faces):
                    faces.append(face)
                    views.append(name)
        if not faces:
            return out, [], alpha
        out, extra, alpha = self.apply_with_alpha(out, alpha, faces, source=source, parts=["verification"] * len(faces), rng=rng)
        _note_views(extra, views)
        return out, extra, alpha

    def detect_views(self, image: np.ndarray, alpha: np.ndarray | None, *,
                     source: str | None = None, skip: frozenset[str] = frozenset()) -> tuple[list[tuple[Region, str]], list[str]]:
        """:meth:`detect_parts` over the colour and, with a non-constant ``alpha``, over every
        composited view (:func:`~anonlens.io.images.composite_views`); a region a view finds again
        (same label, IoU > 0.5) counts once. Returns the regions and the view that found each."""
        found: list[tuple[Region, str]] = []
        views: list[str] = []
        for name, view in composite_views(image, alpha):
            for region, part in self.detect_parts(view, source=source, skip=skip):
                if not any(region.label == r.label and box_iou(region.box, r.box) > 0.5 for r, _ in found):
                    found.append((region, part))
                    views.append(name)
        return found, views

    def _apply_edi(self, original: np.ndarray, current: np.ndarray, mask: np.ndarray, region: Region, rng):
        """EDI inside one region: the oracle learns the person from ``original``; pixels change only
        in ``mask`` of ``current`` (earlier regions already anonymized)."""
        cfg = self.edi
        params = self.operator.params_for(region)
        perturb = lambda img: self.operator(img, mask, region, rng=rng)[0]  # noqa: E731
        whole = region.label == "image"
        target = self.oracle.prepare(original, None if whole else region)
        method, sal_opts = cfg.saliency_for(self.oracle)
        res = edi_anonymize(current, mask, oracle=self.oracle, perturb=perturb, target=target, max_iters=cfg.max_iters,
                            on_fail=cfg.on_fail, saliency=method, saliency_options=sal_opts, q=cfg.q, select=cfg.select, refresh=cfg.refresh,
                            rng=rng if rng is not None else np.random.default_rng(0))
        record = {**res.to_dict(mask), **utility_record(original, res.image, mask), "saliency": method}
        attribute = self.parts.attribute
        if attribute is not None:  # on the face's box (the whole image for aligned faces)
            x1, y1, x2, y2 = (int(round(v)) for v in region.box)
            y1, x1 = max(0, y1), max(0, x1)
            before, after = attribute(original[y1:y2, x1:x2]), attribute(res.image[y1:y2, x1:x2])
            record.update(attribute_original=before, attribute_anonymized=after, attribute_kept=before == after)
        return res.image, params, record

    def find(self, image: np.ndarray, *, alpha: np.ndarray | None = None, source: str | None = None,
             skip: frozenset[str] = frozenset()) -> Found:
        """The regions to anonymize in ``image`` (RGB): :meth:`detect_views` (the scope's detectors
        over the colour and, with a non-constant ``alpha``, every composited view), then
        :meth:`keep_readable` (with ``keep_text``, the matching text regions are split off and
        recorded as kept). ``skip``: parts of the scope not run (:meth:`detect_parts`)."""
        found, seen_in = self.detect_views(image, alpha, source=source, skip=skip)
        views_of = {id(r): v for (r, _), v in zip(found, seen_in)}
        found, kept = self.keep_readable(image, found)
        return Found([r for r, _ in found], [p for _, p in found], [views_of.get(id(r)) for r, _ in found], kept)

    def anonymize_found(
        self, image: np.ndarray, found: Found, *, alpha: np.ndarray | None = None, source: str | None = None,
        rng: np.random.Generator | None = None, rngs: Sequence[np.random.Generator | None] | None = None,
        on_empty: OnEmpty | None = None, release_check: bool = False,
    ) -> AnonymizationResult:
        """Anonymize the ``found`` regions of ``image`` (:meth:`apply_with_alpha`: the operator and
        the verification), then search the output for faces (:meth:`search_faces`); when there is
        nothing to anonymize, apply the ``on_empty`` policy (default: the config's). The one
        per-image step of photos (:meth:`__call__`) and of video frames (their regions from a tracker).

        ``rng`` draws the random operators' noise (default: the operator's generator for
        ``source``); ``rngs``, one per region, replaces it region by region. The result's record
        holds what was done to this image: ``kept_text`` (with ``keep_text``), ``regions`` (the
        found regions' entries in order, then the face search's and the release check's),
        ``full_frame``, ``release_check`` and ``text_review``.

        ``release_check`` (photos, :meth:`__call__`; with the verification on): once every operator
        has run, the release gate's pair check (:meth:`verify_release`)."""
        policy = on_empty or self.config.on_empty
        if rng is None:
            rng = self.operator.rng_for(source) if self.operator.stochastic else None
        record: dict[str, Any] = {}
        if self.parts.recognizer is not None:
            record["kept_text"] = found.kept_text
        whole: list[Region] = []
        whole_entries: list[dict[str, Any]] = []
        if found.regions:
            out, params, out_alpha = self.apply_with_alpha(image, alpha, found.regions, source=source, parts=found.parts, rng=rng, rngs=rngs)
            _note_views(params, found.views)
            regions, parts = list(found.regions), list(found.parts)
            action = "anonymized"
        else:
            # the scope's detector found nothing: in scopes without a face search of their own, the
            # verification's face search still runs, and any face it finds is anonymized
            out, params, out_alpha = image, [], alpha
            regions, parts = [], []
            probe, extra, probe_alpha = self.search_faces(image, alpha, source=source, rng=rng)
            if extra:
                out, out_alpha, action = probe, probe_alpha, "anonymized"
                params, regions, parts = extra, [_region_of(e) for e in extra], ["verification"] * len(extra)
            elif policy == "keep":
                record["regions"] = []
                return AnonymizationResult(image.copy(), [], "kept", record, None if alpha is None else alpha.copy())
            elif policy == "skip":
                record["regions"] = []
                return AnonymizationResult(None, [], "skipped", record)
            else:  # every channel of the whole frame: the alpha becomes opaque everywhere
                whole = [whole_image_region(*image.shape[:2])]
                out, whole_entries, out_alpha = self.apply_with_alpha(image, alpha, whole, source=source, rng=rng)
                record["full_frame"] = whole_entries
                action = "full-frame"
        if found.regions or whole:
            out, extra, out_alpha = self.search_faces(out, out_alpha, source=source, rng=rng)
            params = params + extra
            regions, parts = regions + [_region_of(e) for e in extra], parts + ["verification"] * len(extra)
        if release_check and self.checks_release:
            # the whole frame takes part in the check as a region (a face under it is escalated there)
            all_regions, all_parts, entries = whole + regions, ["main"] * len(whole) + parts, whole_entries + params
            out, out_alpha, record["release_check"] = self.verify_release(image, out, alpha, out_alpha, all_regions, all_parts, entries,
                                                                          kept_text=found.kept_text, rng=rng)
            regions, params = all_regions[len(whole):], entries[len(whole):]
            text = record["release_check"].get("text")
            if text is not None and not self.config.has_text:
                record["text_review"] = {"found": text["readable"], "boxes": text["boxes"]}
        record["regions"] = params
        return AnonymizationResult(out, regions, action, record, out_alpha)

    def __call__(self, image: np.ndarray, *, source: str | None = None, alpha: np.ndarray | None = None) -> AnonymizationResult:
        """Anonymize ``image`` (RGB): :meth:`find`, then :meth:`anonymize_found`; the record starts
        with :meth:`describe`. With ``alpha`` (its ``(H, W)`` uint8 alpha channel), regions are
        also searched for in the composited views and the result's ``alpha`` is opaque over every
        anonymized region (see the module docstring)."""
        image = as_rgb_uint8(image)
        if alpha is not None:
            alpha = np.asarray(alpha)
            if alpha.shape != image.shape[:2] or alpha.dtype != np.uint8:
                raise ValueError(f"alpha must be a uint8 array of shape {image.shape[:2]}, got {alpha.dtype} {alpha.shape}")
        found = self.find(image, alpha=alpha, source=source)
        described = self.describe()
        result = self.anonymize_found(image, found, alpha=alpha, source=source, release_check=True)
        result.record = {**described, **result.record}
        return result


def _residual_in_views(score_at, image: np.ndarray, alpha: np.ndarray | None, box) -> float:
    """``score_at(image, box)`` (a verifier's residual), the highest over the colour and the
    composited views when there is an ``alpha``. The views are made of a crop around ``box`` only
    (the box grown by its size plus 128 px on every side: more than the face and text probes look
    at, so each probe sees the same pixels as on the whole image)."""
    if alpha is None:
        return score_at(image, box)
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    pad = max(x2 - x1, y2 - y1) + 128
    X1, Y1 = max(0, int(np.floor(x1 - pad))), max(0, int(np.floor(y1 - pad)))
    X2, Y2 = min(w, int(np.ceil(x2 + pad))), min(h, int(np.ceil(y2 + pad)))
    shifted = (x1 - X1, y1 - Y1, x2 - X1, y2 - Y1)
    return max(score_at(view, shifted) for _, view in composite_views(image[Y1:Y2, X1:X2], alpha[Y1:Y2, X1:X2]))


#: the last verification's residual threshold (:meth:`Anonymizer.verify_release`): three quarters of
#: the gate's 0.2, so that encoding the output (JPEG) cannot lift a face the anonymizer passed to the
#: gate's threshold (measured on small street faces: 0.16 before encoding, 0.20-0.25 after)
RELEASE_RESIDUAL = 0.15
#: rounds of the last verification before the image fails (strengthen x2, mask, wide mask, and a
#: face that only appears once its neighbour is masked)
RELEASE_ROUNDS = 6


def _release_fails(face: dict[str, Any]) -> bool:
    """Whether the pair check's face record fails the anonymizer's last verification."""
    return bool(face["reidentified"]) or face["residual_score"] >= RELEASE_RESIDUAL or not face.get("region_changed", True)


def _release_state(face: dict[str, Any]) -> dict[str, Any]:
    """One round of a face in the last verification's history."""
    return {"identity": face["identity"], "distance": face["identity_distance"], "rank1": face["rank1"],
            "reidentified": face["reidentified"], "residual_score": face["residual_score"], "changed": face.get("region_changed", True)}


def _release_why(face: dict[str, Any]) -> str:
    if face["reidentified"]:
        return f"re-identified by {face['attacker']}, identity distance {face['identity_distance']}"
    if not face.get("region_changed", True):
        return "its pixels are unchanged"
    return f"residual face score {face['residual_score']:.2f}"


def _covering_region(regions: Sequence[Region], box) -> int | None:
    """The region that covers most of a face's ``box`` (at least half of it), or None."""
    bx1, by1, bx2, by2 = (float(v) for v in box[:4])
    area = max(1e-6, (bx2 - bx1) * (by2 - by1))
    best, best_share = None, 0.5
    for k, r in enumerate(regions):
        x1, y1, x2, y2 = (float(v) for v in r.box)
        inter = max(0.0, min(x2, bx2) - max(x1, bx1)) * max(0.0, min(y2, by2) - max(y1, by1))
        if inter / area >= best_share:
            best, best_share = k, inter / area
    return best


def _note_views(entries: list[dict[str, Any]], views: list[str | None]) -> None:
    """Record, on a region's entry, the composited view that found it when it is not the colour."""
    for entry, view in zip(entries, views):
        if view not in (None, "colour"):
            entry["seen_in"] = view


def _region_of(entry: dict[str, Any]) -> Region:
    return Region(tuple(entry["box"]), float(entry.get("score", 1.0)), entry.get("label", "face"))


def _opts(obj: Any) -> dict[str, Any]:
    return json.loads(json.dumps(obj.options(), default=_jsonable))


def _runtime(detector: Detector) -> dict[str, Any]:
    info = detector.runtime_info()
    return {"runtime": info} if info else {}


def _thaw(options: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}


MODELS.define("anonymizer", size=8)


def cached_anonymizer(config: AnonymizeConfig) -> Anonymizer:
    """One :class:`Anonymizer` per configuration and process, from the model pool (models load once)."""
    return MODELS.get("anonymizer", config, lambda: Anonymizer(config))


def anonymizer_loads() -> int:
    """How many anonymizers this process has built so far (the engines report models loaded per worker)."""
    return MODELS.loads("anonymizer")


def anonymize(
    image: np.ndarray,
    *,
    scope: Scope = "face",
    detector: str | Detector | None = None,
    operator: str | Operator = "blur",
    shape: Shape | None = None,
    margin: float | None = None,
    on_empty: OnEmpty = "keep",
    source: str | None = None,
    detector_options: Mapping[str, Any] | None = None,
    operator_options: Mapping[str, Any] | None = None,
    method: Method = "uniform",
    method_options: Mapping[str, Any] | None = None,
    verify: bool = True,
    keep_text: str | None = None,
) -> AnonymizationResult:
    """Anonymize the faces (``scope="face"``), people (``"body"``), text (``"text"``, or with a
    base scope: ``"face,text"``; ``"all"``: faces, people and text) or whole ``image``.

    Detectors and operators given by name are created once per process and reused; instances
    are used as given. ``image`` is ``(H, W, 3)`` uint8 RGB (see :mod:`anonlens.checks`); the
    input array is never modified. Returns an :class:`AnonymizationResult`.

    ``method="edi"`` runs EDI-Anon in each region: only the pixels that reveal the identity are
    perturbed, until the identity oracle no longer recognises the person (``method_options``: see
    :class:`anonlens.edi.EDIConfig`); each region's record then has an ``edi`` entry.
    """
    if detector is not None and not isinstance(detector, (str, Detector)):
        raise TypeError(f"detector must be a name or a Detector, got {type(detector).__name__}")
    if detector is not None and isinstance(detector, str) and detector not in DETECTORS:
        DETECTORS.get(detector)  # raises the did-you-mean error
    config = AnonymizeConfig(
        scope=scope,
        detector=detector if isinstance(detector, str) else None,
        detector_options=tuple(sorted((detector_options or {}).items())),
        operator=operator if isinstance(operator, str) else operator.name,
        operator_options=tuple(sorted((operator_options or {}).items())),
        shape=shape,
        margin=margin,
        on_empty=on_empty,
        method=method,
        method_options=tuple(sorted((method_options or {}).items())),
        verify=verify,
        keep_text=keep_text,
    )
    if isinstance(detector, Detector) or isinstance(operator, Operator):
        anon = Anonymizer(
            config,
            detector=detector if isinstance(detector, Detector) else None,
            operator=operator if isinstance(operator, Operator) else None,
        )
    else:
        anon = cached_anonymizer(config)
    return anon(image, source=source)


@dataclass
class EncodedResult:
    """What :func:`anonymize_encoded` made of one encoded image."""

    data: bytes | None  #: the anonymized image, encoded without metadata (None: ``on_empty="skip"``)
    record: dict[str, Any]  #: size, formats, notes, then the anonymizer's record, status, nothing_found
    original: np.ndarray  #: the decoded input pixels (RGB)
    image: np.ndarray | None  #: the anonymized pixels
    format: str  #: the output's format (JPEG, PNG, ...)
    original_alpha: np.ndarray | None = None  #: the input's alpha channel (None: none)
    alpha: np.ndarray | None = None  #: the alpha written (None: none, or a format without alpha)


def anonymize_encoded(
    data: bytes,
    config: AnonymizeConfig,
    *,
    name: str,
    out_format: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    keep_metadata: bool = False,
    jpeg_quality: int = 95,
    source: str | None = None,
    note_format_mismatch: bool = True,
) -> EncodedResult:
    """Decode ``data``, anonymize it with ``config`` (models cached per process) and encode the
    result in ``out_format`` (default: the input's format) without metadata: the per-image core of
    the batch runner and of the web service. Fails closed: raises :class:`AnonlensError` (or
    another exception) rather than return anything un-anonymized or carrying metadata; ``name``
    names the image in errors; ``max_pixels=None`` sets no pixel limit. The alpha channel is
    anonymized with the colour (opaque over every anonymized region, see the module docstring)."""
    loaded = decode_image(data, name=name, max_pixels=max_pixels, keep_metadata=keep_metadata)
    if out_format is None:
        out_format = "JPEG" if loaded.format == "MPO" else loaded.format if loaded.format in SUFFIX_BY_FORMAT else "PNG"
    rec: dict[str, Any] = {"size": [int(loaded.rgb.shape[1]), int(loaded.rgb.shape[0])]}
    notes = list(loaded.notes)
    if note_format_mismatch and loaded.format not in (out_format, "MPO" if out_format == "JPEG" else None):
        notes.append(f"the content is {loaded.format}, the name says {out_format}: written as {out_format}, as its name says")
    rec["format"] = {"input": loaded.format, "output": out_format}
    if notes:
        rec["notes"] = notes
    if loaded.decode_errors:  # a damaged input: anonymized from what could be decoded, and listed
        rec["decode_errors"] = list(loaded.decode_errors)
    result = cached_anonymizer(config)(loaded.rgb, source=source, alpha=loaded.alpha)
    rec.update(result.record)
    rec["status"] = result.action
    rec["nothing_found"] = result.empty
    if result.image is None:  # on_empty == "skip"
        return EncodedResult(None, rec, loaded.rgb, None, out_format, loaded.alpha)
    out_alpha = result.alpha if out_format in ALPHA_FORMATS else None
    if loaded.alpha is not None:
        rec["alpha"] = ({"written": True, "made_opaque_pixels": int(((result.alpha == 255) & (loaded.alpha != 255)).sum())}
                        if out_alpha is not None else {"written": False})
    # the output's alpha is the anonymized one, never the input's
    encoded = encode_image(dataclasses.replace(loaded, alpha=out_alpha), result.image, format=out_format,
                           quality=jpeg_quality, keep_metadata=keep_metadata)
    leftover = metadata_problems(encoded, keep_metadata=keep_metadata)
    if leftover:
        allowed = " beyond the --keep-metadata allow-list" if keep_metadata else ""
        raise AnonlensError(f"refusing to write: the encoded output still carries metadata{allowed} ({', '.join(leftover)})")
    return EncodedResult(encoded, rec, loaded.rgb, result.image, out_format, loaded.alpha, out_alpha)
