"""A-GAN's training data: person crops with the person replaced by noise, and their boxes.

:func:`prepare_cityscapes` builds the data exactly as the reference notebook
(``data-preprocessing/data_preprocessing_cityscapes.ipynb``, REFERENCE.md §4) does from a
CityScapes ``leftImg8bit`` + CityPersons ``gtBboxCityPersons`` folder; :func:`prepare_from_boxes`
does the same from any folder of images plus a region file in anonlens' own format
(:mod:`anonlens.detectors.boxes`), so users can train on their own data. Per person:

- the *visible* box ``[x, y, w, h]`` (CityPersons ``bboxVis``), shifted back inside the frame at
  the right/bottom edge as the reference does (``x -= overhang + 1``);
- kept when ``min_width <= w <= max_width`` and ``min_height <= h <= max_height`` (40..100 and
  120..250 by default) and the person is not in the exclusion list (the reference's overlap list);
- the box, inclusive of its end pixel (``(w+1) x (h+1)`` pixels), filled with grey noise: one value
  per pixel from {0, 127, 255}, the same in all channels;
- a ``size``x``size`` crop centred on ``(x + w//2, y + h//2)``, shifted inward at the borders;
  crops that are not exactly ``size``² (frames smaller than that) are skipped and counted;
- written as one ``2*size``x``size`` PNG: **left the original, right the noise-filled input**, to
  ``<out>/images/<phase>/<frame>_<i>.png`` with ``<out>/bbox/<phase>/<frame>_<i>.json`` =
  ``{"x1", "y1", "x2", "y2"}`` in crop pixels (``x2 = x1 + w + 1``, exclusive). ``i`` counts the
  frame's pedestrians (CityScapes) or regions (own boxes) in file order.

Differences from the reference, all deliberate: the noise is seeded (``seed``), the frame split is
seeded or read from a file (the reference drew it unseeded and kept it in pickles, which anonlens
never loads: convert them to JSON, see docs/research.md), every input problem is listed before anything
is written, and a ``prepare.json`` records the options and counts.

:class:`AganCrops` reads the prepared folder for training (the reference's ``aligned`` loader with
``resize_crop_contrast`` preprocessing and the box filled with solid mid-grey at load time).
"""

from __future__ import annotations

import io
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np
from PIL import Image

from ...audit import dumps_strict
from ...detectors.boxes import Boxes
from ...errors import AnonlensError, ImageReadError
from ...io import read_image, write_atomic
from ...io.files import discover_inputs, is_within
from .crops import crop_origin

__all__ = ["PrepareOptions", "PrepareReport", "prepare_cityscapes", "prepare_from_boxes", "noise_fill", "crop_origin",
           "read_crop", "AganCrops", "PHASES"]

PHASES = ("train", "val", "test")
_LEFT = "_leftImg8bit.png"
_BOXES = "_gtBboxCityPersons.json"


@dataclass(frozen=True)
class PrepareOptions:
    """What :func:`prepare_cityscapes` / :func:`prepare_from_boxes` keep and how they split."""

    size: int = 256
    min_width: int = 40
    max_width: int = 100
    min_height: int = 120
    max_height: int = 250
    label: str = "pedestrian"
    #: share of frames for validation and test (the rest trains); ignored with ``splits``
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    #: a JSON file ``{"train": [frame, ...], "val": [...], "test": [...]}`` (frame = file name
    #: without ``_leftImg8bit.png``, or the image key for own boxes); frames not listed are left out
    splits: str | None = None
    #: a text file (one id per line) or JSON list of persons to leave out (``<frame>_<i>``)
    exclude: str | None = None

    def __post_init__(self):
        if self.size < 32 or self.size & (self.size - 1):
            raise AnonlensError(f"crop size must be a power of two >= 32; got {self.size}")
        if not (0 < self.min_width <= self.max_width < self.size and 0 < self.min_height <= self.max_height < self.size):
            raise AnonlensError(f"box size limits must satisfy 0 < min <= max < crop size {self.size}; got width "
                                f"{self.min_width}..{self.max_width}, height {self.min_height}..{self.max_height}")
        if self.val_fraction < 0 or self.test_fraction < 0 or self.val_fraction + self.test_fraction >= 1:
            raise AnonlensError("val and test fractions must be >= 0 and leave frames for training")


@dataclass
class PrepareReport:
    output: str
    frames: int = 0
    persons: int = 0
    written: dict[str, int] = field(default_factory=lambda: {p: 0 for p in PHASES})
    skipped: dict[str, int] = field(default_factory=lambda: {"size": 0, "excluded": 0, "crop_outside_frame": 0, "label": 0})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def noise_fill(image: np.ndarray, x: int, y: int, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``image`` with ``[y, y+h] x [x, x+w]`` (inclusive, as the reference) filled with
    grey noise: one value per pixel from {0, 127, 255}, the same in every channel."""
    out = image.copy()
    region = out[y : y + h + 1, x : x + w + 1]
    values = rng.choice(np.array([0, 127, 255], np.uint8), size=region.shape[:2])
    region[...] = values[..., None]
    return out


def _read_rgb(path: Path) -> np.ndarray:
    return read_image(path).rgb


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _load_list(path: str | None, what: str) -> Any:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise AnonlensError(f"{what} file not found: {p}")
    if p.suffix.lower() in (".pkl", ".pickle"):
        raise AnonlensError(f"{p}: pickles are never loaded (they can run code); convert it once, with a Python you trust, "
                            "to JSON: a list of names, or for splits {\"train\": [...], \"val\": [...], \"test\": [...]}")
    text = p.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        if what == "exclusion list":
            return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        raise AnonlensError(f"{p}: not valid JSON") from None


def _phase_of(frames: list[str], opts: PrepareOptions) -> dict[str, str]:
    """Frame -> phase: from the splits file, or a seeded shuffle of the sorted frames."""
    listed = _load_list(opts.splits, "splits")
    if listed is not None:
        if not isinstance(listed, dict) or not set(listed) <= set(PHASES):
            raise AnonlensError(f"{opts.splits}: expected {{\"train\": [...], \"val\": [...], \"test\": [...]}}")
        out: dict[str, str] = {}
        for phase, names in listed.items():
            for n in names:
                stem = str(n)[: -len(_LEFT)] if str(n).endswith(_LEFT) else str(n)
                if stem in out:
                    raise AnonlensError(f"{opts.splits}: frame {stem} is in both {out[stem]} and {phase}")
                out[stem] = phase
        return out
    order = sorted(frames)
    random.Random(opts.seed).shuffle(order)
    n_val, n_test = int(round(len(order) * opts.val_fraction)), int(round(len(order) * opts.test_fraction))
    return {f: "val" if i < n_val else "test" if i < n_val + n_test else "train" for i, f in enumerate(order)}


def _check_output(out: Path, inputs: Iterable[Path]) -> None:
    for p in inputs:
        if is_within(out.resolve(), p.resolve()) or is_within(p.resolve(), out.resolve()):
            raise AnonlensError(f"output folder {out} must be outside the input folder {p}")
    if (out / "images").exists() and any((out / "images").rglob("*.png")):
        raise AnonlensError(f"output folder {out} already holds prepared crops; choose an empty folder")


def _write_person(out: Path, phase: str, name: str, image: np.ndarray, box: tuple[int, int, int, int],
                  opts: PrepareOptions, rng: np.random.Generator, report: PrepareReport) -> None:
    x, y, w, h = box
    height, width = image.shape[:2]
    noisy = noise_fill(image, x, y, w, h, rng)
    x1, y1, x2, y2 = crop_origin(x + w // 2, y + h // 2, width, height, opts.size)
    crop, crop_noisy = image[y1:y2, x1:x2], noisy[y1:y2, x1:x2]
    if crop.shape[:2] != (opts.size, opts.size):
        report.skipped["crop_outside_frame"] += 1
        return
    ab = np.concatenate([crop, crop_noisy], axis=1)
    nx, ny = x - x1, y - y1
    write_atomic(out / "images" / phase / f"{name}.png", _png(ab))
    write_atomic(out / "bbox" / phase / f"{name}.json",
                 json.dumps({"x1": nx, "y1": ny, "x2": nx + w + 1, "y2": ny + h + 1}).encode())
    report.written[phase] += 1


def _keep(w: int, h: int, opts: PrepareOptions) -> bool:
    return opts.min_width <= w <= opts.max_width and opts.min_height <= h <= opts.max_height


def _shift_inside(x: int, y: int, w: int, h: int, width: int, height: int) -> tuple[int, int]:
    """The reference's fix of boxes past the right/bottom edge (it moves one pixel further)."""
    if x + w - width > 0:
        x -= x + w - width + 1
    if y + h - height > 0:
        y -= y + h - height + 1
    return max(0, x), max(0, y)


def _write_frames(out: Path, frames: dict[str, tuple[Callable[[], np.ndarray], list]], opts: PrepareOptions,
                  report: PrepareReport, progress: Callable[[int, int], None] | None) -> None:
    """Every person of every frame (``stem -> (image loader, [x, y, w, h] boxes)``), in frame order,
    through the exclusion list, the size filter and the split."""
    exclude = set(map(str, _load_list(opts.exclude, "exclusion list") or []))
    phase_of = _phase_of(list(frames), opts)
    rng = np.random.default_rng(opts.seed)
    for k, (stem, (load, boxes)) in enumerate(sorted(frames.items())):
        if progress:
            progress(k, len(frames))
        phase = phase_of.get(stem)
        if phase is None:
            continue
        image = load()
        height, width = image.shape[:2]
        for i, box in enumerate(boxes):
            report.persons += 1
            x, y, w, h = (int(v) for v in box)
            x, y = _shift_inside(x, y, w, h, width, height)
            name = f"{stem}_{i}"
            if name in exclude:
                report.skipped["excluded"] += 1
            elif not _keep(w, h, opts):
                report.skipped["size"] += 1
            else:
                _write_person(out, phase, name, image, (x, y, w, h), opts, rng, report)
    if progress:
        progress(len(frames), len(frames))


def _finish(out: Path, report: PrepareReport, opts: PrepareOptions, source: dict[str, Any]) -> PrepareReport:
    write_atomic(out / "prepare.json", dumps_strict({"options": asdict(opts), "source": source, **report.to_dict()}, indent=2).encode())
    return report


def prepare_cityscapes(root: str | os.PathLike, output: str | os.PathLike, options: PrepareOptions | None = None, *,
                       progress: Callable[[int, int], None] | None = None) -> PrepareReport:
    """Build A-GAN's crops from ``root`` (``leftImg8bit/{train,val}/<city>/*`` and
    ``gtBboxCityPersons/{train,val}/<city>/*``, pooled as the reference does). Every missing or
    malformed annotation and image is listed in one error before anything is written."""
    opts = options or PrepareOptions()
    root, out = Path(root), Path(output)
    problems: list[str] = []
    frames: dict[str, tuple[Path, list[list[float]]]] = {}
    label_skipped = 0
    for d in ("leftImg8bit", "gtBboxCityPersons"):
        if not (root / d).is_dir():
            problems.append(f"{root / d}: folder missing (expected CityScapes' leftImg8bit and CityPersons' gtBboxCityPersons)")
    if not problems:
        for ann in sorted((root / "gtBboxCityPersons").glob("*/*/*" + _BOXES)):
            rel = ann.relative_to(root / "gtBboxCityPersons")
            stem = ann.name[: -len(_BOXES)]
            img = root / "leftImg8bit" / rel.parent / (stem + _LEFT)
            if not img.is_file():
                problems.append(f"{ann}: its image {img} is missing")
                continue
            try:
                data = json.loads(ann.read_text(encoding="utf-8"))
                objects = data["objects"]
                boxes = []
                for o in objects:
                    if o.get("label") != opts.label:
                        label_skipped += 1
                        continue
                    vis = [float(v) for v in o["bboxVis"]]
                    if len(vis) != 4 or not all(np.isfinite(vis)):
                        raise ValueError(f"bboxVis {o['bboxVis']!r} is not four numbers")
                    boxes.append(vis)
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
                problems.append(f"{ann}: malformed CityPersons annotation ({type(exc).__name__}: {exc})")
                continue
            if stem in frames:
                problems.append(f"{ann}: frame {stem} appears twice")
                continue
            frames[stem] = (img, boxes)
        if not frames and not problems:
            problems.append(f"{root / 'gtBboxCityPersons'}: no *{_BOXES} files found under <split>/<city>/")
    if problems:
        raise AnonlensError(f"{len(problems)} problem(s) in {root}; nothing was written:\n  " + "\n  ".join(problems[:50]))
    _check_output(out, [root])
    report = PrepareReport(str(out), frames=len(frames))
    report.skipped["label"] = label_skipped
    _write_frames(out, {stem: (lambda p=p: _read_rgb(p), b) for stem, (p, b) in frames.items()}, opts, report, progress)
    return _finish(out, report, opts, {"kind": "cityscapes", "root": str(root)})


def prepare_from_boxes(images: str | os.PathLike, boxes: str | os.PathLike, output: str | os.PathLike,
                       options: PrepareOptions | None = None, *, progress: Callable[[int, int], None] | None = None) -> PrepareReport:
    """The same crops from a folder of images and a region file in anonlens' format (keys relative
    to ``images``; a region's ``box`` ``[x1, y1, x2, y2]`` becomes ``[x1, y1, x2-x1, y2-y1]``). Keys
    that match no image, unreadable images and invalid regions are listed before anything is written."""
    opts = options or PrepareOptions()
    images, out = Path(images), Path(output)
    if not images.is_dir():
        raise AnonlensError(f"image folder not found: {images}")
    table = Boxes(file=str(boxes))
    inputs = {f.rel: f.path for f in discover_inputs([images]) if f.skip is None and f.supported}
    match = table.match_inputs(sorted(inputs))
    problems = list(match["ambiguous"]) + [f"{u}: matches no image in {images}" for u in match["unmatched"]]
    loaded: dict[str, tuple[np.ndarray, list[tuple[int, int, int, int]]]] = {}
    for key in sorted(match["sources"]):
        try:
            image = _read_rgb(inputs[key])
            regions = table.detect(image, source=key)
        except (ImageReadError, AnonlensError) as exc:
            problems.append(str(exc))
            continue
        loaded[key] = (image, [(int(round(r.box[0])), int(round(r.box[1])), int(round(r.box[2] - r.box[0])),
                                int(round(r.box[3] - r.box[1]))) for r in regions])
    if not loaded and not problems:
        problems.append(f"{boxes}: no region names an image in {images}")
    if problems:
        raise AnonlensError(f"{len(problems)} problem(s); nothing was written:\n  " + "\n  ".join(problems[:50]))
    _check_output(out, [images])
    stems = {k: k.rsplit(".", 1)[0].replace("/", "__") for k in loaded}
    report = PrepareReport(str(out), frames=len(loaded))
    _write_frames(out, {stems[k]: (lambda im=im: im, regs) for k, (im, regs) in loaded.items()}, opts, report, progress)
    return _finish(out, report, opts, {"kind": "boxes", "images": str(images), "boxes": str(boxes)})


# --------------------------------------------------------------------------- loading for training


def read_crop(image_path: str | os.PathLike, bbox_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """``(original, noisy_input, (x1, y1, x2, y2))`` of one prepared AB file; errors name the file."""
    try:
        with Image.open(image_path) as im:
            ab = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise AnonlensError(f"{image_path}: not a readable image ({exc})") from None
    h, w2 = ab.shape[:2]
    if w2 != 2 * h:
        raise AnonlensError(f"{image_path}: expected an AB image twice as wide as high (left original, right input); got {w2}x{h}")
    try:
        b = json.loads(Path(bbox_path).read_text(encoding="utf-8"))
        box = tuple(int(b[k]) for k in ("x1", "y1", "x2", "y2"))
    except FileNotFoundError:
        raise AnonlensError(f"{image_path}: its box file {bbox_path} is missing") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise AnonlensError(f"{bbox_path}: expected {{\"x1\", \"y1\", \"x2\", \"y2\"}} ({exc})") from None
    x1, y1, x2, y2 = box
    if not (0 <= x1 < x2 <= h and 0 <= y1 < y2 <= h):
        raise AnonlensError(f"{bbox_path}: box {list(box)} is not inside the {h}x{h} crop")
    return ab[:, :h], ab[:, h:], box  # type: ignore[return-value]


def _resize_box(box, f: float, size: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return (max(0, int(np.floor(x1 * f))), max(0, int(np.floor(y1 * f))), min(size, int(np.ceil(x2 * f))), min(size, int(np.ceil(y2 * f))))


class AganCrops:
    """A prepared phase as a torch dataset. Each item: ``input`` (3, S, S) in [-1, 1] with the box
    filled (solid mid-grey by default, the reference's ``--bbox_noise none``; ``"noise"``: the stored
    noise), ``real`` (3, S, S), ``mask`` (1, S, S: +1 outside the box, -1 inside, the generator's 4th
    channel), ``box`` (4,) int64 ``x1, y1, x2, y2``, ``name``.

    ``augment=True`` is the reference's ``resize_crop_contrast``: resize to ``load_size`` (286,
    bicubic), a random ``size`` crop (drawn again, up to 5 times, while the box would be under
    ``min_box`` px), contrast x U(1.0, 1.2) (the same factor on input and target, so the pair
    stays aligned), horizontal flip with p 0.5. ``small`` adds ``*_small`` versions at half size
    (the two-stage model's stage 1)."""

    def __init__(self, root: str | os.PathLike, phase: str = "train", *, augment: bool | None = None, size: int = 256,
                 load_size: int = 286, fill: str = "grey", min_box: int = 32, small: bool = False, limit: int | None = None):
        self.root = Path(root)
        folder = self.root / "images" / phase
        if not folder.is_dir():
            raise AnonlensError(f"{folder}: no prepared '{phase}' crops (run `anonlens agan prepare` first)")
        self.paths = sorted(folder.glob("*.png"))[:limit]
        if not self.paths:
            raise AnonlensError(f"{folder}: no .png crops")
        if fill not in ("grey", "noise"):
            raise AnonlensError(f"box fill must be 'grey' or 'noise'; got {fill!r}")
        self.phase, self.size, self.load_size, self.fill, self.min_box, self.small = phase, int(size), int(load_size), fill, int(min_box), bool(small)
        self.augment = (phase == "train") if augment is None else bool(augment)
        self._seed = 0

    def seed(self, seed: int) -> None:
        """Seed the augmentation (each item draws from ``(seed, index)``: the same with any
        number of loader workers and after a resume)."""
        self._seed = int(seed)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
        p = self.paths[i]
        return read_crop(p, self.root / "bbox" / self.phase / (p.stem + ".json"))

    def _geometry(self, real: np.ndarray, inp: np.ndarray, box, rng: random.Random):
        s = real.shape[0]
        if s != self.size or self.augment:
            target = self.load_size if self.augment else self.size
            real = cv2.resize(real, (target, target), interpolation=cv2.INTER_CUBIC)
            inp = cv2.resize(inp, (target, target), interpolation=cv2.INTER_CUBIC)
            box = _resize_box(box, target / s, target)
        if self.augment:
            big = real.shape[0]
            for _ in range(5):  # the reference re-draws the crop while the box is too small
                ox, oy = rng.randint(0, big - self.size), rng.randint(0, big - self.size)
                b = (max(0, box[0] - ox), max(0, box[1] - oy), min(self.size, box[2] - ox), min(self.size, box[3] - oy))
                if b[2] - b[0] >= self.min_box and b[3] - b[1] >= self.min_box:
                    break
            real, inp, box = real[oy : oy + self.size, ox : ox + self.size], inp[oy : oy + self.size, ox : ox + self.size], b
            factor = rng.uniform(1.0, 1.2)
            real, inp = _contrast(real, factor), _contrast(inp, factor)
            if rng.random() < 0.5:
                real, inp = real[:, ::-1], inp[:, ::-1]
                box = (self.size - box[2], box[1], self.size - box[0], box[3])
        return np.ascontiguousarray(real), np.ascontiguousarray(inp), box

    def __getitem__(self, i: int) -> dict[str, Any]:
        real, inp, box = self.load(i)
        real, inp, box = self._geometry(real, inp, box, random.Random(self._seed * 1_000_003 + i))
        item = _tensors(real, inp, box, self.fill)
        item["name"] = self.paths[i].stem
        if self.small:
            half = self.size // 2
            sbox = _resize_box(box, 0.5, half)
            small = _tensors(cv2.resize(real, (half, half), interpolation=cv2.INTER_AREA),
                             cv2.resize(inp, (half, half), interpolation=cv2.INTER_AREA), sbox, self.fill)
            item.update({f"{k}_small": v for k, v in small.items()})
        return item


def _contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """torchvision's ``adjust_contrast``: blend with the mean of the grey image."""
    grey = (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]).mean()
    return np.clip(grey + factor * (img.astype(np.float32) - grey), 0, 255).astype(np.uint8)


def _tensors(real: np.ndarray, inp: np.ndarray, box, fill: str) -> dict[str, Any]:
    import torch

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 127.5 - 1.0

    real_t, inp_t = t(real), t(inp)
    x1, y1, x2, y2 = box
    if fill == "grey":
        inp_t[:, y1:y2, x1:x2] = 0.0
    mask = torch.ones(1, *real_t.shape[1:])
    mask[:, y1:y2, x1:x2] = -1.0
    return {"input": inp_t, "real": real_t, "mask": mask, "box": torch.tensor(box, dtype=torch.int64)}
