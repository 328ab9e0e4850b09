"""SemSim (Sun et al., NeurIPS 2023): a triplet embedding trained on human judgements of whether a
reconstructed image still shows the original's content.

Data layout (the reference's): ``<id>/`` holds the original and the reconstructions people
recognised, ``-<id>/`` the reconstructions they did not recognise, ``others/`` fallback negatives.
The original is the file in ``<id>/`` (or ``-<id>/``) whose name matches ``original_pattern``.

Training (the reference's hyperparameters): a CIFAR-style ResNet-18 from scratch (3x3 stem, no
max-pool), ``fc`` replaced by identity (512-d), ``TripletMarginLoss(margin=1.0, p=2)`` on
L2-normalised embeddings, SGD lr 0.05 Nesterov (momentum 0.9) weight decay 5e-4, 100 epochs, batch
64, 32x32 inputs with random crop (padding 4) and horizontal flip. Triplets: the anchor is any image
of a signed folder, the positive another image of the same folder, the negative an image of the
opposite-sign folder (or of ``others/`` when that is empty or missing).

Score: the Euclidean distance between the embeddings of the original and the reconstruction.
The reference does **not** L2-normalise at scoring time, and neither does anonlens by default
(``normalize=True`` measures on the unit sphere the loss was trained on). Larger = less similar =
more private.

Correlation with people: per attack configuration (set level, as the reference): human value
``1 - recognised / total``, metric the mean over the configuration's images; and per image (metric
against recognised 0/1).
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import AnonlensError
from ..io import atomic_writer, discover_inputs, read_image
from ..stats import correlations
from ..weights import load_state_dict
from .checkpoint import read_model_files, write_model_files
from .labels import ORIGINAL_PATTERN

__all__ = [
    "SemSimConfig", "SemSimModel", "SemSimData", "SemSimTrainOptions", "load_semsim_folders", "train_semsim",
    "save_semsim", "load_semsim", "semsim_distances", "semsim_table", "set_level_correlation", "image_level_correlation",
]

CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class SemSimConfig:
    input_size: int = 32
    width: int = 64  # channels of the first stage (64 = ResNet-18); smaller for quick CPU runs
    mean: tuple[float, float, float] = CIFAR100_MEAN
    std: tuple[float, float, float] = CIFAR100_STD


def cifar_resnet18(width: int = 64) -> nn.Module:
    """torchvision's ResNet-18 made CIFAR-style: 3x3 stride-1 stem, no max-pool, fc = identity."""
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    if width != 64:
        from torchvision.models.resnet import BasicBlock, ResNet

        class _R(ResNet):
            def __init__(self):
                nn.Module.__init__(self)
                self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
                self._norm_layer = nn.BatchNorm2d
                self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
                self.bn1 = nn.BatchNorm2d(width)
                self.relu = nn.ReLU(inplace=True)
                self.maxpool = nn.MaxPool2d(3, 2, 1)
                self.layer1 = self._make_layer(BasicBlock, width, 2)
                self.layer2 = self._make_layer(BasicBlock, 2 * width, 2, stride=2)
                self.layer3 = self._make_layer(BasicBlock, 4 * width, 2, stride=2)
                self.layer4 = self._make_layer(BasicBlock, 8 * width, 2, stride=2)
                self.avgpool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Linear(8 * width, 1000)

        net = _R()
    net.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


class SemSimModel(nn.Module):
    def __init__(self, config: SemSimConfig = SemSimConfig()):
        super().__init__()
        self.config = config
        self.net = cifar_resnet18(config.width)

    @property
    def dim(self) -> int:
        return 8 * self.config.width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def to_uint8(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 RGB images -> ``(N, 3, S, S)`` uint8 (area-resized to the input size)."""
        s = self.config.input_size
        arrs = [im if im.shape[:2] == (s, s) else cv2.resize(im, (s, s), interpolation=cv2.INTER_AREA) for im in images]
        return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(self.config.mean, device=x.device).view(1, 3, 1, 1)
        s = torch.tensor(self.config.std, device=x.device).view(1, 3, 1, 1)
        return (x.float() / 255.0 - m) / s

    @torch.no_grad()
    def embed(self, images: Sequence[np.ndarray], *, device: str = "cpu", batch: int = 256) -> torch.Tensor:
        self.eval()
        out = []
        for s in range(0, len(images), batch):
            out.append(self(self.normalise(self.to_uint8(images[s : s + batch]).to(device))).float().cpu())
        return torch.cat(out) if out else torch.empty(0, self.dim)


def save_semsim(model: SemSimModel, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    return write_model_files(model, path, {"kind": "semsim", "config": asdict(model.config), **(extra or {})})


def load_semsim(path: str | os.PathLike) -> SemSimModel:
    """Load ``path.safetensors`` + ``path.json`` (a SemSim model); pickles are refused."""
    weights, doc = read_model_files(path, kind="semsim", what="SemSim model (made by `anonlens semsim train`)")
    c = doc["config"]
    model = SemSimModel(SemSimConfig(input_size=int(c["input_size"]), width=int(c["width"]), mean=tuple(c["mean"]), std=tuple(c["std"])))
    model.load_state_dict(load_state_dict(weights))
    return model.eval()


@dataclass
class SemSimData:
    """The folder layout, read: images per signed folder, the original of each id, ``others``."""

    root: Path
    folders: dict[str, list[Path]]  # "<id>" and "-<id>" -> image files (the original excluded)
    originals: dict[str, Path]  # "<id>" (unsigned) -> the original
    others: list[Path] = field(default_factory=list)

    def opposite(self, folder: str) -> str:
        return folder[1:] if folder.startswith("-") else f"-{folder}"


def load_semsim_folders(root: str | os.PathLike, *, original_pattern: str = ORIGINAL_PATTERN) -> SemSimData:
    root = Path(root)
    if not root.is_dir():
        raise AnonlensError(f"{root}: not a folder (expected <id>/, -<id>/ and others/ sub-folders)")
    pat = re.compile(original_pattern)
    folders: dict[str, list[Path]] = {}
    originals: dict[str, Path] = {}
    others: list[Path] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = [f.path for f in discover_inputs([sub]) if f.supported]
        if sub.name == "others":
            others = files
            continue
        key = sub.name.lstrip("-")
        kept = []
        for f in files:
            if pat.search(f.stem):
                if key in originals:
                    raise AnonlensError(f"{sub}: more than one original for id '{key}' ({originals[key].name}, {f.name})")
                originals[key] = f
            else:
                kept.append(f)
        folders[sub.name] = kept
    if not folders:
        raise AnonlensError(f"{root}: no <id>/ or -<id>/ folders")
    missing = sorted({k.lstrip("-") for k in folders} - set(originals))
    if missing:
        raise AnonlensError(f"{root}: no original (a file named like '{original_pattern}') for id(s) {', '.join(missing[:10])}")
    return SemSimData(root, folders, originals, others)


@dataclass(frozen=True)
class SemSimTrainOptions:
    epochs: int = 100
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    margin: float = 1.0
    input_size: int = 32
    width: int = 64
    seed: int = 0
    device: str = "cpu"


def _triplets(data: SemSimData, index: dict[Path, int], rng: np.random.Generator) -> np.ndarray:
    """One epoch of (anchor, positive, negative) indices: every image of a signed folder (its
    original included in ``<id>/``) is an anchor once."""
    rows = []
    for name, files in data.folders.items():
        members = list(files) + ([data.originals[name]] if not name.startswith("-") else [])
        if len(members) < 2:
            continue
        negs = data.folders.get(data.opposite(name)) or data.others
        if not negs:
            continue
        for a in members:
            p = a
            while p == a:
                p = members[rng.integers(len(members))]
            rows.append((index[a], index[p], index[negs[rng.integers(len(negs))]]))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop with 4 px zero padding and horizontal flip (torchvision's CIFAR recipe)."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=gen)
    dx = torch.randint(0, 9, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        c = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out[i] = c.flip(2) if flip[i] else c
    return out


def train_semsim(
    root: str | os.PathLike,
    output: str | os.PathLike,
    options: SemSimTrainOptions = SemSimTrainOptions(),
    *,
    original_pattern: str = ORIGINAL_PATTERN,
    progress: Callable[[dict], None] | None = None,
) -> tuple[Path, list[dict]]:
    """Train SemSim on the folder layout; writes ``output.safetensors``/``.json`` and
    ``output.metrics.csv``; returns the weights path and the per-epoch log."""
    data = load_semsim_folders(root, original_pattern=original_pattern)
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    gen = torch.Generator().manual_seed(options.seed)
    model = SemSimModel(SemSimConfig(input_size=options.input_size, width=options.width)).to(options.device)
    paths = sorted({p for fs in data.folders.values() for p in fs} | set(data.originals.values()) | set(data.others))
    index = {p: i for i, p in enumerate(paths)}
    images = model.to_uint8([read_image(p).rgb for p in paths])  # decoded once, 32x32 uint8
    if len(_triplets(data, index, np.random.default_rng(0))) == 0:
        raise AnonlensError(f"{root}: no triplet can be formed (each folder needs 2 images and a negative folder or others/)")
    opt = torch.optim.SGD(model.parameters(), lr=options.lr, momentum=options.momentum, nesterov=True, weight_decay=options.weight_decay)
    loss_fn = nn.TripletMarginLoss(margin=options.margin, p=2)
    history = []
    for epoch in range(1, options.epochs + 1):
        model.train()
        trip = _triplets(data, index, rng)
        trip = trip[rng.permutation(len(trip))]
        total, count = 0.0, 0
        for s in range(0, len(trip), options.batch_size):
            t = torch.from_numpy(trip[s : s + options.batch_size])
            if len(t) < 2:
                continue  # BatchNorm needs two samples
            x = model.normalise(_augment(images[t.reshape(-1)], gen).to(options.device))
            emb = nn.functional.normalize(model(x), dim=1).view(len(t), 3, -1)
            loss = loss_fn(emb[:, 0], emb[:, 1], emb[:, 2])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(t)
            count += len(t)
        row = {"epoch": epoch, "triplet_loss": total / max(1, count), "triplets": int(count)}
        history.append(row)
        if progress:
            progress(row)
    out = Path(output)
    weights = save_semsim(model.cpu(), out, extra={"options": asdict(options), "history": history})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["epoch", "triplet_loss", "triplets"])
    w.writeheader()
    w.writerows(history)
    with atomic_writer(weights.with_suffix(".metrics.csv")) as fh:
        fh.write(buf.getvalue().encode())
    return weights, history


def semsim_distances(model: SemSimModel, originals: Sequence[np.ndarray], reconstructions: Sequence[np.ndarray], *,
                     normalize: bool = False, device: str = "cpu") -> np.ndarray:
    """Euclidean distance between the embeddings of each original and its reconstruction
    (unnormalised embeddings by default, as the reference)."""
    a = model.to(device).embed(list(originals), device=device)
    b = model.embed(list(reconstructions), device=device)
    if normalize:
        a, b = nn.functional.normalize(a, dim=1), nn.functional.normalize(b, dim=1)
    return (a - b).norm(dim=1).numpy().astype(np.float64)


def semsim_table(data: SemSimData, *, config_pattern: str = r"^(.*?)_[^_]*$"):
    """One row per reconstruction: original, reconstruction, recognised (1 in ``<id>/``, 0 in
    ``-<id>/``), id, and the attack configuration (first group of ``config_pattern`` on the file
    stem; default: everything before the last ``_``)."""
    pat = re.compile(config_pattern)
    rows = []
    for name, files in data.folders.items():
        key = name.lstrip("-")
        for f in files:
            m = pat.search(f.stem)
            rows.append({"id": key, "original": str(data.originals[key]), "reconstruction": str(f),
                         "recognised": 0 if name.startswith("-") else 1, "config": m.group(1) if m else f.stem})
    return pd.DataFrame(rows)


def set_level_correlation(table, metric: str = "semsim") -> dict:
    """The reference's set-level correlation: per configuration, human = 1 - recognised/total and
    the metric's mean; Spearman, Kendall and Pearson over the configurations."""
    g = table.groupby("config").agg(human=("recognised", lambda r: 1 - r.sum() / len(r)), value=(metric, "mean"), n=(metric, "size"))
    return {"level": "set", "metric": metric, **correlations(g["value"].to_numpy(dtype=float), g["human"].to_numpy(dtype=float)),
            "per_config": g.reset_index().to_dict(orient="records")}


def image_level_correlation(table, metric: str = "semsim") -> dict:
    """Per image: the metric against not-recognised (1 - recognised), so that positive = agrees."""
    return {"level": "image", "metric": metric,
            **correlations(table[metric].to_numpy(dtype=float), 1.0 - table["recognised"].to_numpy(dtype=float))}
