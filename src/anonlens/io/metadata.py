"""Inspect what an encoded image file carries besides pixels, and the ``--keep-metadata`` allow-list.

Used after every write to check, fail-closed, that no metadata slipped into an output (or, with
``--keep-metadata``, nothing beyond the allow-list), and by tests and users (``anonlens inspect``)
to see for themselves.

The allow-list (:data:`KEPT_EXIF_TAGS`): camera (make, model, lens), exposure, date and time,
orientation (reset to 1: the pixels are already upright), colour space; plus the ICC colour
profile. Never kept: thumbnails of any kind (EXIF IFD1, Photoshop, XMP), XMP, IPTC, maker notes,
GPS, serial numbers, owner and artist names, comments, descriptions, anything else.
"""

from __future__ import annotations

import io
import struct

__all__ = ["container_segments", "metadata_segments", "metadata_problems", "KEPT_EXIF_TAGS", "EXIF_IFD", "GPS_IFD"]

EXIF_IFD = 0x8769
GPS_IFD = 0x8825
ICC_TAG = 34675
#: the only EXIF tags ``--keep-metadata`` keeps: {tag: name}; IFD0 and the Exif sub-IFD alike
KEPT_EXIF_TAGS: dict[int, str] = {
    # camera
    0x010F: "Make", 0x0110: "Model", 0xA432: "LensSpecification", 0xA433: "LensMake", 0xA434: "LensModel",
    # orientation (always 1 in outputs) and resolution
    0x0112: "Orientation", 0x011A: "XResolution", 0x011B: "YResolution", 0x0128: "ResolutionUnit",
    # date and time
    0x0132: "DateTime", 0x9003: "DateTimeOriginal", 0x9004: "DateTimeDigitized", 0x9010: "OffsetTime",
    0x9011: "OffsetTimeOriginal", 0x9012: "OffsetTimeDigitized", 0x9290: "SubsecTime", 0x9291: "SubsecTimeOriginal",
    0x9292: "SubsecTimeDigitized",
    # exposure
    0x829A: "ExposureTime", 0x829D: "FNumber", 0x8822: "ExposureProgram", 0x8827: "ISOSpeedRatings",
    0x9201: "ShutterSpeedValue", 0x9202: "ApertureValue", 0x9203: "BrightnessValue", 0x9204: "ExposureBiasValue",
    0x9205: "MaxApertureValue", 0x9207: "MeteringMode", 0x9208: "LightSource", 0x9209: "Flash", 0x920A: "FocalLength",
    0xA402: "ExposureMode", 0xA403: "WhiteBalance", 0xA404: "DigitalZoomRatio", 0xA405: "FocalLengthIn35mmFilm",
    0xA406: "SceneCaptureType",
    # colour and format
    0x9000: "ExifVersion", 0xA001: "ColorSpace",
}
#: tags a TIFF needs to describe its pixels (not metadata)
_TIFF_STRUCTURE = {254, 255, 256, 257, 258, 259, 262, 266, 273, 274, 277, 278, 279, 282, 283, 284, 296, 317, 320, 322, 323,
                   324, 325, 338, 339, 530, 531, 532}
_NAMED_TAGS = {700: "XMP", 33723: "IPTC", 34377: "Photoshop", 37500: "MakerNote", GPS_IFD: "GPS", 40965: "Interop",
               ICC_TAG: "ICC", 270: "ImageDescription", 315: "Artist", 33432: "Copyright", 305: "Software",
               306: "DateTime", 330: "SubIFDs", 37510: "UserComment", EXIF_IFD: "Exif"}

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


def _tag_name(tag: int) -> str:
    return f"{tag}({_NAMED_TAGS.get(tag) or KEPT_EXIF_TAGS.get(tag) or 'tag'})"


def _tiff_tags(data: bytes) -> list[str]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            names = [f"tag {_tag_name(t)}" for t in sorted(img.tag_v2.keys())]
            frames = getattr(img, "n_frames", 1)
    except Exception as exc:  # an unreadable TIFF is reported, never passed as clean
        return [f"unreadable TIFF ({exc})"]
    return names + [f"IFD{i}" for i in range(1, frames)]


def container_segments(data: bytes) -> tuple[str, list[str]]:
    """``(format, [segment names])`` of an encoded JPEG, PNG, WebP or TIFF (TIFF: its tags);
    other formats give ``[]``."""
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF", _tiff_tags(data)
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
    if fmt == "TIFF":
        return [s for s in segments if not (s.startswith("tag ") and int(s[4:].split("(")[0]) in _TIFF_STRUCTURE)]
    return []


_KEPT_SEGMENTS = {"JPEG": {"APP1:Exif", "APP2:ICC"}, "PNG": {"eXIf", "iCCP"}, "WEBP": {"EXIF", "ICCP"}}


def metadata_problems(data: bytes, *, keep_metadata: bool = False) -> list[str]:
    """What ``data`` carries that it must not: any metadata at all by default; with
    ``keep_metadata``, anything beyond the allow-list (segments other than EXIF and the colour
    profile, EXIF tags not in :data:`KEPT_EXIF_TAGS`, GPS, a thumbnail IFD, extra TIFF pages).
    Empty means the file may be written."""
    found = metadata_segments(data)
    if not keep_metadata:
        return found
    fmt = container_segments(data)[0]
    if fmt == "TIFF":
        allowed = {f"tag {_tag_name(t)}" for t in (*KEPT_EXIF_TAGS, EXIF_IFD, ICC_TAG)}
        problems = [s for s in found if s not in allowed]
    else:
        problems = [s for s in found if s not in _KEPT_SEGMENTS.get(fmt, set())]
    return problems + _exif_problems(data)


def _exif_problems(data: bytes) -> list[str]:
    from PIL import ExifTags, Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            exif = img.getexif()
            ifds = {"IFD0": dict(exif), "Exif": dict(exif.get_ifd(EXIF_IFD)), "GPS": dict(exif.get_ifd(GPS_IFD)),
                    "IFD1 (thumbnail)": dict(exif.get_ifd(ExifTags.IFD.IFD1))}
    except Exception as exc:
        return [f"EXIF unreadable ({exc})"]
    problems = []
    for where, tags in ifds.items():
        if where in ("GPS", "IFD1 (thumbnail)"):
            if tags:
                problems.append(f"EXIF {where}")
            continue
        for tag in tags:
            if tag in KEPT_EXIF_TAGS or tag == EXIF_IFD or (tag in _TIFF_STRUCTURE and where == "IFD0") or tag == ICC_TAG:
                continue
            problems.append(f"EXIF {where} {_tag_name(tag)}")
    return problems
