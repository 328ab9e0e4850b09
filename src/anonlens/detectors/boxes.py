"""Regions supplied by the user: bring your own detector, boxes, polygons or masks.

Coordinates are pixels of the image as displayed (EXIF orientation applied), x to the right and
y down. Images are looked up by their path relative to the input folder (``photos/a.jpg``), or
by file name when that is unique in the table.

JSON (``--boxes regions.json``), either a mapping or a list::

    {"photos/a.jpg": [{"box": [x1, y1, x2, y2], "score": 0.9, "label": "face"},
                      {"polygon": [[x, y], [x, y], [x, y]]}]}
    [{"image": "photos/a.jpg", "box": [x1, y1, x2, y2]}]

CSV with a header: ``image,x1,y1,x2,y2`` and optional ``score`` and ``label`` columns.

Masks (``--masks DIR``): ``DIR/photos/a.png`` (same relative path, any image extension); every
non-zero pixel is anonymized. A mask must have the image's size.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from ..checks import as_rgb_uint8
from ..errors import AnonlensError, DetectionError
from ..regions import Region
from .base import Detector

__all__ = ["Boxes", "load_box_table"]

_MASK_EXTS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")


def _norm_key(key: str) -> str:
    return str(PurePosixPath(str(key).replace("\\", "/"))).lstrip("./") if key else key


def _parse_entry(entry: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise AnonlensError(f"{where}: each region must be an object with 'box' or 'polygon', got {entry!r}")
    out: dict[str, Any] = {"score": float(entry.get("score", 1.0)), "label": str(entry.get("label", "region"))}
    if "box" in entry:
        box = [float(v) for v in entry["box"]]
        if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
            raise AnonlensError(f"{where}: box must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1, got {entry['box']!r}")
        out["box"] = box
    elif "polygon" in entry:
        pts = np.asarray(entry["polygon"], dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
            raise AnonlensError(f"{where}: polygon must be a list of at least 3 [x, y] points")
        out["polygon"] = pts
    else:
        raise AnonlensError(f"{where}: region needs 'box' or 'polygon', got keys {sorted(entry)}")
    return out


def load_box_table(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Read a JSON or CSV region file into ``{image key: [region, ...]}``."""
    path = Path(path)
    if not path.is_file():
        raise AnonlensError(f"region file not found: {path}")
    table: dict[str, list[dict[str, Any]]] = {}
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            need = {"image", "x1", "y1", "x2", "y2"}
            if reader.fieldnames is None or not need <= set(reader.fieldnames):
                raise AnonlensError(f"{path}: CSV needs the columns {sorted(need)}, got {reader.fieldnames}")
            for i, row in enumerate(reader, start=2):
                entry = {"box": [row["x1"], row["y1"], row["x2"], row["y2"]]}
                if row.get("score"):
                    entry["score"] = row["score"]
                if row.get("label"):
                    entry["label"] = row["label"]
                try:
                    table.setdefault(_norm_key(row["image"]), []).append(_parse_entry(entry, f"{path}:{i}"))
                except ValueError as exc:
                    raise AnonlensError(f"{path}:{i}: {exc}") from None
        return table
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnonlensError(f"{path}: not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("images"), dict):
        data = data["images"]
    if isinstance(data, dict):
        for key, entries in data.items():
            if not isinstance(entries, list):
                raise AnonlensError(f"{path}: '{key}' must map to a list of regions")
            table.setdefault(_norm_key(key), []).extend(_parse_entry(e, f"{path} [{key}]") for e in entries)
    elif isinstance(data, list):
        for i, entry in enumerate(data):
            if not isinstance(entry, dict) or "image" not in entry:
                raise AnonlensError(f"{path}: item {i} needs an 'image' key")
            table.setdefault(_norm_key(entry["image"]), []).append(_parse_entry(entry, f"{path} item {i}"))
    else:
        raise AnonlensError(f"{path}: expected a JSON object or list")
    return table


class Boxes(Detector):
    """Regions from a JSON/CSV file (``file``) and/or a folder of mask images (``masks``)."""

    name = "boxes"
    label = "region"

    def __init__(self, *, file: str | None = None, masks: str | None = None):
        if file is None and masks is None:
            raise AnonlensError("the 'boxes' detector needs a region file (file=..., --boxes) or a mask folder (masks=..., --masks)")
        self.file = None if file is None else str(file)
        self.masks = None if masks is None else str(masks)
        if self.masks is not None and not Path(self.masks).is_dir():
            raise AnonlensError(f"mask folder not found: {self.masks}")
        self._table = load_box_table(self.file) if self.file else {}
        by_name: dict[str, list[str]] = {}
        for key in self._table:
            by_name.setdefault(PurePosixPath(key).name, []).append(key)
        self._by_name = {n: keys[0] for n, keys in by_name.items() if len(keys) == 1}

    def _entries(self, key: str) -> list[dict[str, Any]]:
        if key in self._table:
            return self._table[key]
        name = PurePosixPath(key).name
        return self._table.get(self._by_name.get(name, ""), [])

    def _mask_file(self, key: str) -> Path | None:
        stem = PurePosixPath(key).with_suffix("")
        for ext in _MASK_EXTS:
            candidate = Path(self.masks) / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
        return None

    def detect(self, image: np.ndarray, *, source: str | None = None) -> list[Region]:
        image = as_rgb_uint8(image)
        if source is None:
            raise DetectionError("the 'boxes' detector needs the image's key (source=...) to look its regions up")
        key = _norm_key(source)
        h, w = image.shape[:2]
        regions: list[Region] = []
        for e in self._entries(key):
            if "box" in e:
                x1, y1, x2, y2 = e["box"]
                box = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
                if box[2] <= box[0] or box[3] <= box[1]:
                    raise DetectionError(f"box {e['box']} lies outside the {w}x{h} image")
                regions.append(Region(box, e["score"], e["label"]))
            else:
                pts = e["polygon"]
                mask = np.zeros((h, w), np.uint8)
                cv2.fillPoly(mask, [np.rint(pts).astype(np.int32)], 1)
                if not mask.any():
                    raise DetectionError(f"polygon lies outside the {w}x{h} image")
                regions.append(_mask_region(mask.astype(bool), e["score"], e["label"]))
        if self.masks is not None:
            mask_path = self._mask_file(key)
            if mask_path is not None:
                m = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                if m is None:
                    raise DetectionError(f"mask {mask_path} could not be read")
                if m.shape != (h, w):
                    raise DetectionError(f"mask {mask_path} is {m.shape[1]}x{m.shape[0]}, the image is {w}x{h}")
                if m.any():
                    regions.append(_mask_region(m > 0, 1.0, "region"))
        return regions


def _mask_region(mask: np.ndarray, score: float, label: str) -> Region:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
    return Region(box, score, label, mask=mask)
