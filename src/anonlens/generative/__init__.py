"""Generative anonymization: models that replace a person with a generated one (A-GAN), and the
measures of how anonymous, diverse and non-memorised their output is."""
