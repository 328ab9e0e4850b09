"""Calibrate the identity threshold on your own labelled pairs (best F1 for "same person")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import AnonlensError
from ..identity import DlibFaceEmbedder, identity_distance
from ..io import read_image
from .pairs import safe_join
from .score import calibrate_threshold

__all__ = ["calibrate_from_csv"]


def calibrate_from_csv(csv_path: str | os.PathLike, *, root: str | os.PathLike | None = None, embedder=None) -> dict[str, Any]:
    """Read ``image_a,image_b,same`` rows (paths relative to ``root``, default the CSV's folder;
    ``same`` is 1/0 or true/false), embed the largest face of each image, and return the best-F1
    threshold with the counts. Pairs where a face is missing are skipped and listed."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise AnonlensError(f"labelled pairs CSV not found: {csv_path}")
    root = Path(root) if root is not None else csv_path.parent
    df = pd.read_csv(csv_path)
    need = {"image_a", "image_b", "same"}
    if not need <= set(df.columns):
        raise AnonlensError(f"{csv_path}: needs the columns {sorted(need)}, got {list(df.columns)}")
    embedder = embedder or DlibFaceEmbedder()
    cache: dict[str, Any] = {}

    def embed(rel: str):
        if rel not in cache:
            face = embedder.embed(read_image(safe_join(root, rel)).rgb)
            cache[rel] = None if face is None else face.vector
        return cache[rel]

    distances, labels, skipped = [], [], []
    for i, row in enumerate(df.to_dict("records"), start=2):
        a, b = embed(str(row["image_a"])), embed(str(row["image_b"]))
        if a is None or b is None:
            skipped.append(f"row {i}: no face found in {row['image_a'] if a is None else row['image_b']}")
            continue
        distances.append(identity_distance(a, b))
        labels.append(str(row["same"]).strip().lower() in ("1", "true", "yes", "same"))
    try:
        tau, f1 = calibrate_threshold(distances, labels)
    except ValueError as exc:
        raise AnonlensError(f"{csv_path}: {exc}") from None
    return {"threshold": tau, "f1": f1, "pairs": len(distances), "matching": sum(labels), "skipped": skipped}
