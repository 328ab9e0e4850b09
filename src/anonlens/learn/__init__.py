"""Learned human-aligned metrics (PerceptAnon HA1/HA2): annotations, reference splits, labels."""

from .annotations import load_annotations
from .labels import LABEL_GRANULARITIES, label_transform
from .splits import available_splits, make_split, write_splits

__all__ = ["LABEL_GRANULARITIES", "available_splits", "label_transform", "load_annotations", "make_split", "write_splits"]
