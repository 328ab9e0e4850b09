"""Issue #25, items 2 and 6: an ICC profile is metadata too (a text tag naming a person, a private
tag holding a JPEG of the face), and data appended after the end of an image is a second image.

Every hostile file is built here: the profile is LittleCMS's sRGB profile with its tag table edited
(a ``desc`` and a ``dmdd`` saying "John Doe", a private tag holding a JPEG crop of the astronaut's
face), a real profile that LittleCMS still reads."""

import io
import itertools
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from anonlens.cli.main import app
from anonlens.io import decode_image, encode_image, metadata_problems, metadata_segments

from tests.helpers import ASTRONAUT_FACE, encode

runner = CliRunner()
NAME = "John Doe"
PRIVATE_TAG = b"ALnx"  # a private tag signature, as a vendor would register one
COLOUR_TAGS = {b"desc", b"cprt", b"wtpt", b"bkpt", b"chad", b"chrm", b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC",
               b"bTRC", b"kTRC", b"lumi", b"meas", b"tech", b"view"}


def icc_tags(profile: bytes) -> dict[bytes, bytes]:
    """{signature: tag data} of an ICC profile, parsed from its tag table."""
    assert profile[36:40] == b"acsp", "not an ICC profile"
    count = struct.unpack(">I", profile[128:132])[0]
    tags = {}
    for k in range(count):
        sig, off, size = struct.unpack(">4sII", profile[132 + 12 * k : 144 + 12 * k])
        tags[sig] = profile[off : off + size]
    return tags


def build_icc(tags: dict[bytes, bytes], header: bytes) -> bytes:
    """An ICC profile from a 128-byte header and {signature: tag data} (4-byte aligned)."""
    table_end = 132 + 12 * len(tags)
    body, entries, off = b"", b"", table_end
    for sig, blob in tags.items():
        entries += struct.pack(">4sII", sig, off, len(blob))
        blob += b"\0" * (-len(blob) % 4)
        body += blob
        off += len(blob)
    profile = bytearray(header + struct.pack(">I", len(tags)) + entries + body)
    profile[0:4] = struct.pack(">I", len(profile))
    profile[84:100] = bytes(16)  # no profile ID
    return bytes(profile)


def mluc(text: str) -> bytes:
    s = text.encode("utf-16-be")
    return b"mluc" + bytes(4) + struct.pack(">II", 1, 12) + b"enUS" + struct.pack(">II", len(s), 28) + s


@pytest.fixture(scope="module")
def face_jpeg(astronaut):
    x1, y1, x2, y2 = ASTRONAUT_FACE
    return encode(np.ascontiguousarray(astronaut[y1 - 20 : y2 + 20, x1 - 20 : x2 + 20]), "JPEG", quality=90)


def s15(x: float) -> bytes:
    return struct.pack(">i", int(round(x * 65536)))


def cmyk_lut() -> bytes:
    """A lut16 A2B0 tag: CMYK (naive complement) to PCS XYZ through sRGB's primaries."""
    to_xyz = np.array([[0.4361, 0.3851, 0.1431], [0.2225, 0.7169, 0.0606], [0.0139, 0.0971, 0.7141]])
    lut = b"mft2" + bytes(4) + bytes([4, 3, 2, 0]) + b"".join(s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lut += struct.pack(">HH", 2, 2) + struct.pack(">8H", *([0, 65535] * 4))
    for c, m, y, k in itertools.product((0, 1), repeat=4):
        xyz = to_xyz @ np.array([(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)])
        lut += struct.pack(">3H", *(int(round(v * 32768)) for v in xyz))
    return lut + struct.pack(">6H", *([0, 65535] * 3))


def hostile_icc(face_jpeg: bytes, *, swap_primaries: bool = False, space: str = "RGB") -> bytes:
    """sRGB's colour data plus a desc and a dmdd naming a person and a private tag holding a JPEG
    of their face. ``swap_primaries``: red and blue primaries exchanged (a profile that is not
    sRGB, so converting to sRGB visibly changes the pixels). ``space``: "RGB", "GRAY" (sRGB's
    tone curve) or "CMYK" (a printer profile with a small lookup table)."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tags = icc_tags(srgb)
    header = bytearray(srgb[:128])
    if space == "GRAY":
        tags = {b"desc": tags[b"desc"], b"cprt": tags[b"cprt"], b"wtpt": tags[b"wtpt"], b"kTRC": tags[b"rTRC"]}
        header[16:20] = b"GRAY"
    elif space == "CMYK":
        tags = {b"desc": tags[b"desc"], b"cprt": tags[b"cprt"], b"wtpt": tags[b"wtpt"], b"A2B0": cmyk_lut()}
        header[12:24] = b"prtrCMYKXYZ "
    tags[b"desc"] = mluc(NAME)
    tags[b"dmdd"] = mluc(f"{NAME}, 12 Rue X, Paris")
    tags[PRIVATE_TAG] = b"data" + bytes(4) + bytes(4) + face_jpeg
    if swap_primaries:
        tags[b"rXYZ"], tags[b"bXYZ"] = tags[b"bXYZ"], tags[b"rXYZ"]
    profile = build_icc(tags, bytes(header))
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile))).strip() == NAME  # LittleCMS reads it
    return profile


def secrets_of(face_jpeg: bytes) -> list[bytes]:
    """The name, and pieces of the face's scan data (not its header: the tables are any JPEG's)."""
    mid = len(face_jpeg) // 2
    return [NAME.encode(), NAME.encode("utf-16-be"), face_jpeg[mid : mid + 400], face_jpeg[-600:-200]]


def profile_of(data: bytes) -> bytes | None:
    with Image.open(io.BytesIO(data)) as img:
        return img.info.get("icc_profile")


FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif"}


@pytest.fixture(scope="module")
def icc_folder(tmp_path_factory, astronaut, face_jpeg):
    """The astronaut in every format, each with the hostile profile."""
    src = tmp_path_factory.mktemp("icc") / "in"
    src.mkdir()
    profile = hostile_icc(face_jpeg)
    for fmt, suffix in FORMATS.items():
        kw = {"quality": 92} if fmt in ("JPEG", "WEBP") else {}
        (src / f"p{suffix}").write_bytes(encode(astronaut, fmt, icc_profile=profile, **kw))
        assert profile_of((src / f"p{suffix}").read_bytes()) == profile
    return src


def test_keep_metadata_writes_no_byte_of_the_original_profile(icc_folder, tmp_path, face_jpeg):
    out = tmp_path / "out"
    r = runner.invoke(app, ["anonymize", "--on-text", "accept", str(icc_folder), "-o", str(out), "-q", "-j", "1", "--keep-metadata"])
    assert r.exit_code == 0, r.output
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    for fmt, suffix in FORMATS.items():
        data = (out / f"p{suffix}").read_bytes()
        for secret in secrets_of(face_jpeg):
            assert secret not in data, (fmt, secret[:16])
        profile = profile_of(data)
        assert profile is not None, fmt  # --keep-metadata keeps a colour profile: the standard sRGB one
        tags = icc_tags(profile)
        assert set(tags) <= COLOUR_TAGS, (fmt, sorted(tags))
        assert b"dmdd" not in tags and PRIVATE_TAG not in tags
        for blob in tags.values():
            assert NAME.encode("utf-16-be") not in blob and NAME.encode() not in blob
        desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
        assert desc == ImageCms.getProfileDescription(srgb), (fmt, desc)
        assert metadata_problems(data, keep_metadata=True) == []


def test_by_default_no_profile_at_all(icc_folder, tmp_path, face_jpeg):
    out = tmp_path / "out"
    r = runner.invoke(app, ["anonymize", "--on-text", "accept", str(icc_folder), "-o", str(out), "-q", "-j", "1"])
    assert r.exit_code == 0, r.output
    for fmt, suffix in FORMATS.items():
        data = (out / f"p{suffix}").read_bytes()
        assert profile_of(data) is None, fmt
        assert metadata_segments(data) == [], fmt
        for secret in secrets_of(face_jpeg):
            assert secret not in data, (fmt, secret[:16])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "CMYK"])
@pytest.mark.parametrize("keep", [False, True])
def test_every_mode_with_a_profile(mode, keep, astronaut, face_jpeg):
    """RGB, RGBA, grayscale and CMYK inputs carrying the hostile profile: never written back; with
    ``keep_metadata`` a colour output gets the standard sRGB profile, a grayscale one none."""
    img = Image.fromarray(astronaut).convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    buf = io.BytesIO()
    img.save(buf, fmt, icc_profile=hostile_icc(face_jpeg, space={"L": "GRAY", "CMYK": "CMYK"}.get(mode, "RGB")))
    loaded = decode_image(buf.getvalue(), name="x", keep_metadata=keep)
    assert "embedded colour profile converted to sRGB" in loaded.notes or (mode == "CMYK" and "CMYK converted to RGB" in loaded.notes)
    assert "unreadable" not in " ".join(loaded.notes), loaded.notes
    out = encode_image(loaded, loaded.rgb, keep_metadata=keep)
    for secret in secrets_of(face_jpeg):
        assert secret not in out, secret[:16]
    profile = profile_of(out)
    if keep and mode != "L":
        assert profile is not None and set(icc_tags(profile)) <= COLOUR_TAGS
        assert metadata_problems(out, keep_metadata=True) == []
    else:
        assert profile is None
        assert metadata_problems(out, keep_metadata=keep) == []


@pytest.mark.parametrize("keep", [False, True])
def test_pixels_are_converted_to_srgb_in_both_modes(astronaut, face_jpeg, keep):
    """A profile that is not sRGB (red and blue primaries swapped): the pixels are converted to
    sRGB whether or not the sRGB profile is written, so the colours stay right either way."""
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "PNG", icc_profile=hostile_icc(face_jpeg, swap_primaries=True))
    loaded = decode_image(buf.getvalue(), name="x", keep_metadata=keep)
    diff = np.abs(loaded.rgb.astype(int) - astronaut[:, :, ::-1].astype(int))
    assert diff.mean() < 2.0, diff.mean()  # R and B exchanged, as the profile says
    assert "embedded colour profile converted to sRGB" in loaded.notes


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_the_after_encoding_check_parses_the_profile(fmt, astronaut, face_jpeg):
    """What the check looks at is the file: an encoded file carrying the hostile profile is refused
    (with --keep-metadata too), one with the sRGB profile anonlens writes passes."""
    kw = {"quality": 90} if fmt in ("JPEG", "WEBP") else {}
    dirty = encode(astronaut, fmt, icc_profile=hostile_icc(face_jpeg), **kw)
    problems = metadata_problems(dirty, keep_metadata=True)
    assert any("ICC" in p and "dmdd" in p and "ALnx" in p for p in problems), problems
    assert metadata_problems(dirty)  # by default any profile is refused
    loaded = decode_image(encode(astronaut, "PNG", icc_profile=hostile_icc(face_jpeg)), name="x", keep_metadata=True)
    clean = encode_image(loaded, loaded.rgb, format=fmt, keep_metadata=True)
    assert profile_of(clean) is not None and metadata_problems(clean, keep_metadata=True) == []
    # a one-byte change anywhere in the profile (here: its creation date) is refused
    tampered = bytearray(profile_of(clean))
    tampered[30] ^= 1
    problems = metadata_problems(encode(astronaut, fmt, icc_profile=bytes(tampered), **kw), keep_metadata=True)
    assert any("ICC" in p for p in problems), problems


def test_a_png_profile_name_is_checked_too(astronaut):
    """The iCCP chunk's profile *name* is free text: a clean profile under a name is refused."""
    loaded = decode_image(encode(astronaut, "PNG", icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()),
                          name="x", keep_metadata=True)
    clean = encode_image(loaded, loaded.rgb, format="PNG", keep_metadata=True)
    assert metadata_problems(clean, keep_metadata=True) == []
    i = clean.index(b"iCCP")
    length = struct.unpack(">I", clean[i - 4 : i])[0]
    name_end = clean.index(b"\0", i + 4)
    payload = NAME.encode() + clean[name_end : i + 4 + length]
    chunk = struct.pack(">I", len(payload)) + b"iCCP" + payload
    chunk += struct.pack(">I", zlib.crc32(chunk[4:]) & 0xFFFFFFFF)
    renamed = clean[: i - 4] + chunk + clean[i + 8 + length :]
    assert profile_of(renamed) == profile_of(clean)
    assert any("iCCP" in p for p in metadata_problems(renamed, keep_metadata=True))


# -- data after the end of the image (item 6) -------------------------------------------------


def inspect(path):
    return runner.invoke(app, ["inspect", str(path)])


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_inspect_flags_a_second_jpeg_after_the_end(fmt, tmp_path, astronaut):
    original = encode(astronaut, "JPEG", quality=90)
    clean = encode(astronaut // 2, fmt)
    path = tmp_path / f"x{FORMATS[fmt]}"
    path.write_bytes(clean)
    r = inspect(path)
    assert r.exit_code == 0 and "no metadata" in r.output, r.output
    path.write_bytes(clean + original)
    assert Image.open(path).size == (512, 512)  # still a valid image: the appended one is invisible
    r = inspect(path)
    assert r.exit_code == 1, r.output
    assert f"{len(original):,} bytes after the end" in r.output and "JPEG" in r.output, r.output
    assert any("after the end" in p for p in metadata_problems(clean + original, keep_metadata=True))
    assert any("after the end" in p for p in metadata_problems(clean + original))


def test_a_thumbnail_inside_a_jpeg_is_not_its_end(tmp_path, astronaut):
    """A JPEG legally holds other JPEGs in its APP segments (the EXIF thumbnail): their EOI is not
    the file's end, and scans of a progressive JPEG are walked to the real EOI."""
    thumb = encode(np.ascontiguousarray(astronaut[::4, ::4]), "JPEG")
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif_bytes = exif.tobytes()
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG", progressive=True, exif=exif_bytes)
    data = buf.getvalue()
    app1 = b"Exif\0\0" + thumb  # a JPEG inside an APP segment (not a valid EXIF block, a JPEG all the same)
    data = data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
    assert not any("after the end" in s for s in metadata_segments(data)), metadata_segments(data)
    assert not any("after the end" in s for s in metadata_segments(thumb))
    assert any("after the end" in s for s in metadata_segments(data + thumb))


def test_a_jfif_thumbnail_and_unknown_jpeg_segments_are_metadata(astronaut):
    clean = encode(astronaut, "JPEG")
    assert metadata_segments(clean) == []
    assert clean[2:4] == b"\xff\xe0" and clean[6:11] == b"JFIF\0"
    thumb = np.ascontiguousarray(astronaut[::32, ::32]).tobytes()  # a 16x16 RGB JFIF thumbnail
    app0 = clean[6:18] + bytes([16, 16]) + thumb
    with_thumb = clean[:2] + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + clean[20:]
    assert Image.open(io.BytesIO(with_thumb)).size == (512, 512)
    assert metadata_segments(with_thumb), "a JFIF thumbnail is an image of the photo"
    private = b"\xff\xf1" + struct.pack(">H", 10) + b"John Doe"  # JPG1: a reserved marker, skipped by decoders
    hidden = clean[:2] + private + clean[2:]
    assert Image.open(io.BytesIO(hidden)).size == (512, 512)
    assert metadata_segments(hidden) == ["0xF1"]


def test_tiff_data_no_ifd_points_at(tmp_path, astronaut):
    """A TIFF whose IFD is written after a block that nothing references: the block is reported."""
    clean = encode(astronaut, "TIFF")
    assert metadata_segments(clean) == []
    hidden = encode(astronaut, "JPEG")
    first_ifd = struct.unpack("<I", clean[4:8])[0]
    assert clean[:2] == b"II"
    # shift everything after the header by the hidden block, and every offset with it
    shifted = bytearray(clean[:8] + hidden + clean[8:])
    delta = len(hidden)
    shifted[4:8] = struct.pack("<I", first_ifd + delta)
    ifd = first_ifd + delta
    count = struct.unpack("<H", shifted[ifd : ifd + 2])[0]
    sizes = {3: 2, 4: 4, 5: 8, 1: 1, 2: 1, 7: 1}
    for k in range(count):
        e = ifd + 2 + 12 * k
        tag, typ, n = struct.unpack("<HHI", shifted[e : e + 8])
        if sizes[typ] * n > 4:
            old = struct.unpack("<I", shifted[e + 8 : e + 12])[0]
            shifted[e + 8 : e + 12] = struct.pack("<I", old + delta)
            if tag == 273:  # StripOffsets, stored out of line
                for j in range(n):
                    p = old + delta + 4 * j
                    shifted[p : p + 4] = struct.pack("<I", struct.unpack("<I", shifted[p : p + 4])[0] + delta)
        elif tag == 273:
            shifted[e + 8 : e + 12] = struct.pack("<I", struct.unpack("<I", shifted[e + 8 : e + 12])[0] + delta)
    data = bytes(shifted)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), astronaut)
    problems = metadata_segments(data)
    assert any(f"{delta:,} bytes" in p and "JPEG" in p for p in problems), problems
    path = tmp_path / "x.tif"
    path.write_bytes(data)
    assert inspect(path).exit_code == 1


def test_bmp_with_data_after_the_pixels(tmp_path, astronaut):
    clean = encode(astronaut, "BMP")
    assert metadata_segments(clean) == []
    path = tmp_path / "x.bmp"
    path.write_bytes(clean + encode(astronaut, "JPEG"))
    r = inspect(path)
    assert r.exit_code == 1 and "after the end of the image (a JPEG)" in r.output, r.output


def test_a_profile_hidden_in_jpeg_exif_is_refused(astronaut, face_jpeg):
    """Tag 34675 is a TIFF's profile; inside a JPEG's EXIF it is a blob the decoder never uses."""
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[34675] = hostile_icc(face_jpeg)
    data = encode(astronaut, "JPEG", exif=exif.tobytes())
    assert any("34675" in p for p in metadata_problems(data, keep_metadata=True))


def test_the_profile_anonlens_writes_does_not_depend_on_when(tmp_path):
    """LittleCMS stamps a profile with the time it is made: anonlens fixes the date, so the
    profile records nothing about the run and is the same in every process."""
    import subprocess
    import sys

    from anonlens.io.metadata import srgb_icc_profile

    ours = srgb_icc_profile()
    assert struct.unpack(">6H", ours[24:36]) == (2000, 1, 1, 0, 0, 0)
    code = "import sys; from anonlens.io.metadata import srgb_icc_profile; sys.stdout.buffer.write(srgb_icc_profile())"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout == ours
    assert set(icc_tags(ours)) <= COLOUR_TAGS
