"""Grad-CAM explanations of HA1/HA2 metrics (captum's LayerGradCam).

The target is the anonymity score on the human 1..10 scale, so regression and classification
models are explained the same way: ``target="raise"`` shows what raises the score (what makes the
image look more anonymous), ``"lower"`` what lowers it (what still gives the person away). For
HA2 the map is with respect to the anonymized input; the original's embedding is held fixed.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import AnonlensError
from .data import normalize
from .models import ModelConfig
from .scoring import CLASS_MIDPOINTS

__all__ = ["gradcam", "target_layer", "overlay"]


def target_layer(model: nn.Module, config: ModelConfig) -> nn.Module:
    """The last convolutional block of the backbone (ResNet: ``layer4[-1]``, as the reference);
    for ViT the first LayerNorm of the last encoder block (its patch tokens, read as a 14x14 map,
    still feed the class token; the block's own output tokens do not)."""
    b = model.backbone
    if config.backbone.startswith("vit"):
        return b.encoder.layers[-1].ln_1
    if config.backbone.startswith("resnet"):
        return b.layer4[-1]
    if config.backbone.startswith(("densenet", "vgg", "alexnet", "mobilenet", "efficientnet")):
        return b.features[-1]
    raise AnonlensError(f"no Grad-CAM layer rule for backbone '{config.backbone}'")


class _Score(nn.Module):
    """anonymized -> anonymity score (1..10); the original's embedding is a constant."""

    def __init__(self, model, config: ModelConfig, original_embedding: torch.Tensor | None, sign: float):
        super().__init__()
        self.model, self.config, self.orig_emb, self.sign = model, config, original_embedding, sign

    def forward(self, anonymized: torch.Tensor) -> torch.Tensor:
        emb = self.model.backbone(anonymized)
        if self.config.ha == "HA2":
            out = self.model.head(torch.cat([self.orig_emb.expand(emb.shape[0], -1), emb], dim=1))
        else:
            out = self.model.head(emb)
        if self.config.task == "regression":
            p = torch.sigmoid(out).reshape(-1)
            if self.config.labels == "mean":
                score = 1 + 9 * p
            else:
                mids = torch.tensor(CLASS_MIDPOINTS[self.config.labels], dtype=p.dtype)
                pos = p * (len(mids) - 1)
                lo = pos.floor().clamp(max=len(mids) - 2).long()
                score = mids[lo] + (pos - lo) * (mids[lo + 1] - mids[lo])
        else:
            mids = torch.tensor(CLASS_MIDPOINTS[self.config.labels], dtype=out.dtype)
            score = torch.softmax(out, dim=1) @ mids
        return self.sign * score


def _prepare(image: np.ndarray, config: ModelConfig) -> torch.Tensor:
    s = config.input_size
    arr = np.array(Image.fromarray(image).resize((s, s), Image.BILINEAR))  # a writable copy for torch
    return normalize(torch.from_numpy(arr).permute(2, 0, 1)[None], config.mean, config.std)


def gradcam(
    model: nn.Module,
    config: ModelConfig,
    anonymized: np.ndarray,
    original: np.ndarray | None = None,
    *,
    target: Literal["raise", "lower"] = "raise",
    layer: nn.Module | None = None,
) -> np.ndarray:
    """Grad-CAM map (H, W) in [0, 1] at the anonymized image's size."""
    from captum.attr import LayerAttribution, LayerGradCam

    if target not in ("raise", "lower"):
        raise AnonlensError(f"target must be 'raise' or 'lower', got '{target}'")
    if config.ha == "HA2" and original is None:
        raise AnonlensError("explaining an HA2 (pair) model needs the original image too")
    model = model.eval()
    x = _prepare(anonymized, config).requires_grad_(True)
    orig_emb = None
    if config.ha == "HA2":
        with torch.no_grad():
            orig_emb = model.backbone(_prepare(original, config))
    scorer = _Score(model, config, orig_emb, 1.0 if target == "raise" else -1.0)
    if config.backbone.startswith("vit") and layer is None:
        attr = _token_gradcam(scorer, target_layer(model, config), x)
    else:
        cam = LayerGradCam(scorer, layer or target_layer(model, config))
        attr = cam.attribute(x, relu_attributions=True)
    attr = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    heat = attr[0, 0].detach().float().numpy()
    heat = cv2.resize(heat, (anonymized.shape[1], anonymized.shape[0]), interpolation=cv2.INTER_LINEAR)
    top = float(heat.max())
    return np.clip(heat / top, 0, 1) if top > 0 else np.zeros_like(heat)


def _token_gradcam(scorer: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Grad-CAM on a ViT block: its output ``(B, 1 + N, C)`` without the class token is read as a
    ``(B, C, sqrt(N), sqrt(N))`` map (the usual ViT reshape), then the same formula as captum's
    LayerGradCam: ReLU(sum_c mean(grad_c) * A_c)."""
    acts: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, i, o: acts.append(o))
    try:
        out = scorer(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(out.sum(), acts[0])
    a, g = acts[0][:, 1:], grad[:, 1:]
    side = int(round(a.shape[1] ** 0.5))
    a = a.transpose(1, 2).reshape(a.shape[0], -1, side, side)
    g = g.transpose(1, 2).reshape(g.shape[0], -1, side, side)
    weights = g.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * a).sum(dim=1, keepdim=True)).detach()


def overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """The heat map (JET colours) blended over the RGB image."""
    colour = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)[:, :, ::-1]
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * colour.astype(np.float32), 0, 255))
