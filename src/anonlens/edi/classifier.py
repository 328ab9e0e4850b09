"""Identity (or attribute) classifiers: the white-box attacker of EDI-Anon, trained on a
folder-per-class data set (``root/<identity>/*.jpg``) by ``anonlens train-identity``.

The same model serves as an attribute classifier (age group, gender...) for the utility check:
train it on ``root/<attribute value>/`` folders. Checkpoints are safetensors + JSON, like the
learned metrics'.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as Fn
from torch import nn

from ..errors import AnonlensError
from ..io import discover_inputs, read_image
from ..learn.archs import CIFAR_MEAN, CIFAR_STD, VICTIM_ARCHS, build_arch
from ..learn.checkpoint import read_model_files, write_model_files
from ..learn.models import build_backbone
from ..registry import suggest
from ..weights import load_state_dict

__all__ = [
    "IdentityConfig",
    "IdentityClassifier",
    "save_identity_classifier",
    "load_identity_classifier",
    "folder_dataset",
    "train_identity",
    "IDENTITY_ARCHS",
    "IdentityTrainOptions",
    "attribute_predictor",
    "IdentityTrainResult",
]

IDENTITY_ARCHS = ("tiny", "resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0", "vgg11", "densenet121")


@dataclass(frozen=True)
class IdentityConfig:
    arch: str = "resnet18"
    classes: tuple[str, ...] = ()
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _tiny(num_classes: int) -> nn.Module:
    """A small CNN for CPU work and tests (a few hundred thousand parameters)."""

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2))

    return nn.Sequential(
        block(3, 32), block(32, 64), block(64, 128), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes),
    )


def square_unit_tensor(images: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """uint8 RGB images -> ``(N, 3, size, size)`` float tensor in ``[0, 1]``; each image resized
    (area when shrinking, bilinear when enlarging) only when it is not that size already."""
    arrs = []
    for img in images:
        if img.shape[:2] != (size, size):
            interp = cv2.INTER_AREA if min(img.shape[:2]) > size else cv2.INTER_LINEAR
            img = cv2.resize(img, (size, size), interpolation=interp)
        arrs.append(img)
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float().div_(255.0)


class IdentityClassifier(nn.Module):
    """Image -> identity logits. ``preprocess`` turns uint8 RGB images into the model's input."""

    def __init__(self, config: IdentityConfig, *, pretrained: bool = False, weights: str | None = None):
        super().__init__()
        if config.arch not in IDENTITY_ARCHS + tuple(VICTIM_ARCHS.names()):
            known = list(IDENTITY_ARCHS + tuple(VICTIM_ARCHS.names()))
            raise AnonlensError(f"unknown identity classifier architecture '{config.arch}'.{suggest(config.arch, known)} Known: {', '.join(known)}")
        if len(config.classes) < 2:
            raise AnonlensError(f"an identity classifier needs at least 2 classes, got {len(config.classes)}")
        self.config = config
        n = len(config.classes)
        if config.arch == "tiny":
            self.net = _tiny(n)
        elif config.arch in VICTIM_ARCHS:
            if config.arch == "lenet-zhu" and config.input_size != 32:
                raise AnonlensError(f"lenet-zhu takes 32x32 inputs (its linear layer is fixed); got input size {config.input_size}")
            self.net = build_arch(config.arch, n)
        else:
            backbone, dim = build_backbone(config.arch, pretrained=pretrained, weights=weights)
            self.net = nn.Sequential(backbone, nn.Linear(dim, n))

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 RGB images -> normalised ``(N, 3, S, S)`` float tensor (resized only when needed)."""
        return self.normalize(self.to_unit(images))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` tensor -> the model's normalised input."""
        mean = torch.tensor(self.config.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def to_unit(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 RGB images -> ``(N, 3, S, S)`` float tensor in ``[0, 1]`` (resized only when needed)."""
        return square_unit_tensor(images, self.config.input_size)

    def cam_layer(self) -> nn.Module:
        """The last convolutional stage (for Grad-CAM)."""
        if self.config.arch == "tiny":
            return self.net[3]
        if self.config.arch == "lenet-zhu":
            return self.net.body[-2]
        if self.config.arch in VICTIM_ARCHS:
            return self.net.layers[-1]
        b = self.net[0]
        if self.config.arch.startswith("resnet"):
            return b.layer4[-1]
        return b.features[-1]


def save_identity_classifier(model: IdentityClassifier, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    return write_model_files(model, path, {"kind": "identity-classifier", "config": asdict(model.config), **(extra or {})})


def load_identity_classifier(path: str | os.PathLike) -> IdentityClassifier:
    """Load ``path.safetensors`` + ``path.json``; pickles are refused."""
    weights, doc = read_model_files(path, kind="identity-classifier", what="identity classifier (made by `anonlens train-identity`)")
    cfg = doc["config"]
    config = IdentityConfig(arch=cfg["arch"], classes=tuple(cfg["classes"]), input_size=int(cfg["input_size"]),
                            mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))
    model = IdentityClassifier(config)
    model.load_state_dict(load_state_dict(weights))
    return model.eval()


def attribute_predictor(path: str | os.PathLike) -> Callable[[np.ndarray], str]:
    """A classifier from ``train-identity`` (e.g. trained on age-group or gender folders) as a
    function image -> predicted class name, for the utility check "is the attribute kept"."""
    model = load_identity_classifier(path)

    def predict(image: np.ndarray) -> str:
        with torch.no_grad():
            return model.classes[int(model(model.preprocess([image])).argmax(1)[0])]

    return predict


def folder_dataset(root: str | os.PathLike) -> tuple[list[Path], list[int], list[str]]:
    """``root/<class>/**/image`` -> (paths, class indices, class names sorted by name)."""
    root = Path(root)
    if not root.is_dir():
        raise AnonlensError(f"{root}: not a folder (expected one sub-folder per identity)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels = [], []
    for i, name in enumerate(classes):
        found = [f.path for f in discover_inputs([root / name]) if f.supported]
        paths += found
        labels += [i] * len(found)
    if len(classes) < 2 or not paths:
        raise AnonlensError(f"{root}: need at least 2 class folders with images, found {len(classes)} folders and {len(paths)} images")
    return paths, labels, classes


@dataclass(frozen=True)
class IdentityTrainOptions:
    arch: str = "resnet18"
    input_size: int = 224
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    pretrained: bool = True
    weights: str | None = None
    seed: int = 0
    device: str = "cpu"
    #: input normalisation; None: CIFAR's for the 32x32 victim architectures, ImageNet's otherwise
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


@dataclass
class IdentityTrainResult:
    checkpoint: Path
    val_accuracy: float | None
    train_accuracy: float
    history: list[dict] = field(default_factory=list)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random crop of 90-100 % resized back, per image."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    out = torch.empty_like(x)
    for i in range(n):
        s = float(0.9 + 0.1 * torch.rand(1, generator=gen))
        ch, cw = max(1, int(h * s)), max(1, int(w * s))
        y0 = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        x0 = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        out[i] = Fn.interpolate(x[i : i + 1, :, y0 : y0 + ch, x0 : x0 + cw], size=(h, w), mode="bilinear", align_corners=False)[0]
    return out


def train_identity(
    root: str | os.PathLike,
    output: str | os.PathLike,
    options: IdentityTrainOptions = IdentityTrainOptions(),
    *,
    progress: Callable[[int, dict], None] | None = None,
) -> IdentityTrainResult:
    """Train a folder-per-identity classifier (images decoded once, kept in memory) and save the
    best-validation checkpoint (last epoch when there is no validation set)."""
    paths, labels, classes = folder_dataset(root)
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    labels_arr = np.array(labels)
    val_idx: list[int] = []
    for c in range(len(classes)):  # stratified: the same share of each identity held out
        idx = rng.permutation(np.flatnonzero(labels_arr == c))
        k = int(round(len(idx) * options.val_fraction)) if len(idx) > 1 else 0
        val_idx += idx[:k].tolist()
    val_set = set(val_idx)
    train_idx = [i for i in range(len(paths)) if i not in val_set]
    norm = {}
    if options.arch in VICTIM_ARCHS:
        norm = {"mean": CIFAR_MEAN, "std": CIFAR_STD}
    norm.update({k: tuple(v) for k, v in (("mean", options.mean), ("std", options.std)) if v is not None})
    config = IdentityConfig(arch=options.arch, classes=tuple(classes), input_size=options.input_size, **norm)
    from_scratch = options.arch == "tiny" or options.arch in VICTIM_ARCHS
    model = IdentityClassifier(config, pretrained=options.pretrained and not from_scratch, weights=options.weights)
    images = model.preprocess([read_image(p).rgb for p in paths])  # decoded and resized once
    y = torch.as_tensor(labels_arr)
    model = model.to(options.device)
    opt = torch.optim.Adam(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    gen = torch.Generator().manual_seed(options.seed)
    best, history = None, []
    out_path = Path(output)

    def accuracy(idx: list[int]) -> float:
        model.eval()
        correct = 0
        with torch.no_grad():
            for s in range(0, len(idx), 256):
                b = idx[s : s + 256]
                correct += int((model(images[b].to(options.device)).argmax(1).cpu() == y[b]).sum())
        return correct / max(1, len(idx))

    for epoch in range(1, options.epochs + 1):
        model.train()
        order = torch.randperm(len(train_idx), generator=gen).tolist()
        total = 0.0
        for s in range(0, len(order), options.batch_size):
            b = [train_idx[i] for i in order[s : s + options.batch_size]]
            if len(b) < 2 and len(order) > 1:
                continue  # BatchNorm needs two samples
            xb = _augment(images[b], gen).to(options.device)
            loss = nn.functional.cross_entropy(model(xb), y[b].to(options.device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        row = {"epoch": epoch, "train_loss": total / max(1, len(train_idx))}
        if val_idx:
            row["val_accuracy"] = accuracy(val_idx)
        history.append(row)
        if progress:
            progress(epoch, row)
        key = row.get("val_accuracy", epoch)
        if best is None or key > best or not val_idx:
            best = key
            weights = save_identity_classifier(model, out_path, extra={"epoch": epoch, "history": history})
    model = load_identity_classifier(weights).to(options.device)  # the best epoch's weights
    return IdentityTrainResult(weights, accuracy(val_idx) if val_idx else None, accuracy(train_idx), history)
