"""Synthetic 1280x720 street-photo stand-ins: public-domain scikit-image backgrounds with 1-3
real faces (the astronaut's head) pasted at different sizes and places. Offline and repeatable."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_scenes(folder: Path, n: int, *, seed: int = 0, size=(1280, 720)) -> list[Path]:
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    backgrounds = [data.rocket(), data.coffee(), data.chelsea(), data.hubble_deep_field(), data.immunohistochemistry(), data.astronaut()]
    head = data.astronaut()[30:230, 140:310]  # the head with some hair and background
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        bg = cv2.resize(backgrounds[i % len(backgrounds)], size, interpolation=cv2.INTER_AREA)
        if i % 2:
            bg = bg[:, ::-1]
        img = np.ascontiguousarray(bg)
        for _ in range(1 + i % 3):
            h = int(rng.integers(80, 300))
            w = int(h * head.shape[1] / head.shape[0])
            y, x = int(rng.integers(0, size[1] - h)), int(rng.integers(0, size[0] - w))
            img[y : y + h, x : x + w] = cv2.resize(head, (w, h), interpolation=cv2.INTER_AREA)
        p = folder / f"scene_{i:04d}.jpg"
        Image.fromarray(img).save(p, quality=90)
        paths.append(p)
    return paths


def write_h264(path: Path, frames, width: int, height: int, fps: int = 25) -> int:
    """Encode RGB ``frames`` (an iterable of (height, width, 3) uint8) as an H.264 clip; returns the count."""
    from fractions import Fraction

    import av

    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.codec_context.time_base = Fraction(1, fps)
    n = 0
    for n, rgb in enumerate(frames, 1):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), "rgb24")
        frame.pts = n - 1
        for pkt in vs.encode(frame):
            out.mux(pkt)
    for pkt in vs.encode():
        out.mux(pkt)
    out.close()
    return n
