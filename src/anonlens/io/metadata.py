"""Inspect what an encoded image file carries besides pixels, and the ``--keep-metadata`` allow-list.

Used after every write to check, fail-closed, that no metadata slipped into an output (or, with
``--keep-metadata``, nothing beyond the allow-list), and by tests and users (``anonlens inspect``)
to see for themselves.

The allow-list (:data:`KEPT_EXIF_TAGS`): camera (make, model, lens), exposure, date and time,
orientation (reset to 1: the pixels are already upright), colour space; plus, where the original
had a colour profile, the standard sRGB profile (:func:`srgb_icc_profile`; the pixels are converted
to sRGB on reading), never the original's profile. Never kept: thumbnails of any kind (EXIF IFD1,
Photoshop, XMP), XMP, IPTC, maker notes, GPS, serial numbers, owner and artist names, comments,
descriptions, anything else.

The check parses what it checks: every segment of a JPEG (the scans are walked to the EOI that
ends the image, so segments between scans count, and a JPEG inside a segment, an EXIF thumbnail,
is part of that segment), PNG chunks up to IEND, WebP chunks within the RIFF size, every IFD of a
TIFF with the bytes its tags, strips and tiles reference, and every item, reference and property of
a HEIF/AVIF with the media bytes its items cover (:mod:`anonlens.io.isobmff`). Data after the end of the image (a second
JPEG appended, say), or a TIFF's bytes that nothing references, are reported like metadata. An
embedded ICC profile (JPEG APP2 chunks joined, PNG iCCP decompressed, WebP ICCP, TIFF tag 34675, HEIF colr) is
allowed with ``--keep-metadata`` only if it is byte for byte the profile anonlens writes: that
leaves no room for a text tag, a private tag or a blob, whatever its name or type.
"""

from __future__ import annotations

import functools
import io
import re
import struct
import zlib

from PIL import ExifTags, Image, ImageCms

from .isobmff import heif_structure, is_heif

__all__ = ["container_segments", "metadata_segments", "metadata_problems", "KEPT_EXIF_TAGS", "EXIF_IFD", "GPS_IFD",
           "srgb_icc_profile", "embedded_icc_profiles"]

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


# JPEG segments that describe the pixels: frame headers (SOFn, DHT, DAC), tables (DQT, DRI, DNL,
# DHP, EXP), the scans, and a JFIF APP0 without a thumbnail. Anything else (APPn, COM, the
# reserved JPGn markers decoders skip) can hold anything, so it is metadata.
_JPEG_IMAGE_SEGMENTS = frozenset({"APP0:JFIF", "SOS", "0xDB", "0xDC", "0xDD", "0xDE", "0xDF"}
                                 | {f"0x{m:02X}" for m in range(0xC0, 0xD0) if m != 0xC8})
_SIGNATURES = ((b"\xff\xd8\xff", "a JPEG"), (b"\x89PNG\r\n\x1a\n", "a PNG"), (b"II*\x00", "a TIFF"),
               (b"MM\x00*", "a TIFF"), (b"GIF8", "a GIF"), (b"WEBPVP8", "a WebP"))


def _jpeg_walk(data: bytes) -> tuple[list[tuple[int, bytes]], int | None, int]:
    """Walk a JPEG from SOI to the EOI that ends it: ``([(marker, payload)], end, stop)``.

    The entropy-coded data after each SOS is skipped up to the next marker (neither a stuffed
    0xFF00 nor a restart), so the segments between the scans of a progressive JPEG are seen; a JPEG
    held inside a segment (an EXIF thumbnail) is part of that segment's payload. ``end`` is the
    offset just past the EOI, or None when the structure breaks (at ``stop``) before one."""
    out: list[tuple[int, bytes]] = []
    i, n = 2, len(data)
    while i + 2 <= n:
        if data[i] != 0xFF:
            return out, None, i
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before a marker
            i += 1
            continue
        if marker == 0xD9:
            return out, i + 2, i + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # restart markers, TEM: no payload
            i += 2
            continue
        if marker == 0xD8 or i + 4 > n:
            return out, None, i
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if length < 2 or i + 2 + length > n:
            return out, None, i
        out.append((marker, data[i + 4 : i + 2 + length]))
        i += 2 + length
        if marker == 0xDA:
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    return out, None, n
                following = data[j + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    i = j + 2
                elif following == 0xFF:
                    i = j + 1
                else:
                    i = j
                    break
    return out, None, i


def _jpeg_name(marker: int, payload: bytes) -> str:
    if marker == 0xDA:
        return "SOS"
    name = _JPEG_NAMES.get(marker, f"0x{marker:02X}")
    if marker == 0xE1:
        if payload.startswith(b"Exif\x00"):
            name = "APP1:Exif"
        elif payload.startswith(b"http://ns.adobe.com/xap"):
            name = "APP1:XMP"
    elif marker == 0xED:
        name = "APP13:IPTC"
    elif marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"):
        name = "APP2:ICC"
    elif marker == 0xE0 and payload.startswith(b"JFIF\x00"):
        # version, density and a thumbnail's size, then the thumbnail's RGB pixels if any
        name = "APP0:JFIF" if len(payload) == 14 and payload[12:14] == b"\0\0" else "APP0:JFIF+thumbnail"
    return name


def _chunk_name(tag: bytes) -> str:
    """A PNG or RIFF chunk's type, quoted if it is not four plain characters (it is printed)."""
    text = tag.decode("latin-1")
    return text if re.fullmatch(r"[A-Za-z0-9 ]{4}", text) else ascii(text)


def _png_walk(data: bytes) -> tuple[list[tuple[str, bytes]], int | None, int]:
    """PNG chunks up to IEND: ``([(type, payload)], end, stop)`` as :func:`_jpeg_walk`."""
    out: list[tuple[str, bytes]] = []
    i, n = 8, len(data)
    while i + 12 <= n:
        length = struct.unpack(">I", data[i : i + 4])[0]
        kind = _chunk_name(data[i + 4 : i + 8])
        if i + 12 + length > n:
            return out, None, i
        out.append((kind, data[i + 8 : i + 8 + length]))
        i += 12 + length
        if kind == "IEND":
            return out, i, i
    return out, None, i


def _webp_walk(data: bytes) -> tuple[list[tuple[str, bytes]], int | None, int]:
    """WebP chunks within the RIFF size: ``([(fourcc, payload)], end, stop)`` as :func:`_jpeg_walk`."""
    out: list[tuple[str, bytes]] = []
    n = len(data)
    riff_end = 8 + struct.unpack("<I", data[4:8])[0]
    if riff_end > n:
        return out, None, n
    i = 12
    while i + 8 <= riff_end:
        kind = _chunk_name(data[i : i + 4])
        length = struct.unpack("<I", data[i + 4 : i + 8])[0]
        if i + 8 + length > riff_end:
            return out, None, i
        out.append((kind, data[i + 8 : i + 8 + length]))
        i += 8 + length + (length & 1)
    return out, riff_end, riff_end


_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
# (offsets, byte counts) tag pairs: strips, tiles, an old-style JPEG stream
_TIFF_DATA_TAGS = ((273, 279), (324, 325), (513, 514))
# tags pointing to further IFDs: SubIFDs, Exif, GPS, Interoperability
_TIFF_IFD_TAGS = (330, EXIF_IFD, GPS_IFD, 40965)


class _Unreadable(ValueError):
    pass


def _tiff_walk(data: bytes) -> tuple[list[tuple[int, int]], list[bytes]]:
    """Every byte range a TIFF's structure references (header, IFDs, out-of-line tag values,
    strips, tiles; sub-IFDs followed) and the ICC profiles (tag 34675) of its IFDs. Raises
    :class:`_Unreadable` on a reference past the end, an unknown field type or a loop."""
    order = "<" if data[:2] == b"II" else ">"
    n = len(data)
    ranges = [(0, 8)]
    profiles: list[bytes] = []
    seen: set[int] = set()
    todo = [struct.unpack(order + "I", data[4:8])[0]]
    while todo:
        off = todo.pop()
        if off == 0 or off in seen:
            continue
        if len(seen) >= 1024:
            raise _Unreadable("more than 1024 IFDs")
        seen.add(off)
        if off + 2 > n:
            raise _Unreadable(f"an IFD at byte {off:,}, past the end")
        count = struct.unpack(order + "H", data[off : off + 2])[0]
        ifd_end = off + 2 + 12 * count + 4
        if ifd_end > n:
            raise _Unreadable(f"the IFD at byte {off:,} runs past the end")
        ranges.append((off, ifd_end))
        values: dict[int, tuple[int, int, bytes]] = {}
        for k in range(count):
            e = off + 2 + 12 * k
            tag, kind, cnt = struct.unpack(order + "HHI", data[e : e + 8])
            if kind not in _TIFF_TYPE_SIZES:
                raise _Unreadable(f"tag {tag} has the unknown field type {kind}")
            size = _TIFF_TYPE_SIZES[kind] * cnt
            if size > 4:
                where = struct.unpack(order + "I", data[e + 8 : e + 12])[0]
                if where + size > n:
                    raise _Unreadable(f"tag {tag}'s value runs past the end")
                ranges.append((where, where + size))
                values[tag] = (kind, cnt, data[where : where + size])
            else:
                values[tag] = (kind, cnt, data[e + 8 : e + 8 + size])
        for offsets_tag, counts_tag in _TIFF_DATA_TAGS:
            if offsets_tag in values:
                starts = _tiff_ints(values[offsets_tag], order)
                sizes = _tiff_ints(values[counts_tag], order) if counts_tag in values else []
                if len(sizes) != len(starts):
                    raise _Unreadable(f"tag {offsets_tag} without as many byte counts (tag {counts_tag})")
                for start, size in zip(starts, sizes):
                    if start + size > n:
                        raise _Unreadable(f"image data (tag {offsets_tag}) runs past the end")
                    ranges.append((start, start + size))
        for tag in _TIFF_IFD_TAGS:
            if tag in values:
                todo.extend(_tiff_ints(values[tag], order))
        if ICC_TAG in values:
            profiles.append(values[ICC_TAG][2])
        todo.append(struct.unpack(order + "I", data[ifd_end - 4 : ifd_end])[0])
    return ranges, profiles


def _tiff_ints(value: tuple[int, int, bytes], order: str) -> list[int]:
    kind, count, raw = value
    code = {1: "B", 3: "H", 4: "I", 13: "I"}.get(kind)
    if code is None:
        raise _Unreadable(f"an offset or size stored as field type {kind}")
    return list(struct.unpack(f"{order}{count}{code}", raw))


def _describe(tail: bytes) -> str:
    if not tail.strip(b"\0"):
        return "all zero"
    for magic, name in _SIGNATURES:
        at = tail.find(magic) if name != "a WebP" else tail.find(b"WEBPVP8") - 8
        if at == 0:
            return name
        if at > 0:
            return f"{name} at +{at:,}"
    return "unknown content"


def _outside(n: int, end: int | None, stop: int, fmt: str) -> list[str]:
    if end is None:
        return [f"{fmt} structure unreadable at byte {stop:,} of {n:,} (what follows cannot be checked)"]
    return []


def _after(data: bytes, end: int) -> list[str]:
    tail = data[end:]
    return [f"{len(tail):,} bytes after the end of the image ({_describe(tail)})"] if tail else []


def _tiff_outside(data: bytes) -> tuple[list[str], list[bytes]]:
    """What lies outside a TIFF's referenced bytes (after them, or in gaps of more than 3 bytes:
    writers align values to 2 or 4 bytes), and the TIFF's ICC profiles."""
    try:
        ranges, profiles = _tiff_walk(data)
    except (_Unreadable, struct.error) as exc:
        return [f"TIFF structure unreadable ({exc}; what it holds cannot be checked)"], []
    ranges.sort()
    gaps: list[tuple[int, int]] = []
    covered = 0
    for start, stop in ranges:
        if start > covered + 3:
            gaps.append((covered, start))
        covered = max(covered, stop)
    found = _after(data, covered)
    if gaps:
        hidden = sum(b - a for a, b in gaps)
        biggest = max(gaps, key=lambda g: g[1] - g[0])
        found.insert(0, f"{hidden:,} bytes inside the file that nothing references "
                        f"(largest at byte {biggest[0]:,}: {_describe(data[biggest[0]:biggest[1]])})")
    return found, profiles


def _bmp_end(data: bytes) -> int | None:
    """Where a BMP's pixel array ends (None: a header this does not know)."""
    if len(data) < 38:
        return None
    offset, header = struct.unpack("<II", data[10:18])
    if header == 12:
        width, height, _, bits = struct.unpack("<HHHH", data[18:26])
        compression = 0
    elif header >= 40:
        width, height, _, bits, compression, size = struct.unpack("<iiHHII", data[18:38])
    else:
        return None
    if compression in (0, 3, 6):
        return offset + (abs(width) * bits + 31) // 32 * 4 * abs(height)
    return offset + size if size else None


def _structure(data: bytes) -> tuple[str, list[str], list[str]]:
    """``(format, segment names, what lies outside the image's structure)``."""
    n = len(data)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return ("TIFF", _tiff_tags(data), _tiff_outside(data)[0])
    if data[:2] == b"\xff\xd8":
        segments, end, stop = _jpeg_walk(data)
        names = [_jpeg_name(marker, payload) for marker, payload in segments]
        return "JPEG", names, _outside(n, end, stop, "JPEG") or _after(data, end)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        chunks, end, stop = _png_walk(data)
        return "PNG", [kind for kind, _ in chunks], _outside(n, end, stop, "PNG") or _after(data, end)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunks, end, stop = _webp_walk(data)
        return "WEBP", [kind for kind, _ in chunks], _outside(n, end, stop, "WebP") or _after(data, end)
    if is_heif(data):  # HEIF/AVIF: the metadata items and properties it holds, and unreferenced bytes
        found, outside, _ = heif_structure(data)
        return "AVIF" if data[8:12] in (b"avif", b"avis") else "HEIF", found, outside
    if data[:2] == b"BM" and data[6:10] == b"\0\0\0\0":
        end = _bmp_end(data)
        return "BMP", [], _outside(n, end, n, "BMP") or _after(data, end)
    return "OTHER", [], []


def _tag_name(tag: int) -> str:
    return f"{tag}({_NAMED_TAGS.get(tag) or KEPT_EXIF_TAGS.get(tag) or 'tag'})"


def _tiff_tags(data: bytes) -> list[str]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            names = [f"tag {_tag_name(t)}" for t in sorted(img.tag_v2.keys())]
            frames = getattr(img, "n_frames", 1)
    except Exception as exc:  # an unreadable TIFF is reported, never passed as clean
        return [f"unreadable TIFF ({exc})"]
    return names + [f"IFD{i}" for i in range(1, frames)]


def container_segments(data: bytes) -> tuple[str, list[str]]:
    """``(format, [segment names])`` of an encoded JPEG, PNG, WebP or TIFF (TIFF: its tags), then
    anything outside the image's structure (data after its end, a TIFF's unreferenced bytes);
    BMP gives only the latter, other formats ``[]``."""
    fmt, segments, outside = _structure(data)
    return fmt, segments + outside


def _metadata(fmt: str, segments: list[str], outside: list[str]) -> list[str]:
    if fmt == "JPEG":
        found = [s for s in segments if s not in _JPEG_IMAGE_SEGMENTS]
    elif fmt == "PNG":
        found = [s for s in segments if s not in _PNG_IMAGE_CHUNKS]
    elif fmt == "WEBP":
        found = [s for s in segments if s not in _WEBP_IMAGE_CHUNKS]
    elif fmt == "TIFF":
        found = [s for s in segments if not (s.startswith("tag ") and int(s[4:].split("(")[0]) in _TIFF_STRUCTURE)]
    elif fmt in ("HEIF", "AVIF"):
        found = list(segments)  # the walk names metadata only
    else:
        found = []
    return found + outside


def metadata_segments(data: bytes) -> list[str]:
    """Names of the segments in ``data`` that carry metadata rather than pixels, and any data
    outside the image's structure (after its end, or unreferenced in a TIFF) (empty = clean)."""
    return _metadata(*_structure(data))


_KEPT_SEGMENTS = {"JPEG": {"APP1:Exif", "APP2:ICC"}, "PNG": {"eXIf", "iCCP"}, "WEBP": {"EXIF", "ICCP"},
                  "HEIF": {"Exif", "ICC"}, "AVIF": {"Exif", "ICC"}}
# the profile name Pillow writes in a PNG's iCCP chunk (the name is free text: it is checked too)
_PNG_ICC_NAME = b"ICC Profile"
_MAX_ICC_BYTES = 16 << 20


@functools.lru_cache(maxsize=1)
def srgb_icc_profile() -> bytes:
    """The only colour profile anonlens writes: LittleCMS's standard sRGB profile (colour data,
    a description "sRGB built-in" and a copyright "No copyright, use freely"), its creation date
    fixed to 2000-01-01 so that it does not record when the image was processed."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[24:36] = struct.pack(">6H", 2000, 1, 1, 0, 0, 0)
    profile[84:100] = bytes(16)  # no profile ID (an MD5 that would cover the date)
    return bytes(profile)


def embedded_icc_profiles(data: bytes) -> tuple[list[bytes], list[str]]:
    """``([profiles], [problems])``: the ICC profiles embedded in an encoded JPEG (its APP2
    chunks joined), PNG (iCCP, decompressed), WebP (ICCP) or TIFF (tag 34675 of any IFD), and what
    is wrong with how they are stored (chunks out of order, a named or damaged iCCP)."""
    fmt = _structure(data)[0]
    profiles: list[bytes] = []
    problems: list[str] = []
    if fmt == "JPEG":
        chunks = [p for m, p in _jpeg_walk(data)[0] if m == 0xE2 and p.startswith(b"ICC_PROFILE\x00")]
        if chunks:
            order = [(c[12], c[13]) if len(c) >= 14 else (0, 0) for c in chunks]
            if order != [(k + 1, len(chunks)) for k in range(len(chunks))]:
                problems.append(f"APP2:ICC chunks numbered {order}, not 1..{len(chunks)} of {len(chunks)}")
            profiles.append(b"".join(c[14:] for c in chunks))
    elif fmt == "PNG":
        for kind, payload in _png_walk(data)[0]:
            if kind != "iCCP":
                continue
            name, _, rest = payload.partition(b"\0")
            if name != _PNG_ICC_NAME:
                problems.append(f"iCCP profile name {ascii(name.decode('latin-1'))} (anonlens writes {_PNG_ICC_NAME.decode()!r})")
            inflate = zlib.decompressobj()
            try:
                if rest[:1] != b"\0":
                    raise zlib.error("unknown compression method")
                profile = inflate.decompress(rest[1:], _MAX_ICC_BYTES)
            except zlib.error as exc:
                problems.append(f"iCCP undecodable ({exc})")
                continue
            if not inflate.eof or inflate.unconsumed_tail or inflate.unused_data:
                problems.append("iCCP holds more than one compressed profile (or one over 16 MiB)")
            profiles.append(profile)
    elif fmt == "WEBP":
        profiles = [payload for kind, payload in _webp_walk(data)[0] if kind == "ICCP"]
    elif fmt in ("HEIF", "AVIF"):
        profiles = heif_structure(data)[2]
    elif fmt == "TIFF":
        try:
            profiles = _tiff_walk(data)[1]
        except (_Unreadable, struct.error) as exc:
            problems.append(f"TIFF structure unreadable ({exc})")
    return profiles, problems


def _icc_tag_names(profile: bytes) -> str:
    if len(profile) < 132 or profile[36:40] != b"acsp":
        return "not an ICC profile"
    count = struct.unpack(">I", profile[128:132])[0]
    sigs = [profile[132 + 12 * k : 136 + 12 * k] for k in range(min(count, 32))]
    names = [_chunk_name(sig) for sig in sigs if len(sig) == 4]
    return "tags " + ", ".join(names) + (f" and {count - 32} more" if count > 32 else "")


def _icc_problems(data: bytes) -> list[str]:
    """Every embedded profile must be the one anonlens writes, byte for byte."""
    profiles, problems = embedded_icc_profiles(data)
    ours = srgb_icc_profile()
    for profile in profiles:
        if profile != ours:
            problems.append(f"ICC profile other than the sRGB profile anonlens writes "
                            f"({len(profile):,} bytes; {_icc_tag_names(profile)})")
    return problems


def metadata_problems(data: bytes, *, keep_metadata: bool = False) -> list[str]:
    """What ``data`` carries that it must not: any metadata at all by default; with
    ``keep_metadata``, anything beyond the allow-list (segments other than EXIF and the colour
    profile, EXIF tags not in :data:`KEPT_EXIF_TAGS`, GPS, a thumbnail IFD, extra TIFF pages, a
    colour profile other than :func:`srgb_icc_profile`). Data after the end of the image is
    refused either way. Empty means the file may be written."""
    fmt, segments, outside = _structure(data)
    found = _metadata(fmt, segments, outside)
    if not keep_metadata:
        return found
    if fmt == "TIFF":
        allowed = {f"tag {_tag_name(t)}" for t in (*KEPT_EXIF_TAGS, EXIF_IFD, ICC_TAG)}
        problems = [s for s in found if s not in allowed]
    else:
        problems = [s for s in found if s not in _KEPT_SEGMENTS.get(fmt, set())]
    return problems + _icc_problems(data) + _exif_problems(data, fmt)


def _exif_problems(data: bytes, fmt: str) -> list[str]:
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
            if tag in KEPT_EXIF_TAGS or tag == EXIF_IFD or (tag in _TIFF_STRUCTURE and where == "IFD0"):
                continue
            if tag == ICC_TAG and where == "IFD0" and fmt == "TIFF":  # its content is checked by _icc_problems
                continue
            problems.append(f"EXIF {where} {_tag_name(tag)}")
    return problems
