"""Operator objects: configuration around a function of :mod:`anonlens.operators.functional`.

An operator turns its options into absolute parameters for each region (``params_for``), so that
strength can scale with the region: a 30 px face and a 300 px face get the same relative
treatment. ``apply`` runs the pure function; ``__call__`` does both and returns the parameters used,
which the manifest records.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..registry import Registry
from ..regions import Region

__all__ = ["Operator", "OPERATORS"]


class Operator(ABC):
    """Base class of anonymization operators."""

    name: ClassVar[str] = ""
    #: whether the output depends on random numbers (then ``seed`` is an option)
    stochastic: ClassVar[bool] = False
    #: the strengthening schedule for verification: parameter -> factor per step (empty: none,
    #: the region goes straight to a solid mask)
    strengthen: ClassVar[dict[str, float]] = {}

    def options(self) -> dict[str, Any]:
        """The options this operator was created with (recorded in manifests)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @abstractmethod
    def params_for(self, region: Region) -> dict[str, Any]:
        """Absolute parameters for ``region`` (JSON-serialisable)."""

    @abstractmethod
    def apply(self, image: np.ndarray, mask: np.ndarray, **params: Any) -> np.ndarray:
        """Apply the operator with absolute ``params`` inside ``mask``."""

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        region: Region,
        *,
        rng: np.random.Generator | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        params = self.params_for(region)
        return self.apply_params(image, mask, params, rng=rng), params

    def stronger(self, params: dict[str, Any], step: int) -> dict[str, Any] | None:
        """Parameters ``step`` steps stronger than ``params`` on :attr:`strengthen`'s schedule
        (each named parameter times its factor per step), or None when there is none.

        >>> from anonlens.operators import create_operator
        >>> create_operator("blur").stronger({"sigma": 10.0}, 2)
        {'sigma': 40.0}
        >>> create_operator("inpaint").stronger({"method": "telea", "radius": 3.0}, 1) is None
        True
        """
        if not self.strengthen:
            return None
        out = dict(params)
        for key, factor in self.strengthen.items():
            value = params[key] * factor ** int(step)
            out[key] = int(np.ceil(value)) if isinstance(params[key], (int, np.integer)) else round(float(value), 3)
        return out

    def apply_params(self, image: np.ndarray, mask: np.ndarray, params: dict[str, Any], *, rng: np.random.Generator | None = None) -> np.ndarray:
        """:meth:`apply` with recorded ``params`` (random operators draw from ``rng``)."""
        if self.stochastic:
            return self.apply(image, mask, rng=rng if rng is not None else self.rng_for(None), **params)
        return self.apply(image, mask, **params)

    def rng_for(self, key: str | None) -> np.random.Generator:
        """The random generator for one image.

        Without a ``seed`` option: fresh, unpredictable entropy. With one: derived from the seed
        and the image's key, so that an image gets the same noise whatever the processing order,
        the number of workers, or which other images are in the run.
        """
        seed = getattr(self, "seed", None)
        if seed is None:
            return np.random.default_rng()
        return np.random.default_rng([int(seed), zlib.crc32((key or "").encode("utf-8"))])

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"


#: the operators by name: each registers where it is defined (this package's ``__init__``, :mod:`.agan`)
OPERATORS: Registry[Operator] = Registry("operator", check_types=True)
