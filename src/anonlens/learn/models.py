"""PerceptAnon models: HA1 (a CNN on the anonymized image) and HA2 (a Siamese network on the
(original, anonymized) pair), over torchvision backbones, in a model registry.

- HA1: the backbone with its last layer replaced by ``Linear(features, outputs)``;
- HA2: one shared backbone (last layer removed) embeds both images; ``[orig, anon]`` are
  concatenated -> ``Linear(2D, 512)`` -> ReLU -> ``Linear(512, outputs)``. Works with every
  backbone, ViT included (the reference's HA2 crashes with ViT).

With one output (regression) a sigmoid maps the output to [0, 1]. ImageNet weights come from the
weights registry (offline: a clear error naming the file), or ``pretrained=False``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import AnonlensError
from ..registry import Registry, suggest
from ..weights import load_state_dict, resolve_weights

__all__ = ["BACKBONES", "MODELS", "build_backbone", "HA1Model", "HA2Model", "create_model", "ModelConfig"]

_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _remap_densenet(state: dict) -> dict:
    """Old DenseNet checkpoints name layers 'norm.1'; current torchvision 'norm1'."""
    out = {}
    for key, value in state.items():
        m = _DENSENET_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def _last_linear(model: nn.Module, arch: str) -> tuple[nn.Module, str]:
    """The parent module and attribute name of the backbone's final classification layer."""
    if arch.startswith("resnet"):
        return model, "fc"
    if arch.startswith("densenet"):
        return model, "classifier"
    if arch.startswith(("vgg", "alexnet")):
        return model.classifier, "6"
    if arch.startswith(("mobilenet", "efficientnet")):
        return model.classifier, "1"
    if arch.startswith("vit"):
        return model.heads, "head"
    raise AnonlensError(f"no rule for the last layer of '{arch}'")


BACKBONES = ("resnet18", "resnet50", "resnet152", "densenet121", "vgg11", "alexnet", "vit_b_16", "mobilenet_v2", "efficientnet_b0")


def build_backbone(arch: str, *, pretrained: bool = True, weights: str | None = None, allow_download: bool = False) -> tuple[nn.Module, int]:
    """The torchvision network ``arch`` with its last layer replaced by ``Identity``, and the
    feature size it then outputs. ImageNet weights are loaded (safely) when ``pretrained``."""
    import torchvision

    if arch not in BACKBONES:
        raise AnonlensError(f"unknown backbone '{arch}'.{suggest(arch, list(BACKBONES))} Known: {', '.join(BACKBONES)}")
    model = getattr(torchvision.models, arch)(weights=None)
    if pretrained:
        path = resolve_weights(f"torchvision-{arch}", path=weights, allow_download=allow_download)
        state = load_state_dict(path)
        model.load_state_dict(_remap_densenet(state) if arch.startswith("densenet") else state)
    parent, name = _last_linear(model, arch)
    last = getattr(parent, name) if not name.isdigit() else parent[int(name)]
    dim = last.in_features
    if name.isdigit():
        parent[int(name)] = nn.Identity()
    else:
        setattr(parent, name, nn.Identity())
    return model, dim


@dataclass(frozen=True)
class ModelConfig:
    """What defines a model; saved beside its weights."""

    ha: Literal["HA1", "HA2"] = "HA1"
    backbone: str = "resnet50"
    labels: str = "mean"
    task: Literal["regression", "classification"] = "regression"
    outputs: int = 1
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class HA1Model(nn.Module):
    """Anonymity from the anonymized image alone."""

    def __init__(self, backbone: nn.Module, dim: int, outputs: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(dim, outputs)
        self.outputs = outputs

    def forward(self, anonymized: torch.Tensor, original: torch.Tensor | None = None) -> torch.Tensor:
        out = self.head(self.backbone(anonymized))
        return torch.sigmoid(out) if self.outputs == 1 else out


class HA2Model(nn.Module):
    """Anonymity of a pair: one shared backbone embeds both images."""

    def __init__(self, backbone: nn.Module, dim: int, outputs: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Linear(2 * dim, 512), nn.ReLU(inplace=True), nn.Linear(512, outputs))
        self.outputs = outputs

    def forward(self, anonymized: torch.Tensor, original: torch.Tensor | None = None) -> torch.Tensor:
        if original is None:
            raise AnonlensError("an HA2 model needs the original image as well")
        both = self.backbone(torch.cat([original, anonymized], dim=0))
        emb_orig, emb_anon = both.chunk(2, dim=0)
        out = self.head(torch.cat([emb_orig, emb_anon], dim=1))
        return torch.sigmoid(out) if self.outputs == 1 else out


MODELS: Registry[nn.Module] = Registry("model")


def _factory(cls):
    def make(*, backbone: str = "resnet50", outputs: int = 1, pretrained: bool = True, weights: str | None = None,
             allow_download: bool = False) -> nn.Module:
        net, dim = build_backbone(backbone, pretrained=pretrained, weights=weights, allow_download=allow_download)
        return cls(net, dim, int(outputs))

    make.__doc__ = cls.__doc__
    return make


MODELS.add("HA1", _factory(HA1Model), summary="CNN on the anonymized image (PerceptAnon HA1).")
MODELS.add("HA2", _factory(HA2Model), summary="Siamese network on the (original, anonymized) pair (PerceptAnon HA2).")


def create_model(config: ModelConfig, *, pretrained: bool = True, weights: str | None = None, allow_download: bool = False) -> nn.Module:
    return MODELS.create(config.ha, backbone=config.backbone, outputs=config.outputs, pretrained=pretrained,
                         weights=weights, allow_download=allow_download)
