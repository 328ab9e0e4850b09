"""Verified outputs: the checks an anonymized image must pass, shared by the anonymizer and the gate.

- :mod:`.residual`: re-detection of a face in each anonymized region (:class:`FaceVerifier`) and the
  strengthening schedule the anonymizer applies while a region still detects.
- :mod:`.release`: the pair check (:func:`check_pair`): every face of the original judged in the
  anonymized image (identity, residual detection, untouched pixels) and every text region (still
  legible, still detected). The release gate, ``score``, the report, the service and the
  anonymizer's last verification (once every operator of a photo has run) all call it, so an
  ``anonymize`` run that exits 0 writes outputs that ``check`` passes.
"""

from .release import (
    DEFAULT_ATTACKERS,
    LEGIBLE_CHARS,
    LEGIBLE_CONFIDENCE,
    TEXT_SIMILARITY,
    AttackerSpec,
    PairChecker,
    check_pair,
    check_text,
    face_record,
    identity_figures,
    legible,
    face_boxes_of,
    face_turn,
    original_cache,
    original_record,
    people_without_faces,
    pair_checker,
    parse_attacker,
    region_changed,
    text_regions,
)
from .residual import STRENGTHEN_STEPS, WIDE_MASK_MARGIN, FaceVerifier, covers

__all__ = ["FaceVerifier", "STRENGTHEN_STEPS", "WIDE_MASK_MARGIN", "covers", "PairChecker", "pair_checker", "check_pair", "check_text",
           "face_record", "region_changed", "identity_figures", "parse_attacker", "AttackerSpec", "DEFAULT_ATTACKERS", "TEXT_SIMILARITY",
           "LEGIBLE_CHARS", "LEGIBLE_CONFIDENCE", "legible", "people_without_faces", "face_boxes_of",
           "original_record", "original_cache", "face_turn", "text_regions"]
