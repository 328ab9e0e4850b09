"""The classifiers a gradient-inversion attack targets ("victims").

Three sources, one :class:`Victim`:

- a checkpoint of ``anonlens attack train-victim`` or ``anonlens train-identity`` (safetensors + JSON,
  classes, input size and normalisation recorded);
- a built-in architecture by name (``resnet20-4``, ``cifar-resnet18``, ``lenet-zhu``), untrained with a
  seeded initialisation (the reference attacks untrained models too) or with ``weights=``;
- ``torchvision:<arch>`` (any torchvision classification model) with a state-dict file through the
  weights registry (safetensors or a ``weights_only`` checkpoint).

The built-in architectures are the ones the reconstruction literature attacks: the CIFAR-style
ResNet20-4 and ResNet-18 of Inverting Gradients / ATSPrivacy (3x3 stem, no max-pool) and the
sigmoid LeNet of DLG.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..edi.classifier import load_identity_classifier
from ..errors import AnonlensError
from ..learn.archs import CIFAR_MEAN, CIFAR_STD, IMAGENET_MEAN, IMAGENET_STD, VICTIM_ARCHS, build_arch  # noqa: F401  (re-exported)
from ..registry import suggest
from ..weights import load_state_dict

__all__ = ["VICTIM_ARCHS", "CIFAR_MEAN", "CIFAR_STD", "Victim", "load_victim", "build_arch"]


@dataclass
class Victim:
    """A classifier under attack: the module (eval mode), its class names and its input."""

    model: nn.Module
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    source: str
    #: False for a built-in or torchvision victim: its classes are numbers until images name them
    named: bool = True

    def name_classes(self, labels: Sequence[str]) -> dict[str, int]:
        """For a victim without class names: the images' class names, sorted, become classes
        0, 1, ... (as torchvision's ImageFolder numbers them). Returns the mapping used."""
        names = sorted({lab for lab in labels if lab not in self.classes})
        if self.named or not names:
            return {}
        if len(names) > len(self.classes):
            raise AnonlensError(f"{len(names)} classes among the images, the victim has {len(self.classes)} outputs (give --classes)")
        self.classes = names + [str(i) for i in range(len(names), len(self.classes))]
        return {n: i for i, n in enumerate(names)}

    def label_index(self, name: str) -> int:
        """A class name (or an index written as a number) -> its index."""
        if name in self.classes:
            return self.classes.index(name)
        if name.isdigit() and int(name) < len(self.classes):
            return int(name)
        shown = ", ".join(self.classes[:8]) + (" ..." if len(self.classes) > 8 else "")
        raise AnonlensError(f"label '{name}' is not a class of the victim ({len(self.classes)} classes: {shown})")

    def _mean_std(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(torch.tensor(v, device=x.device, dtype=x.dtype).view(1, -1, 1, 1) for v in (self.mean, self.std))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images -> the victim's input."""
        m, s = self._mean_std(x)
        return (x - m) / s

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The victim's input -> ``[0, 1]`` images (not clamped)."""
        m, s = self._mean_std(x)
        return x * s + m


def _checkpoint_victim(path: Path) -> Victim:
    clf = load_identity_classifier(path)
    c = clf.config
    return Victim(clf.net, list(c.classes), tuple(c.mean), tuple(c.std), int(c.input_size), f"checkpoint {path}")


def _num_classes(state: dict) -> int:
    heads = [v for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) == 2]
    if not heads:
        raise AnonlensError("cannot tell the number of classes from the weights (no linear layer); give classes=")
    return int(heads[-1].shape[0])


def load_victim(spec: str | os.PathLike, *, weights: str | os.PathLike | None = None, num_classes: int | None = None,
                input_size: int | None = None, seed: int = 0) -> Victim:
    """Build the victim named by ``spec`` (see the module docstring)."""
    text = str(spec)
    path = Path(text)
    if path.suffix in (".json", ".safetensors") or Path(text + ".json").is_file() or path.is_file():
        if weights is not None:
            raise AnonlensError(f"{text}: a checkpoint carries its weights; --victim-weights is for built-in or torchvision architectures")
        return _checkpoint_victim(path)
    state = load_state_dict(weights) if weights is not None else None
    if text.startswith("torchvision:"):
        import torchvision

        arch = text.split(":", 1)[1]
        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise AnonlensError(f"unknown torchvision classification model '{arch}'."
                                f"{suggest(arch, torchvision.models.list_models(module=torchvision.models))}")
        if state is None:
            raise AnonlensError(f"{text}: give its weights (--victim-weights FILE, safetensors or a weights-only checkpoint)")
        n = num_classes or _num_classes(state)
        model = torchvision.models.get_model(arch, weights=None, num_classes=n)
        mean, std, size = IMAGENET_MEAN, IMAGENET_STD, input_size or 224
    else:
        if text not in VICTIM_ARCHS.names():
            raise AnonlensError(f"victim '{text}' is neither a checkpoint file nor a built-in architecture "
                                f"({', '.join(VICTIM_ARCHS.names())}) nor torchvision:<arch>.{suggest(text, VICTIM_ARCHS.names())}")
        n = num_classes or (_num_classes(state) if state is not None else 10)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_arch(text, n)
        mean, std, size = CIFAR_MEAN, CIFAR_STD, input_size or 32
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise AnonlensError(f"{weights}: does not fit {text}: {first}") from None
    source = f"{text} ({'weights ' + str(weights) if weights is not None else f'untrained, seed {seed}'})"
    return Victim(model.eval(), [str(i) for i in range(n)], mean, std, size, source, named=False)
