"""A-GAN's four rates over person embeddings, with the threshold τ calibrated by best F1.

For generated persons ``g_i`` made from originals ``o_i`` (row ``i`` of each matrix), with cosine
distance ``d`` and threshold ``τ`` (a pair is "the same person" when ``d <= τ``, the rule the
calibration uses):

- **not anonymized**: share of ``i`` with ``d(g_i, o_i) <= τ``;
- **rank-1 recall**: share of ``i`` whose nearest original (over all originals) is ``o_i`` (a tie
  with another original counts: the attacker may pick the source);
- **memorisation**: share of ``i`` within ``τ`` of *any* training person;
- **shared identity**: share of ``i`` within ``τ`` of at least one *other* generated person.

The reference (``kaleighdouglas/AnonymizePeopleGAN``, REFERENCE.md §4) differs in two ways,
kept as named variants (``variant="reference"``): it scores with a strict ``<`` although it
calibrates with ``<=``, and its shared-identity count counts only the first of each close pair.
It also rounds distances to 4 decimals (``decimals=4``). τ is never the reference's 0.22 by
default: it must be calibrated for the embedder in use (:func:`anonlens.assess.score.calibrate_threshold`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["AganRates", "agan_rates", "cosine_distances"]

Variant = Literal["correct", "reference"]


def cosine_distances(a: np.ndarray, b: np.ndarray, *, decimals: int | None = None) -> np.ndarray:
    """``1 - cos(a_i, b_j)`` for every row pair, ``(len(a), len(b))`` (torchreid's "cosine"
    metric); ``decimals`` rounds as the reference does (4)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings must be 2-D with the same width; got {a.shape} and {b.shape}")
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    d = 1.0 - an @ bn.T
    return np.round(d, decimals) if decimals is not None else d


@dataclass(frozen=True)
class AganRates:
    not_anonymized: float
    rank1_recall: float
    memorisation: float | None
    shared_identity: float
    tau: float
    n: int
    variant: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def agan_rates(
    originals: np.ndarray,
    generated: np.ndarray,
    training: np.ndarray | None = None,
    *,
    tau: float,
    variant: Variant = "correct",
    decimals: int | None = None,
) -> AganRates:
    """The four rates (module docstring) for ``generated[i]`` made from ``originals[i]``;
    ``training`` (embeddings of the training persons) for memorisation (None: not computed)."""
    originals, generated = np.asarray(originals), np.asarray(generated)
    if len(originals) != len(generated) or len(generated) == 0:
        raise ValueError(f"need one original per generated person; got {len(originals)} and {len(generated)}")
    if variant not in ("correct", "reference"):
        raise ValueError(f"variant must be 'correct' or 'reference'; got {variant!r}")
    close = (lambda d: d < tau) if variant == "reference" else (lambda d: d <= tau)
    n = len(generated)
    to_orig = cosine_distances(generated, originals, decimals=decimals)
    own = np.diag(to_orig)
    not_anon = float(np.mean(close(own)))
    rank1 = float(np.mean(own <= to_orig.min(axis=1)))
    memo = None
    if training is not None and len(training):
        memo = float(np.mean(close(cosine_distances(generated, np.asarray(training), decimals=decimals)).any(axis=1)))
    among = cosine_distances(generated, generated, decimals=decimals)
    pairs = close(among)
    np.fill_diagonal(pairs, False)
    if variant == "reference":  # only the first of each close pair is counted
        shared = float(np.triu(pairs, 1).any(axis=1).sum() / n)
    else:
        shared = float(pairs.any(axis=1).mean())
    return AganRates(not_anon, rank1, memo, shared, float(tau), n, variant)
