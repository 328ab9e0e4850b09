"""A-GAN (Douglas, "Anonymizing people in images using generative adversarial networks"): the
evaluation of a generated set (:mod:`~anonlens.generative.agan.rates`, numpy only) and the
networks (:mod:`~anonlens.generative.agan.networks`, the ``learn`` extra)."""

from .rates import AganRates, agan_rates, cosine_distances

__all__ = ["AganRates", "agan_rates", "cosine_distances"]
