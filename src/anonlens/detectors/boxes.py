"""Regions supplied by the user: bring your own detector, boxes, polygons or masks.

Coordinates are pixels of the image as displayed (EXIF orientation applied), x to the right and
y down, unless the file says ``"coordinates": "normalized"`` (JSON, top level) or has a
``coordinates`` column saying ``normalized`` (CSV): then 0..1 of the width and height.

Every region is validated before use; each of these is an error naming the file, the image key
and the region (the image fails, nothing is written for it): a value that is not a finite number,
a box with ``x2 <= x1`` or ``y2 <= y1``, a polygon with fewer than 3 points or no area, any
coordinate outside the image (``0 <= x <= width``, ``0 <= y <= height``; normalised: 0..1), and
a region covering fewer than :data:`MIN_REGION_PIXELS` pixels. A score must be a finite number.

Keys are paths relative to the input folder (``sub/a.jpg``), or to nothing for files named on
the command line (their file name). A bare file name (no ``/``) is accepted when exactly one
input has that name; when several have it the run is refused. Keys that match no input are
listed, and the run ends with exit code 1.

JSON (``--boxes regions.json``), either a mapping or a list::

    {"photos/a.jpg": [{"box": [x1, y1, x2, y2], "score": 0.9, "label": "face"},
                      {"polygon": [[x, y], [x, y], [x, y]]}]}
    {"coordinates": "normalized", "images": {"photos/a.jpg": [{"box": [0.1, 0.2, 0.3, 0.4]}]}}
    [{"image": "photos/a.jpg", "box": [x1, y1, x2, y2]}]

A key that appears twice in one JSON object (``{"a.jpg": [...], "a.jpg": [...]}``, at any level)
is refused, naming both entries: a JSON reader would keep only the last one and drop the first
one's regions.

CSV with a header: ``image,x1,y1,x2,y2`` and optional ``score``, ``label`` and ``coordinates``
(a column named twice is refused).

Masks (``--masks DIR``): ``DIR/photos/a.png`` (same relative path, any image extension); every
pixel that is non-zero in any colour channel is anonymized, and so is every pixel with a non-zero
alpha when the mask has an alpha channel that is not the same everywhere (a mask painted on a
transparent layer, in any colour, black included). A mask must have the image's size. A mask
that marks no pixel at all is an error (the image fails): a mask file says "here", so an empty one
is a mistake, most often the mask drawn in a channel that is not read; to anonymize nothing in an
image, give it no mask.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from ..checks import as_rgb_uint8
from ..errors import AnonlensError, DetectionError, ImageReadError
from ..io.files import read_regular_file
from ..regions import Region
from .base import Detector

__all__ = ["Boxes", "load_box_table", "read_mask", "MIN_REGION_PIXELS"]

_MASK_EXTS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")
#: the fewest pixels a user region may cover (a 4x4 box): anything smaller is a mistake, most
#: often normalised coordinates read as pixels
MIN_REGION_PIXELS = 16
_UNITS = ("pixels", "normalized")


#: a region file larger than this is refused (a table of boxes, not a data set)
MAX_REGION_FILE_BYTES = 256 * 1024 * 1024

def _norm_key(key: str) -> str:
    k = str(PurePosixPath(str(key).replace("\\", "/")))
    while k.startswith("./"):
        k = k[2:]
    return k


def _finite(values: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numbers, got {values!r}") from None
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} must be finite numbers, got {values!r}")
    return arr


def _parse_entry(entry: Any, units: str) -> dict[str, Any]:
    """One region, checked for what can be checked without the image (raises ValueError)."""
    if not isinstance(entry, dict):
        raise ValueError(f"each region must be an object with 'box' or 'polygon', got {entry!r}")
    score = entry.get("score", 1.0)
    try:
        score = float(score)
    except (TypeError, ValueError):
        raise ValueError(f"score must be a number, got {score!r}") from None
    if not math.isfinite(score):
        raise ValueError(f"score must be a finite number, got {score!r}")
    out: dict[str, Any] = {"score": score, "label": str(entry.get("label", "region")), "units": units}
    if "box" in entry:
        box = _finite(entry["box"], "box coordinates")
        if box.shape != (4,):
            raise ValueError(f"box must be [x1, y1, x2, y2], got {entry['box']!r}")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"box {entry['box']!r} is degenerate: it needs x2 > x1 and y2 > y1")
        out["box"] = box
    elif "polygon" in entry:
        pts = _finite(entry["polygon"], "polygon points")
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
            raise ValueError("polygon must be a list of at least 3 [x, y] points")
        x, y = pts[:, 0], pts[:, 1]
        if abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2 <= 0:
            raise ValueError("polygon is degenerate (no area)")
        out["polygon"] = pts
    else:
        raise ValueError(f"region needs 'box' or 'polygon', got keys {sorted(entry)}")
    return out


def _units(value: Any, where: str) -> str:
    v = str(value or "pixels").strip().lower().replace("normalised", "normalized")
    if v not in _UNITS:
        raise AnonlensError(f"{where}: coordinates must be 'pixels' or 'normalized', got {value!r}")
    return v


class _DuplicateKey(Exception):
    def __init__(self, key: str, first: int, second: int, lists: bool):
        super().__init__(key)
        self.key, self.first, self.second, self.lists = key, first, second, lists


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads`: a key that appears twice in one object would
    silently drop the first value; stop at the second occurrence (entries counted from 1)."""
    seen: dict[str, int] = {}
    for i, (key, value) in enumerate(pairs, start=1):
        if key in seen:
            raise _DuplicateKey(key, seen[key], i, isinstance(value, list) and all(isinstance(v, dict) for v in value))
        seen[key] = i
    return dict(pairs)


def load_box_table(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Read a JSON or CSV region file into ``{image key: [region, ...]}``; each region knows its
    units (``"pixels"`` or ``"normalized"``) and its index under its key. Errors name the file,
    the key and the region."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise AnonlensError(f"region file not found: {path}")
    try:  # a folder, a device, a pipe: named for what it is, never read (and never waited on)
        raw = read_regular_file(path, max_bytes=MAX_REGION_FILE_BYTES)
    except ImageReadError as exc:
        raise AnonlensError(f"region file {exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnonlensError(f"{path}: not UTF-8 text: {exc}") from None
    table: dict[str, list[dict[str, Any]]] = {}

    def add(key: Any, entry: Any, units: str, where: str) -> None:
        if not isinstance(key, str) or not key.strip():
            raise AnonlensError(f"{path}: {where}: the image key must be a non-empty path, got {key!r}")
        k = _norm_key(key)
        regions = table.setdefault(k, [])
        try:
            parsed = _parse_entry(entry, units)
        except ValueError as exc:
            raise AnonlensError(f"{path}: image '{k}', region {len(regions)}: {exc}") from None
        parsed["index"] = len(regions)
        regions.append(parsed)

    if path.suffix.lower() == ".csv":
        with io.StringIO(text, newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"image", "x1", "y1", "x2", "y2"}
            if reader.fieldnames is None or not need <= set(reader.fieldnames):
                raise AnonlensError(f"{path}: CSV needs the columns {sorted(need)}, got {reader.fieldnames}")
            twice = sorted({c for c in reader.fieldnames if reader.fieldnames.count(c) > 1})
            if twice:
                raise AnonlensError(f"{path}: the CSV header names the column(s) {', '.join(map(repr, twice))} twice; keep one")
            for i, row in enumerate(reader, start=2):
                entry: dict[str, Any] = {"box": [row["x1"], row["y1"], row["x2"], row["y2"]]}
                if row.get("score"):
                    entry["score"] = row["score"]
                if row.get("label"):
                    entry["label"] = row["label"]
                add(row["image"], entry, _units(row.get("coordinates"), f"{path}:{i}"), f"line {i}")
        return table
    try:
        data = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except json.JSONDecodeError as exc:
        raise AnonlensError(f"{path}: not valid JSON: {exc}") from None
    except _DuplicateKey as dup:
        fix = "merge their regions into one list" if dup.lists else "keep one"
        raise AnonlensError(f"{path}: key {json.dumps(dup.key)} appears twice in one object (entries {dup.first} and "
                            f"{dup.second}); {fix}") from None
    units = "pixels"
    if isinstance(data, dict) and ("images" in data or "regions" in data or "coordinates" in data):
        units = _units(data.get("coordinates"), str(path))
        data = data.get("images", data.get("regions", {}))
    if isinstance(data, dict):
        for key, entries in data.items():
            if not isinstance(entries, list):
                raise AnonlensError(f"{path}: '{key}' must map to a list of regions")
            for e in entries:
                add(key, e, units, f"'{key}'")
    elif isinstance(data, list):
        for i, entry in enumerate(data):
            if not isinstance(entry, dict) or "image" not in entry:
                raise AnonlensError(f"{path}: item {i} needs an 'image' key")
            add(entry["image"], entry, units, f"item {i}")
    else:
        raise AnonlensError(f"{path}: expected a JSON object or list")
    return table


def _points(entry: dict[str, Any]) -> np.ndarray:
    """The region's (x, y) points: a box's two corners or a polygon's vertices."""
    return entry["box"].reshape(2, 2) if "box" in entry else entry["polygon"]


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

    def match_inputs(self, keys: list[str]) -> dict[str, Any]:
        """Resolve the file's keys against the run's input keys: ``sources`` maps an input key
        to the table key that holds its regions; ``unmatched`` lists table keys (and mask files)
        that match no input; ``ambiguous`` the problems that make the run impossible."""
        keyset = set(keys)
        by_name: dict[str, list[str]] = {}
        for k in keys:
            by_name.setdefault(PurePosixPath(k).name, []).append(k)
        sources: dict[str, str] = {}
        unmatched: list[str] = []
        ambiguous: list[str] = []
        for tk in self._table:
            if tk in keyset:
                target = tk
            elif "/" not in tk and len(by_name.get(tk, [])) == 1:
                target = by_name[tk][0]
            elif "/" not in tk and by_name.get(tk):
                ambiguous.append(f"{self.file}: key '{tk}' names {len(by_name[tk])} inputs ({', '.join(sorted(by_name[tk])[:4])}); "
                                 "write the path relative to the input folder")
                continue
            else:
                unmatched.append(f"{self.file}: '{tk}'")
                continue
            if target in sources:
                ambiguous.append(f"{self.file}: keys '{sources[target]}' and '{tk}' both name input {target}; keep one")
                continue
            sources[target] = tk
        if self.masks is not None:
            stems = {str(PurePosixPath(k).with_suffix("")) for k in keys}
            root = Path(self.masks)
            for dirpath, _, filenames in os.walk(root):
                for name in sorted(filenames):
                    rel = (Path(dirpath) / name).relative_to(root).as_posix()
                    if Path(name).suffix.lower() in _MASK_EXTS and str(PurePosixPath(rel).with_suffix("")) not in stems:
                        unmatched.append(f"{root / rel} (mask)")
        return {"sources": sources, "unmatched": sorted(unmatched), "ambiguous": ambiguous}

    def _mask_file(self, key: str) -> Path | None:
        stem = PurePosixPath(key).with_suffix("")
        for ext in _MASK_EXTS:
            candidate = Path(self.masks) / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
        return None

    def _where(self, key: str, e: dict[str, Any]) -> str:
        return f"{self.file}: image '{key}', region {e['index']}"

    def detect(self, image: np.ndarray, *, source: str | None = None) -> list[Region]:
        """The regions filed under ``source`` exactly (the batch runner resolves bare file names
        first, see :meth:`match_inputs`), validated against this image's size."""
        image = as_rgb_uint8(image)
        if source is None:
            raise DetectionError("the 'boxes' detector needs the image's key (source=...) to look its regions up")
        key = _norm_key(source)
        h, w = image.shape[:2]
        regions: list[Region] = []
        for e in self._table.get(key, []):
            pts = _points(e)
            if e["units"] == "normalized":
                if not ((pts >= 0).all() and (pts <= 1).all()):
                    raise DetectionError(f"{self._where(key, e)}: normalized coordinates {pts.ravel().tolist()} must lie in 0..1")
                pts = pts * np.array([w, h], dtype=np.float64)
            elif not ((pts[:, 0] >= 0).all() and (pts[:, 0] <= w).all() and (pts[:, 1] >= 0).all() and (pts[:, 1] <= h).all()):
                raise DetectionError(f"{self._where(key, e)}: coordinates {np.round(pts, 3).ravel().tolist()} lie outside "
                                     f"the {w}x{h} image (pixels; say \"coordinates\": \"normalized\" for 0..1 values)")
            if "box" in e:
                (x1, y1), (x2, y2) = pts
                covered = int(max(0, round(x2) - round(x1)) * max(0, round(y2) - round(y1)))
                region = Region((float(x1), float(y1), float(x2), float(y2)), e["score"], e["label"])
            else:
                mask = np.zeros((h, w), np.uint8)
                cv2.fillPoly(mask, [np.rint(pts).astype(np.int32)], 1)
                covered = int(mask.sum())
                region = _mask_region(mask.astype(bool), e["score"], e["label"]) if covered else None
            if covered < MIN_REGION_PIXELS:
                raise DetectionError(f"{self._where(key, e)}: covers {covered} pixel(s) of the {w}x{h} image, fewer than "
                                     f"the minimum of {MIN_REGION_PIXELS}; normalized coordinates need \"coordinates\": \"normalized\"")
            regions.append(region)
        if self.masks is not None:
            mask_path = self._mask_file(key)
            if mask_path is not None:
                regions.append(_mask_region(read_mask(mask_path, (w, h)), 1.0, "region"))
        return regions


def read_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """The ``(H, W)`` bool mask in the image file ``path`` (EXIF orientation applied, as for the
    images): pixels non-zero in any colour (or grey) channel, and, when the file has an alpha
    channel that is not the same everywhere, pixels whose alpha is non-zero (a mask painted on a
    transparent layer, whatever the colour). ``size`` ``(W, H)``: the image's, checked before the
    mask is decoded. A file that cannot be read, has another size, or marks no pixel is a
    :class:`DetectionError` naming it."""
    try:
        with Image.open(path) as im:
            if size is not None and sorted(im.size) != sorted(size):
                raise DetectionError(f"mask {path} is {im.size[0]}x{im.size[1]}, the image is {size[0]}x{size[1]}")
            im = ImageOps.exif_transpose(im)
            if im.mode not in ("1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F", "RGB", "RGBA"):
                im = im.convert("RGBA" if im.mode in ("P", "PA") or im.getbands()[-1] in ("A", "a") else "RGB")
            bands = im.getbands()
            arr = np.asarray(im)
    except DetectionError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DetectionError(f"mask {path} could not be read: {exc}") from None
    if size is not None and arr.shape[:2] != (size[1], size[0]):
        raise DetectionError(f"mask {path} is {arr.shape[1]}x{arr.shape[0]}, the image is {size[0]}x{size[1]}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    has_alpha = bands[-1] == "A"
    colour, alpha = (arr[:, :, :-1], arr[:, :, -1]) if has_alpha else (arr, None)
    marked = colour.any(axis=2)
    alpha_varies = alpha is not None and alpha.min() != alpha.max()
    if alpha_varies:
        marked |= alpha > 0
    if not marked.any():
        what = "grey channel is" if colour.shape[2] == 1 else "colour channels are"
        also = f" and its alpha is {alpha.flat[0]} everywhere" if alpha is not None else ""
        raise DetectionError(f"mask {path} marks no pixel: its {what} zero everywhere{also}; paint the regions "
                             "non-zero (or on a transparent layer), or remove the mask to anonymize nothing in this image")
    return marked


def _mask_region(mask: np.ndarray, score: float, label: str) -> Region:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
    return Region(box, score, label, mask=mask)
