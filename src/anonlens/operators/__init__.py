"""Anonymization operators: a registry of named perturbations.

>>> from anonlens.operators import create_operator, list_operators
>>> "blur" in list_operators()
True
>>> create_operator("pixelate", blocks=10)
Pixelate(blocks=10, block=None)
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from ..checks import check_positive
from ..regions import Region
from . import functional as F
from .agan import AganOperator  # noqa: F401  (registers "agan"; numpy only until a generator is built)
from .base import OPERATORS, Operator

__all__ = ["Operator", "OPERATORS", "create_operator", "list_operators", "functional"]
functional = F


def _relative(size: float, fraction: float, minimum: float = 1.0) -> float:
    return max(minimum, fraction * size)


@OPERATORS.register("blur", summary="Gaussian blur; sigma = strength x region size (default 0.2).",
                    ranges={"strength": "> 0", "sigma": "> 0"})
class Blur(Operator):
    name = "blur"
    strengthen = {"sigma": 2.0}

    def __init__(self, *, strength: float = 0.2, sigma: float | None = None):
        self.strength = check_positive(strength, "strength")
        self.sigma = None if sigma is None else check_positive(sigma, "sigma")

    def params_for(self, region: Region) -> dict[str, Any]:
        sigma = self.sigma if self.sigma is not None else _relative(region.size, self.strength)
        return {"sigma": round(float(sigma), 3)}

    def apply(self, image, mask, *, sigma):
        return F.blur(image, mask, sigma=sigma)


@OPERATORS.register("pixelate", summary="Mosaic of block means; `blocks` cells across the region (default 8).",
                    ranges={"blocks": ">= 1", "block": ">= 1"})
class Pixelate(Operator):
    name = "pixelate"
    strengthen = {"block": 2.0}

    def __init__(self, *, blocks: int = 8, block: int | None = None):
        self.blocks = int(check_positive(blocks, "blocks"))
        self.block = None if block is None else int(check_positive(block, "block"))

    def params_for(self, region: Region) -> dict[str, Any]:
        block = self.block if self.block is not None else math.ceil(region.size / self.blocks)
        return {"block": int(max(1, block))}

    def apply(self, image, mask, *, block):
        return F.pixelate(image, mask, block=block)


@OPERATORS.register("mask", summary="Solid colour fill (default black): nothing of the original is left.",
                    ranges={"color": "[0, 255]"})
class Mask(Operator):
    name = "mask"

    def __init__(self, *, color: tuple[int, int, int] = (0, 0, 0)):
        self.color = [int(c) for c in color]
        F.fill(np.zeros((1, 1, 3), np.uint8), np.ones((1, 1), bool), color=self.color)  # validate

    def params_for(self, region: Region) -> dict[str, Any]:
        return {"color": list(self.color)}

    def apply(self, image, mask, *, color):
        return F.fill(image, mask, color=color)


@OPERATORS.register("noise", summary="Additive Gaussian noise on a pixelated base; sigma as fraction of 255.",
                    ranges={"sigma": "> 0", "blocks": ">= 0", "seed": ">= 0"})
class Noise(Operator):
    """Gaussian noise of standard deviation ``sigma`` (fraction of 255).

    Noise alone on a large face is averaged away by any model that looks at it at a lower
    resolution, so by default the region is first pixelated with ``blocks`` cells across (as
    :class:`Pixelate`) and the noise added on top; ``blocks=0`` adds noise only.
    """

    name = "noise"
    stochastic = True
    strengthen = {"block": 2.0, "sigma": 1.5}

    def __init__(self, *, sigma: float = 0.25, blocks: int = 8, seed: int | None = None):
        self.sigma = check_positive(sigma, "sigma")
        self.blocks = int(check_positive(blocks, "blocks", allow_zero=True))
        self.seed = seed

    def params_for(self, region: Region) -> dict[str, Any]:
        block = math.ceil(region.size / self.blocks) if self.blocks else 0
        return {"sigma": self.sigma, "block": int(block)}

    def apply(self, image, mask, *, sigma, block, rng=None):
        if block > 1:
            image = F.pixelate(image, mask, block=block)
        return F.gaussian_noise(image, mask, sigma=sigma, rng=rng)


@OPERATORS.register("dp-pix", summary="Differentially private pixelation (DP-Pix): block means + Laplace noise.",
                    ranges={"blocks": ">= 1", "block": ">= 1", "m": ">= 1", "epsilon": "> 0", "seed": ">= 0"})
class DPPix(Operator):
    """DP-Pix (Fan 2018) as in EDI-Anon: Laplace scale ``255*m/(block**2*epsilon)``.

    ``block`` fixes the cell size in pixels (the reference uses 32); by default the cell is
    ``region size / blocks`` so that faces of every size get the same treatment. The noise scale of
    every region is recorded.
    """

    name = "dp-pix"
    stochastic = True
    strengthen = {"block": 2.0}

    def stronger(self, params, step):
        out = super().stronger(params, step)
        out["laplace_scale"] = round(F.dp_noise_scale(block=out["block"], m=out["m"], epsilon=out["epsilon"]), 4)
        return out

    def __init__(
        self,
        *,
        blocks: int = 8,
        block: int | None = None,
        m: int = 16,
        epsilon: float = 1.0,
        seed: int | None = None,
    ):
        self.blocks = int(check_positive(blocks, "blocks"))
        self.block = None if block is None else int(check_positive(block, "block"))
        self.m = int(check_positive(m, "m"))
        self.epsilon = check_positive(epsilon, "epsilon")
        self.seed = seed

    def params_for(self, region: Region) -> dict[str, Any]:
        block = self.block if self.block is not None else max(1, math.ceil(region.size / self.blocks))
        scale = F.dp_noise_scale(block=block, m=self.m, epsilon=self.epsilon)
        return {"block": int(block), "m": self.m, "epsilon": self.epsilon, "laplace_scale": round(scale, 4)}

    def apply(self, image, mask, *, block, m, epsilon, laplace_scale=None, rng=None):
        return F.dp_pixelate(image, mask, block=block, m=m, epsilon=epsilon, rng=rng)


@OPERATORS.register("inpaint", summary="Fill from the surroundings (OpenCV Telea or Navier-Stokes).",
                    ranges={"radius": "> 0"})
class Inpaint(Operator):
    name = "inpaint"

    def __init__(self, *, method: Literal["telea", "ns"] = "telea", radius: float = 0.05):
        """``radius`` is a fraction of the region size when < 1, pixels otherwise."""
        if method not in ("telea", "ns"):
            raise ValueError(f"method must be 'telea' or 'ns', got {method!r}")
        self.method = method
        self.radius = check_positive(radius, "radius")

    def params_for(self, region: Region) -> dict[str, Any]:
        radius = self.radius * region.size if self.radius < 1 else self.radius
        return {"method": self.method, "radius": round(max(3.0, radius), 2)}

    def apply(self, image, mask, *, method, radius):
        return F.inpaint(image, mask, radius=radius, method=method)


def create_operator(name: str, **options: Any) -> Operator:
    """Create the operator registered as ``name`` (see :func:`list_operators`)."""
    return OPERATORS.create(name, **options)


def list_operators() -> list[str]:
    return OPERATORS.names()

