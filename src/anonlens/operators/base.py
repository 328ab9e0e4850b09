"""Operator objects: configuration around a function of :mod:`anonlens.operators.functional`.

An operator turns its options into absolute parameters for each region (``params_for``), so that
strength can scale with the region: a 30 px face and a 300 px face get the same relative
treatment. ``apply`` runs the pure function; ``__call__`` does both and returns the parameters used,
which the manifest records.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..regions import Region

__all__ = ["Operator"]


class Operator(ABC):
    """Base class of anonymization operators."""

    name: ClassVar[str] = ""
    #: whether the output depends on random numbers (then ``seed`` is an option)
    stochastic: ClassVar[bool] = False

    def __init__(self) -> None:
        self._rng: np.random.Generator | None = None

    def options(self) -> dict[str, Any]:
        """The options this operator was created with (recorded in manifests)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @abstractmethod
    def params_for(self, region: Region) -> dict[str, Any]:
        """Absolute parameters for ``region`` (JSON-serialisable)."""

    @abstractmethod
    def apply(self, image: np.ndarray, mask: np.ndarray, **params: Any) -> np.ndarray:
        """Apply the operator with absolute ``params`` inside ``mask``."""

    def __call__(self, image: np.ndarray, mask: np.ndarray, region: Region) -> tuple[np.ndarray, dict[str, Any]]:
        params = self.params_for(region)
        return self.apply(image, mask, **params), params

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            seed = getattr(self, "seed", None)
            self._rng = np.random.default_rng(seed)
        return self._rng

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"
