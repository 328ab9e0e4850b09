"""Issue #25, items 4, 5 and 9: a region file with a key given twice, a mask painted as alpha, and
option values of the wrong type or out of range. Each one used to pass silently (or end in a
traceback); now each is refused with one line before any work, or read as the user drew it."""

import inspect
import json
import types
import typing

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from anonlens import create_detector, create_operator
from anonlens.cli.main import app
from anonlens.detectors import DETECTORS
from anonlens.errors import AnonlensError, DetectionError, OptionError, WeightsUnavailableError
from anonlens.operators import OPERATORS

from tests.helpers import noise, run_anonlens

runner = CliRunner()


def _one_error_line(result):
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    return lines[0]


# ---------------------------------------------------------------- 4: duplicate keys in --boxes


@pytest.mark.parametrize("text,key,entries,fix", [
    ('{"a.jpg": [{"box": [0, 0, 10, 10]}], "a.jpg": [{"box": [20, 20, 40, 40]}]}', "a.jpg", "1 and 2", "merge their regions"),
    ('{"b.jpg": [], "a.jpg": [{"box": [0, 0, 10, 10]}], "c.jpg": [], "a.jpg": [{"box": [20, 20, 40, 40]}]}', "a.jpg", "2 and 4",
     "merge their regions"),
    ('{"coordinates": "pixels", "images": {"a.jpg": [{"box": [0, 0, 10, 10]}], "a.jpg": [{"box": [1, 1, 30, 30]}]}}', "a.jpg",
     "1 and 2", "merge their regions"),
    ('{"a.jpg": [{"box": [0, 0, 10, 10], "box": [20, 20, 40, 40]}]}', "box", "1 and 2", "keep one"),
    ('{"images": {}, "images": {"a.jpg": [{"box": [0, 0, 10, 10]}]}}', "images", "1 and 2", "keep one"),
])
def test_a_key_given_twice_is_refused_naming_both_entries(tmp_path, text, key, entries, fix):
    path = tmp_path / "regions.json"
    path.write_text(text)
    with pytest.raises(AnonlensError) as info:
        create_detector("boxes", file=str(path))
    msg = str(info.value)
    assert msg.startswith(f"{path}: key \"{key}\" appears twice") and f"(entries {entries})" in msg and fix in msg
    assert "\n" not in msg


def test_a_csv_column_named_twice_is_refused(tmp_path):
    path = tmp_path / "regions.csv"
    path.write_text("image,x1,y1,x2,y2,x1\na.jpg,0,0,10,10,50\n")
    with pytest.raises(AnonlensError, match=r"regions.csv: the CSV header names the column\(s\) 'x1' twice"):
        create_detector("boxes", file=str(path))


def test_keys_that_name_the_same_file_keep_every_region(tmp_path):
    """Not a duplicate for JSON ("a.png" and "./a.png"): both lists are kept, nothing dropped."""
    path = tmp_path / "regions.json"
    path.write_text('{"a.png": [{"box": [0, 0, 10, 10]}], "./a.png": [{"box": [20, 20, 40, 40]}]}')
    regions = create_detector("boxes", file=str(path)).detect(np.zeros((64, 64, 3), np.uint8), source="a.png")
    assert sorted(r.box for r in regions) == [(0, 0, 10, 10), (20, 20, 40, 40)]


def test_cli_refuses_a_duplicate_key_before_touching_anything(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(noise()).save(src / "a.png")
    boxes = tmp_path / "regions.json"
    boxes.write_text('{"a.png": [{"box": [0, 0, 40, 40]}], "a.png": [{"box": [60, 20, 120, 80]}]}')
    out = tmp_path / "out"
    result = runner.invoke(app, ["anonymize", str(src), "-o", str(out), "--boxes", str(boxes), "-q"])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result)
    assert 'key "a.png" appears twice' in line and "entries 1 and 2" in line
    assert not out.exists() and not (tmp_path / "out.anonlens-audit").exists()


# ---------------------------------------------------------------- 5: mask painted as alpha


def _detect_mask(tmp_path, mask_image, size=(128, 96)):
    folder = tmp_path / "masks"
    folder.mkdir(exist_ok=True)
    mask_image.save(folder / "a.png")
    w, h = size
    return create_detector("boxes", masks=str(folder)).detect(np.zeros((h, w, 3), np.uint8), source="a.png")


def test_a_mask_painted_as_alpha_on_a_transparent_layer_is_read(tmp_path):
    rgba = np.zeros((96, 128, 4), np.uint8)  # colour black everywhere, the region only in alpha
    rgba[10:40, 20:70, 3] = 255
    (region,) = _detect_mask(tmp_path, Image.fromarray(rgba, "RGBA"))
    assert region.box == (20, 10, 70, 40) and region.mask.sum() == 30 * 50


def test_black_and_white_strokes_on_a_transparent_layer_are_both_kept(tmp_path):
    rgba = np.zeros((96, 128, 4), np.uint8)
    rgba[5:25, 5:25] = (255, 255, 255, 255)  # white stroke
    rgba[60:90, 80:120] = (0, 0, 0, 255)  # black stroke: only its alpha says it is there
    rgba[50, 10, 3] = 1  # a faint, soft edge still counts
    (region,) = _detect_mask(tmp_path, Image.fromarray(rgba, "RGBA"))
    assert region.mask.sum() == 20 * 20 + 30 * 40 + 1
    assert region.mask[70, 100] and region.mask[10, 10] and region.mask[50, 10]


def test_grey_alpha_and_palette_masks_with_transparency(tmp_path):
    la = np.zeros((96, 128, 2), np.uint8)
    la[30:50, 40:60, 1] = 200
    (region,) = _detect_mask(tmp_path, Image.fromarray(la, "LA"))
    assert region.mask.sum() == 400
    pal = Image.new("P", (128, 96), 0)
    pal.putpalette([0, 0, 0, 0, 0, 0])  # two black entries; index 0 transparent
    pal.paste(1, (10, 20, 30, 40))
    pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", transparency=0)
    (region,) = _detect_mask(tmp_path, Image.open(tmp_path / "p.png"))
    assert region.box == (10, 20, 30, 40) and region.mask.sum() == 400


def test_an_opaque_mask_still_reads_its_colour_in_any_channel(tmp_path):
    rgb = np.zeros((96, 128, 3), np.uint8)
    rgb[0:20, 0:20, 0] = 1  # (1, 0, 0): its grey value rounds to 0, it is still non-zero
    rgba = np.dstack([rgb, np.full((96, 128), 255, np.uint8)])
    (region,) = _detect_mask(tmp_path, Image.fromarray(rgba, "RGBA"))
    assert region.mask.sum() == 400


@pytest.mark.parametrize("mode,fill,why", [
    ("L", 0, "its grey channel is zero everywhere"),
    ("RGB", (0, 0, 0), "its colour channels are zero everywhere"),
    ("RGBA", (0, 0, 0, 255), "its colour channels are zero everywhere and its alpha is 255 everywhere"),
    ("RGBA", (0, 0, 0, 0), "its colour channels are zero everywhere and its alpha is 0 everywhere"),
])
def test_a_mask_that_marks_nothing_is_an_error(tmp_path, mode, fill, why):
    with pytest.raises(DetectionError) as info:
        _detect_mask(tmp_path, Image.new(mode, (128, 96), fill))
    assert f"masks/a.png marks no pixel: {why}" in str(info.value)


def test_a_mask_of_another_size_is_refused_before_decoding(tmp_path):
    with pytest.raises(DetectionError, match=r"a.png is 64x64, the image is 128x96"):
        _detect_mask(tmp_path, Image.new("L", (64, 64), 255))


def test_mask_orientation_is_applied_like_the_images(tmp_path):
    """A mask stored sideways with an EXIF orientation is read as displayed (as before)."""
    stored = np.zeros((128, 96), np.uint8)  # 96 wide, 128 high as stored; rotated: 128x96
    stored[0:10, 0:20] = 255
    im = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    folder = tmp_path / "masks"
    folder.mkdir()
    im.save(folder / "a.png", exif=exif)
    (region,) = create_detector("boxes", masks=str(folder)).detect(np.zeros((96, 128, 3), np.uint8), source="a.png")
    assert region.mask.sum() == 200 and region.box == (118, 0, 128, 20)


def test_cli_anonymizes_the_alpha_painted_region_and_fails_an_empty_mask(tmp_path):
    src, masks = tmp_path / "in", tmp_path / "masks"
    src.mkdir()
    masks.mkdir()
    Image.fromarray(noise(seed=1)).save(src / "a.png")
    Image.fromarray(noise(seed=2)).save(src / "b.png")
    rgba = np.zeros((96, 128, 4), np.uint8)
    rgba[20:60, 30:90, 3] = 255
    Image.fromarray(rgba, "RGBA").save(masks / "a.png")
    Image.new("RGBA", (128, 96), (0, 0, 0, 255)).save(masks / "b.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["anonymize", str(src), "-o", str(out), "--masks", str(masks), "-q", "--no-verify"])
    assert result.exit_code == 1, result.output  # b.png failed
    before = np.asarray(Image.open(src / "a.png"))
    after = np.asarray(Image.open(out / "a.png"))
    changed = (before != after).any(axis=2)
    assert changed[20:60, 30:90].mean() > 0.9 and not changed[:15].any()
    assert not (out / "b.png").exists()
    assert "b.png marks no pixel" in result.output + result.stderr


# ---------------------------------------------------------------- 9: option values


@pytest.mark.parametrize("args,needle", [
    (["-d", "threshold=1.0"], "option threshold=1.0 is out of range: must be in (0, 1)"),
    (["-d", "threshold=0"], "option threshold=0 is out of range: must be in (0, 1)"),
    (["--threshold", "1.0"], "option threshold=1.0 is out of range: must be in (0, 1)"),
    (["-d", "threshold=abc"], "option threshold='abc' is not valid: must be a finite number"),
    (["-d", "threshold=NaN"], "option threshold=nan is not valid: must be a finite number"),
    (["-d", "multiscale=maybe"], "option multiscale='maybe' is not valid: must be true or false"),
    (["-d", "max_side=10"], "option max_side=10 is out of range: must be >= 32"),
    (["-p", "strength=abc"], "operator 'blur': option strength='abc' is not valid: must be a finite number"),
    (["-p", "sigma=-1"], "operator 'blur': option sigma=-1 is out of range: must be > 0"),
    (["--operator", "pixelate", "-p", "blocks=2.5"], "option blocks=2.5 is not valid: must be an integer"),
    (["--operator", "mask", "-p", "color=[255,0]"], "option color=[255, 0] is not valid: must be a list of 3 integers"),
    (["--operator", "mask", "-p", "color=[255,0,300]"], "option color=[255, 0, 300] is out of range: must be in [0, 255]"),
    (["--operator", "noise", "--seed", "-1"], "option seed=-1 is out of range: must be >= 0"),
    (["-d", "threshold=0.3", "-d", "threshold=0.5"], "detector option 'threshold' is given twice"),
    (["--threshold", "0.3", "-d", "threshold=0.5"], "--threshold and -d threshold=... are both given"),
])
def test_cli_bad_option_values_are_one_line_and_exit_2(tmp_path, args, needle):
    (tmp_path / "in").mkdir()
    Image.fromarray(noise()).save(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["anonymize", str(tmp_path / "in"), "-o", str(out), "-q", *args])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result)
    assert needle in line, line
    assert not out.exists() and not (tmp_path / "out.anonlens-audit").exists()


def test_cli_bad_threshold_in_a_real_process_has_no_traceback(tmp_path):
    Image.fromarray(noise()).save(tmp_path / "a.png")
    p = run_anonlens("anonymize", tmp_path / "a.png", "-o", tmp_path / "o", "-d", "threshold=1.0", timeout=120)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "threshold=1.0 is out of range" in p.stderr
    assert not (tmp_path / "o").exists()


def test_cli_true_and_false_in_any_case_are_booleans(tmp_path):
    Image.fromarray(noise()).save(tmp_path / "a.png")
    out = tmp_path / "o"
    result = runner.invoke(app, ["anonymize", str(tmp_path / "a.png"), "-o", str(out), "-q", "-d", "multiscale=False",
                                 "--on-empty", "full"])
    assert result.exit_code in (0, 3), result.output
    manifest = json.loads((tmp_path / "o.anonlens-audit" / "manifest.json").read_text())
    assert manifest["options"]["anonymize"]["detector_options"] == {"multiscale": False}


def test_library_raises_option_error_and_validates_before_loading_weights(tmp_path):
    with pytest.raises(OptionError, match=r"^detector 'centerface': option threshold=1.0 is out of range: must be in \(0, 1\)$"):
        create_detector("centerface", threshold=1.0)
    with pytest.raises(OptionError, match="strength='abc'"):
        create_operator("blur", strength="abc")
    missing = str(tmp_path / "nowhere.onnx")
    with pytest.raises(WeightsUnavailableError):  # a good value goes on to the weights
        create_detector("centerface", model_path=missing)
    with pytest.raises(OptionError):  # a bad one stops first
        create_detector("centerface", model_path=missing, threshold=0)
    with pytest.raises(OptionError):
        create_detector("text", model_path=missing, threshold=2)
    pytest.importorskip("torch")
    with pytest.raises(OptionError):
        create_detector("maskrcnn-person", weights=missing, threshold=1.0)


def test_option_error_is_a_value_error_for_existing_callers():
    with pytest.raises(ValueError, match="must be"):
        create_detector("centerface", precision="f16x")
    with pytest.raises(ValueError, match="must be"):
        create_operator("blur", strength=0)


# ------------------------------------------------ contract over every registered option

REGISTRIES = {"detector": DETECTORS, "operator": OPERATORS}
#: numeric options that have no range on purpose: a score offset of an SVM, any finite number
UNBOUNDED = {("detector", "dlib-hog", "threshold"), ("detector", "hog-person", "threshold")}


def _all_options():
    for kind, reg in REGISTRIES.items():
        for name in reg.names():
            entry = reg.get(name)
            params = inspect.signature(entry.factory, eval_str=True).parameters
            for key in entry.options():
                yield pytest.param(kind, name, key, params[key], id=f"{kind}-{name}-{key}")


def _core(annotation):
    """The annotation without its ``None`` alternative."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1 else annotation


def _is_numeric(annotation):
    return _core(annotation) in (int, float)


@pytest.mark.parametrize("kind,name,key,param", list(_all_options()))
def test_every_option_refuses_a_wrong_type_with_option_error(kind, name, key, param):
    core = _core(param.annotation)
    assert core is not inspect.Parameter.empty, f"{kind} {name}: option {key} has no type annotation to check against"
    bad = 12345 if core is str else "abc"
    reg = REGISTRIES[kind]
    with pytest.raises(OptionError) as info:
        reg.create(name, **{key: bad})
    assert str(info.value).startswith(f"{kind} '{name}': option {key}={bad!r} is not valid: must be ")


def _numeric_options():
    for p in _all_options():
        param = p.values[3]
        if _is_numeric(param.annotation) or typing.get_origin(_core(param.annotation)) is tuple:
            yield p


def test_numeric_options_are_found():
    assert len(list(_numeric_options())) >= 20


@pytest.mark.parametrize("kind,name,key,param", list(_numeric_options()))
def test_every_numeric_option_has_a_range_and_refuses_values_outside_it(kind, name, key, param):
    core = _core(param.annotation)
    is_list = typing.get_origin(core) is tuple
    reg = REGISTRIES[kind]
    rng = reg.get(name).ranges.get(key)
    if (kind, name, key) in UNBOUNDED:
        assert rng is None
        return
    assert rng is not None, f"{kind} {name}: numeric option {key} declares no range"
    outside = []
    if np.isfinite(rng.low):
        outside.append(rng.low - 1 if rng.low_closed else rng.low)
    if np.isfinite(rng.high):
        outside.append(rng.high + 1 if rng.high_closed else rng.high)
    assert outside
    for value in outside:
        if is_list:
            value = [value] * len(typing.get_args(core))
        with pytest.raises(OptionError) as info:
            reg.create(name, **{key: value})
        assert f"option {key}=" in str(info.value) and f"is out of range: must be {rng.describe()}" in str(info.value)
