"""The metric interface: declared capabilities, one call per batch of pairs."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from ..pool import MODELS
from .functional import to_batch

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["Metric", "PairBatch"]

MODELS.define("metric-threads", size=1)


def _new_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="anonlens-metric")


def _pool() -> ThreadPoolExecutor:
    """The threads per-pair metrics run on, one pool per process (the model pool's)."""
    return MODELS.get("metric-threads", None, _new_threads)


@dataclass
class PairBatch:
    """A batch of (original, anonymized) pairs of the same size, as uint8 ``(H, W, 3)`` arrays,
    with ``(B, 3, H, W)`` float tensors in [0, 1] made on first use. ``original`` may be None
    for no-reference metrics."""

    anonymized_images: list[np.ndarray]
    original_images: list[np.ndarray] | None = None
    keys: list[str] = field(default_factory=list)
    #: values several metrics need (e.g. the faces found in the originals), computed once
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _tensors: dict[str, "Tensor"] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.anonymized_images)

    def _tensor(self, which: str) -> Tensor:
        if which not in self._tensors:
            images = self.original_images if which == "original" else self.anonymized_images
            if images is None:
                raise ValueError("this metric needs the original images (full-reference); none were given")
            self._tensors[which] = to_batch(images)
        return self._tensors[which]

    def map_pairs(self, fn) -> list:
        """``[fn(original, anonymized) for each pair]``, in parallel threads (NumPy and OpenCV
        release the GIL, so pairs run on all cores)."""
        if self.original_images is None:
            raise ValueError("this metric needs the original images (full-reference); none were given")
        pairs = list(zip(self.original_images, self.anonymized_images))
        if len(pairs) < 2:
            return [fn(a, b) for a, b in pairs]
        return list(_pool().map(lambda p: fn(*p), pairs))

    @property
    def original(self) -> Tensor:
        return self._tensor("original")

    @property
    def anonymized(self) -> Tensor:
        return self._tensor("anonymized")


class Metric(ABC):
    """A per-pair metric. Subclasses declare:

    - ``full_reference``: needs the original (else it looks at the anonymized image alone);
    - ``more_private``: ``"higher"`` or ``"lower"``: which direction means more anonymous, so
      that reports and correlation signs are derived, never guessed;
    - ``value_range``: ``(low, high)`` of the main value;
    - ``columns``: the columns it adds to the per-pair table (the first is the main value);
    - ``stateful``: keeps something of each batch it measures (one run's data), so an instance is
      never shared between runs (see :mod:`anonlens.pool`).
    """

    name: ClassVar[str] = ""
    full_reference: ClassVar[bool] = True
    more_private: ClassVar[Literal["higher", "lower"]] = "higher"
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    stateful: ClassVar[bool] = False

    @property
    def columns(self) -> list[str]:
        return [self.name]

    def params(self) -> dict[str, Any]:
        """Parameters that define the values (recorded beside them)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "full_reference": self.full_reference,
            "more_private": self.more_private,
            "range": list(self.value_range),
            "columns": self.columns,
            "params": self.params(),
        }

    @abstractmethod
    def __call__(self, batch: PairBatch) -> dict[str, list[Any]]:
        """``{column: [value per pair]}`` for the batch."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"
