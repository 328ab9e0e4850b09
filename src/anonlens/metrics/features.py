"""Feature extractors for group metrics (FID, KID): the standard FID InceptionV3 (pool3, 2048-d),
or any ``nn.Module`` the caller injects (tests use a tiny one; offline users can use their own)."""

from __future__ import annotations

import torch
from torch import nn

from ..weights import load_state_dict, resolve_weights

__all__ = ["FIDInceptionV3", "build_fid_inception"]


def build_fid_inception(*, weights: str | None = None, allow_download: bool = False, random_weights: bool = False) -> nn.Module:
    """The FID Inception network (pytorch-fid's port of the TensorFlow graph), weights loaded
    safely from the weights registry ('fid-inception-v3')."""
    from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2, _inception_v3

    net = _inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE_1(1280)
    net.Mixed_7c = FIDInceptionE_2(2048)
    if not random_weights:
        net.load_state_dict(load_state_dict(resolve_weights("fid-inception-v3", path=weights, allow_download=allow_download)))
    return net


class FIDInceptionV3(nn.Module):
    """``(B, 3, H, W)`` in [0, 1] -> ``(B, 2048)`` pool3 features, computed as pytorch-fid does
    (bilinear resize to 299x299, scaling to [-1, 1])."""

    def __init__(self, net: nn.Module | None = None, **build_options):
        super().__init__()
        n = net if net is not None else build_fid_inception(**build_options)
        self.blocks = nn.Sequential(
            n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            n.Conv2d_3b_1x1, n.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
            n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d, n.Mixed_6e,
            n.Mixed_7a, n.Mixed_7b, n.Mixed_7c, nn.AdaptiveAvgPool2d(output_size=(1, 1)),
        )
        self.eval()

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.blocks(2 * x - 1).flatten(1)
