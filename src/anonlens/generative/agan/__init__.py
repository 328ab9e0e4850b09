"""A-GAN (Douglas, "Anonymizing people in images using generative adversarial networks"): the
evaluation of a generated set. See :mod:`anonlens.generative.agan.rates`."""

from .rates import AganRates, agan_rates, cosine_distances

__all__ = ["AganRates", "agan_rates", "cosine_distances"]
