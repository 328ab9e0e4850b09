"""Assessment: score anonymized images against their originals, correlate with human judgements."""

from .pairs import Pair, pairs_from_csv, pairs_from_dirs, pairs_from_manifest, safe_join
from .score import ScoreOptions, ScoreResult, calibrate_threshold, rank1_rate, reid_rate, score_pairs

__all__ = [
    "Pair",
    "ScoreOptions",
    "ScoreResult",
    "calibrate_threshold",
    "pairs_from_csv",
    "pairs_from_dirs",
    "pairs_from_manifest",
    "rank1_rate",
    "reid_rate",
    "safe_join",
    "score_pairs",
]
