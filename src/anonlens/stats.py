"""Statistics on plain arrays shared by the layers above: correlations of two columns, the
best-F1 distance threshold. numpy here, scipy imported when called."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["correlations", "calibrate_threshold"]


def correlations(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Spearman, Kendall (tau-b) and Pearson of two columns, without CIs or p-values: ``n``, the
    three values (None when too few rows or a column is constant) and a ``note``.

    Rank correlations keep infinite values (PSNR of an untouched image is +inf, the highest
    rank); Pearson uses the finite rows only. Missing values (NaN: no face found...) are dropped."""
    from scipy import stats

    ok = ~np.isnan(x) & ~np.isnan(y)
    x, y = x[ok], y[ok]
    fin = np.isfinite(x) & np.isfinite(y)
    if len(x) < 3 or len(np.unique(x)) < 2 or len(np.unique(y)) < 2:
        return {"n": int(len(x)), "spearman": None, "kendall": None, "pearson": None, "note": "too few rows or constant"}
    pearson = float(stats.pearsonr(x[fin], y[fin])[0]) if fin.sum() >= 3 and np.ptp(x[fin]) > 0 and np.ptp(y[fin]) > 0 else None
    note = "" if fin.all() else f"Pearson over the {int(fin.sum())} finite rows"
    return {"n": int(len(x)), "spearman": float(stats.spearmanr(x, y)[0]), "kendall": float(stats.kendalltau(x, y)[0]),
            "pearson": pearson, "note": note}


def calibrate_threshold(distances: Sequence[float], same_person: Sequence[bool]) -> tuple[float, float]:
    """The distance threshold with the best F1 for "same person" on labelled pairs: ``(τ, F1)``."""
    d = np.asarray(distances, dtype=np.float64)
    y = np.asarray(same_person, dtype=bool)
    if d.size == 0 or y.all() or not y.any():
        raise ValueError("calibration needs both matching and non-matching labelled pairs")
    best = (float("nan"), -1.0)
    for tau in np.unique(d):
        pred = d <= tau
        tp = np.sum(pred & y)
        f1 = 2 * tp / (pred.sum() + y.sum()) if (pred.sum() + y.sum()) else 0.0
        if f1 > best[1]:
            best = (float(tau), float(f1))
    return best
