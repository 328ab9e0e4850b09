"""Read the parameters of dlib's face-recognition network from ``dlib_face_recognition_resnet_model_v1.dat``.

dlib's ``serialize`` format: an integer is one control byte (low 4 bits: the number of value bytes
that follow, little-endian; bit 0x80: negative); a string is an integer length and its bytes; a
tensor is a version (2), four dimensions and raw little-endian float32 data; an alias tensor
(a view's shape) a version (1) and four dimensions. Each layer's details
start with its name (``con_4``, ``affine_``, ``fc_2``, ...), followed by its parameter tensor.
The network is known (dlib's ``anet_type``), so this reader takes the parameter tensors of the
convolutions, the folded batch norms (``affine_``) and the last fully connected layer in file
order (from the input outwards), with each convolution's geometry, and checks that the file holds
exactly the expected layers. Nothing in the file is executed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import AnonlensError

__all__ = ["DlibLayer", "read_dlib_resnet"]

_NAME = re.compile(rb"\x01[\x04-\x0f](con_[45]|affine_|fc_2|relu_1|max_pool_2|avg_pool_2|add_prev_1)")


@dataclass
class DlibLayer:
    kind: str  #: "con", "affine" or "fc"
    params: np.ndarray  #: con: (out, in, kh, kw) weights; affine: (2, C) gamma and beta; fc: (in, out)
    bias: np.ndarray | None = None
    stride: int = 1
    padding: int = 0


class _Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def int(self) -> int:
        ctrl = self.data[self.pos]
        n = ctrl & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + n], "little") if n else 0
        self.pos += 1 + n
        return -value if ctrl & 0x80 else value

    def string(self) -> str:
        n = self.int()
        s = self.data[self.pos : self.pos + n].decode("ascii")
        self.pos += n
        return s

    def dims(self, versions: tuple[int, ...] = (2,)) -> tuple[int, int, int, int]:
        version = self.int()
        if version not in versions:
            raise AnonlensError(f"unexpected tensor version {version} at byte {self.pos}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]

    def tensor(self) -> np.ndarray:
        ns, k, nr, nc = self.dims()
        count = ns * k * nr * nc
        arr = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).reshape(ns, k, nr, nc)
        self.pos += 4 * count
        return arr.astype(np.float32)


def read_dlib_resnet(path: str | Path) -> list[DlibLayer]:
    """The 29 convolutions, 29 affine layers and the fc layer, input first."""
    data = Path(path).read_bytes()
    layers: list[DlibLayer] = []
    kinds: list[str] = []
    pos = 0
    while True:
        m = _NAME.search(data, pos)
        if m is None:
            break
        r = _Reader(data, m.start())
        name = r.string()
        kinds.append(name)
        if name.startswith("con_"):
            params = r.tensor().reshape(-1)
            num_filters, nr, nc, stride_y, stride_x, pad_y, pad_x = (r.int() for _ in range(7))
            _, k, fr, fc = r.dims((1,))  # the filters' alias tensor
            r.dims((1,))  # the biases' alias tensor
            if (fr, fc) != (nr, nc) or stride_x != stride_y or pad_x != pad_y:
                raise AnonlensError(f"{path}: unexpected convolution geometry at byte {m.start()}")
            n_w = num_filters * k * nr * nc
            weights = params[:n_w].reshape(num_filters, k, nr, nc)
            bias = params[n_w : n_w + num_filters] if params.size >= n_w + num_filters else None
            layers.append(DlibLayer("con", weights, bias, stride_y, pad_y))
        elif name == "affine_":
            params = r.tensor().reshape(2, -1)
            layers.append(DlibLayer("affine", params))
        elif name == "fc_2":
            num_outputs, num_inputs = r.int(), r.int()
            weights = r.tensor().reshape(-1, num_outputs)[:num_inputs]  # (in, out); a bias row would follow
            layers.append(DlibLayer("fc", weights))
        pos = max(r.pos, m.end())
    counts = {k: sum(1 for x in kinds if x.startswith(k)) for k in ("con_", "affine_", "fc_", "add_prev_", "avg_pool_", "max_pool_")}
    expected = {"con_": 29, "affine_": 29, "fc_": 1, "add_prev_": 14, "avg_pool_": 5, "max_pool_": 1}
    if counts != expected:
        raise AnonlensError(f"{path} is not dlib's face-recognition ResNet (layers found: {counts})")
    return layers


def read_input_means(path: str | Path) -> tuple[float, float, float]:
    """The per-channel means (R, G, B) of the network's input layer (``input_rgb_image_sized``)."""
    data = Path(path).read_bytes()
    at = data.find(b"input_rgb_image_sized")
    if at < 0:
        raise AnonlensError(f"{path}: no input layer (input_rgb_image_sized) found")
    r = _Reader(data, at + len(b"input_rgb_image_sized"))

    def real() -> float:
        mantissa, exponent = r.int(), r.int()
        return float(mantissa) * 2.0 ** exponent

    return real(), real(), real()
