"""torchvision Mask R-CNN (COCO) as a person detector with pixel masks.

Its weights are not shipped with any package: they come from the weights registry (a path you
give, the torch hub cache, or a download you allow). Offline and without the file, creating the
detector raises :class:`~anonlens.errors.WeightsUnavailableError` naming the file and where to
put it. ``random_weights=True`` builds the network untrained (tests, benchmarks of speed).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .. import runtime
from ..checks import as_rgb_uint8
from ..regions import Region
from ..weights import load_state_dict, resolve_weights
from .base import Detector

__all__ = ["MaskRCNNPerson", "outputs_to_regions"]

COCO_PERSON = 1


def outputs_to_regions(output: dict[str, Any], *, threshold: float, mask_threshold: float = 0.5) -> list[Region]:
    """Convert one torchvision detection output dict to person regions with masks."""
    labels = output["labels"].cpu().numpy()
    scores = output["scores"].cpu().numpy()
    boxes = output["boxes"].cpu().numpy()
    masks = output.get("masks")
    regions = []
    for i in np.argsort(-scores, kind="stable"):
        if labels[i] != COCO_PERSON or scores[i] < threshold:
            continue
        mask = None
        if masks is not None:
            mask = masks[i, 0].cpu().numpy() >= mask_threshold
            if not mask.any():
                mask = None
        regions.append(Region(tuple(float(v) for v in boxes[i]), float(scores[i]), "person", mask=mask))
    return regions


class MaskRCNNPerson(Detector):
    """Mask R-CNN ResNet-50 FPN person masks (needs downloaded weights; GPU recommended)."""

    name = "maskrcnn-person"
    label = "person"
    multithreaded = True

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        weights: str | None = None,
        allow_download: bool = False,
        random_weights: bool = False,
        device: Literal["cpu", "cuda", "mps"] = "cpu",
        min_size: int = 800,
        max_size: int = 1333,
    ):
        import torch
        from torchvision.models.detection import maskrcnn_resnet50_fpn

        self.threshold = float(threshold)
        self.device = device
        self.min_size, self.max_size = int(min_size), int(max_size)
        self.random_weights = bool(random_weights)
        if runtime.num_threads() is not None:
            torch.set_num_threads(runtime.num_threads())
        model = maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=91, min_size=self.min_size, max_size=self.max_size
        )
        if random_weights:
            self.weights = None
        else:
            path = resolve_weights("maskrcnn-resnet50-fpn-coco", path=weights, allow_download=allow_download)
            model.load_state_dict(load_state_dict(path))
            self.weights = str(path)
        self._model = model.eval().to(device)
        self._torch = torch

    def detect(self, image: np.ndarray, *, source: str | None = None) -> list[Region]:
        image = as_rgb_uint8(image)
        torch = self._torch
        x = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0).to(self.device)
        with torch.inference_mode():
            out = self._model([x])[0]
        return outputs_to_regions(out, threshold=self.threshold)
