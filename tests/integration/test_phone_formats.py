"""Phone photos: HEIC (through pillow-heif) and AVIF in, the same format out, anonymized and with no
metadata (EXIF with GPS and XMP checked by anonlens's own parser and by exiftool), the
``--keep-metadata`` allow-list, the alpha channel, and the box structure checks of
:mod:`anonlens.io.isobmff` (hidden bytes, a foreign colour profile, a second picture, a cut file)."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from anonlens.cli.main import app
from anonlens.identity import DlibFaceEmbedder, match_distances
from anonlens.io import decode_image, metadata_problems, metadata_segments, read_image, sniff_format
from anonlens.io.metadata import embedded_icc_profiles
from anonlens.samples import ASTRONAUT_FACE

from tests.helpers import XMP, encode, exif_with_gps

runner = CliRunner()


def _phone_photo(arr: np.ndarray, fmt: str, **kw) -> bytes:
    """``arr`` as a phone writes it: EXIF with GPS, a maker note, a camera model and an artist; XMP."""
    exif = exif_with_gps()
    exif[0x013B] = "Eileen Collins"  # Artist
    return encode(arr, fmt, quality=92, exif=exif.tobytes(), xmp=XMP, **kw)


def _exiftool(path) -> dict:
    """exiftool's view of ``path`` (required in CI, where .ci/run installs it)."""
    if shutil.which("exiftool") is None:
        if os.environ.get("CI"):
            pytest.fail("exiftool is missing (.ci/run installs libimage-exiftool-perl)")
        pytest.skip("exiftool is not installed")
    out = subprocess.run(["exiftool", "-j", "-a", "-G1", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


@pytest.mark.parametrize("fmt,suffix", [("HEIF", ".HEIC"), ("AVIF", ".avif")])
def test_a_phone_photo_comes_out_anonymized_in_its_format_without_metadata(tmp_path, astronaut, fmt, suffix):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photo = src / f"IMG_0001{suffix}"
    photo.write_bytes(_phone_photo(astronaut, fmt))
    before = photo.read_bytes()
    seen = _exiftool(photo)
    assert any(k.startswith("GPS:") for k in seen) and "IFD0:Artist" in seen and "XMP-exif:GPSLatitude" in seen
    assert metadata_segments(before) == ["Exif", "XMP"]
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(out), "--on-text", "accept", "-q", "--json"])
    assert r.exit_code == 0, r.output
    assert photo.read_bytes() == before  # the original is never modified
    made = out / photo.name
    data = made.read_bytes()
    assert sniff_format(data[:32]) == fmt and metadata_segments(data) == [] and metadata_problems(data) == []
    seen = _exiftool(made)
    leaked = [k for k in seen if k.split(":")[0] in ("IFD0", "ExifIFD", "GPS", "XMP-x", "XMP-exif", "XMP-dc", "Composite")
              and k != "Composite:ImageSize" and not k.startswith("Composite:Megapixels")]
    assert leaked == [], leaked
    loaded = read_image(made)
    assert loaded.rgb.shape == astronaut.shape
    # the face is gone: dlib's identity distance at the original's landmarks is past the match threshold
    emb = DlibFaceEmbedder()
    assert float(match_distances(emb, emb.embed_at(astronaut, ASTRONAUT_FACE), loaded.rgb, [])[0]) > 0.6


def test_keep_metadata_keeps_only_the_allow_list_in_a_heic(tmp_path, astronaut):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "p.heic").write_bytes(_phone_photo(astronaut, "HEIF"))
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(out), "--keep-metadata", "--on-text", "accept", "-q"])
    assert r.exit_code == 0, r.output
    data = (out / "p.heic").read_bytes()
    assert metadata_segments(data) == ["Exif"] and metadata_problems(data, keep_metadata=True) == []
    exif = Image.open(io.BytesIO(data)).getexif()
    assert exif.get(0x0110) == "SecretCam 3000" and 0x013B not in exif and not exif.get_ifd(0x8825)
    seen = _exiftool(out / "p.heic")
    assert seen.get("IFD0:Model") == "SecretCam 3000"
    assert not [k for k in seen if k.startswith(("GPS:", "XMP")) or k.endswith(":Artist") or "MakerNote" in k]


def test_a_heic_alpha_channel_is_anonymized_and_written(tmp_path, astronaut):
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 200, np.uint8)])
    rgba[..., 3][:, :100] = 0
    loaded = decode_image(encode(rgba, "HEIF", quality=92), name="a.heic")
    assert loaded.format == "HEIF" and loaded.alpha is not None
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "a.heic").write_bytes(encode(rgba, "HEIF", quality=92))
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(out), "--on-text", "accept", "-q"])
    assert r.exit_code == 0, r.output
    made = read_image(out / "a.heic")
    x1, y1, x2, y2 = ASTRONAUT_FACE
    assert made.alpha is not None and (made.alpha[y1:y2, x1:x2] == 255).mean() > 0.9  # opaque over the face
    assert abs(int(made.alpha[:, 300:].mean()) - 200) <= 3  # elsewhere as it was


def test_a_heic_photo_from_an_iphone_is_turned_upright(astronaut):
    exif = Image.Exif()
    exif[0x0112] = 6  # pillow-heif stores it as the container's rotation (irot), as phones do
    data = encode(np.ascontiguousarray(np.rot90(astronaut, 1)), "HEIF", quality=92, exif=exif.tobytes())
    loaded = decode_image(data, name="IMG.heic")
    assert loaded.rgb.shape == astronaut.shape and any("HEIF orientation" in n for n in loaded.notes)
    assert np.abs(loaded.rgb.astype(int) - astronaut).mean() < 12  # upright again


def _heif(arr, **kw) -> bytes:
    return encode(arr, "HEIF", quality=80, **kw)


def test_the_box_check_names_what_a_heif_hides(astronaut):
    small = np.ascontiguousarray(astronaut[::8, ::8])
    clean = _heif(small)
    assert metadata_segments(clean) == [] and metadata_problems(clean) == []
    # bytes inside the media data that no item references (a second image hidden in mdat)
    hidden = bytearray(clean)
    at = hidden.rfind(b"mdat") - 4
    hidden[at : at + 4] = struct.pack(">I", struct.unpack(">I", hidden[at : at + 4])[0] + 64)
    hidden += b"\xff\xd8\xff" + b"\x01" * 61
    assert decode_image(bytes(hidden)).rgb.shape == small.shape  # decoders do not care
    assert metadata_segments(bytes(hidden)) == ["64 bytes in the media data that no item references"]
    # a colour profile other than anonlens's sRGB, even with --keep-metadata
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    with_icc = _heif(small, icc_profile=lab)
    assert embedded_icc_profiles(with_icc)[0] == [lab]
    assert any("ICC profile other than" in p for p in metadata_problems(with_icc, keep_metadata=True))
    # a second picture beside the primary one
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format="HEIF", save_all=True, append_images=[Image.fromarray(small[::-1])])
    assert metadata_segments(buf.getvalue()) == ["picture 2"]
    with pytest.raises(Exception, match="multi-frame HEIF"):
        decode_image(buf.getvalue(), name="burst.heic")
    # a cut file: nothing can be checked, so it is reported
    assert "unreadable" in metadata_segments(clean[:120])[0]


def test_the_service_takes_a_heic_and_returns_one(astronaut):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from anonlens.service import ServiceSettings, create_app

    app_ = create_app(ServiceSettings(max_pixels=4_000_000, allowed_hosts=("testserver",)))
    with TestClient(app_) as client:
        assert "heic" in client.get("/options").json()["formats"]
        r = client.post("/anonymize", files={"file": ("IMG_0001.HEIC", _phone_photo(astronaut, "HEIF"), "image/heic")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/heic" and metadata_segments(r.content) == []
    assert decode_image(r.content).format == "HEIF"


# -- crafted HEIF files: what a hostile or odd writer can hide ----------------------------------------

def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full(kind: bytes, payload: bytes, version: int = 0) -> bytes:
    return _box(kind, bytes([version, 0, 0, 0]) + payload)


def _crafted(clean: bytes, items, refs=(), extents=None, iloc_sizes=b"\x44\x00", twice: bytes = b"") -> bytes:
    """A HEIF with the clean file's picture (its hvcC and coded bytes) and ``items``
    (``[(id, type)]``; item 1 is the picture), ``refs`` (``[(type, from, [to])]``), the EXIF blob
    after the picture in ``mdat``; ``twice``: a box name repeated inside ``meta``."""
    from anonlens.io.isobmff import _boxes

    top = {k: (s, e) for k, s, e in _boxes(clean, 0, len(clean))}
    picture = clean[top["mdat"][0] : top["mdat"][1]]
    iprp = next(clean[s - 8 : e] for k, s, e in _boxes(clean, top["meta"][0] + 4, top["meta"][1]) if k == "iprp")
    tags = Image.Exif()
    tags[0x013B] = "John Smith"  # Artist
    exif = struct.pack(">I", 6) + tags.tobytes()  # the TIFF header's offset, then "Exif\0\0" and the TIFF
    iinf = _full(b"iinf", struct.pack(">H", len(items)) + b"".join(
        _full(b"infe", struct.pack(">HH", i, 0) + t + b"\0", version=2) for i, t in items))
    iref = _full(b"iref", b"".join(_box(t, struct.pack(">HH", a, len(b)) + b"".join(struct.pack(">H", x) for x in b)) for t, a, b in refs))
    hdlr = _full(b"hdlr", b"\0" * 4 + b"pict" + b"\0" * 13)
    pitm = _full(b"pitm", struct.pack(">H", 1))

    def meta(at: int) -> bytes:
        where = extents or {1: [(at, len(picture))], **{i: [(at + len(picture), len(exif))] for i, t in items if t == b"Exif"}}
        body = struct.pack(">H", len(where)) + b"".join(
            struct.pack(">HHH", i, 0, len(ext)) + b"".join(struct.pack(">II", o, n) for o, n in ext) for i, ext in where.items())
        iloc = _full(b"iloc", iloc_sizes + body)
        parts = {b"hdlr": hdlr, b"pitm": pitm, b"iloc": iloc, b"iinf": iinf, b"iref": iref if refs else b"", b"iprp": iprp}
        return _full(b"meta", b"".join(parts.values()) + parts.get(twice, b""))

    ftyp = _box(b"ftyp", b"heic\0\0\0\0mif1heic")
    head = ftyp + meta(0)
    head = ftyp + meta(len(head) + 8)
    return head + _box(b"mdat", picture + exif)


def test_the_box_check_finds_what_crafted_files_hide(astronaut):
    clean = _heif(np.ascontiguousarray(astronaut[::8, ::8]))
    plain = _crafted(clean, [(1, b"hvc1"), (2, b"Exif")], refs=[(b"cdsc", 2, [1])])
    assert metadata_segments(plain) == ["Exif"] and metadata_problems(plain, keep_metadata=True) == ["EXIF IFD0 315(Artist)"]
    # an Exif item made part of the picture by a reference, a second Exif, one not the picture's
    for items, refs in (([(1, b"hvc1"), (2, b"Exif")], [(b"dimg", 1, [2])]),
                        ([(1, b"hvc1"), (2, b"Exif"), (3, b"Exif")], [(b"cdsc", 2, [1]), (b"cdsc", 3, [1])]),
                        ([(1, b"hvc1"), (2, b"Exif")], [])):
        data = _crafted(clean, items, refs)
        assert metadata_segments(data) and metadata_problems(data, keep_metadata=True), (items, refs)
    # a box repeated inside meta (decoders read the first, a careless check the last): unreadable
    assert "unreadable" in metadata_segments(_crafted(clean, [(1, b"hvc1")], twice=b"iinf"))[0]
    # item locations whose extents take no bytes (65,535 of them would fit in 8 bytes): refused, not walked
    dos = _crafted(clean, [(1, b"hvc1")], extents={1: [(0, 0)] * 3}, iloc_sizes=b"\x00\x00")
    assert "unreadable" in metadata_segments(dos)[0]
