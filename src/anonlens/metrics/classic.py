"""Classic full-reference metrics: MSE, PSNR, SSIM (and the PerceptAnon SSIM variant)."""

from __future__ import annotations

from . import functional as F
from .base import Metric, PairBatch

__all__ = ["MSE", "PSNR", "SSIM"]


class MSE(Metric):
    """Mean squared error (data range 1). Higher: more of the image changed."""

    name = "mse"
    more_private = "higher"
    value_range = (0.0, 1.0)

    def __call__(self, batch: PairBatch):
        return {self.name: batch.map_pairs(F.mse)}


class PSNR(Metric):
    """Peak signal-to-noise ratio in dB (data range 1); ``inf`` for identical images."""

    name = "psnr"
    more_private = "lower"
    value_range = (0.0, float("inf"))

    def __init__(self, *, data_range: float = 1.0):
        self.data_range = float(data_range)

    def __call__(self, batch: PairBatch):
        return {self.name: batch.map_pairs(lambda a, b: F.psnr(a, b, data_range=self.data_range))}


class SSIM(Metric):
    """Structural similarity, Gaussian window 11 / sigma 1.5, standard constants (equal to
    scikit-image's Gaussian-weighted SSIM). ``ssim-perceptanon`` is the same with the
    PerceptAnon reference's squared constants K1=0.01**2, K2=0.03**2 (values closer to 1 on
    smooth images; kept only to reproduce that paper's numbers)."""

    name = "ssim"
    more_private = "lower"
    value_range = (-1.0, 1.0)

    def __init__(self, *, k1: float = 0.01, k2: float = 0.03, sigma: float = 1.5, kernel_size: int = 11, name: str = "ssim"):
        self.k1, self.k2, self.sigma, self.kernel_size = float(k1), float(k2), float(sigma), int(kernel_size)
        self._name = name

    @property
    def columns(self) -> list[str]:
        return [self._name]

    def info(self):
        return {**super().info(), "name": self._name}

    def __call__(self, batch: PairBatch):
        opts = {"k1": self.k1, "k2": self.k2, "sigma": self.sigma, "kernel_size": self.kernel_size}
        return {self._name: batch.map_pairs(lambda o, a: F.ssim(o, a, **opts))}
