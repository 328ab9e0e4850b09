"""Input that must not trick the pipeline: bad regions, metadata that must not survive
--keep-metadata, special files and links, hostile output paths, formats that lie about
themselves. Every file is built here; real faces where detection matters."""

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin
from typer.testing import CliRunner

from anonlens.audit import find_manifest
from anonlens.cli.main import app
from anonlens.io import container_segments, decode_image, metadata_problems

from tests.helpers import ASTRONAUT_FACE, encode, iou, run_anonlens

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["anonymize", "--on-text", "accept", *map(str, args), "-q"])


def strict_manifest(out: Path) -> dict:
    def no_constants(name):
        raise AssertionError(f"manifest holds {name}: not JSON")

    return json.loads(find_manifest(out).read_text(), parse_constant=no_constants)


# -- user regions ------------------------------------------------------------------------------


@pytest.fixture
def face_folder(tmp_path, astronaut):
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.png").write_bytes(encode(astronaut))
    return src


def boxes_file(tmp_path, doc, name="regions.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_normalised_boxes_need_the_file_to_say_so(face_folder, tmp_path, astronaut):
    norm = [0.33, 0.14, 0.53, 0.33]  # the astronaut's face, as fractions of 512 px
    bad = boxes_file(tmp_path, {"a/x.png": [{"box": norm}]}, "bad.json")
    r = run(face_folder, "-o", tmp_path / "o1", "--boxes", bad, "--no-verify")
    assert r.exit_code == 1, r.output
    assert "bad.json: image 'a/x.png', region 0: covers 0 pixel(s)" in r.output
    assert not (tmp_path / "o1" / "a" / "x.png").exists()  # fail closed: the face never leaves
    good = boxes_file(tmp_path, {"coordinates": "normalized", "images": {"a/x.png": [{"box": norm}]}}, "good.json")
    r = run(face_folder, "-o", tmp_path / "o2", "--boxes", good, "--no-verify", "--operator", "mask")
    assert r.exit_code == 0, r.output
    out = np.asarray(Image.open(tmp_path / "o2" / "a" / "x.png"))
    x1, y1, x2, y2 = ASTRONAUT_FACE
    assert (out[y1 + 20 : y2 - 20, x1 + 20 : x2 - 20] == 0).all()
    rec = strict_manifest(tmp_path / "o2")["images"][0]
    assert iou(rec["regions"][0]["box"], [0.33 * 512, 0.14 * 512, 0.53 * 512, 0.33 * 512]) > 0.99


@pytest.mark.parametrize(
    "regions,code,message",
    [
        ([{"box": [float("nan"), 10, 100, 100]}], 2, "region 0: box coordinates must be finite numbers"),
        ([{"box": [10, 10, 100, 100]}, {"box": [50, 50, 40, 90]}], 2, "region 1: box [50, 50, 40, 90] is degenerate"),
        ([{"polygon": [[0, 0], [1e12, 0], [0, 1e12]]}], 1, "region 0: coordinates [0.0, 0.0, 1000000000000.0"),
        ([{"polygon": [[10, 10], [20, 20], [30, 30]]}], 2, "region 0: polygon is degenerate"),
        ([{"box": [10, 10, 13, 13]}], 1, "covers 9 pixel(s) of the 512x512 image, fewer than the minimum of 16"),
        ([{"box": [400, 400, 600, 500]}], 1, "lie outside the 512x512 image"),
        ([{"box": [10, 10, 100, 100], "score": float("nan")}], 2, "region 0: score must be a finite number"),
    ],
)
def test_each_bad_region_is_rejected_by_name(face_folder, tmp_path, regions, code, message):
    path = boxes_file(tmp_path, json.dumps({"a/x.png": regions}))  # json.dumps writes NaN as the reference tools do
    r = run(face_folder, "-o", tmp_path / "o", "--boxes", path)
    assert r.exit_code == code, r.output
    assert message in r.output, r.output
    assert f"{path}" in r.output and "a/x.png" in r.output
    assert not (tmp_path / "o" / "a" / "x.png").exists()


def test_keys_are_relative_paths_and_unmatched_keys_fail_the_run(tmp_path, no_face_image):
    src = tmp_path / "in"
    for sub in ("a", "b"):
        (src / sub).mkdir(parents=True)
        (src / sub / "x.png").write_bytes(encode(no_face_image))
    table = {"a/x.png": [{"box": [10, 10, 110, 90]}], "b/x.png": [{"box": [200, 200, 300, 280]}]}
    r = run(src, "-o", tmp_path / "o", "--boxes", boxes_file(tmp_path, table), "--operator", "mask")
    assert r.exit_code == 0, r.output
    a = np.asarray(Image.open(tmp_path / "o" / "a" / "x.png"))
    b = np.asarray(Image.open(tmp_path / "o" / "b" / "x.png"))
    assert (a[10:90, 10:110] == 0).all() and np.array_equal(a[200:280, 200:300], no_face_image[200:280, 200:300])
    assert (b[200:280, 200:300] == 0).all() and np.array_equal(b[10:90, 10:110], no_face_image[10:90, 10:110])
    # a bare name that fits two inputs is refused before anything is written
    r = run(src, "-o", tmp_path / "o2", "--boxes", boxes_file(tmp_path, {"x.png": [{"box": [1, 1, 50, 50]}]}, "bare.json"))
    assert r.exit_code == 2 and "key 'x.png' names 2 inputs (a/x.png, b/x.png)" in r.output
    assert not (tmp_path / "o2").exists() or not any((tmp_path / "o2").iterdir())
    # a key that matches no input is listed and the run fails
    table["c/typo.png"] = [{"box": [1, 1, 50, 50]}]
    r = runner.invoke(app, ["anonymize", "--on-text", "accept", str(src), "-o", str(tmp_path / "o3"), "-q", "--json", "--boxes", str(boxes_file(tmp_path, table, "t.json"))])
    assert r.exit_code == 1
    assert json.loads(r.stdout)["unmatched_region_keys"] == [f"{tmp_path / 't.json'}: 'c/typo.png'"]
    assert strict_manifest(tmp_path / "o3")["unmatched_region_keys"] == [f"{tmp_path / 't.json'}: 'c/typo.png'"]


# -- --keep-metadata -------------------------------------------------------------------------


def _thumbnail(astronaut) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(astronaut).resize((160, 160)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_keep_metadata_drops_a_tiff_photoshop_thumbnail_and_xmp(tmp_path, astronaut):
    thumb = _thumbnail(astronaut)
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[34377] = b"8BIM\x04\x0c\x00\x00\x00\x00" + thumb  # Photoshop image resources: the thumbnail
    info.tagtype[34377] = 7
    info[700] = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">Jane Roe, 48.85N</x:xmpmeta>'
    info.tagtype[700] = 1
    info[0x010F] = "Canon"  # Make: allowed
    info[315] = "Jane Roe"  # Artist: a name, not allowed
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "p.tif", tiffinfo=info)
    assert {34377, 700, 315} <= set(Image.open(src / "p.tif").tag_v2.keys())
    r = run(src, "-o", tmp_path / "o", "--keep-metadata")
    assert r.exit_code == 0, r.output
    data = (tmp_path / "o" / "p.tif").read_bytes()
    tags = dict(Image.open(io.BytesIO(data)).tag_v2)
    assert not {34377, 700, 315, 33723, 37500} & set(tags), sorted(tags)
    assert tags[0x010F] == "Canon"  # the allow-list keeps the camera
    assert thumb[100:400] not in data and b"Jane Roe" not in data and b"xmpmeta" not in data
    assert metadata_problems(data, keep_metadata=True) == []


def test_keep_metadata_drops_xmp_iptc_and_maker_note_held_in_jpeg_exif(tmp_path, astronaut):
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS R5"
    exif[700] = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">secret-xmp</x:xmpmeta>'
    exif[33723] = b"\x1c\x02\x50\x00\x08Jane Roe"  # IPTC byline
    exif[0x927C] = b"secret-makernote"
    exif[0x8769] = {0x9003: "2024:05:01 12:00:00", 0x927C: b"secret-sub-makernote", 0xA431: "SERIAL-0042", 0xA430: "Jane Roe"}
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 30.0)}
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "p.jpg", exif=exif, quality=92)
    r = run(src, "-o", tmp_path / "o", "--keep-metadata")
    assert r.exit_code == 0, r.output
    data = (tmp_path / "o" / "p.jpg").read_bytes()
    fmt, segments = container_segments(data)
    assert fmt == "JPEG" and set(segments) <= {"APP0:JFIF", "APP1:Exif", "APP2:ICC", "SOS", "0xDB", "0xC0", "0xC4", "0xDD"}, segments
    kept = Image.open(io.BytesIO(data)).getexif()
    assert dict(kept) .keys() <= {0x010F, 0x0110, 0x0112, 0x8769} and kept[0x0110] == "EOS R5" and kept[0x0112] == 1
    assert dict(kept.get_ifd(0x8769)) == {0x9003: "2024:05:01 12:00:00"}
    assert not kept.get_ifd(0x8825) and not kept.get_ifd(-1)  # no GPS, no thumbnail IFD
    for secret in (b"secret-xmp", b"Jane Roe", b"secret-makernote", b"secret-sub-makernote", b"SERIAL-0042"):
        assert secret not in data, secret


def test_the_after_encoding_check_runs_against_the_allow_list(astronaut):
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    clean = io.BytesIO()
    Image.fromarray(astronaut).save(clean, "JPEG", exif=exif)
    assert metadata_problems(clean.getvalue(), keep_metadata=True) == []
    assert metadata_problems(clean.getvalue()) == ["APP1:Exif"]  # by default nothing at all may remain
    exif[33723] = b"\x1c\x02\x50"
    exif[0x8825] = {1: "N"}
    dirty = io.BytesIO()
    Image.fromarray(astronaut).save(dirty, "JPEG", exif=exif, comment=b"hello")
    problems = metadata_problems(dirty.getvalue(), keep_metadata=True)
    assert "COM" in problems and any("33723(IPTC)" in p for p in problems) and "EXIF GPS" in problems, problems


# -- special files, links and paths ------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_fifo_devices_and_links_are_skipped_and_named_without_hanging(tmp_path, astronaut):
    src = tmp_path / "in"
    (src / "real").mkdir(parents=True)
    (src / "a.png").write_bytes(encode(astronaut))
    (src / "real" / "b.png").write_bytes(encode(astronaut))
    os.mkfifo(src / "pipe.png")
    os.symlink("/dev/zero", src / "zero.jpg")
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(encode(astronaut))
    os.symlink(outside, src / "outside.png")
    os.symlink("nowhere.png", src / "dangling.png")
    os.symlink("real", src / "linked")
    os.symlink("a.png", src / "alias.png")  # a link to a file inside the input: followed
    done = run_anonlens("anonymize", "--on-text", "accept", src, "-o", tmp_path / "o", "-q", "--json", timeout=180)  # a hang fails here, not forever
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    reasons = {Path(i["input"]).name: i["reason"] for i in payload["ignored"]}
    assert "named pipe" in reasons["pipe.png"]
    assert "outside the input folder" in reasons["zero.jpg"] and "outside the input folder" in reasons["outside.png"]
    assert "dangling" in reasons["dangling.png"] and "not followed" in reasons["linked"]
    assert sorted(p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*") if p.is_file()) == [
        "a.png", "alias.png", "real/b.png"]


def test_hostile_output_paths_get_one_line_errors(tmp_path, astronaut):
    nest = tmp_path / "nest"
    (nest / "in").mkdir(parents=True)
    (nest / "in" / "a.png").write_bytes(encode(astronaut))
    before = sorted(p.name for p in nest.rglob("*"))
    cases = [
        ((nest / "in", "-o", nest), "output folder", "contains input"),
        ((nest / "in" / "a.png", "-o", nest), "output folder", "contains input"),
    ]
    (tmp_path / "afile").write_text("x")
    os.symlink("nowhere", tmp_path / "dangling-out")
    os.symlink("nowhere.png", tmp_path / "dangling-in.png")
    cases += [
        ((nest / "in", "-o", tmp_path / "afile"), "is a file, not a folder", ""),
        ((nest / "in", "-o", tmp_path / "afile" / "sub"), "cannot be created", "is a file"),
        ((nest / "in", "-o", tmp_path / "dangling-out"), "dangling symbolic link", ""),
        ((tmp_path / "dangling-in.png", "-o", tmp_path / "o"), "dangling symbolic link", "nowhere.png"),
    ]
    for args, first, second in cases:
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and first in lines[0] and second in lines[0], r.output
    assert sorted(p.name for p in nest.rglob("*")) == before  # the originals did not move into an "anonymized" folder


# -- formats -----------------------------------------------------------------------------------


def test_formats_come_from_the_content(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    (src / "jpeg.png").write_bytes(encode(astronaut, "JPEG"))
    (src / "png.jpg").write_bytes(encode(astronaut, "PNG"))
    # (a GIF named .png is refused, like any GIF: tests/integration/test_service_hardening.py)
    (src / "camera-upload").write_bytes(encode(astronaut, "JPEG"))
    r = runner.invoke(app, ["anonymize", "--on-text", "accept", str(src), "-o", str(tmp_path / "o"), "-q", "--json"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "o"
    assert (out / "jpeg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "png.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert (out / "camera-upload.jpg").read_bytes()[:3] == b"\xff\xd8\xff" and not (out / "camera-upload").exists()
    records = {Path(r_["input"]).name: r_ for r_ in strict_manifest(out)["images"]}
    assert records["jpeg.png"]["format"] == {"input": "JPEG", "output": "PNG"}
    assert any("written as PNG, as its name says" in n for n in records["jpeg.png"]["notes"])
    assert any("written as camera-upload.jpg" in n for n in records["camera-upload"]["notes"])
    assert all(r_["status"] == "anonymized" for r_ in records.values())


def test_a_one_bit_portrait_is_detected(tmp_path, astronaut):
    small = Image.fromarray(astronaut).resize((256, 256), Image.LANCZOS).convert("L").convert("1")  # dithered
    src = tmp_path / "in"
    src.mkdir()
    small.save(src / "bw.png")
    assert Image.open(src / "bw.png").mode == "1"
    r = run(src, "-o", tmp_path / "o")
    assert r.exit_code == 0, r.output
    (rec,) = strict_manifest(tmp_path / "o")["images"]
    face = [v / 2 for v in ASTRONAUT_FACE]
    assert rec["status"] == "anonymized" and any(iou(g["box"], face) > 0.3 and g["score"] > 0.5 for g in rec["regions"]), rec["regions"]
    assert "1-bit image converted to smoothed 8-bit grayscale" in rec["notes"]


def test_max_pixels_above_pillows_own_limit(monkeypatch, astronaut):
    data = encode(astronaut)  # 262,144 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)  # stands for Pillow's 89.5 MP default
    assert decode_image(data, max_pixels=300_000).rgb.shape == (512, 512, 3)
    assert decode_image(data, max_pixels=None).rgb.shape == (512, 512, 3)
    with pytest.raises(Exception, match="over the limit of 100,000"):
        decode_image(data, name="x.png", max_pixels=100_000)
    assert Image.MAX_IMAGE_PIXELS == 50_000  # restored


def test_a_photo_in_a_format_anonlens_cannot_read_fails_whatever_its_name(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "IMG_0001").write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 64)  # a JPEG 2000 scan without extension
    (src / "notes").write_text("BMW service notes")  # text that starts like a BMP: not an image
    r = runner.invoke(app, ["anonymize", "--on-text", "accept", str(src), "-o", str(tmp_path / "o"), "-q", "--json"])
    assert r.exit_code == 1
    payload = json.loads(r.stdout)
    assert [Path(f["input"]).name for f in payload["failed"]] == ["IMG_0001"] and "content is JPEG 2000" in payload["failed"][0]["error"]
    assert [Path(i["input"]).name for i in payload["ignored"]] == ["notes"]
