"""A-GAN's networks (REFERENCE.md §4), written for anonlens with the reference's layer order, so
that the reference's state dicts (``best_net_G.pth`` and the discriminators) load by name.

- :class:`UnetGenerator`: pix2pix's U-Net (``unet_256``: 8 downsamplings, ``unet_128``: 7), ngf 64,
  BatchNorm, dropout 0.5 in the ``ngf*8`` middle blocks, an optional 4th input channel for the
  person mask (+1 outside the box, -1 inside) and *decoder noise*: at every decoder level but the
  outermost, one N(0, 0.8) scalar per (sample, channel), 256 channels at the bottleneck and 128
  elsewhere, repeated over the feature map, concatenated and mapped back by a 1x1 transposed
  convolution. ``diff_map=True`` is the two-stage model's residual generator:
  ``tanh(net(x) + atanh(x_rgb))`` with its last up-convolution initialised to zero (it starts as
  the identity); ``x_rgb`` is clamped inside (-1, 1) first, which the reference does not (``atanh``
  of an exact ±1 is infinite).
- :class:`NLayerDiscriminator`: the pix2pix PatchGAN.
- :class:`SPPDiscriminator`: the person discriminator on the box crop, spatial-pyramid max pooling
  at levels (4, 2, 1) (``spp``, 21 logits) or (2, 1) (``spp_128``, 5); a crop too small for the
  pyramid is a clear error, not the reference's crash.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from ...errors import AnonlensError
from ...registry import Registry

__all__ = ["AGAN_NETWORKS", "UnetGenerator", "NLayerDiscriminator", "SPPDiscriminator", "DecoderNoise", "init_weights"]

NOISE_STD = 0.8


class DecoderNoise(nn.Module):
    """Concatenate ``channels`` noise maps: one N(0, 0.8) value per (sample, channel), constant
    over the map (no parameters: the reference's ``AddNoise``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = int(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape[0], self.channels, 1, 1, device=x.device, dtype=x.dtype) * NOISE_STD
        return torch.cat([x, noise.expand(-1, -1, x.shape[2], x.shape[3])], 1)


class _Block(nn.Module):
    """One U-Net level: down, the inner levels, (noise), up, with the skip connection. The
    ``model`` Sequential holds the layers in the reference's order (state-dict names)."""

    def __init__(self, outer: int, inner: int, *, in_ch: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, dropout: bool = False, noise: bool = False):
        super().__init__()
        self.outermost = outermost
        in_ch = outer if in_ch is None else in_ch
        down = nn.Conv2d(in_ch, inner, 4, 2, 1, bias=False)
        if outermost:
            layers: list[nn.Module] = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1)]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down]
            if noise:
                layers += [DecoderNoise(256), nn.ConvTranspose2d(inner + 256, inner, 1, 1, 0, bias=False)]
            layers += [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, nn.BatchNorm2d(inner), sub]
            if noise:
                layers += [DecoderNoise(128), nn.ConvTranspose2d(inner * 2 + 128, inner * 2, 1, 1, 0, bias=False)]
            layers += [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)  # before tanh: the generator applies it
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """A-GAN's U-Net generator (module docstring). Input ``(B, 3 or 4, S, S)`` in [-1, 1] (the
    4th channel the mask); output ``(B, 3, S, S)`` in [-1, 1]."""

    def __init__(self, num_downs: int = 8, *, ngf: int = 64, mask_input: bool = True, decoder_noise: bool = True,
                 dropout: bool = True, diff_map: bool = False, input_nc: int = 3, output_nc: int = 3):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5; got {num_downs}")
        self.num_downs, self.mask_input, self.diff_map = int(num_downs), bool(mask_input), bool(diff_map)
        block = _Block(ngf * 8, ngf * 8, innermost=True, noise=decoder_noise)
        for _ in range(num_downs - 5):
            block = _Block(ngf * 8, ngf * 8, sub=block, dropout=dropout, noise=decoder_noise)
        for outer, inner in ((ngf * 4, ngf * 8), (ngf * 2, ngf * 4), (ngf, ngf * 2)):
            block = _Block(outer, inner, sub=block, noise=decoder_noise)
        self.model = _Block(output_nc, ngf, in_ch=input_nc + int(mask_input), sub=block, outermost=True)
        init_weights(self)
        if diff_map:  # starts as the identity: tanh(0 + atanh(x)) = x
            nn.init.zeros_(self.model.model[3].weight)
            nn.init.zeros_(self.model.model[3].bias)

    @property
    def size(self) -> int:
        return 2 ** self.num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.diff_map:
            rgb = x[:, :3].clamp(-1 + 1e-6, 1 - 1e-6)
            return torch.tanh(out + torch.atanh(rgb))
        return torch.tanh(out)


class NLayerDiscriminator(nn.Module):
    """pix2pix's PatchGAN: ``n_layers`` stride-2 convolutions, then two stride-1 ones; a map of
    logits (30x30 for 256 px input with 3 layers)."""

    def __init__(self, input_nc: int = 6, *, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=False), nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True),
                nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _pyramid(side: int, levels: Sequence[int]) -> list[tuple[int, int]]:
    """(kernel, padding) per level, as the reference computes them."""
    out = []
    for n in levels:
        k = int(math.ceil(side / n))
        out.append((k, (k * n - side + 1) // 2))
    return out


class SPPDiscriminator(nn.Module):
    """The person discriminator: five convolutions on the box crop, then spatial-pyramid max
    pooling: ``sum(n*n for n in levels)`` logits per crop."""

    def __init__(self, input_nc: int = 3, *, ndf: int = 64, levels: Sequence[int] = (4, 2, 1)):
        super().__init__()
        self.levels = tuple(int(n) for n in levels)
        self.conv1 = nn.Conv2d(input_nc, ndf, 4, 2, 1, bias=False)
        self.conv2 = nn.Conv2d(ndf, ndf * 2, 4, 1, 1, bias=False)
        self.BN1 = nn.BatchNorm2d(ndf * 2)
        self.conv3 = nn.Conv2d(ndf * 2, ndf * 4, 4, 1, 1, bias=False)
        self.BN2 = nn.BatchNorm2d(ndf * 4)
        self.conv4 = nn.Conv2d(ndf * 4, ndf * 8, 4, 1, 1, bias=False)
        self.BN3 = nn.BatchNorm2d(ndf * 8)
        self.conv5 = nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False)
        self.act = nn.LeakyReLU(0.2)
        init_weights(self)

    @property
    def outputs(self) -> int:
        return sum(n * n for n in self.levels)

    def min_side(self) -> int:
        """The crop side (px) from which every larger side works with the pyramid (32 for
        ``spp``, 16 for ``spp_128``; some smaller sides happen to work too)."""
        return max((t for t in range(1, 512) if not self._fits(t)), default=0) + 1

    def _fits(self, side: int) -> bool:
        m = side // 2 - 6  # after the five convolutions
        return m >= 1 and all(2 * p <= k for k, p in _pyramid(m, self.levels))

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        h, w = crop.shape[2], crop.shape[3]
        if not (self._fits(h) and self._fits(w)):
            raise AnonlensError(f"person box {w}x{h} px is too small for the person discriminator: "
                                f"both sides must be at least {self.min_side()} px")
        x = self.act(self.conv1(crop))
        x = self.act(self.BN1(self.conv2(x)))
        x = self.act(self.BN2(self.conv3(x)))
        x = self.act(self.BN3(self.conv4(x)))
        x = self.conv5(x)
        pooled = []
        for (kh, ph), (kw, pw) in zip(_pyramid(x.shape[2], self.levels), _pyramid(x.shape[3], self.levels)):
            pooled.append(nn.functional.max_pool2d(x, (kh, kw), stride=(kh, kw), padding=(ph, pw)).flatten(1))
        return torch.cat(pooled, 1)


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """pix2pix's initialisation: convolutions N(0, gain), BatchNorm weights N(1, gain), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


AGAN_NETWORKS: Registry[Any] = Registry("A-GAN network")
AGAN_NETWORKS.add("unet_256", lambda **kw: UnetGenerator(8, **kw), summary="U-Net generator, 256 px, mask channel, decoder noise", extra="learn")
AGAN_NETWORKS.add("unet_128", lambda **kw: UnetGenerator(7, **kw), summary="U-Net generator, 128 px (two-stage, stage 1)", extra="learn")
AGAN_NETWORKS.add("unet_256_diff_map", lambda **kw: UnetGenerator(8, diff_map=True, **kw),
                  summary="residual U-Net generator (two-stage, stage 2): tanh(net(x) + atanh(x))", extra="learn")
AGAN_NETWORKS.add("basic", lambda **kw: NLayerDiscriminator(**kw), summary="PatchGAN image discriminator (3 layers)", extra="learn")
AGAN_NETWORKS.add("basic_2", lambda **kw: NLayerDiscriminator(n_layers=2, **kw),
                  summary="PatchGAN image discriminator (2 layers, 128 px stage 1)", extra="learn")
AGAN_NETWORKS.add("spp", lambda **kw: SPPDiscriminator(levels=(4, 2, 1), **kw), summary="person discriminator, pyramid 4/2/1 (21 logits)", extra="learn")
AGAN_NETWORKS.add("spp_128", lambda **kw: SPPDiscriminator(levels=(2, 1), **kw), summary="person discriminator, pyramid 2/1 (5 logits)", extra="learn")
