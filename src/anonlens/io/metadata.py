"""Inspect what an encoded image file carries besides pixels.

Used after every write to check, fail-closed, that no metadata slipped into an output, and by
tests and users (``anonlens inspect``) to see for themselves.
"""

from __future__ import annotations

import struct

__all__ = ["container_segments", "metadata_segments"]

# JPEG APPn/COM markers that carry metadata (APP0 JFIF is only a version and pixel density).
_JPEG_NAMES = {0xE0 + i: f"APP{i}" for i in range(16)} | {0xFE: "COM"}
# PNG chunks that are pure image data or rendering essentials.
_PNG_IMAGE_CHUNKS = {"IHDR", "PLTE", "IDAT", "IEND", "tRNS", "gAMA", "cHRM", "sRGB", "sBIT", "bKGD", "pHYs"}
_WEBP_IMAGE_CHUNKS = {"VP8 ", "VP8L", "VP8X", "ALPH", "ANIM", "ANMF"}


def _jpeg_segments(data: bytes) -> list[str]:
    out = []
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xD9 or marker == 0xDA:  # end of image / start of scan: no more headers
            out.append("SOS" if marker == 0xDA else "EOI")
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        payload = data[i + 4 : i + 2 + length]
        name = _JPEG_NAMES.get(marker, f"0x{marker:02X}")
        if marker == 0xE1:
            if payload.startswith(b"Exif\x00"):
                name = "APP1:Exif"
            elif payload.startswith(b"http://ns.adobe.com/xap"):
                name = "APP1:XMP"
        elif marker == 0xED:
            name = "APP13:IPTC"
        elif marker == 0xE2 and payload.startswith(b"ICC_PROFILE"):
            name = "APP2:ICC"
        elif marker == 0xE0 and payload.startswith(b"JFIF"):
            name = "APP0:JFIF"
        out.append(name)
        i += 2 + length
    return out


def _png_chunks(data: bytes) -> list[str]:
    out = []
    i = 8
    while i + 8 <= len(data):
        length = struct.unpack(">I", data[i : i + 4])[0]
        out.append(data[i + 4 : i + 8].decode("latin-1"))
        i += 12 + length
    return out


def _webp_chunks(data: bytes) -> list[str]:
    out = []
    i = 12
    while i + 8 <= len(data):
        tag = data[i : i + 4].decode("latin-1")
        length = struct.unpack("<I", data[i + 4 : i + 8])[0]
        out.append(tag)
        i += 8 + length + (length & 1)
    return out


def container_segments(data: bytes) -> tuple[str, list[str]]:
    """``(format, [segment names])`` of an encoded JPEG, PNG or WebP; other formats give ``[]``."""
    if data[:2] == b"\xff\xd8":
        return "JPEG", _jpeg_segments(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG", _png_chunks(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP", _webp_chunks(data)
    return "OTHER", []


def metadata_segments(data: bytes) -> list[str]:
    """Names of the segments in ``data`` that carry metadata rather than pixels (empty = clean)."""
    fmt, segments = container_segments(data)
    if fmt == "JPEG":
        return [s for s in segments if (s.startswith("APP") and s != "APP0:JFIF") or s == "COM"]
    if fmt == "PNG":
        return [s for s in segments if s not in _PNG_IMAGE_CHUNKS]
    if fmt == "WEBP":
        return [s for s in segments if s not in _WEBP_IMAGE_CHUNKS]
    return []
