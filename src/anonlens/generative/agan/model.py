"""A trained A-GAN generator: its files, importing the reference's checkpoints, and replacing the
people of a whole frame.

Files: ``NAME.safetensors`` (the generator's tensors, ``G1.*`` and for the two-stage model
``G2.*``) and ``NAME.json`` (``kind: agan-generator``, the training config); nothing executable.
The reference's ``best_net_G.pth`` (two-stage: ``best_net_G1.pth`` + ``best_net_G2.pth``) imports
once with ``weights_only=True``; a state dict that does not fit the architecture is an error listing
the keys, never the reference's silent start from random weights.

:func:`replace_people` works on frames of any size: for each person region a square window around
its box (256 px, or larger and resized to 256 for people larger than the training crops: at most
``max_box`` of the window), the box filled with grey as in training, the generator run, and the
output blended back through a feathered copy of the region mask: pixels outside the mask never
change, the seam ramps over ``feather`` of the box's shorter side.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ...errors import AnonlensError
from ...learn.checkpoint import read_model_files, write_model_files
from ...weights import WeightSpec, WEIGHTS, load_state_dict, register_weights, resolve_weights
from .config import preset as make_preset
from .networks import AGAN_NETWORKS
from .crops import crop_origin

__all__ = ["AganGenerator", "save_generator", "load_generator", "import_reference", "replace_people", "GENERATOR_WEIGHTS"]

KIND = "agan-generator"
#: the default generator file of the ``agan`` operator (no published weights exist: train your own)
GENERATOR_WEIGHTS = "agan-generator"
if GENERATOR_WEIGHTS not in WEIGHTS:
    register_weights(WeightSpec(
        name=GENERATOR_WEIGHTS, filename="agan_generator.safetensors", license="yours (trained with `anonlens agan train`)",
        description="an A-GAN generator trained with `anonlens agan train` (its .json beside it)",
    ))


class AganGenerator(nn.Module):
    """The generator(s) of a trained model: ``G1`` alone (single-stage) or ``G1`` (128 px) feeding
    the residual ``G2`` (256 px). :meth:`forward` takes ``(B, 3, S, S)`` inputs in [-1, 1] with the
    box already filled and ``(B, 4)`` boxes; returns ``(B, 3, S, S)``."""

    def __init__(self, stages: list[dict[str, Any]], *, ngf: int = 64, dropout: bool = True, decoder_noise: bool = True):
        super().__init__()
        self.stages = [dict(s) for s in stages]
        self.nets = nn.ModuleDict({f"G{i + 1}": AGAN_NETWORKS.create(s["generator"], ngf=ngf, dropout=dropout, decoder_noise=decoder_noise)
                                   for i, s in enumerate(stages)})
        self.size = int(stages[-1]["size"])

    @staticmethod
    def _mask(boxes: torch.Tensor, size: int, scale: float, device) -> torch.Tensor:
        m = torch.ones(len(boxes), 1, size, size, device=device)
        for i, b in enumerate(boxes.tolist()):
            x1, y1 = int(np.floor(b[0] * scale)), int(np.floor(b[1] * scale))
            x2, y2 = int(np.ceil(b[2] * scale)), int(np.ceil(b[3] * scale))
            m[i, :, y1:y2, x1:x2] = -1.0
        return m

    def forward(self, inp: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        s = inp.shape[-1]
        mask = self._mask(boxes, s, 1.0, inp.device)
        if len(self.nets) == 1:
            return self.nets["G1"](torch.cat([inp, mask], 1))
        small_size = int(self.stages[0]["size"])
        small = F.interpolate(inp, size=(small_size, small_size), mode="area")
        small_mask = self._mask(boxes, small_size, small_size / s, inp.device)
        out1 = self.nets["G1"](torch.cat([small, small_mask], 1))
        up = F.interpolate(out1, size=(s, s), mode="bilinear", align_corners=False)
        return self.nets["G2"](torch.cat([up, mask], 1))


def _paths(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p


def save_generator(nets: dict[str, nn.Module], path: str | os.PathLike, *, config, extra: dict[str, Any] | None = None) -> Path:
    """Write the generators ``{"G1": ..., ["G2": ...]}`` of a training run as a model file pair."""
    holder = nn.ModuleDict(nets)
    cfg = config.to_dict()
    doc = {"kind": KIND, "preset": cfg["preset"], "stages": cfg["stages"], "ngf": cfg["ngf"], "dropout": cfg["dropout"],
           "decoder_noise": cfg["decoder_noise"], "fill": cfg["fill"], **(extra or {})}
    return write_model_files(holder, _paths(path), doc)


def load_generator(path: str | os.PathLike | None = None, *, device: str = "cpu") -> tuple[AganGenerator, dict[str, Any]]:
    """``(generator, document)`` from a model file pair; ``path`` None: the weights registry's
    ``agan-generator`` (an error naming the file and where it was looked for when it is missing)."""
    if path is None:
        path = resolve_weights(GENERATOR_WEIGHTS)
    weights, doc = read_model_files(_paths(path), kind=KIND, what="A-GAN generator",
                                    hint=" (import a reference best_net_G.pth with `anonlens agan import`)")
    gen = AganGenerator(doc["stages"], ngf=int(doc.get("ngf", 64)), dropout=bool(doc.get("dropout", True)),
                        decoder_noise=bool(doc.get("decoder_noise", True)))
    _load_strict(gen.nets, load_state_dict(weights), weights)
    return gen.to(device), doc


def _load_strict(net: nn.Module, state: dict[str, torch.Tensor], where) -> None:
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
        raise AnonlensError(f"{where}: the weights do not fit the architecture: " + "; ".join(parts) +
                            ". Check the preset and ngf (the reference's options --netG, --ngf, --netG_mask_input, --netG_noise).")
    net.load_state_dict(state)


def import_reference(paths: list[str | os.PathLike], dest: str | os.PathLike, *, preset: str = "single-stage", ngf: int = 64) -> Path:
    """Import the reference's generator checkpoint(s) (``best_net_G.pth``; two-stage: G1 then G2)
    into an anonlens model file pair; ``weights_only=True``, a DataParallel ``module.`` prefix removed."""
    cfg = make_preset(preset, ngf=ngf)
    if len(paths) != len(cfg.stages):
        raise AnonlensError(f"preset {preset} has {len(cfg.stages)} generator(s); got {len(paths)} checkpoint file(s)")
    nets: dict[str, nn.Module] = {}
    for i, (p, spec) in enumerate(zip(paths, cfg.stages)):
        state = load_state_dict(p)
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        net = AGAN_NETWORKS.create(spec.generator, ngf=ngf)
        _load_strict(net, state, p)
        nets[f"G{i + 1}"] = net
    return save_generator(nets, dest, config=cfg, extra={"imported_from": [str(p) for p in paths]})


# --------------------------------------------------------------------------- whole frames


def feathered_alpha(mask: np.ndarray, width: float) -> np.ndarray:
    """0 outside ``mask``, rising linearly over ``width`` px inside it to 1."""
    if width <= 1:
        return mask.astype(np.float32)
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    return np.clip(dist / float(width), 0.0, 1.0).astype(np.float32) * mask


def _window(box, shape, size: int, max_box: tuple[float, float]) -> tuple[int, int, int, int, float]:
    """The square window (image px) around ``box`` and its scale to ``size``."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    scale = max(1.0, bw / (max_box[0] * size), bh / (max_box[1] * size))
    side = int(np.ceil(size * scale))
    h, w = shape[:2]
    wx1, wy1, wx2, wy2 = crop_origin(x1 + bw // 2, y1 + bh // 2, max(w, side), max(h, side), side)
    return wx1, wy1, wx2, wy2, side / size


@torch.no_grad()
def replace_people(image: np.ndarray, mask: np.ndarray, generator: AganGenerator, *, feather: float = 0.1,
                   max_box: tuple[float, float] = (100 / 256, 250 / 256), seed: int | None = None,
                   train_mode_bn: bool = True, device: str | None = None) -> np.ndarray:
    """Replace the person inside ``mask`` (bool ``(H, W)``) of ``image`` (``(H, W, 3)`` uint8) with
    a generated one (module docstring); returns a new image. ``train_mode_bn`` keeps BatchNorm on
    the batch statistics with dropout on, as the reference's inference does; False is eval mode."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return image.copy()
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    size = generator.size
    wx1, wy1, wx2, wy2, f = _window(box, image.shape, size, max_box)
    side = wx2 - wx1
    h, w = image.shape[:2]
    padded = image
    if h < wy2 or w < wx2:  # a frame smaller than the window: reflect-pad (only for the generator's context)
        padded = cv2.copyMakeBorder(image, 0, max(0, wy2 - h), 0, max(0, wx2 - w), cv2.BORDER_REFLECT_101)
    win = padded[wy1:wy2, wx1:wx2]
    small = win if side == size else cv2.resize(win, (size, size), interpolation=cv2.INTER_AREA)
    bx1, by1 = int(np.floor((box[0] - wx1) / f)), int(np.floor((box[1] - wy1) / f))
    bx2, by2 = min(size, int(np.ceil((box[2] - wx1) / f))), min(size, int(np.ceil((box[3] - wy1) / f)))
    dev = torch.device(device) if device else next(generator.parameters()).device
    inp = torch.from_numpy(np.ascontiguousarray(small)).permute(2, 0, 1).float().div(127.5).sub(1.0).unsqueeze(0).to(dev)
    inp[:, :, by1:by2, bx1:bx2] = 0.0  # solid mid-grey, as in training
    generator.train(train_mode_bn)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seed))
        out = generator(inp, torch.tensor([[bx1, by1, bx2, by2]], device=dev))
    gen = ((out[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    if side != size:
        gen = cv2.resize(gen, (side, side), interpolation=cv2.INTER_CUBIC)
    vx2, vy2 = min(wx2, w), min(wy2, h)
    alpha = feathered_alpha(mask[wy1:vy2, wx1:vx2], feather * max(1, min(box[2] - box[0], box[3] - box[1])))[..., None]
    result = image.copy()
    region = result[wy1:vy2, wx1:vx2].astype(np.float32)
    blended = alpha * gen[: vy2 - wy1, : vx2 - wx1].astype(np.float32) + (1 - alpha) * region
    result[wy1:vy2, wx1:vx2] = np.where(alpha > 0, np.clip(np.round(blended), 0, 255), region).astype(np.uint8)
    return result

