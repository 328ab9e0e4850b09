"""Image reading (modes, orientation, bad files) and metadata-free writing."""

import io

import numpy as np
import pytest
from PIL import Image

from anonlens.errors import ImageReadError
from anonlens.io import container_segments, decode_image, encode_image, metadata_segments, read_image

from tests.helpers import encode, exif_with_gps, jpeg_with_everything, png_with_everything


def test_fixtures_really_carry_metadata(astronaut):
    assert {"APP1:Exif", "APP1:XMP", "COM", "APP13:IPTC"} <= set(metadata_segments(jpeg_with_everything(astronaut)))
    assert {"tEXt", "iTXt", "zTXt", "eXIf"} <= set(metadata_segments(png_with_everything(astronaut)))


@pytest.mark.parametrize("make,fmt", [(jpeg_with_everything, "JPEG"), (png_with_everything, "PNG")])
def test_encoded_output_has_no_metadata(make, fmt, astronaut):
    loaded = decode_image(make(astronaut), name="x")
    out = encode_image(loaded, loaded.rgb)
    got_fmt, segments = container_segments(out)
    assert got_fmt == fmt
    assert metadata_segments(out) == [], segments
    reread = Image.open(io.BytesIO(out))
    assert not reread.getexif() and "comment" not in reread.info and "xmp" not in reread.info
    assert not [k for k in reread.info if k not in ("jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi")]


def test_keep_metadata_keeps_exif_but_never_gps_makernote_or_thumbnail(astronaut):
    loaded = decode_image(jpeg_with_everything(astronaut), name="x", keep_metadata=True)
    out = encode_image(loaded, loaded.rgb, keep_metadata=True)
    exif = Image.open(io.BytesIO(out)).getexif()
    assert exif[0x0110] == "SecretCam 3000" and exif[0x0132] == "2024:05:01 12:00:00"
    assert 0x8825 not in exif and not exif.get_ifd(0x8825)
    sub = exif.get_ifd(0x8769)
    assert 0x927C not in sub and sub.get(0x9003) == "2024:05:01 12:00:00"
    assert exif.get(0x0112) == 1
    assert "APP1:XMP" not in metadata_segments(out) and "COM" not in metadata_segments(out)
    assert b"maker secrets" not in out and b"Jane Roe" not in out


def test_exif_orientation_is_applied_to_the_pixels():
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", exif=exif_with_gps(orientation=6), quality=100)
    loaded = decode_image(buf.getvalue(), name="x")
    assert loaded.rgb.shape == (40, 20, 3)  # rotated 90 degrees
    assert loaded.rgb[:20].mean() > 200 and loaded.rgb[20:].mean() < 50  # white now on top
    assert any("orientation 6" in n for n in loaded.notes)


def test_modes_are_converted_or_preserved():
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    # CMYK
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, "JPEG")
    cmyk = decode_image(buf.getvalue(), name="x")
    assert cmyk.rgb.shape == (16, 16, 3) and "CMYK converted to RGB" in cmyk.notes
    # 16-bit grayscale
    arr16 = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr16).save(buf, "PNG")
    g16 = decode_image(buf.getvalue(), name="x")
    assert g16.grayscale and g16.rgb[0, 1, 0] == 1 and g16.rgb[15, 15, 0] == 255
    # palette with transparency -> RGBA; alpha preserved on write
    rgba = np.dstack([rgb, np.full((16, 16), 128, np.uint8)])
    loaded = decode_image(encode(rgba), name="x")
    assert loaded.alpha is not None and (loaded.alpha == 128).all()
    out = Image.open(io.BytesIO(encode_image(loaded, loaded.rgb)))
    assert out.mode == "RGBA" and np.asarray(out)[..., 3].min() == 128
    pal = Image.fromarray(rgb).convert("P")
    buf = io.BytesIO()
    pal.save(buf, "PNG")
    assert decode_image(buf.getvalue(), name="x").rgb.shape == (16, 16, 3)
    # grayscale stays grayscale
    gray = decode_image(encode(rgb[:, :, 0]), name="x")
    assert Image.open(io.BytesIO(encode_image(gray, gray.rgb))).mode == "L"


@pytest.mark.parametrize(
    "data,problem",
    [
        (b"", "empty file"),
        (b"this is not an image at all", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot decode|not an image"),
    ],
)
def test_bad_bytes_are_one_line_errors_naming_the_file(data, problem):
    with pytest.raises(ImageReadError, match=problem) as err:
        decode_image(data, name="photos/bad.jpg")
    assert str(err.value).startswith("photos/bad.jpg: ") and "\n" not in str(err.value)


def test_truncated_jpeg_is_refused(astronaut):
    data = encode(astronaut, "JPEG")
    with pytest.raises(ImageReadError, match="truncated|cannot decode"):
        decode_image(data[: len(data) // 2], name="t.jpg")


def test_pixel_limit_is_checked_before_decoding(astronaut):
    with pytest.raises(ImageReadError, match="over the limit of 100,000"):
        decode_image(encode(astronaut), name="big.png", max_pixels=100_000)


def test_multi_frame_images_are_refused():
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError, match="multi-frame"):
        decode_image(buf.getvalue(), name="anim.gif")


def test_read_image_reports_missing_and_folders(tmp_path):
    with pytest.raises(ImageReadError, match="cannot read"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image(tmp_path)
