"""The ``agan`` operator: each person region replaced by a person A-GAN generates
(:func:`~anonlens.generative.agan.model.replace_people`). Its weights come through the weights
registry (``agan-generator``) or a path (``model=``); without them it fails before any file is
written. The release verification checks identity for it: a face in the generated region that dlib
still matches to the original's face (distance under 0.6, at the original face's position or
anywhere in the region) makes the region fall back to a solid mask (:mod:`anonlens.pipeline`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import AnonlensError
from ..regions import Region
from .base import OPERATORS, Operator

__all__ = ["AganOperator"]


@OPERATORS.register("agan", summary="A-GAN: a generated person in place of each person region (needs a trained generator).",
                    extra="learn", ranges={"feather": "[0, 0.5]", "seed": ">= 0"})
class AganOperator(Operator):
    """Generative replacement (A-GAN). ``model``: a generator file pair (``NAME.safetensors`` +
    ``NAME.json``; default: the registry's ``agan-generator``); ``feather``: the blend ramp as a
    share of the box's shorter side; ``bn``: ``batch`` (the reference's inference: BatchNorm on the
    window's statistics, dropout on) or ``running`` (eval mode); ``seed``: reproducible people."""

    name = "agan"
    stochastic = True
    #: the verification judges identity, not the presence of a face (a generated person has one)
    verification: ClassVar[str] = "identity"

    def __init__(self, *, model: str | None = None, feather: float = 0.1, bn: Literal["batch", "running"] = "batch",
                 seed: int | None = None, device: str = "cpu"):
        if not 0 <= float(feather) <= 0.5:
            raise AnonlensError(f"agan: feather must be between 0 and 0.5 (a share of the box's shorter side); got {feather}")
        if bn not in ("batch", "running"):
            raise AnonlensError(f"agan: bn must be 'batch' or 'running'; got {bn!r}")
        self.model, self.feather, self.bn, self.seed, self.device = model, float(feather), bn, seed, device
        from ..generative.agan.model import load_generator  # torch

        self._generator, doc = load_generator(model, device=device)
        self.preset = doc.get("preset")

    def params_for(self, region: Region) -> dict[str, Any]:
        return {"feather": self.feather}

    def apply(self, image: np.ndarray, mask: np.ndarray, *, feather: float, rng: np.random.Generator | None = None) -> np.ndarray:
        from ..generative.agan.model import replace_people  # torch

        seed = None if rng is None else int(rng.integers(0, 2**31 - 1))
        return replace_people(image, mask, self._generator, feather=feather, seed=seed, train_mode_bn=self.bn == "batch",
                              device=self.device)
