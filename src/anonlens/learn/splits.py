"""The PerceptAnon reference splits, row for row.

Stratum of a row: ``round(score_mean)`` (pandas: halves to even) mapped 1..4 -> 0 and 5..10 ->
1..6. All splits use scikit-learn's ``train_test_split(..., stratify=strata, random_state=seed)``
with the reference's sizes (computed with the same float expressions, since the test size is
rounded up from ``size * n``):

- ``all``: 20 % test; then 25 % of the rest as validation (60/20/20);
- ``loov-<dataset>``: every row of that data set is the test set; the rest split 75/25;
- ``anon-<method>``: the same with the anonymization method;
- ``task-person`` (COCO + VOC) / ``task-face`` (LFW + CelebA): only that task's rows; 60 % train,
  the remaining 40 % split 50/50 into validation and test. Before that second split, a stratum
  with at most one row is relabelled to the stratum above it, as the reference does (counts taken
  once, before relabelling).

**Fixed reference bug**: that relabelling can leave a single row in a new top stratum (for example
one row of stratum 6 becomes a lone stratum 7), and scikit-learn then refuses to split ("The least
populated class in y has only 1 member"). anonlens then moves such a lone row into the highest
stratum below it that has rows. Whenever the reference succeeds, anonlens gives the same rows; it
only differs where the reference crashes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..errors import AnonlensError
from ..io import atomic_writer

__all__ = ["strata", "make_split", "available_splits", "write_splits", "SEED", "TASK_DATASETS"]

SEED = 42
_TRAIN, _VAL, _TEST = 0.6, 0.2, 0.2
TASK_DATASETS = {"person": ("coco", "voc"), "face": ("celeba", "lfw")}


def strata(scores) -> "pd.Series":  # noqa: F821
    """The reference's stratum (0..6) for each mean score."""
    rounded = scores.round().astype(int)
    return rounded.where(rounded > 4, 4) - 4


def _split(df, test_size: float, seed: int):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(df, test_size=test_size, stratify=df["_stratum"], random_state=seed)
    except ValueError as exc:
        raise AnonlensError(f"cannot split {len(df)} rows stratified by score: {exc}") from None


def _merge_small_strata(df):
    """The reference's relabelling (counts taken once; a stratum of <= 1 row becomes +1), then the
    fix for a lone row left at the top."""
    df = df.copy()
    counts = df["_stratum"].value_counts()
    for s in sorted(counts.index):
        if counts[s] <= 1:
            df.loc[df["_stratum"] == s, "_stratum"] = s + 1
    counts = df["_stratum"].value_counts()
    for s in sorted(counts.index, reverse=True):
        if counts[s] <= 1:
            lower = [t for t in counts.index if t < s and counts[t] > 0]
            if lower:
                df.loc[df["_stratum"] == s, "_stratum"] = max(lower)
                counts = df["_stratum"].value_counts()
    return df


def make_split(df, split: str, *, seed: int = SEED):
    """``(train, val, test)`` DataFrames of split ``split`` (see the module docstring)."""
    df = df.copy()
    df["_stratum"] = strata(df["score_mean"])
    val_of_rest = _VAL / (_TRAIN + _VAL)
    if split == "all":
        rest, test = _split(df, _TEST, seed)
        train, val = _split(rest, val_of_rest, seed)
    elif split.startswith(("loov-", "anon-")):
        column = "dataset" if split.startswith("loov-") else "method"
        value = split.split("-", 1)[1].lower()
        if column not in df.columns:
            raise AnonlensError(f"split '{split}' needs a '{column}' column")
        test = df[df[column] == value]
        if test.empty:
            raise AnonlensError(f"split '{split}': no row has {column} '{value}'; present: {sorted(df[column].unique())}")
        train, val = _split(df[df[column] != value], val_of_rest, seed)
    elif split.startswith("task-"):
        task = split.split("-", 1)[1]
        if task not in TASK_DATASETS:
            raise AnonlensError(f"unknown task '{task}'; use task-person or task-face")
        part = df[df["dataset"].isin(TASK_DATASETS[task])]
        if part.empty:
            raise AnonlensError(f"split '{split}': no rows from {', '.join(TASK_DATASETS[task])}")
        train, val_test = _split(part, _VAL + _TEST, seed)
        val, test = _split(_merge_small_strata(val_test), _TEST / (_VAL + _TEST), seed)
    else:
        raise AnonlensError(f"unknown split '{split}'; use all, loov-<dataset>, anon-<method>, task-person, task-face")
    return tuple(part.drop(columns="_stratum") for part in (train, val, test))


def available_splits(df) -> list[str]:
    """Every split that makes sense for the values present in ``df``."""
    names = ["all"]
    if "dataset" in df.columns:
        present = set(df["dataset"].unique())
        names += [f"task-{t}" for t, ds in TASK_DATASETS.items() if present & set(ds)]
        names += [f"loov-{d}" for d in sorted(present)]
    if "method" in df.columns:
        names += [f"anon-{m}" for m in sorted(df["method"].unique())]
    return names


def write_splits(
    df, out_dir: str | os.PathLike, name: str, splits: Iterable[str] | None = None, *, seed: int = SEED, raw=None
) -> dict[str, dict[str, int]]:
    """Write ``out_dir/dataset_splits/<name>/<split>/{train,val,test}.csv``; returns the row counts.

    With ``raw`` (the CSV exactly as read, same index), the files hold the original columns and
    values, as the reference writes them; otherwise the canonical columns of ``df``. A split that
    cannot be made (too few rows in a score stratum) gets ``{"error": ...}`` and the others go on.
    """
    out = Path(out_dir) / "dataset_splits" / name
    counts = {}
    for split in splits or available_splits(df):
        try:
            parts = make_split(df, split, seed=seed)
        except AnonlensError as exc:
            counts[split] = {"error": str(exc)}  # too few rows for this split: the others go on
            continue
        counts[split] = {}
        for part_name, part in zip(("train", "val", "test"), parts):
            rows = raw.loc[part.index] if raw is not None else part
            with atomic_writer(out / split / f"{part_name}.csv") as fh:
                fh.write(rows.to_csv(index=False).encode("utf-8"))
            counts[split][part_name] = len(part)
    return counts
