"""Built-in sample photos (public domain, shipped with scikit-image) for the demo and tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage import data

__all__ = ["sample_images", "write_samples", "face_scene", "paste_text", "ASTRONAUT_FACE"]

#: the astronaut's face in scikit-image's photo (dlib's box, x1, y1, x2, y2)
ASTRONAUT_FACE = (175, 76, 266, 167)


def sample_images() -> dict[str, np.ndarray]:
    """Name -> ``(H, W, 3)`` uint8 RGB: NASA's astronaut Eileen Collins (a face), the
    cameraman (a person), and a group made of both on one canvas."""
    astronaut = data.astronaut()
    camera = np.repeat(data.camera()[:, :, None], 3, axis=2)
    group = np.zeros((512, 1024, 3), np.uint8)
    group[:, :512] = astronaut
    group[:, 512:] = camera
    return {"astronaut.png": astronaut, "cameraman.png": camera, "astronaut-and-cameraman.jpg": group}


def write_samples(folder: str | Path) -> list[Path]:
    """Write :func:`sample_images` into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, arr in sample_images().items():
        path = folder / name
        Image.fromarray(arr).save(path, quality=95)
        paths.append(path)
    return paths


def face_scene(width: int, height: int, face: int, background: np.ndarray | None = None) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A real face at a chosen size: the astronaut's face (with hair and shoulders around it)
    scaled to ``face`` px wide, centred on a ``width`` x ``height`` background (scikit-image's
    coffee photo by default). The face may fill the frame, cropped by it as in a close-up.
    Returns the ``(H, W, 3)`` image and the face's box clipped to the frame (for recall tests and
    benchmarks of faces at every scale).

    >>> img, box = face_scene(640, 480, 100)
    >>> img.shape, [round(v) for v in box]
    ((480, 640, 3), [269, 189, 369, 289])
    """
    ast = data.astronaut()
    background = data.coffee() if background is None else background
    x1, y1, x2, y2 = ASTRONAUT_FACE
    w, h = x2 - x1, y2 - y1
    X1, Y1 = max(0, int(x1 - 0.6 * w)), max(0, int(y1 - 0.6 * h))
    X2, Y2 = min(512, int(x2 + 0.6 * w)), min(512, int(y2 + 0.6 * h))
    crop = ast[Y1:Y2, X1:X2]
    f = face / w
    crop = cv2.resize(crop, (round(crop.shape[1] * f), round(crop.shape[0] * f)), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC)
    canvas = cv2.resize(background, (width, height)).copy()
    fx, fy = ((x1 + x2) / 2 - X1) * f, ((y1 + y2) / 2 - Y1) * f
    ox, oy = int(width / 2 - fx), int(height / 2 - fy)
    sx, sy, dx, dy = max(0, -ox), max(0, -oy), max(0, ox), max(0, oy)
    cw, ch = min(crop.shape[1] - sx, width - dx), min(crop.shape[0] - sy, height - dy)
    canvas[dy : dy + ch, dx : dx + cw] = crop[sy : sy + ch, sx : sx + cw]
    box = (ox + (x1 - X1) * f, oy + (y1 - Y1) * f, ox + (x2 - X1) * f, oy + (y2 - Y1) * f)
    return canvas, (max(0.0, box[0]), max(0.0, box[1]), min(float(width), box[2]), min(float(height), box[3]))


def paste_text(image, text: str, xy: tuple[int, int], *, size: int, angle: float = 0.0, contrast: str = "high") -> tuple[int, int, int, int]:
    """Draw ``text`` on a plate (a badge, a sign, a licence plate) onto the PIL ``image`` in place,
    with Pillow's built-in scalable font at ``size`` px, rotated by ``angle`` degrees; ``contrast``
    ``high`` (black on white) or ``low`` (grey 95 on grey 150). Returns the plate's bounding box
    ``(x1, y1, x2, y2)``: the rendered test set of the text detector's tests and benchmark."""
    font = ImageFont.load_default(size=size)
    bb = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    w, h = bb[2] - bb[0] + size, bb[3] - bb[1] + size
    bg, fg = ((255, 255, 255, 255), (0, 0, 0, 255)) if contrast == "high" else ((150, 150, 150, 255), (95, 95, 95, 255))
    layer = Image.new("RGBA", (w, h), bg)
    ImageDraw.Draw(layer).text((size // 2 - bb[0], size // 2 - bb[1]), text, font=font, fill=fg)
    layer = layer.rotate(angle, expand=True, resample=Image.BICUBIC)
    image.paste(layer, xy, layer)
    return (xy[0], xy[1], xy[0] + layer.width, xy[1] + layer.height)
