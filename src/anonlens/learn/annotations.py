"""Human-annotation CSVs (PerceptAnon HA1/HA2), validated before any training starts."""

from __future__ import annotations

import os
from pathlib import Path

from ..assess.pairs import COLUMN_ALIASES, safe_join
from ..errors import AnonlensError
from ..io import read_image

__all__ = ["load_annotations", "check_images"]


def _find(columns, what):
    lower = {str(c).strip().lower(): c for c in columns}
    return next((lower[a] for a in COLUMN_ALIASES[what] if a in lower), None)


def load_annotations(csv_path: str | os.PathLike, *, with_raw: bool = False):
    """Read an HA1/HA2 CSV into a DataFrame with canonical column names ``original``,
    ``anonymized``, ``dataset``, ``scope``, ``method`` (the other columns kept as they are).

    All the reference's spellings are accepted (``original_image_path``/``img1``/first column,
    ``anonymized_image_path``/``img2``/second column, ``source_dataset``/``dataset``). Data-set
    and method values are lower-cased (the reference compares with ``coco``, ``lfw``...).
    ``score_mean`` is required and must lie in [1, 10]. With ``with_raw`` it returns
    ``(df, raw)``, ``raw`` being the file as read (same index), for writing rows back unchanged.
    """
    import pandas as pd

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise AnonlensError(f"annotation CSV not found: {csv_path}")
    raw = pd.read_csv(csv_path)
    df = raw.copy()
    if len(df.columns) < 2:
        raise AnonlensError(f"{csv_path}: needs at least the two image columns")
    rename = {
        (_find(df.columns, "original") or df.columns[0]): "original",
        (_find(df.columns, "anonymized") or df.columns[1]): "anonymized",
    }
    for what in ("dataset", "scope", "method"):
        col = _find(df.columns, what)
        if col is not None:
            rename[col] = what
    df = df.rename(columns=rename)
    if "score_mean" not in df.columns:
        raise AnonlensError(f"{csv_path}: no 'score_mean' column (the mean human score, 1..10)")
    scores = pd.to_numeric(df["score_mean"], errors="coerce")
    bad = df.index[scores.isna() | (scores < 1) | (scores > 10)].tolist()
    if bad:
        raise AnonlensError(f"{csv_path}: score_mean must be a number in [1, 10]; bad rows: {[b + 2 for b in bad[:10]]}")
    df["score_mean"] = scores
    for col in ("dataset", "method", "scope"):
        if col in df.columns:
            df[col] = df[col].astype(str).str.strip().str.lower()
    return (df, raw) if with_raw else df


def check_images(df, root: str | os.PathLike, *, decode: bool = True) -> list[str]:
    """Problems with the image paths of ``df`` under ``root``: outside the root, missing, and
    (with ``decode``) unreadable. One line per problem, listed up front (not at epoch 37)."""
    root = Path(root)
    problems = []
    for i, row in enumerate(df.itertuples(index=False), start=2):
        for col in ("original", "anonymized"):
            rel = getattr(row, col)
            try:
                path = safe_join(root, str(rel))
            except AnonlensError as exc:
                problems.append(f"row {i} {col}: {exc}")
                continue
            if not path.is_file():
                problems.append(f"row {i} {col}: missing file {rel}")
                continue
            if not decode:
                continue
            try:
                read_image(path, max_pixels=50_000_000)
            except AnonlensError as exc:
                problems.append(f"row {i} {col}: {exc}")
    return problems
