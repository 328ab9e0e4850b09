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

from ..errors import AnonlensError
from ..registry import Registry

__all__ = ["VICTIM_ARCHS", "CIFAR_MEAN", "CIFAR_STD", "Victim", "load_victim", "build_arch"]

#: the normalisation ATSPrivacy uses for its CIFAR-100 victims (inversefed's CIFAR-10 constants)
CIFAR_MEAN = (0.4914672374725342, 0.4822617471218109, 0.4467701315879822)
CIFAR_STD = (0.24703224003314972, 0.24348513782024384, 0.26158785820007324)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs: 3x3 stride-1 stem without max-pool, one stage per entry of
    ``blocks`` (widths double, strides 1, 2, 2, ...), global average pool, linear head."""

    def __init__(self, blocks: tuple[int, ...], width: int, num_classes: int):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        stages, cin = [], width
        for i, n in enumerate(blocks):
            cout, stride = width * 2**i, 1 if i == 0 else 2
            layers = []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or cin != cout):
                    down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                layers.append(BasicBlock(cin, cout, stride if j == 0 else 1, down))
                cin = cout
            stages.append(nn.Sequential(*layers))
        self.layers = nn.ModuleList(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for stage in self.layers:
            x = stage(x)
        return self.fc(torch.flatten(self.pool(x), 1))


class LeNetZhu(nn.Module):
    """DLG's LeNet: three 5x5 sigmoid convolutions (strides 2, 2, 1) and one linear layer; weights
    uniform in [-0.5, 0.5] as in the DLG code. Input 32x32."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 12, 5, stride=2, padding=2), nn.Sigmoid(),
            nn.Conv2d(12, 12, 5, stride=2, padding=2), nn.Sigmoid(),
            nn.Conv2d(12, 12, 5, stride=1, padding=2), nn.Sigmoid(),
        )
        self.fc = nn.Linear(768, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.uniform_(m.weight, -0.5, 0.5)
                nn.init.uniform_(m.bias, -0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


VICTIM_ARCHS: Registry[nn.Module] = Registry("victim architecture")
VICTIM_ARCHS.add("resnet20-4", lambda *, num_classes: CifarResNet((3, 3, 3), 64, num_classes),
                 summary="CIFAR ResNet-20 at 4x width (Inverting Gradients / ATSPrivacy's ResNet20-4), 32x32.")
VICTIM_ARCHS.add("cifar-resnet18", lambda *, num_classes: CifarResNet((2, 2, 2, 2), 64, num_classes),
                 summary="ResNet-18 with the CIFAR stem (3x3, no max-pool), 32x32.")
VICTIM_ARCHS.add("lenet-zhu", lambda *, num_classes: LeNetZhu(num_classes),
                 summary="DLG's sigmoid LeNet (3 conv + 1 linear), 32x32.")


def build_arch(name: str, num_classes: int) -> nn.Module:
    return VICTIM_ARCHS.create(name, num_classes=num_classes)


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
    from ..edi.classifier import load_identity_classifier

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
    from ..weights import load_state_dict

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
            from ..registry import suggest

            raise AnonlensError(f"unknown torchvision classification model '{arch}'."
                                f"{suggest(arch, torchvision.models.list_models(module=torchvision.models))}")
        if state is None:
            raise AnonlensError(f"{text}: give its weights (--victim-weights FILE, safetensors or a weights-only checkpoint)")
        n = num_classes or _num_classes(state)
        model = torchvision.models.get_model(arch, weights=None, num_classes=n)
        mean, std, size = IMAGENET_MEAN, IMAGENET_STD, input_size or 224
    else:
        if text not in VICTIM_ARCHS.names():
            from ..registry import suggest

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
