"""The core install works without PyTorch; what needs an extra stops first with one line (exit 2);
output meant for scripts never wraps."""

import json
import os

import pytest

from anonlens.extras import MissingExtraError, missing_modules, require_extra

from tests.helpers import encode, jpeg_with_everything, run_anonlens, run_without_learn


def test_require_extra_names_the_pip_command(monkeypatch):
    import anonlens.extras as extras

    assert missing_modules("learn") == []  # the test install has every extra
    monkeypatch.setattr(extras, "_installed", lambda m: m != "captum")
    with pytest.raises(MissingExtraError) as info:
        require_extra("learn", "saliency 'occlusion'")
    assert str(info.value) == "saliency 'occlusion' needs the 'learn' extra (missing: captum): pip install 'anonlens[learn]'"


@pytest.mark.slow
def test_core_commands_work_without_torch(tmp_path, astronaut, no_face_image):
    """The main job end to end with torch & co. unimportable: none of them is even imported."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(jpeg_with_everything(astronaut))
    (tmp_path / "in" / "b.png").write_bytes(encode(no_face_image))
    # a person looked at the image without a face, and at the name tag left legible by the face scope
    (tmp_path / "reviewed.txt").write_text("b.png\na.jpg\n")
    results = run_without_learn([
        ["demo", "-o", "demo", "-q"],
        ["anonymize", "--on-text", "accept", "in", "-o", "out", "-q", "--assess", "--on-empty", "full"],
        ["inspect", "out/a.jpg"],
        ["score", "-a", "out", "--original", "in", "-o", "scores", "-q",
         "--metrics", "mse,psnr,ssim,identity,residual-face,utility-outside,face-score,people-kept"],
        ["check", "out", "--reviewed", "reviewed.txt"],
        ["report", "scores", "-o", "report.html"],
        ["metrics"],
        ["detectors"],
    ], tmp_path)
    for r in results:
        assert r["exc"] is None, (r["args"], r["exc"], r["out"])
        assert r["code"] == 0, (r["args"], r["out"])
        assert r["imported"] == [], (r["args"], r["imported"])
    assert (tmp_path / "report.html").stat().st_size > 1000
    scores = (tmp_path / "scores" / "scores.csv").read_text()
    assert "identity_distance" in scores and "ssim" in scores


@pytest.mark.slow
def test_a_missing_extra_stops_before_any_file_is_touched(tmp_path, astronaut):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(encode(astronaut))
    results = run_without_learn([
        ["anonymize", "--on-text", "accept", "in", "-o", "out1", "-q", "--method", "edi"],
        ["anonymize", "--on-text", "accept", "in", "-o", "out2", "-q", "--scope", "body", "--detector", "maskrcnn-person"],
        ["anonymize", "--on-text", "accept", "in", "-o", "out3", "-q", "--method", "edi", "--oracle-model", "m.safetensors", "--scope", "image"],
        ["score", "-a", "in", "--original", "in", "-o", "out4", "-q", "--metrics", "ssim,lpips"],
        ["score", "-a", "in", "--original", "in", "-o", "out5", "-q", "--model", "m.safetensors"],
        ["train", "--train", "t.csv", "--val", "v.csv", "--root", "in", "-o", "out6"],
        ["train-identity", "in", "-o", "out7"],
        ["tradeoff", "in", "-o", "out8"],
        ["report", "in", "-o", "out9.html", "--gradcam", "m.safetensors"],
        ["splits", "in"],
    ], tmp_path)
    assert len(results) == 10
    for r in results:
        assert r["code"] == 2, (r["args"], r["out"], r["exc"])
        lines = [line for line in r["out"].splitlines() if line.strip()]
        assert len(lines) == 1 and "pip install 'anonlens[learn]'" in lines[0], (r["args"], r["out"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing written, nothing created


@pytest.mark.slow
def test_script_output_never_wraps(tmp_path, astronaut, no_face_image):
    """`inspect` and the lists of files print one line per file, whatever the terminal width
    and the path length (a user's grep must find them)."""
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 6)
    deep.mkdir(parents=True)
    (deep / "clean.png").write_bytes(encode(astronaut))
    (deep / "dirty.jpg").write_bytes(jpeg_with_everything(astronaut))
    (deep / "empty.png").write_bytes(encode(no_face_image))
    env = {**os.environ, "COLUMNS": "40"}
    p = run_anonlens("inspect", deep / "clean.png", deep / "dirty.jpg", env=env)
    lines = p.stdout.splitlines()
    assert p.returncode == 1 and len(lines) == 2, p.stdout
    assert lines[0] == f"{deep / 'clean.png'} (PNG): no metadata"
    assert lines[1].startswith(f"{deep / 'dirty.jpg'} (JPEG): metadata: ") and "APP1:Exif" in lines[1]
    # the nothing-found list of the summary, and every --json, in a 40-column terminal
    p = run_anonlens("anonymize", "--on-text", "accept", deep / "empty.png", "-o", tmp_path / "o", "--on-empty", "keep", "-q", env=env)
    assert f"  {deep / 'empty.png'}" in p.stdout.splitlines(), p.stdout
    p = run_anonlens("anonymize", "--on-text", "accept", deep / "clean.png", "-o", tmp_path / "j", "-q", "--json", env=env)
    json.loads(p.stdout)  # pure JSON on stdout
