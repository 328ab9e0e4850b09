"""A trained PerceptAnon metric (HA1 or HA2 checkpoint) as an assessment metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .base import Metric, PairBatch

__all__ = ["LearnedScore", "SemSimDistance"]


class LearnedScore(Metric):
    """Anonymity predicted by a trained HA1/HA2 model, on the human 1..10 scale (10 = fully
    anonymous, so higher is more private). HA1 checkpoints look at the anonymized image only."""

    name = "learned"
    full_reference = False  # HA2 checkpoints need the original; they say so when it is missing
    more_private = "higher"
    value_range = (1.0, 10.0)
    column_directions = {"learned_score": "higher"}

    def __init__(self, *, checkpoint: str, device: str = "cpu", column: str = "learned_score"):
        from ..learn.checkpoint import load_checkpoint

        self.checkpoint = str(checkpoint)
        self.device = device
        self._column = column
        self._model, self._config = load_checkpoint(Path(checkpoint), device=device)

    @property
    def columns(self):
        return [self._column]

    def _prepare(self, images):
        import torch

        from ..learn.data import normalize

        s = self._config.input_size
        arr = np.stack([np.asarray(Image.fromarray(im).resize((s, s), Image.BILINEAR)) for im in images])
        return normalize(torch.from_numpy(arr).permute(0, 3, 1, 2).to(self.device), self._config.mean, self._config.std)

    def __call__(self, batch: PairBatch):
        import torch

        from ..learn.scoring import to_human_scale

        anon = self._prepare(batch.anonymized_images)
        orig = None
        if self._config.ha == "HA2":
            if batch.original_images is None:
                raise ValueError(f"{self.checkpoint} is an HA2 (pair) model: it needs the original images")
            orig = self._prepare(batch.original_images)
        with torch.inference_mode():
            out = self._model(anon, orig)
        return {self._column: to_human_scale(out, self._config.labels, self._config.task).tolist()}


class SemSimDistance(Metric):
    """SemSim: distance between the embeddings of the original and the anonymized/reconstructed
    image under a trained SemSim model (``anonlens semsim train``). Larger = less similar = more
    private. Unnormalised embeddings by default, as the reference; ``normalize=True`` for the unit
    sphere the model was trained on."""

    name = "semsim"
    full_reference = True
    more_private = "higher"
    value_range = (0.0, float("inf"))

    column_directions = {"semsim": "higher"}

    def __init__(self, *, checkpoint: str, normalize: bool = False, device: str = "cpu", column: str = "semsim"):
        from ..learn.semsim import load_semsim

        self._column = column
        self.checkpoint = str(checkpoint)
        self.normalize = bool(normalize)
        self.device = device
        self._model = load_semsim(checkpoint).to(device)

    def __call__(self, batch: PairBatch):
        from ..learn.semsim import semsim_distances

        if batch.original_images is None:
            raise ValueError("SemSim compares two images: it needs the originals")
        d = semsim_distances(self._model, batch.original_images, batch.anonymized_images, normalize=self.normalize, device=self.device)
        return {self._column: d.tolist()}

    @property
    def columns(self):
        return [self._column]
