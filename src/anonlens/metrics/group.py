"""Group metrics: FID and KID between the originals and the anonymized images of a group
(per method, per data set). One image per side is mathematically undefined for FID (no covariance)
and is refused; KID needs at least ``subset_size`` images per side."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

from ..pool import MODELS
from . import functional as F

__all__ = ["GroupMetric", "FID", "KID"]

MODELS.define("fid-features", size=2)


def _fid_features(build_options: dict[str, Any]) -> "torch.nn.Module":
    """The FID InceptionV3 feature network, shared through the model pool (a stateless network);
    with ``random_weights`` a new random one each time, as before."""
    from .features import FIDInceptionV3

    if build_options.get("random_weights"):
        return FIDInceptionV3(**build_options)
    return MODELS.get("fid-features", tuple(sorted(build_options.items())), lambda: FIDInceptionV3(**build_options))


class GroupMetric:
    """Collects features per group, then computes one value per group (stateful: one instance per
    run; the feature network is shared through the model pool)."""

    name: ClassVar[str] = ""
    more_private: ClassVar[Literal["higher", "lower"]] = "higher"
    full_reference: ClassVar[bool] = True
    level: ClassVar[str] = "group"
    stateful: ClassVar[bool] = True

    def __init__(self, *, feature: "torch.nn.Module | None" = None, batch_size: int = 32, **build_options):
        self._feature = feature if feature is not None else _fid_features(build_options)
        self.feature_extractor = type(self._feature).__name__
        self.batch_size = int(batch_size)
        self._groups: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "level": "group", "more_private": self.more_private, "params": self.params()}

    def _features(self, images: "torch.Tensor") -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._feature(images).double().cpu().numpy()

    def update(self, group: str, original: "torch.Tensor", anonymized: "torch.Tensor") -> None:
        """Add a batch of ``(B, 3, H, W)`` [0, 1] pairs to ``group`` (features only are kept)."""
        real, fake = self._groups.setdefault(group, ([], []))
        real.append(self._features(original))
        fake.append(self._features(anonymized))

    def take_state(self) -> dict[str, tuple[list, list]]:
        """The collected per-group features (or crops), handed over and forgotten here: a worker
        of a distributed engine returns them, the driver merges them (:meth:`merge_state`)."""
        state, self._groups = self._groups, {}
        return state

    def merge_state(self, state: dict[str, tuple[list, list]]) -> None:
        """Add what another instance collected (see :meth:`take_state`)."""
        for group, (real, fake) in state.items():
            mine = self._groups.setdefault(group, ([], []))
            mine[0].extend(real)
            mine[1].extend(fake)

    def compute(self) -> dict[str, dict[str, Any]]:
        """``{group: {"value": ..., "n": ..., "error": ...}}``; a group that is too small gets an
        ``error`` message instead of a value (never NaN)."""
        out = {}
        for group, (real, fake) in sorted(self._groups.items()):
            a, b = np.concatenate(real), np.concatenate(fake)
            try:
                out[group] = {"n": len(a), **self._value(a, b)}
            except ValueError as exc:
                out[group] = {"n": len(a), "value": None, "error": str(exc)}
        return out


class FID(GroupMetric):
    """Fréchet Inception distance per group (higher: the anonymized set looks less like the
    originals). Same Fréchet formula as pytorch-fid."""

    name = "fid"

    def _value(self, a, b):
        mu1, s1 = F.gaussian_stats(a)
        mu2, s2 = F.gaussian_stats(b)
        return {"value": F.frechet_distance(mu1, s1, mu2, s2)}


class KID(GroupMetric):
    """Kernel Inception distance per group (mean and std over random subsets)."""

    name = "kid"

    def __init__(self, *, subsets: int = 100, subset_size: int = 50, seed: int = 0, **kw):
        super().__init__(**kw)
        self.subsets, self.subset_size, self.seed = int(subsets), int(subset_size), int(seed)

    def _value(self, a, b):
        mean, std = F.kernel_inception_distance(a, b, subsets=self.subsets, subset_size=self.subset_size, seed=self.seed)
        return {"value": mean, "std": std}
