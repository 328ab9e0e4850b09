"""A-GAN's four rates as a group metric of ``anonlens score`` (``--metrics agan-rates``); the
embedders and the rates live in :mod:`anonlens.generative.agan.evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AnonlensError
from ..generative.agan.evaluate import AGAN_EMBEDDERS, Embedder, evaluate_generated, person_crop
from ..io import read_image
from .group import GroupMetric

__all__ = ["AganRatesMetric"]


class AganRatesMetric(GroupMetric):
    """``anonlens score --metrics agan-rates``: A-GAN's rates for any generated set. Each pair's
    whole image is the person crop (1:2 window, 256x128); per group: τ calibrated on augmented
    pairs of the originals (or ``tau``), then not anonymized (the ``value``), rank-1 recall and
    shared identity; memorisation with ``training`` (a folder of training person crops)."""

    name = "agan-rates"
    more_private = "lower"
    full_reference = True
    level = "group"

    def __init__(self, *, embedder: Any = "dlib-face", tau: float | None = None, variant: str = "correct", training: str | None = None,
                 seed: int = 0, weights: str | None = None):
        if isinstance(embedder, Embedder):  # injected (tests, your own re-identification model)
            self._emb = embedder
        else:
            self._emb = AGAN_EMBEDDERS.create(embedder, **({"weights": weights} if weights else {}))
        self.embedder, self.tau, self.variant, self.training, self.seed = self._emb.name, tau, variant, training, int(seed)
        self._groups: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    @staticmethod
    def _crops(images) -> list[np.ndarray]:
        arr = (images.detach().cpu().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        return [person_crop(a, (0, 0, a.shape[1], a.shape[0])) for a in arr]

    def update(self, group: str, original, anonymized) -> None:
        o, a = self._groups.setdefault(group, ([], []))
        o.extend(self._crops(original))
        a.extend(self._crops(anonymized))

    def compute(self) -> dict[str, dict[str, Any]]:
        training = None
        if self.training:
            files = sorted(p for p in Path(self.training).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            training = [person_crop(im, (0, 0, im.shape[1], im.shape[0])) for im in (read_image(p).rgb for p in files)]
        out = {}
        for group, (o, a) in sorted(self._groups.items()):
            try:
                r = evaluate_generated(o, a, self._emb, training=training, tau=self.tau, variant=self.variant, seed=self.seed)
                out[group] = {"n": r["n"], "value": r["not_anonymized"], **{k: r[k] for k in (
                    "rank1_recall", "memorisation", "shared_identity", "tau", "n_without", "embedder", "standin")}}
            except (AnonlensError, ValueError) as exc:
                out[group] = {"n": len(o), "value": None, "error": str(exc)}
        return out
