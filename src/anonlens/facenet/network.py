"""dlib's face-recognition ResNet (``anet_type`` of dlib's ``dnn_face_recognition_ex.cpp``) in PyTorch,
built from the weights file with :func:`~anonlens.facenet.dlib_format.read_dlib_resnet`.

Input: aligned RGB chips of 150x150 (dlib's ``get_face_chip`` with 5-point landmarks, padding 0.25),
pixels 0..255, normalised as dlib does: (pixel - channel mean) / 256. Output: the 128-d descriptor
(not normalised; dlib's threshold is a Euclidean distance of 0.6).

A 7x7/2 convolution (32) and a 3x3/2 max pool, then residual blocks of 32 (x3), 64 (down, x3), 128
(down, x2), 256 (down, x2) and 256 (down): each block is conv-affine-relu-conv-affine, added to the
shortcut (identity, or a 2x2/2 average pool in a down block), then relu; global average, fc 128.
Batch norm is stored folded into ``affine`` (scale, shift). Strided convolutions and pools have no
padding, 3x3/1 convolutions pad by 1. Where a down block's two branches differ in size (3x3
against 4x4 at the 256 stage), dlib's ``add_prev`` zero-pads the smaller one at the bottom and
right (and missing channels at the end) before adding; so does this module.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .dlib_format import DlibLayer, read_dlib_resnet, read_input_means

__all__ = ["DlibResNet", "CHIP_SIZE"]

CHIP_SIZE = 150
#: (channels, stride of the block's first convolution), from the input outwards
_BLOCKS = [(32, 1)] * 3 + [(64, 2)] + [(64, 1)] * 3 + [(128, 2)] + [(128, 1)] * 2 + [(256, 2)] + [(256, 1)] * 2 + [(256, 2)]


class _Affine(nn.Module):
    def __init__(self, params: torch.Tensor):
        super().__init__()
        self.register_buffer("gamma", params[0].reshape(1, -1, 1, 1).clone())
        self.register_buffer("beta", params[1].reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma + self.beta


def _conv(layer: DlibLayer) -> nn.Conv2d:
    out_c, in_c, k, _ = layer.params.shape
    conv = nn.Conv2d(in_c, out_c, k, stride=layer.stride, padding=layer.padding, bias=layer.bias is not None)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(layer.params))
        if layer.bias is not None:
            conv.bias.copy_(torch.from_numpy(layer.bias))
    return conv


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a + b`` after zero-padding the smaller at the bottom/right and in the last channels (dlib's add_prev)."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class _Block(nn.Module):
    def __init__(self, conv1: nn.Conv2d, aff1: _Affine, conv2: nn.Conv2d, aff2: _Affine, down: bool):
        super().__init__()
        self.conv1, self.aff1, self.conv2, self.aff2, self.down = conv1, aff1, conv2, aff2, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, shortcut))


class DlibResNet(nn.Module):
    """The network; :meth:`from_file` reads dlib's weights file. ``forward`` takes ``(B, 3, 150, 150)``
    RGB chips with pixels 0..255 (float) and returns ``(B, 128)`` descriptors."""

    def __init__(self, layers: list[DlibLayer], means: tuple[float, float, float]):
        super().__init__()
        params = iter(layers)

        def take(kind: str) -> DlibLayer:
            layer = next(params)
            if layer.kind != kind:
                raise ValueError(f"expected a {kind} layer, found {layer.kind}")
            return layer

        self.register_buffer("mean", torch.tensor(means, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.stem = _conv(take("con"))
        self.stem_affine = _Affine(torch.from_numpy(take("affine").params))
        blocks = []
        for channels, stride in _BLOCKS:
            c1 = take("con")
            a1 = _Affine(torch.from_numpy(take("affine").params))
            c2 = take("con")
            a2 = _Affine(torch.from_numpy(take("affine").params))
            if c1.params.shape[0] != channels or c1.stride != stride:
                raise ValueError(f"unexpected block: {c1.params.shape[0]} channels, stride {c1.stride}")
            blocks.append(_Block(_conv(c1), a1, _conv(c2), a2, down=stride == 2))
        self.blocks = nn.Sequential(*blocks)
        self.register_buffer("fc", torch.from_numpy(take("fc").params).clone())  # (256, 128)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path) -> "DlibResNet":
        return cls(read_dlib_resnet(path), read_input_means(path))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips - self.mean) / 256.0
        x = F.relu(self.stem_affine(self.stem(x)))
        x = F.max_pool2d(x, 3, 2)
        x = self.blocks(x)
        return x.mean(dim=(2, 3)) @ self.fc
