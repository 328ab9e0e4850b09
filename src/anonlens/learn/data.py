"""Training data for the learned metrics: images decoded and resized once, kept as uint8."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..assess.pairs import safe_join
from ..io import read_image

__all__ = ["ImageCache", "PairDataset", "augment_pair", "normalize"]


def _load_resized(path: Path, size: int) -> np.ndarray:
    rgb = read_image(path).rgb
    # torchvision's Resize((size, size)) on a PIL image: bilinear with antialiasing, aspect not kept
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))


class ImageCache:
    """Each distinct image path decoded and resized to ``size`` x ``size`` exactly once per run
    (the reference decodes every image every epoch). uint8 in memory: 150 KB per image at 224."""

    def __init__(self, root: str | os.PathLike, size: int):
        self.root = Path(root)
        self.size = int(size)
        self._index: dict[str, int] = {}
        self._images: list[np.ndarray] = []

    def index(self, relative: str) -> int:
        if relative not in self._index:
            self._index[relative] = len(self._images)
            self._images.append(_load_resized(safe_join(self.root, relative), self.size))
        return self._index[relative]

    def tensor(self, indices) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._images[i] for i in indices])).permute(0, 3, 1, 2)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, ImageNet-normalised."""
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x.float().div_(255.0) - m) / s


def augment_pair(anon: torch.Tensor, orig: torch.Tensor | None, generator: torch.Generator):
    """Horizontal flip (p 0.5) and rotation within +-10 degrees, the *same* for both images of a
    pair (the reference draws them independently for the original and the anonymized image,
    which misaligns the pair its Siamese model compares)."""
    import torchvision.transforms.v2.functional as TF

    out_a, out_o = [], []
    for i in range(anon.shape[0]):
        flip = bool(torch.rand(1, generator=generator) < 0.5)
        angle = float(torch.empty(1).uniform_(-10.0, 10.0, generator=generator))
        a = anon[i]
        a = TF.horizontal_flip(a) if flip else a
        out_a.append(TF.rotate(a, angle))
        if orig is not None:
            o = TF.horizontal_flip(orig[i]) if flip else orig[i]
            out_o.append(TF.rotate(o, angle))
    return torch.stack(out_a), (torch.stack(out_o) if orig is not None else None)


class PairDataset:
    """Rows of an annotation frame as cache indices and targets."""

    def __init__(self, df, cache: ImageCache, target_fn, *, need_original: bool):
        self.anon = np.array([cache.index(str(p)) for p in df["anonymized"]])
        self.orig = np.array([cache.index(str(p)) for p in df["original"]]) if need_original else None
        self.scores = df["score_mean"].to_numpy(dtype=np.float64)
        self.targets = np.array([target_fn(s) for s in self.scores])

    def __len__(self) -> int:
        return len(self.anon)
