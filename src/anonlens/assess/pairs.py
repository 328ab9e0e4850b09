"""Where (original, anonymized) pairs come from: two folders, or a human-annotation CSV."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..audit import find_manifest
from ..errors import AnonlensError
from ..io import SUPPORTED_SUFFIXES, discover_inputs

__all__ = ["Pair", "pairs_from_dirs", "pairs_from_csv", "pairs_from_manifest", "read_manifest_records", "split_manifest", "safe_join", "COLUMN_ALIASES"]

#: accepted spellings of the PerceptAnon annotation columns (REFERENCE.md)
COLUMN_ALIASES = {
    "original": ("original_image_path", "img1", "original"),
    "anonymized": ("anonymized_image_path", "img2", "anonymized"),
    "dataset": ("source_dataset", "dataset"),
    "scope": ("scope",),
    "method": ("method",),
}


@dataclass
class Pair:
    """One pair to score. ``original`` is None for no-reference scoring. ``groups`` holds the
    grouping fields (dataset, scope, method); ``extra`` every other column of the source row
    (human scores, annotators)."""

    key: str
    anonymized: Path
    original: Path | None = None
    groups: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def safe_join(root: Path, relative: str) -> Path:
    """``root / relative``, refusing absolute paths and anything that escapes ``root``."""
    rel = str(relative).replace("\\", "/").strip()
    if not rel:
        raise AnonlensError("empty image path")
    if rel.startswith("/") or PurePosixPath(rel).is_absolute() or (len(rel) > 1 and rel[1] == ":"):
        raise AnonlensError(f"image path '{relative}' is absolute; paths must be relative to the data root")
    path = (root / rel).resolve()
    try:
        path.relative_to(root.resolve())
    except ValueError:
        raise AnonlensError(f"image path '{relative}' leaves the data root {root}") from None
    return path


def pairs_from_dirs(anonymized_dir: str | os.PathLike, original_dir: str | os.PathLike | None = None) -> list[Pair]:
    """Pair images by their path relative to each folder; a missing original is a pair error."""
    anon_root = Path(anonymized_dir)
    if not anon_root.is_dir():
        raise AnonlensError(f"anonymized folder not found: {anon_root}")
    orig_root = None if original_dir is None else Path(original_dir)
    if orig_root is not None and not orig_root.is_dir():
        raise AnonlensError(f"original folder not found: {orig_root}")
    pairs = []
    for f in discover_inputs([anon_root]):
        if f.skip or not f.supported:  # images and videos only; links and special files never read
            continue
        pair = Pair(f.rel, f.path)
        if orig_root is not None:
            candidate = orig_root / f.rel
            if candidate.is_file():
                pair.original = candidate
            else:
                pair.error = f"no original for {f.rel} in {orig_root}"
        pairs.append(pair)
    if not pairs:
        raise AnonlensError(f"no images ({', '.join(sorted(SUPPORTED_SUFFIXES))}) found in {anon_root}")
    return pairs


def _find(columns: list[str], what: str) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    for alias in COLUMN_ALIASES[what]:
        if alias in lower:
            return lower[alias]
    return None


def pairs_from_csv(csv_path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> list[Pair]:
    """Pairs from an HA1/HA2-style CSV. Image paths are relative to ``root`` (default: the CSV's
    folder) and must stay inside it. When the image columns are not named, the first two columns
    are read as (original, anonymized), as the reference code does. Missing files are listed as
    pair errors up front, not discovered later."""
    import pandas as pd

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise AnonlensError(f"pairs CSV not found: {csv_path}")
    root = Path(root) if root is not None else csv_path.parent
    df = pd.read_csv(csv_path)
    cols = list(df.columns)
    if len(cols) < 2:
        raise AnonlensError(f"{csv_path}: needs at least two columns (original, anonymized)")
    orig_col = _find(cols, "original") or cols[0]
    anon_col = _find(cols, "anonymized") or cols[1]
    group_cols = {g: _find(cols, g) for g in ("dataset", "scope", "method")}
    pairs = []
    for i, row in enumerate(df.to_dict("records")):
        key = f"{row[anon_col]}"
        groups = {g: str(row[c]).strip().lower() for g, c in group_cols.items() if c is not None and pd.notna(row[c])}
        extra = {c: row[c] for c in cols if c not in (orig_col, anon_col) and c not in group_cols.values()}
        pair = Pair(key, Path(str(row[anon_col])), None, groups, extra)
        try:
            pair.anonymized = safe_join(root, str(row[anon_col]))
            pair.original = safe_join(root, str(row[orig_col]))
            missing = [str(p) for p in (pair.original, pair.anonymized) if not p.is_file()]
            if missing:
                pair.error = f"row {i + 2}: missing file(s): {', '.join(missing)}"
        except AnonlensError as exc:
            pair.error = f"row {i + 2}: {exc}"
        pairs.append(pair)
    return pairs


def read_manifest_records(manifest_path: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-image records of an `anonlens anonymize` manifest: the file, its audit folder, or
    the output folder (whose audit folder is beside it)."""
    manifest_path = find_manifest(manifest_path)
    try:
        return json.loads(manifest_path.read_text(encoding="utf-8"))["images"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError) as exc:
        raise AnonlensError(f"{manifest_path}: not an anonlens manifest ({exc})") from None


def split_manifest(manifest_path: str | os.PathLike) -> tuple[list[Pair], list[dict[str, Any]]]:
    """The (input, output) pairs of an `anonlens anonymize` run, and the records of the images it
    wrote no output for (failed, skipped, ignored). An output that is gone is a pair error."""
    pairs, without = [], []
    for r in read_manifest_records(manifest_path):
        if not r.get("output"):
            without.append(r)
            continue
        pair = Pair(r.get("key") or Path(r["input"]).name, Path(r["output"]), Path(r["input"]))
        if not pair.original.is_file() or not pair.anonymized.is_file():
            pair.error = f"{r['input']}: original or output file is missing"
        pairs.append(pair)
    return pairs, without


def pairs_from_manifest(manifest_path: str | os.PathLike) -> list[Pair]:
    """(input, output) pairs of an `anonlens anonymize` run, from its manifest. Images without an
    output (failed, skipped) are left out; an output that is gone is a pair error."""
    return split_manifest(manifest_path)[0]
