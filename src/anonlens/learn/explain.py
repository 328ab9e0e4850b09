"""Grad-CAM explanations of HA1/HA2 metrics (captum's LayerGradCam).

The target is the anonymity score on the human 1..10 scale, so regression and classification
models are explained the same way: ``target="raise"`` shows what raises the score (what makes the
image look more anonymous), ``"lower"`` what lowers it (what still gives the person away). For
HA2 the map is with respect to the anonymized input; the original's embedding is held fixed.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

from ..errors import AnonlensError
from .models import ModelConfig
from .scoring import CLASS_MIDPOINTS

__all__ = ["gradcam", "target_layer", "overlay"]


def target_layer(model: nn.Module, config: ModelConfig) -> nn.Module:
    """The last convolutional block of the backbone (ResNet: ``layer4[-1]``, as the reference)."""
    b = model.backbone
    if config.backbone.startswith("resnet"):
        return b.layer4[-1]
    if config.backbone.startswith(("densenet", "vgg", "alexnet", "mobilenet", "efficientnet")):
        return b.features[-1]
    raise AnonlensError(f"Grad-CAM needs a convolutional backbone; '{config.backbone}' has none (use a ResNet, DenseNet, VGG, AlexNet, MobileNet or EfficientNet)")


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
    from PIL import Image

    from .data import normalize

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
    import cv2
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
    cam = LayerGradCam(scorer, layer or target_layer(model, config))
    attr = cam.attribute(x, relu_attributions=True)
    attr = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    heat = attr[0, 0].detach().float().numpy()
    heat = cv2.resize(heat, (anonymized.shape[1], anonymized.shape[0]), interpolation=cv2.INTER_LINEAR)
    top = float(heat.max())
    return np.clip(heat / top, 0, 1) if top > 0 else np.zeros_like(heat)


def overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """The heat map (JET colours) blended over the RGB image."""
    import cv2

    colour = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)[:, :, ::-1]
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * colour.astype(np.float32), 0, 255))
