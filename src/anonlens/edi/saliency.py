"""Saliency: which pixels reveal the identity. One function per method, in a registry.

Every method has the signature ``(oracle, target, current, perturbed, candidates, *, rng, **options)
-> map`` where ``current`` is the image now, ``perturbed`` the operator's output for it,
``candidates`` the boolean ``(H, W)`` region EDI may change, and ``map`` an ``(H, W)`` (per pixel)
or ``(H, W, 3)`` (per element) array, larger = more identity-revealing. Methods:

- ``gradient`` (white-box): the reference's input gradient of the cross-entropy toward the
  runner-up class, per element (a classifier oracle); for dlib's network (torch engine) the
  gradient of the identity distance times the change the operator would make to each element:
  the first-order gain in distance of swapping it in;
- ``gradcam`` (white-box): Grad-CAM of the true identity (captum ``LayerGradCam``);
- ``occlusion`` (black-box): captum's ``Occlusion`` with the perturbed image as the baseline: how
  much the oracle's evidence drops when a window is replaced by the operator's output;
- ``rise`` (black-box): RISE-style random masks (Petsiuk et al. 2018) of perturbed pixels, each
  weighted by the evidence drop it causes.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import cv2
import numpy as np

from ..errors import AnonlensError, UnknownNameError
from ..operators.functional import mask_bbox
from ..registry import Registry, suggest

__all__ = ["SALIENCY", "saliency_map", "default_saliency", "check_saliency", "gradient_times_delta"]

SaliencyFn = Callable[..., np.ndarray]
SALIENCY: Registry[SaliencyFn] = Registry("saliency method")


def default_saliency(oracle) -> str:
    """The oracle's own choice (``preferred_saliency``), else ``gradient`` for white-box oracles
    (the reference), ``occlusion`` for black-box ones."""
    return getattr(oracle, "preferred_saliency", None) or ("gradient" if oracle.white_box else "occlusion")


def gradient_times_delta(gradient: np.ndarray, current: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """First-order change of the oracle's distance if each element took the operator's value:
    ``gradient * (perturbed - current)`` per element (larger: the swap moves the face further from
    the person). Elements the operator no longer changes score 0."""
    return gradient * (perturbed.astype(np.float32) - current.astype(np.float32))


def _need_white_box(oracle, method: str) -> None:
    if not oracle.white_box:
        raise AnonlensError(f"saliency '{method}' needs a white-box oracle (a torch classifier, or dlib's network on the torch "
                            f"engine: pip install 'anonlens[learn]'); '{oracle.name}' is black-box here: use occlusion or rise")


@SALIENCY.register("gradient", summary="Input gradient of CE toward the runner-up class (white-box; the reference).", extra="learn")
def gradient(oracle, target, current, perturbed, candidates, *, rng=None) -> np.ndarray:
    _need_white_box(oracle, "gradient")
    grad, _ = oracle.input_gradient(target, current)
    if getattr(oracle, "gradient_times_delta", False):
        return gradient_times_delta(grad, current, perturbed)
    return grad


@SALIENCY.register("gradcam", summary="Grad-CAM of the true identity (white-box, captum).", extra="learn")
def gradcam(oracle, target, current, perturbed, candidates, *, rng=None) -> np.ndarray:
    _need_white_box(oracle, "gradcam")
    if not hasattr(oracle, "gradcam"):
        raise AnonlensError(f"saliency 'gradcam' needs a classifier oracle (a class to explain); '{oracle.name}' has none: use gradient")
    return oracle.gradcam(target, current)


def _crop_box(candidates: np.ndarray) -> tuple[int, int, int, int]:
    box = mask_bbox(candidates)
    if box is None:
        raise AnonlensError("the candidate region is empty")
    return box


@SALIENCY.register("occlusion", summary="captum Occlusion against the oracle; baseline = the operator's output (black-box).", extra="learn")
def occlusion(oracle, target, current, perturbed, candidates, *, rng=None, windows: int = 4, overlap: bool = False) -> np.ndarray:
    """``windows`` windows across the region's larger side (``windows**2`` oracle calls; twice
    as many per side, overlapping by half, with ``overlap``)."""
    import torch
    from captum.attr import Occlusion

    y1, y2, x1, x2 = _crop_box(candidates)
    h, w = y2 - y1, x2 - x1
    win = max(1, int(np.ceil(max(h, w) / max(1, int(windows)))))
    stride = max(1, win // 2) if overlap else win
    base = current.copy()

    def forward(batch: torch.Tensor) -> torch.Tensor:
        imgs = []
        for crop in batch:
            img = base.copy()
            img[y1:y2, x1:x2] = crop.permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
            imgs.append(img)
        return torch.as_tensor(oracle.evidence(target, imgs), dtype=torch.float64)

    x = torch.from_numpy(np.array(current[y1:y2, x1:x2])).permute(2, 0, 1)[None].double()
    b = torch.from_numpy(np.array(perturbed[y1:y2, x1:x2])).permute(2, 0, 1)[None].double()
    attr = Occlusion(forward).attribute(x, sliding_window_shapes=(3, win, win), strides=(3, stride, stride), baselines=b,
                                        perturbations_per_eval=16)
    out = np.full(current.shape[:2], -np.inf)
    out[y1:y2, x1:x2] = attr[0].sum(0).numpy()
    return out


@SALIENCY.register("rise", summary="RISE-style random masks of perturbed pixels weighted by the evidence drop (black-box).")
def rise(oracle, target, current, perturbed, candidates, *, rng=None, masks: int = 32, cells: int = 6, p: float = 0.3) -> np.ndarray:
    """``masks`` random masks on a ``cells`` x ``cells`` grid (each cell perturbed with probability
    ``p``), upsampled smoothly with a random shift as in RISE."""
    rng = rng if rng is not None else np.random.default_rng(0)
    y1, y2, x1, x2 = _crop_box(candidates)
    h, w = y2 - y1, x2 - x1
    ch, cw = int(np.ceil(h / cells)), int(np.ceil(w / cells))
    base_ev = float(oracle.evidence(target, [current])[0])
    acc = np.zeros((h, w))
    imgs, ms = [], []
    for _ in range(int(masks)):
        grid = (rng.random((cells + 1, cells + 1)) < p).astype(np.float32)
        up = cv2.resize(grid, ((cells + 1) * cw, (cells + 1) * ch), interpolation=cv2.INTER_LINEAR)
        dy, dx = int(rng.integers(0, ch)), int(rng.integers(0, cw))
        m = up[dy : dy + h, dx : dx + w]
        img = current.copy()
        crop = img[y1:y2, x1:x2].astype(np.float32)
        blend = crop * (1 - m[..., None]) + perturbed[y1:y2, x1:x2].astype(np.float32) * m[..., None]
        img[y1:y2, x1:x2] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
        imgs.append(img)
        ms.append(m)
    drops = base_ev - oracle.evidence(target, imgs)
    for d, m in zip(drops, ms):
        acc += d * m
    out = np.full(current.shape[:2], -np.inf)
    out[y1:y2, x1:x2] = acc / (len(ms) * p)
    return out


WHITE_BOX_ONLY = ("gradient", "gradcam")


def check_saliency(method: str, options: dict[str, Any], oracle=None) -> None:
    """Raise a clear error for an unknown method or option, or a white-box method with a
    black-box oracle (before any work starts)."""
    SALIENCY.require(method)  # gradient, gradcam and occlusion need the 'learn' extra (torch, captum)
    if oracle is not None and method in WHITE_BOX_ONLY:
        _need_white_box(oracle, method)
        if method == "gradcam" and not hasattr(oracle, "gradcam"):
            raise AnonlensError(f"saliency 'gradcam' needs a classifier oracle (a class to explain); '{oracle.name}' has none: use gradient")

    fn = SALIENCY.get(method).factory
    allowed = [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY and p.name != "rng"]
    for key in options:
        if key not in allowed:
            raise UnknownNameError(f"saliency '{method}' has no option '{key}'.{suggest(key, allowed)} Options: {', '.join(allowed) or 'none'}")


def saliency_map(method: str, oracle, target, current, perturbed, candidates, *, rng=None, **options: Any) -> np.ndarray:
    """Run saliency ``method`` (see :data:`SALIENCY`)."""
    check_saliency(method, options)
    fn = SALIENCY.get(method).factory
    return fn(oracle, target, current, perturbed, candidates, rng=rng, **options)
