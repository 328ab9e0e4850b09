"""LPIPS (Zhang et al. 2018) with torchmetrics' network, weights from the weights registry.

Inputs are always scaled from [0, 1] to [-1, 1] before the network (the mistake of feeding [0, 1]
images to LPIPS is common; here the caller cannot make it: images come in as uint8 or [0, 1]).
The ImageNet backbone (alex, vgg or squeeze) is a torchvision weights file; the linear layers ship
with torchmetrics. Both load with ``weights_only=True``. Offline, without the backbone file, the
error names it and where to put it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..weights import load_state_dict, resolve_weights
from .base import Metric, PairBatch

if TYPE_CHECKING:
    import torch

__all__ = ["LPIPS", "build_lpips"]

_BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def build_lpips(
    net: Literal["alex", "vgg", "squeeze"] = "alex",
    *,
    backbone_weights: str | None = None,
    random_backbone: bool = False,
    allow_download: bool = False,
) -> "torch.nn.Module":
    """torchmetrics' LPIPS network for ``net`` with its weights loaded safely."""
    import torchvision
    from torchmetrics.functional.image.lpips import _LPIPS

    if net not in _BACKBONES:
        raise ValueError(f"net must be one of {', '.join(_BACKBONES)}; got {net!r}")
    model = _LPIPS(pretrained=False, net=net, pnet_rand=True)
    model.load_state_dict(load_state_dict(resolve_weights(f"lpips-lin-{net}")), strict=False)
    if not random_backbone:
        path = resolve_weights(f"torchvision-{_BACKBONES[net]}", path=backbone_weights, allow_download=allow_download)
        tv = getattr(torchvision.models, _BACKBONES[net])(weights=None)
        tv.load_state_dict(load_state_dict(path))
        copy_backbone(model, tv.features)
    return model.eval()


def copy_backbone(model: torch.nn.Module, features: torch.nn.Sequential) -> None:
    """Load torchvision ``features`` into the LPIPS network's slices (same layer indices)."""
    slices = model.net.slices if hasattr(model.net, "slices") else model.net.children()  # squeeze keeps a list
    for slice_ in slices:
        for index, module in slice_.named_children():
            module.load_state_dict(features[int(index)].state_dict())


class LPIPS(Metric):
    """Learned perceptual distance (higher: more different from the original)."""

    name = "lpips"
    more_private = "higher"
    value_range = (0.0, 1.0)

    def __init__(
        self,
        *,
        net: Literal["alex", "vgg", "squeeze"] = "alex",
        backbone_weights: str | None = None,
        random_backbone: bool = False,
        allow_download: bool = False,
        device: str = "cpu",
    ):
        self.net = net
        self.random_backbone = bool(random_backbone)
        self.device = device
        self._column = "lpips" if net == "alex" else f"lpips-{net}"
        self._model = build_lpips(
            net, backbone_weights=backbone_weights, random_backbone=random_backbone, allow_download=allow_download
        ).to(device)

    @property
    def columns(self):
        return [self._column]

    def info(self):
        return {**super().info(), "name": self._column}

    def __call__(self, batch: PairBatch):
        import torch

        with torch.inference_mode():
            values = self._model(batch.original.to(self.device), batch.anonymized.to(self.device), normalize=True)
        return {self._column: values.reshape(-1).double().cpu().tolist()}
