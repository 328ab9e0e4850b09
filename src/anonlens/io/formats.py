"""Which files anonlens reads: image formats by suffix, video containers. No I/O, no anonlens imports."""

from __future__ import annotations

import os

__all__ = ["FORMAT_BY_SUFFIX", "SUPPORTED_SUFFIXES", "VIDEO_CONTAINERS", "VIDEO_SUFFIXES", "SUFFIX_BY_FORMAT", "is_video"]

FORMAT_BY_SUFFIX = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    # phone photos: HEIC (iPhones' default; read and written through pillow-heif), AVIF (Pillow)
    ".heic": "HEIF",
    ".heif": "HEIF",
    ".hif": "HEIF",
    ".avif": "AVIF",
}
SUPPORTED_SUFFIXES = frozenset(FORMAT_BY_SUFFIX)
#: video containers anonlens reads and writes (with the ``video`` extra; see :mod:`anonlens.video`):
#: suffix -> (container format, the video codec written)
VIDEO_CONTAINERS = {".mp4": ("mp4", "libx264"), ".m4v": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
                    ".mkv": ("matroska", "libx264"), ".avi": ("avi", "libx264"), ".webm": ("webm", "libvpx-vp9")}
VIDEO_SUFFIXES = frozenset(VIDEO_CONTAINERS)
SUFFIX_BY_FORMAT = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp", "HEIF": ".heic",
                    "AVIF": ".avif"}


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video by its suffix."""
    return os.path.splitext(str(path))[1].lower() in VIDEO_SUFFIXES
