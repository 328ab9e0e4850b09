"""Scene text: name tags, licence plates, signs, documents and screens in the frame.

The detector is PaddleOCR's PP-OCRv4 text detection network (DB, "Real-time Scene Text Detection
with Differentiable Binarization", Liao et al. 2020), the ONNX file shipped inside
``rapidocr-onnxruntime`` 1.4.4 (Apache-2.0), shipped inside anonlens (``models/NOTICE.md``) and run
on OpenVINO: offline, no download. Pre- and post-processing are the reference's (RapidOCR's
``TextDetector``: BGR input, the shorter side scaled up to 736 px, sizes rounded to multiples of
32, probability map > 0.3, 2x2 dilation, a box per contour scored by its mean probability, boxes
scoring under 0.5 dropped, each box grown by the DB "unclip" distance ``area * ratio /
perimeter``); a test checks our boxes against RapidOCR's own by IoU. What anonlens adds:

- a second pass on a copy whose longer side is 960 px for images over 1,500 px, so that text
  filling much of the frame is found, and a pass at twice the resolution (up to ``max_side``) so
  that small name tags are found too (``small_text``; merged: every box is kept);
- ``unclip=2.0`` by default (the reference: 1.6): regions a little larger than the letters;
- every region carries its rotated quadrilateral (``polygon``): rotated text is anonymized along
  its own angle, not by an axis-aligned box around it;
- :meth:`TextDetector.residual` (verification: is text still detected over a region) and
  :class:`TextRecognizer` (PP-OCRv4 recognition, for ``--keep-text`` and the release gate's
  "still readable" check), both on the same shipped models.

Not found: handwriting (sometimes), text smaller than about 6 px high, heavily occluded or
strongly curved text.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import cv2
import numpy as np

from .. import runtime
from ..checks import as_rgb_uint8
from ..errors import AnonlensError
from ..regions import covers, Region
from ..weights import resolve_weights
from .base import Detector, ious

__all__ = ["TextDetector", "TextRecognizer", "rotated_crop"]

_MEAN, _STD = 0.5, 0.5
_LOCK = threading.Lock()
_COMPILED: dict[str, Any] = {}  # model path -> compiled dynamic-shape OpenVINO model (per process)


def _compiled(path: str):
    """One dynamic-shape OpenVINO model per file and process (compiled once, ~0.4 s)."""
    with _LOCK:
        model = _COMPILED.get(path)
        if model is None:
            import openvino as ov

            model = _COMPILED[path] = ov.Core().compile_model(path, "CPU", runtime.openvino_cpu_config())
        return model


class _Session:
    """A thread's infer request on a shared compiled model."""

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = _compiled(self.path).create_infer_request()
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()


def _order_quad(pts: np.ndarray) -> np.ndarray:
    """Four points as top-left, top-right, bottom-right, bottom-left (the reference's order)."""
    xs = pts[np.argsort(pts[:, 0])]
    left, right = xs[:2], xs[2:]
    tl, bl = left[np.argsort(left[:, 1])]
    tr, br = right[np.argsort(right[:, 1])]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def _mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    rect = cv2.minAreaRect(contour)
    return _order_quad(cv2.boxPoints(rect)), min(rect[1])


def _box_score(prob: np.ndarray, quad: np.ndarray) -> float:
    """Mean probability inside ``quad`` (the reference's "fast" score)."""
    h, w = prob.shape
    xmin = int(np.clip(np.floor(quad[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(quad[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(quad[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(quad[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), np.uint8)
    shifted = (quad - np.array([xmin, ymin], np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [shifted], 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(quad: np.ndarray, ratio: float) -> np.ndarray:
    """Grow a rectangle by the DB distance ``area * ratio / perimeter`` on every side. For a
    rectangle the reference's round-join polygon offset followed by its minimum-area rectangle is
    exactly this: the same centre and angle, both sides longer by twice the distance."""
    rect = cv2.minAreaRect(quad.astype(np.float32))
    (cx, cy), (rw, rh), angle = rect
    area, perimeter = rw * rh, 2 * (rw + rh)
    d = area * ratio / perimeter if perimeter > 0 else 0.0
    return cv2.boxPoints(((cx, cy), (rw + 2 * d, rh + 2 * d), angle)).astype(np.float32)


def rotated_crop(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The text in ``quad`` warped upright (the reference's crop for recognition); tall crops are
    turned 90 degrees, as the reference does."""
    quad = _order_quad(np.asarray(quad, np.float32))
    w = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    h = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    w, h = max(w, 1), max(h, 1)
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    crop = cv2.warpPerspective(image, cv2.getPerspectiveTransform(quad, dst), (w, h),
                               borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if h / w >= 1.5:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


class TextDetector(Detector):
    """Words and lines of text as rotated quadrilaterals (see the module docstring).

    Options: ``threshold`` (box score, 0.5 as the reference), ``pixel_threshold`` (0.3),
    ``unclip`` (2.0; the reference 1.6), ``min_side`` (736: the shorter side is scaled up to it),
    ``max_side`` (4096: larger images run on a copy this size), ``multiscale`` (True: the extra
    960 px pass on images over 1,500 px, and with ``small_text`` (True) a pass at twice the
    resolution where ``max_side`` allows it, for text of 8 to 14 px: about 5x the time).
    """

    name = "text"
    label = "text"
    multithreaded = True

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        pixel_threshold: float = 0.3,
        unclip: float = 2.0,
        min_side: int = 736,
        max_side: int = 4096,
        multiscale: bool = True,
        small_text: bool = True,
        model_path: str | None = None,
    ):
        if not 0.0 < float(threshold) < 1.0 or not 0.0 < float(pixel_threshold) < 1.0:
            raise ValueError("threshold and pixel_threshold must be between 0 and 1")
        if float(unclip) < 0:
            raise ValueError(f"unclip must be >= 0; got {unclip}")
        self.threshold = float(threshold)
        self.pixel_threshold = float(pixel_threshold)
        self.unclip = float(unclip)
        self.min_side = int(min_side)
        self.max_side = int(max_side)
        self.multiscale = bool(multiscale)
        self.small_text = bool(small_text)
        self._path = str(resolve_weights("ppocrv4-det", path=model_path))
        self._session = _Session(self._path)

    def runtime_info(self) -> dict[str, str]:
        import openvino as ov

        return {"runtime": f"openvino {ov.__version__.split('-')[0]}", "precision": "f32", "model": "PP-OCRv4 det"}

    # -- one pass ---------------------------------------------------------------------------------
    def _scale_for(self, h: int, w: int, level: str) -> float:
        if level == "coarse":
            return 960.0 / max(h, w)
        f = self.min_side / min(h, w) if min(h, w) < self.min_side else 1.0
        return min(f, self.max_side / max(h, w))

    def quads(self, image: np.ndarray, *, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(quads (N, 4, 2) float32 in image pixels, scores (N,))`` of one pass over ``image``
        (RGB) resized by ``scale`` (default: the reference's rule) to multiples of 32."""
        h, w = image.shape[:2]
        f = self._scale_for(h, w, "fine") if scale is None else scale
        rh, rw = max(32, int(round(h * f / 32)) * 32), max(32, int(round(w * f / 32)) * 32)
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        resized = cv2.resize(bgr, (rw, rh)) if (rh, rw) != (h, w) else bgr
        x = ((resized.astype(np.float32) / 255.0 - _MEAN) / _STD).transpose(2, 0, 1)[None]
        prob = self._session(np.ascontiguousarray(x))[0, 0]
        return self._boxes(prob, h, w)

    def _boxes(self, prob: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        ph, pw = prob.shape
        bitmap = cv2.dilate((prob > self.pixel_threshold).astype(np.uint8), np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        quads, scores = [], []
        for contour in contours[:1000]:
            quad, short = _mini_box(contour)
            if short < 3:
                continue
            score = _box_score(prob, quad)
            if score < self.threshold:
                continue
            grown, short = _mini_box(_unclip(quad, self.unclip))
            if short < 5:
                continue
            grown[:, 0] = np.clip(np.round(grown[:, 0] / pw * w), 0, w)
            grown[:, 1] = np.clip(np.round(grown[:, 1] / ph * h), 0, h)
            if np.linalg.norm(grown[0] - grown[1]) <= 3 or np.linalg.norm(grown[0] - grown[3]) <= 3:
                continue
            quads.append(grown)
            scores.append(score)
        if not quads:
            return np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32)
        return np.stack(quads).astype(np.float32), np.asarray(scores, np.float32)

    # -- the detector -----------------------------------------------------------------------------
    def detect(self, image: np.ndarray, *, source: str | None = None) -> list[Region]:
        image = as_rgb_uint8(image)
        h, w = image.shape[:2]
        quads, scores = self.quads(image)
        if self.multiscale:
            base = self._scale_for(h, w, "fine")
            extra = [self._scale_for(h, w, "coarse")] if max(h, w) > 1500 else []
            small = min(2 * base, self.max_side / max(h, w))
            if self.small_text and small >= 1.25 * base:  # small text: a pass at twice the resolution
                extra.append(small)
            for f in extra:
                q2, s2 = self.quads(image, scale=f)
                quads, scores = np.concatenate([quads, q2]), np.concatenate([scores, s2])
            quads, scores = _merge(quads, scores)
        order = np.argsort(-scores, kind="stable")
        return [_region(quads[i], float(scores[i])) for i in order]

    def residual(self, image: np.ndarray, box, *, context: float = 0.5) -> float:
        """Highest text score over ``box`` in ``image`` (0.0 when none): the verification's probe.
        The crop around the box (``context`` of its height on every side) is scaled so that the
        box is about 32 px high, where the detector reads text best."""
        x1, y1, x2, y2 = (float(v) for v in box)
        bh = max(y2 - y1, 1.0)
        pad = max(context * bh, 8.0)
        H, W = image.shape[:2]
        cx1, cy1 = int(max(0, math.floor(x1 - pad))), int(max(0, math.floor(y1 - pad)))
        cx2, cy2 = int(min(W, math.ceil(x2 + pad))), int(min(H, math.ceil(y2 + pad)))
        if cx2 - cx1 < 4 or cy2 - cy1 < 4:
            return 0.0
        crop = image[cy1:cy2, cx1:cx2]
        f = float(np.clip(64.0 / bh, 0.25, 4.0))
        f = min(f, 2048.0 / max(crop.shape[:2]))
        quads, scores = self.quads(crop, scale=f)
        best = 0.0
        for q, s in zip(quads, scores):
            det = (q[:, 0].min() + cx1, q[:, 1].min() + cy1, q[:, 0].max() + cx1, q[:, 1].max() + cy1)
            if covers(det, (x1, y1, x2, y2)):
                best = max(best, float(s))
        return round(best, 4)


def _merge(quads: np.ndarray, scores: np.ndarray, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One region per text found by several passes: of quads whose boxes overlap by more than
    ``iou``, the largest is kept (it covers the others best) with the group's highest score."""
    if len(quads) < 2:
        return quads, scores
    boxes = np.stack([quads[:, :, 0].min(1), quads[:, :, 1].min(1), quads[:, :, 0].max(1), quads[:, :, 1].max(1)], axis=1)
    order = np.argsort(-((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])), kind="stable")
    alive = np.ones(len(quads), bool)
    keep, best = [], []
    for i in order:
        if not alive[i]:
            continue
        group = alive & (ious(boxes[i], boxes) > iou)
        group[i] = True
        alive &= ~group
        keep.append(i)
        best.append(scores[group].max())
    return quads[keep], np.asarray(best, np.float32)


def _region(quad: np.ndarray, score: float) -> Region:
    box = (float(quad[:, 0].min()), float(quad[:, 1].min()), float(quad[:, 0].max()), float(quad[:, 1].max()))
    return Region(box, score, "text", polygon=quad)


class TextRecognizer:
    """PP-OCRv4 text recognition (CTC; Chinese and Latin characters, digits, punctuation), the
    ONNX file shipped inside ``rapidocr-onnxruntime`` (Apache-2.0), shipped inside anonlens; its
    character list is the model's own metadata. Pre- and post-processing are the reference's:
    BGR, height 48, width by the aspect ratio, (x/255 - 0.5) / 0.5, greedy CTC decoding."""

    def __init__(self, *, model_path: str | None = None):
        self._path = str(resolve_weights("ppocrv4-rec", path=model_path))
        self._session = _Session(self._path)
        self._chars: list[str] | None = None

    def _charset(self) -> list[str]:
        if self._chars is None:
            import openvino as ov

            model = ov.Core().read_model(self._path)
            try:  # the ONNX metadata_props, as OpenVINO reads them
                text = model.get_rt_info(["framework", "character"]).astype(str)
            except (RuntimeError, KeyError) as exc:
                raise AnonlensError(f"{self._path}: the recognition model has no character list ({exc})") from None
            self._chars = ["blank"] + text.splitlines() + [" "]
        return self._chars

    def __call__(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """``[(text, confidence), ...]`` for RGB crops of single text lines."""
        out = []
        chars = self._charset()
        for crop in crops:
            h, w = crop.shape[:2]
            width = int(min(max(math.ceil(48 * w / max(h, 1)), 8), 48 * 40))
            bgr = cv2.resize(np.ascontiguousarray(crop[:, :, ::-1]), (width, 48)).astype(np.float32)
            pad_w = max(320, width)
            x = np.zeros((1, 3, 48, pad_w), np.float32)
            x[0, :, :, :width] = ((bgr / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
            prob = self._session(x)[0]
            idx, conf = prob.argmax(axis=1), prob.max(axis=1)
            keep = np.ones(len(idx), bool)
            keep[1:] = idx[1:] != idx[:-1]
            keep &= idx != 0
            text = "".join(chars[i] for i in idx[keep] if i < len(chars))
            out.append((text, float(conf[keep].mean()) if keep.any() else 0.0))
        return out
