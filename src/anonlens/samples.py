"""Built-in sample photos (public domain, shipped with scikit-image) for the demo and tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["sample_images", "write_samples"]


def sample_images() -> dict[str, np.ndarray]:
    """Name -> ``(H, W, 3)`` uint8 RGB: NASA's astronaut Eileen Collins (a face), the
    cameraman (a person), and a group made of both on one canvas."""
    from skimage import data

    astronaut = data.astronaut()
    camera = np.repeat(data.camera()[:, :, None], 3, axis=2)
    group = np.zeros((512, 1024, 3), np.uint8)
    group[:, :512] = astronaut
    group[:, 512:] = camera
    return {"astronaut.png": astronaut, "cameraman.png": camera, "astronaut-and-cameraman.jpg": group}


def write_samples(folder: str | Path) -> list[Path]:
    """Write :func:`sample_images` into ``folder``; returns the paths."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, arr in sample_images().items():
        path = folder / name
        Image.fromarray(arr).save(path, quality=95)
        paths.append(path)
    return paths
