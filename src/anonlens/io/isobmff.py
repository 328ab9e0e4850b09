"""What a HEIF or AVIF file (an ISO base media file: boxes) carries besides its picture.

A still HEIF/AVIF holds items (``meta/iinf``) whose bytes lie in ``mdat`` (or ``idat``) at the
extents ``meta/iloc`` gives, and properties (``meta/iprp``) the items refer to. Besides the picture
they can carry: EXIF (an ``Exif`` item), XMP or any other text (``mime`` items), URIs, thumbnails
(``thmb`` references), depth maps and gain maps (auxiliary images other than alpha), further
pictures (burst and stereo groups), ICC profiles (``colr`` ``prof``/``rICC``), user descriptions
(``udes``), and bytes that no item references. :func:`heif_structure` walks the boxes and names all
of that; the picture's own items (the primary image, its grid tiles, its alpha) and the properties
that describe pixels are not metadata.

No I/O, no anonlens imports.
"""

from __future__ import annotations

import re
import struct

__all__ = ["HEIF_BRANDS", "heif_structure", "is_heif"]

#: ftyp brands of still HEIF and AVIF images (``msf1``, ``hevc``, ``avis``... are sequences)
HEIF_BRANDS = {b"heic": "HEIF", b"heix": "HEIF", b"heim": "HEIF", b"heis": "HEIF", b"mif1": "HEIF", b"mif2": "HEIF",
               b"avif": "AVIF", b"hevc": "HEIF", b"hevx": "HEIF", b"msf1": "HEIF", b"avis": "AVIF"}
#: item types that are coded pictures (or built from pictures)
_PICTURE_ITEMS = {"hvc1", "av01", "grid", "iden", "iovl", "jpeg", "unci", "vvc1"}
#: properties that describe pixels (anything else, a user description ``udes`` say, is metadata)
_PIXEL_PROPERTIES = {"hvcC", "av1C", "vvcC", "ispe", "pixi", "irot", "imir", "clap", "pasp", "auxC", "lsel", "a1op",
                     "a1lx", "clli", "mdcv", "cclv", "amve", "rloc", "colr", "cmpd", "uncC", "jpgC"}
_ALPHA_URNS = (b"urn:mpeg:hevc:2015:auxid:1", b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha")
_TOP_LEVEL = {"ftyp", "meta", "mdat"}
#: item types built from other pictures (``dimg`` references)
_DERIVED_ITEMS = {"grid", "iovl", "iden"}
#: the item names picture items carry as libheif and libavif write them (any other name is text)
_WRITER_NAMES = {"", "Color", "Alpha", "HEVC Image", "AV1 Image", "Image"}
_MAX_BRANDS = 16
#: ``dinf`` that only says "the data is in this file" (a ``dref`` with one self-contained ``url ``)
_SELF_CONTAINED_DINF = b"\0\0\0\x1cdref\0\0\0\0\0\0\0\x01\0\0\0\x0curl \0\0\0\x01"
_META_BOXES = {"hdlr", "pitm", "iloc", "iinf", "iref", "iprp", "idat", "dinf"}


class Unreadable(ValueError):
    """The box structure is broken (what it holds cannot be checked)."""


def is_heif(data: bytes) -> bool:
    """Whether ``data`` starts with an ``ftyp`` box naming a HEIF or AVIF brand (major or compatible)."""
    if data[4:8] != b"ftyp" or len(data) < 16:
        return False
    end = min(len(data), int.from_bytes(data[:4], "big"), 8 + 4 * 64)
    return data[8:12] in HEIF_BRANDS or any(data[i : i + 4] in HEIF_BRANDS for i in range(16, end - 3, 4))


def _boxes(data: bytes, start: int, stop: int) -> list[tuple[str, int, int]]:
    """The boxes in ``data[start:stop]``: ``[(type, payload start, end)]``."""
    out = []
    i = start
    while i < stop:
        if i + 8 > stop:
            raise Unreadable(f"a box header cut at byte {i:,}")
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        head = 8
        if size == 1:
            if i + 16 > stop:
                raise Unreadable(f"a box header cut at byte {i:,}")
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
            head = 16
        elif size == 0:
            size = stop - i
        if size < head or i + size > stop:
            raise Unreadable(f"box {kind!r} at byte {i:,} runs past its container")
        out.append((kind.decode("latin-1"), i + head, i + size))
        i += size
    return out


def _uint(data: bytes, at: int, size: int) -> tuple[int, int]:
    if size == 0:
        return 0, at
    if at + size > len(data):
        raise Unreadable("a field past the end of its box")
    return int.from_bytes(data[at : at + size], "big"), at + size


def _items(data: bytes, start: int, stop: int) -> dict[int, tuple[str, str, str]]:
    """``iinf``: {item id: (item type, content type, item name)}."""
    version = data[start]
    at = start + 4
    _, at = _uint(data, at, 2 if version == 0 else 4)
    items = {}
    for kind, s, e in _boxes(data, at, stop):
        if kind != "infe":
            continue
        v = data[s]
        if v < 2:
            raise Unreadable(f"an item info entry of version {v}")
        item, p = _uint(data, s + 4, 2 if v == 2 else 4)
        p += 2  # protection index
        item_type = data[p : p + 4].decode("latin-1")
        p += 4
        name_end = data.index(b"\0", p, e) if b"\0" in data[p:e] else e
        name = data[p:name_end].decode("latin-1", "replace")
        p = name_end + 1
        content = data[p:e].split(b"\0")[0].decode("latin-1", "replace") if item_type == "mime" else ""
        if item in items:
            raise Unreadable(f"item {item} listed twice")
        items[item] = (item_type, content, name)
    return items


def _references(data: bytes, start: int, stop: int) -> list[tuple[str, int, list[int]]]:
    """``iref``: [(reference type, from item, [to items])]."""
    wide = 4 if data[start] else 2
    refs = []
    for kind, s, e in _boxes(data, start + 4, stop):
        src, p = _uint(data, s, wide)
        count, p = _uint(data, p, 2)
        targets = []
        for _ in range(count):
            t, p = _uint(data, p, wide)
            targets.append(t)
        refs.append((kind, src, targets))
    return refs


def _locations(data: bytes, start: int, stop: int) -> dict[int, tuple[int, list[tuple[int, int]]]]:
    """``iloc``: {item id: (construction method, [(offset, length)])}."""
    version = data[start]
    if version > 2:
        raise Unreadable(f"an item location box of version {version}")
    sizes = data[start + 4 : start + 6]
    offset_size, length_size, base_size = sizes[0] >> 4, sizes[0] & 15, sizes[1] >> 4
    index_size = sizes[1] & 15 if version else 0
    if not {offset_size, length_size, base_size, index_size} <= {0, 4, 8}:
        raise Unreadable("item location field sizes other than 0, 4 or 8 bytes")
    per_extent = index_size + offset_size + length_size
    count, at = _uint(data, start + 6, 2 if version < 2 else 4)
    if count * (4 + base_size) > stop - at:
        raise Unreadable("more item locations than the box holds")
    out = {}
    for _ in range(count):
        item, at = _uint(data, at, 2 if version < 2 else 4)
        method = 0
        if version:
            method, at = _uint(data, at, 2)
            method &= 15
        at += 2  # data reference index
        base, at = _uint(data, at, base_size)
        extents_count, at = _uint(data, at, 2)
        if extents_count * max(per_extent, 1) > stop - at or (per_extent == 0 and extents_count > 1):
            raise Unreadable("more extents than the item location box holds")
        extents = []
        for _ in range(extents_count):
            _, at = _uint(data, at, index_size)
            offset, at = _uint(data, at, offset_size)
            length, at = _uint(data, at, length_size)
            extents.append((base + offset, length))
        if item in out:
            raise Unreadable(f"item {item} located twice")
        out[item] = (method, extents)
    if at != stop:
        raise Unreadable("the item locations do not fill their box")
    return out


def _properties(data: bytes, start: int, stop: int) -> tuple[list[tuple[str, bytes]], dict[int, list[int]]]:
    """``iprp``: ([(property type, payload)], {item id: [1-based property indexes]})."""
    props: list[tuple[str, bytes]] = []
    assoc: dict[int, list[int]] = {}
    kinds = [kind for kind, _, _ in _boxes(data, start, stop)]
    if kinds.count("ipco") > 1 or kinds.count("ipma") > 1:
        raise Unreadable("more than one property container or association box")
    for kind, s, e in _boxes(data, start, stop):
        if kind == "ipco":
            props = [(k, data[ps:pe]) for k, ps, pe in _boxes(data, s, e)]
        elif kind == "ipma":
            version, flags = data[s], int.from_bytes(data[s + 1 : s + 4], "big")
            count, at = _uint(data, s + 4, 4)
            for _ in range(count):
                item, at = _uint(data, at, 2 if version < 1 else 4)
                n, at = _uint(data, at, 1)
                for _ in range(n):
                    raw, at = _uint(data, at, 2 if flags & 1 else 1)
                    assoc.setdefault(item, []).append(raw & (0x7FFF if flags & 1 else 0x7F))
    return props, assoc


def heif_structure(data: bytes) -> tuple[list[str], list[str], list[bytes]]:
    """``(metadata found, what lies outside the structure, ICC profiles)`` of a HEIF/AVIF file.

    Metadata names: ``Exif``, ``XMP``, ``mime:TYPE``, ``item TYPE`` (any non-picture item),
    ``thumbnail``, ``auxiliary image`` (a depth or gain map: not the alpha), ``picture N`` (a
    picture beside the primary one), ``ICC``, ``property TYPE``, ``box TYPE``. Outside: bytes in
    ``mdat``/``idat`` no item references, and a structure that cannot be read."""
    try:
        return _walk(data)
    except (Unreadable, struct.error, IndexError, ValueError) as exc:
        return [], [f"HEIF structure unreadable ({exc}; what it holds cannot be checked)"], []


def _walk(data: bytes) -> tuple[list[str], list[str], list[bytes]]:
    found: list[str] = []
    top = _boxes(data, 0, len(data))
    mdats = [(s, e) for kind, s, e in top if kind == "mdat"]
    metas = [(s, e) for kind, s, e in top if kind == "meta"]
    for n, (kind, s, e) in enumerate(top):
        if kind not in _TOP_LEVEL and not (kind in ("free", "skip") and not data[s:e].strip(b"\0")):
            found.append(f"box {kind}")
        elif kind == "ftyp" and (n > 0 or e - s > 8 + 4 * _MAX_BRANDS or not re.fullmatch(rb"(?:[A-Za-z0-9 ]{4})*", data[s:s + 4] + data[s + 8:e])):
            found.append("box ftyp (a second one, or a brand list holding more than brands)")
    if len(metas) != 1:
        raise Unreadable(f"{len(metas)} meta boxes")
    ms, me = metas[0]
    listed = _boxes(data, ms + 4, me)
    inner = {kind: (s, e) for kind, s, e in listed}
    if len(inner) != len(listed):
        raise Unreadable("a box repeated inside meta")
    found += [f"box meta/{kind}" for kind in inner if kind not in _META_BOXES]
    if "dinf" in inner and data[inner["dinf"][0] : inner["dinf"][1]] != _SELF_CONTAINED_DINF:
        found.append("box meta/dinf (data references)")
    if "hdlr" in inner:
        hs, he = inner["hdlr"]
        if data[hs + 8 : hs + 12] != b"pict":
            raise Unreadable("a meta box whose handler is not 'pict'")
        if data[hs + 24 : he].strip(b"\0"):
            found.append("handler name")
    if "pitm" not in inner or "iinf" not in inner or "iloc" not in inner:
        raise Unreadable("no primary item, item list or item locations")
    ps, pe = inner["pitm"]
    primary, end = _uint(data, ps + 4, 2 if data[ps] == 0 else 4)
    if end != pe:
        raise Unreadable("a primary item box of the wrong size")
    items = _items(data, *inner["iinf"])
    refs = _references(data, *inner["iref"]) if "iref" in inner else []
    props, assoc = _properties(data, *inner["iprp"]) if "iprp" in inner else ([], {})
    # the picture: the primary item, the tiles or inputs it is built from, and its alpha
    # (only items that are pictures: an Exif item a reference names stays an Exif item)
    def is_picture(item: int) -> bool:
        return items.get(item, ("",))[0] in _PICTURE_ITEMS

    picture = {primary} if is_picture(primary) else set()
    if not picture:
        raise Unreadable("the primary item is not a picture")
    grew = True
    while grew:
        grew = False
        for kind, src, targets in refs:
            if kind == "dimg" and src in picture and items[src][0] in _DERIVED_ITEMS and not set(targets) <= picture:
                if not all(is_picture(t) for t in targets):
                    raise Unreadable(f"item {src} is derived from an item that is not a picture")
                picture |= set(targets)
                grew = True
    for kind, src, targets in refs:
        if kind == "auxl" and set(targets) & picture:
            aux_props = [props[i - 1] for i in assoc.get(src, []) if 0 < i <= len(props)]
            if is_picture(src) and any(k == "auxC" and p[4:].split(b"\0")[0] in _ALPHA_URNS for k, p in aux_props):
                picture.add(src)
            else:
                found.append("auxiliary image (depth or gain map)")
        elif kind == "thmb":
            found.append("thumbnail")
        elif kind not in ("dimg", "auxl", "cdsc"):
            found.append(f"item reference {kind}")
    described = {src for kind, src, targets in refs if kind == "cdsc" and primary in targets}
    exif_items = 0
    locations = _locations(data, *inner["iloc"])
    for item in sorted(set(locations) - set(items)):
        found.append(f"item {item} located but not listed")
    for item, (item_type, content, name) in sorted(items.items()):
        if item in picture:
            if name not in _WRITER_NAMES:
                found.append("item name")
            continue
        if item_type == "Exif":  # with --keep-metadata, one Exif, the picture's, whose tags Pillow checks
            exif_items += 1
            found.append("Exif" if exif_items == 1 and item in described else "Exif (another, or not the picture's)")
        elif item_type == "mime":
            found.append("XMP" if "rdf+xml" in content else f"mime:{content or '?'}")
        elif item_type in _PICTURE_ITEMS:
            if not any(k in ("thmb", "auxl") and src == item for k, src, _ in refs):
                found.append(f"picture {item}")
        else:
            found.append(f"item {item_type}")
    profiles = []
    used = {i for p in picture for i in assoc.get(p, [])}
    for index, (kind, payload) in enumerate(props, 1):  # every property, used by the picture or not
        if kind == "colr" and payload[:4] in (b"prof", b"rICC"):
            if index in used:
                profiles.append(payload[4:])
                found.append("ICC")
            else:
                found.append("ICC (not the picture's)")
        elif kind not in _PIXEL_PROPERTIES:
            found.append(f"property {kind}")
    return found, _unreferenced(data, mdats, inner, locations), profiles


def _unreferenced(data, mdats, inner, locations) -> list[str]:
    """Bytes of ``mdat`` and ``idat`` that no item's extents cover (gaps over 3 bytes)."""
    file_ranges = sorted((o, o + n) for m, ext in locations.values() if m == 0 for o, n in ext)
    idat_ranges = sorted((o, o + n) for m, ext in locations.values() if m == 1 for o, n in ext)
    areas = [(s, e, file_ranges) for s, e in mdats]
    if "idat" in inner:
        s, e = inner["idat"]
        areas.append((s, e, [(s + a, s + b) for a, b in idat_ranges]))
    hidden = 0
    for start, stop, ranges in areas:
        covered = start
        for a, b in ranges:
            if b <= start or a >= stop:
                continue
            if a > covered + 3:
                hidden += a - covered
            covered = max(covered, b)
        if stop > covered + 3:
            hidden += stop - covered
    if any(b > len(data) for _, b in file_ranges):
        return ["an item's bytes run past the end of the file"]
    return [f"{hidden:,} bytes in the media data that no item references"] if hidden else []
