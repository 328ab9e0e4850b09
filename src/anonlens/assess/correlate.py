"""Correlation of metric columns with human judgements, overall and per group.

For each metric column: Spearman's rho, Kendall's tau-b and Pearson's r (scipy.stats, with their
p-values) and paired-bootstrap 95 % confidence intervals (scipy.stats.bootstrap, percentile).
``agreement`` is rho with its sign made meaningful: positive when the metric and the humans agree
on which images are more anonymous (using each metric's declared direction and the human scale's).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import AnonlensError
from ..metrics import column_directions
from ..stats import correlations

__all__ = ["correlate", "correlation_row", "correlations", "CorrelationOptions"]


@dataclass(frozen=True)
class CorrelationOptions:
    human: str = "score_mean"
    human_higher_is_private: bool = True  # PerceptAnon: 10 = fully anonymous
    by: tuple[str, ...] = ("dataset", "method")
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    min_pairs: int = 3


def _stats(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    rho = stats.spearmanr(x, y)
    tau = stats.kendalltau(x, y, variant="b")
    r = stats.pearsonr(x, y)
    return {
        "spearman": float(rho.statistic), "spearman_p": float(rho.pvalue),
        "kendall": float(tau.statistic), "kendall_p": float(tau.pvalue),
        "pearson": float(r.statistic), "pearson_p": float(r.pvalue),
    }


def _bootstrap_ci(x: np.ndarray, y: np.ndarray, options: CorrelationOptions) -> dict[str, float]:
    out: dict[str, float] = {}
    if options.bootstrap <= 0 or len(x) < 4:
        return out
    functions = {
        "spearman": lambda a, b: stats.spearmanr(a, b).statistic,
        "kendall": lambda a, b: stats.kendalltau(a, b, variant="b").statistic,
        "pearson": lambda a, b: stats.pearsonr(a, b).statistic,
    }
    for name, fn in functions.items():
        with warnings.catch_warnings():  # resamples of small groups can be constant: those give NaN
            warnings.simplefilter("ignore")
            res = stats.bootstrap(
                (x, y), fn, paired=True, vectorized=False, n_resamples=options.bootstrap,
                confidence_level=options.confidence, method="percentile", rng=np.random.default_rng(options.seed),
            )
        out[f"{name}_ci_low"] = float(res.confidence_interval.low)
        out[f"{name}_ci_high"] = float(res.confidence_interval.high)
    return out


def correlation_row(metric: np.ndarray, human: np.ndarray, options: CorrelationOptions, direction: str | None) -> dict:
    """Statistics of one metric column against the human column (NaN rows dropped)."""
    m = np.asarray(metric, dtype=np.float64)
    h = np.asarray(human, dtype=np.float64)
    ok = np.isfinite(m) & np.isfinite(h)
    m, h = m[ok], h[ok]
    row: dict = {"n": int(ok.sum()), "direction": direction or "unknown"}
    if row["n"] < options.min_pairs or np.ptp(m) == 0 or np.ptp(h) == 0:
        row["note"] = "too few pairs or a constant column"
        return row
    row.update(_stats(m, h))
    row.update(_bootstrap_ci(m, h, options))
    if direction in ("higher", "lower"):
        sign = (1 if direction == "higher" else -1) * (1 if options.human_higher_is_private else -1)
        row["agreement"] = sign * row["spearman"]
    return row


def correlate(table, options: CorrelationOptions | None = None, *, metrics: Sequence[str] | None = None):
    """Correlation table (a pandas DataFrame) of every metric column of ``table`` against the human
    column, for all rows and for each value of each ``by`` column present."""
    options = options or CorrelationOptions()
    df = table if isinstance(table, pd.DataFrame) else pd.read_csv(table)
    if options.human not in df.columns:
        raise AnonlensError(f"human column '{options.human}' not in the table; columns: {', '.join(map(str, df.columns))}")
    directions = column_directions()
    if metrics is None:
        metrics = [c for c in df.columns if c in directions and c != "reidentified"]
    missing = [c for c in metrics if c not in df.columns]
    if missing:
        raise AnonlensError(f"metric column(s) not in the table: {', '.join(missing)}")
    if not metrics:
        raise AnonlensError("no metric columns to correlate; name them with --metrics")
    groups: list[tuple[str, str, pd.DataFrame]] = [("all", "all", df)]
    for col in options.by:
        if col in df.columns:
            for value, sub in df.groupby(col, dropna=True):
                if str(value).strip():
                    groups.append((col, str(value), sub))
    rows = []
    for by, value, sub in groups:
        h = pd.to_numeric(sub[options.human], errors="coerce").to_numpy()
        for metric in metrics:
            m = pd.to_numeric(sub[metric], errors="coerce").to_numpy()
            rows.append({"group_by": by, "group": value, "metric": metric, **correlation_row(m, h, options, directions.get(metric))})
    return pd.DataFrame(rows)


def iter_markdown(df, columns: Iterable[str] = ("group_by", "group", "metric", "n", "spearman", "kendall", "pearson", "agreement")):
    cols = [c for c in columns if c in df.columns]
    yield "| " + " | ".join(cols) + " |"
    yield "|" + "---|" * len(cols)
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            cells.append(f"{v:.3f}" if isinstance(v, float) and np.isfinite(v) else ("" if v is None or (isinstance(v, float) and not np.isfinite(v)) else str(v)))
        yield "| " + " | ".join(cells) + " |"
