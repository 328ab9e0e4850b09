"""Defences a client can apply to the gradient before sharing it, to evaluate attacks against.

Each is registered with its level as an option; ``spec`` strings ``name`` or ``name:level``
(``gaussian-noise:0.01``, ``prune:0.9``) name one on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import AnonlensError
from ..registry import Registry

__all__ = ["DEFENCES", "Defence", "parse_defence"]


@dataclass(frozen=True)
class Defence:
    name: str
    level: float | None

    @property
    def label(self) -> str:
        """Short text for file names and tables: ``none``, ``gaussian-noise-0.01``, ``prune-0.9``."""
        return self.name if self.level is None else f"{self.name}-{self.level:g}"

    def __call__(self, gradient: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
        return list(gradient)


@dataclass(frozen=True)
class GaussianNoise(Defence):
    """Adds N(0, level^2) to every gradient entry (DLG's "noisy gradients" defence)."""

    def __call__(self, gradient, generator):
        return [g + self.level * torch.randn(g.shape, generator=generator, dtype=g.dtype).to(g.device) for g in gradient]


@dataclass(frozen=True)
class Prune(Defence):
    """Zeroes the ``level`` share of entries with the smallest magnitude in each layer (DLG's
    gradient pruning / compression; ATSPrivacy's ``prune`` with a percentage of ``100 * level``)."""

    def __call__(self, gradient, generator):
        out = []
        for g in gradient:
            k = int(self.level * g.numel())
            if k <= 0:
                out.append(g.clone())
                continue
            threshold = g.abs().flatten().kthvalue(k).values
            out.append(torch.where(g.abs() <= threshold, torch.zeros_like(g), g))
        return out


def _noise(*, sigma: float = 0.01) -> Defence:
    if not sigma > 0:
        raise AnonlensError(f"gaussian-noise needs a standard deviation above 0, got {sigma}")
    return GaussianNoise("gaussian-noise", float(sigma))


def _prune(*, ratio: float = 0.9) -> Defence:
    if not 0 < ratio < 1:
        raise AnonlensError(f"prune needs a share between 0 and 1 (exclusive), got {ratio}")
    return Prune("prune", float(ratio))


DEFENCES: Registry[Defence] = Registry("defence")
DEFENCES.add("none", lambda: Defence("none", None), summary="the gradient as computed")
DEFENCES.add("gaussian-noise", _noise, summary="Gaussian noise on every gradient entry; level: its standard deviation (default 0.01)")
DEFENCES.add("prune", _prune, summary="zero the smallest-magnitude share of each layer's gradient; level: that share (default 0.9)")

_LEVEL_OPTION = {"gaussian-noise": "sigma", "prune": "ratio"}


def parse_defence(spec: str | None) -> Defence:
    """``"prune:0.9"`` -> the prune defence at 0.9 (``None`` or ``"none"``: no defence)."""
    if not spec:
        return DEFENCES.create("none")
    name, _, level = spec.partition(":")
    name = name.strip()
    if not level:
        return DEFENCES.create(name)
    if name not in _LEVEL_OPTION:
        DEFENCES.get(name)  # unknown name: the registry's "did you mean"
        raise AnonlensError(f"defence '{name}' takes no level (got '{spec}')")
    try:
        value = float(level)
    except ValueError:
        raise AnonlensError(f"defence level must be a number: '{spec}'") from None
    return DEFENCES.create(name, **{_LEVEL_OPTION[name]: value})
