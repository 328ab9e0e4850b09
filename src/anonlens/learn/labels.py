"""Label granularities of PerceptAnon, exactly as the reference defines them.

Scores are human means in [1, 10] (10 = fully anonymous).

========== ============================================= ===========
name       classes                                       outputs
========== ============================================= ===========
mean       (score - 1) / 9, regression only              1
labels10   round(score) - 1 (halves to even, as Python)  10
labels5    <3, [3,5), [5,7), [7,9), >=9                   5
labels3    <5, [5,8), >=8                                 3
binary     score > 5 -> 0 (anonymous), else 1             2
========== ============================================= ===========

For regression on a class label the index is normalised to ``index / (N - 1)`` (binary: 0/1).
"""

from __future__ import annotations

from typing import Callable

from ..errors import AnonlensError

__all__ = ["LABEL_GRANULARITIES", "label_transform", "num_outputs", "label_index", "ORIGINAL_PATTERN"]

LABEL_GRANULARITIES = {"mean": 1, "labels10": 10, "labels5": 5, "labels3": 3, "binary": 2}
#: SemSim folders: the file names that mark each identity's original (the rest are its anonymized
#: versions); here, not in :mod:`~anonlens.learn.semsim`, so that the CLI reads it without torch
ORIGINAL_PATTERN = r"(?i)^(orig|original|gt|ground[_-]?truth)([_.-]|$)"


def label_index(score: float, granularity: str) -> int:
    """The class index of ``score`` for a class granularity."""
    s = float(score)
    if granularity == "labels10":
        return int(round(s)) - 1
    if granularity == "labels5":
        return sum(s >= cut for cut in (3.0, 5.0, 7.0, 9.0))
    if granularity == "labels3":
        return sum(s >= cut for cut in (5.0, 8.0))
    if granularity == "binary":
        return 0 if s > 5.0 else 1
    raise AnonlensError(f"'{granularity}' has no classes; use one of labels10, labels5, labels3, binary")


def label_transform(granularity: str, task: str) -> Callable[[float], float | int]:
    """score -> training target for ``task`` ``"classification"`` (class index) or
    ``"regression"`` (a float in [0, 1])."""
    if granularity not in LABEL_GRANULARITIES:
        raise AnonlensError(f"unknown label granularity '{granularity}'; use one of {', '.join(LABEL_GRANULARITIES)}")
    if task not in ("classification", "regression"):
        raise AnonlensError(f"task must be classification or regression, got '{task}'")
    if granularity == "mean":
        if task == "classification":
            raise AnonlensError("labels 'mean' is for regression only")
        return lambda s: (float(s) - 1.0) / 9.0
    n = LABEL_GRANULARITIES[granularity]
    if task == "classification":
        return lambda s: label_index(s, granularity)
    if granularity == "binary":
        return lambda s: float(label_index(s, granularity))
    return lambda s: label_index(s, granularity) / (n - 1)


def num_outputs(granularity: str, task: str) -> int:
    """1 for regression, the number of classes for classification."""
    return 1 if task == "regression" else LABEL_GRANULARITIES[granularity]
