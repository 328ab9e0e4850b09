"""`anonymize` and `check` agree: a run that exits 0 writes outputs `check` passes; what it cannot
verify it lists for review (readable text with a scope without text) or fails (no output)."""

import json
from dataclasses import replace

from PIL import Image
from typer.testing import CliRunner

from anonlens.verify import PairChecker
from anonlens.cli.main import app

from tests.helpers import manifest_of


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _astronaut(tmp_path, astronaut):
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    return tmp_path / "a.png"


def _check(out):
    r = _run("check", out, "--json", "-q")
    return r.exit_code, json.loads(r.stdout[r.stdout.index("{"):]) if "{" in r.stdout else r.output


def test_default_scope_lists_the_name_tag_for_review_and_check_agrees(tmp_path, astronaut):
    src = _astronaut(tmp_path, astronaut)
    r = _run("anonymize", src, "-o", tmp_path / "o", "-q", "-j", "1")
    assert r.exit_code == 3, r.output  # review: the name tag is still readable
    assert "Text was found in 1 output(s)" in r.stdout and "a.png" in r.stdout
    rec = manifest_of(tmp_path / "o")["images"][0]
    assert rec["text_review"]["found"] >= 1 and rec["release_check"]["faces"] >= 1 and "COLLINS" not in json.dumps(rec).upper()
    code, verdicts = _check(tmp_path / "o")
    assert code == 1, verdicts  # check fails the readable text: both say "not releasable as is"
    accepted = _run("anonymize", src, "-o", tmp_path / "o2", "-q", "-j", "1", "--on-text", "accept")
    assert accepted.exit_code == 0 and "Text was found" in accepted.stdout, accepted.output
    assert _run("anonymize", src, "-o", tmp_path / "o3", "--on-text", "maybe").exit_code == 2


def test_face_and_text_scope_exits_0_and_check_passes(tmp_path, astronaut):
    src = _astronaut(tmp_path, astronaut)
    r = _run("anonymize", src, "-o", tmp_path / "o", "-q", "-j", "1", "--scope", "face,text")
    assert r.exit_code == 0 and "Text was found" not in r.stdout, r.output
    code, verdicts = _check(tmp_path / "o")
    assert code == 0, verdicts


def test_a_weak_blur_is_verified_until_check_passes(tmp_path, astronaut):
    """-p sigma=1 with the verification on: strengthened (then masked where needed) until the judge
    says not re-identified; check passes. With --no-verify check fails, as the issue asks to keep."""
    src = _astronaut(tmp_path, astronaut)
    r = _run("anonymize", src, "-o", tmp_path / "o", "-q", "-j", "1", "--scope", "face,text", "-p", "sigma=1")
    assert r.exit_code == 0, r.output
    face = manifest_of(tmp_path / "o")["images"][0]["regions"][0]
    assert face["verification"]["action"] in ("strengthened", "masked") or face["release_check"]["action"] in ("strengthened", "masked")
    code, verdicts = _check(tmp_path / "o")
    assert code == 0, verdicts
    weak = _run("anonymize", src, "-o", tmp_path / "w", "-q", "-j", "1", "--scope", "face,text", "-p", "sigma=1", "--no-verify")
    assert weak.exit_code == 0, weak.output
    assert "release_check" not in manifest_of(tmp_path / "w")["images"][0]
    code, verdicts = _check(tmp_path / "w")
    assert code == 1, verdicts


def test_a_face_recognised_under_the_mask_fails_with_no_output(tmp_path, astronaut, monkeypatch):
    real = PairChecker.judge
    monkeypatch.setattr(PairChecker, "judge",
                        lambda *a, **k: [replace(j, reidentified=True, rank1=True, rank=1, distance=0.1) for j in real(*a, **k)])
    src = _astronaut(tmp_path, astronaut)
    r = _run("anonymize", src, "-o", tmp_path / "o", "-q", "-j", "1", "--scope", "face,text")
    assert r.exit_code == 1, r.output
    assert "still fails the release check under a wide solid mask" in r.stdout
    assert not (tmp_path / "o" / "a.png").exists()
    assert manifest_of(tmp_path / "o")["images"][0]["status"] == "failed"


def test_a_turned_photo_of_small_faces_is_anonymized_everywhere_and_check_agrees(tmp_path, astronaut):
    """A crowd of 20 small faces in a photo turned a quarter (its orientation tag lost): the upright
    search finds few of them; the last verification's search of every quarter turn finds the rest,
    every face's pixels change, and check passes the output. The original alone fails check."""
    import cv2
    import numpy as np

    from anonlens import create_detector
    from anonlens.regions import rot90_box_back

    small = cv2.resize(astronaut, (96, 96), interpolation=cv2.INTER_AREA)
    grid = np.ascontiguousarray(np.vstack([np.hstack([small] * 5)] * 4))
    faces = [r.box for r in create_detector("centerface").detect(grid)]
    turned = np.ascontiguousarray(np.rot90(grid, 1))
    Image.fromarray(turned).save(tmp_path / "turned.png")
    r = _run("anonymize", tmp_path / "turned.png", "-o", tmp_path / "o", "-q", "-j", "1", "--scope", "face,text")
    assert r.exit_code == 0, r.output
    out = np.asarray(Image.open(tmp_path / "o" / "turned.png").convert("RGB"))
    for box in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in rot90_box_back(box, 3, turned.shape[1], turned.shape[0]))
        assert np.abs(out[y1:y2, x1:x2].astype(int) - turned[y1:y2, x1:x2]).mean() > 10, box
    code, verdicts = _check(tmp_path / "o")
    assert code == 0, verdicts
    Image.fromarray(turned).save(tmp_path / "o" / "turned.png")  # the original in place of the output
    assert _check(tmp_path / "o")[0] == 1


def _faces_and_texts(doc):
    return [(i["key"], i["verdict"], [(f["box"], f["identity"], f["reidentified"], f["residual"]) for f in i["faces"]],
             [(t["box"], t["readable"], t["detected"]) for t in i["texts"] or []], i["people"]) for i in doc["per_image"]]


def test_check_reuses_what_the_run_found_in_each_original_only_while_it_is_the_same_file(tmp_path, astronaut):
    from anonlens.samples import face_scene

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(astronaut).save(src / "a.png")
    scene, _ = face_scene(640, 480, 150)
    Image.fromarray(scene).save(src / "b.png")
    r = _run("anonymize", src, "-o", tmp_path / "o", "-q", "-j", "1", "--scope", "face,text")
    assert r.exit_code == 0, r.output
    measured = manifest_of(tmp_path / "o")["images"][0]["release_check"]["original"]
    assert measured["faces"] and "text" in measured and "people" in measured  # geometry only, no text read
    assert "COLLINS" not in json.dumps(measured).upper()
    code, reused = _check(tmp_path / "o")
    again = _run("check", tmp_path / "o", "--json", "-q", "--remeasure")
    remeasured = json.loads(again.stdout)
    assert code == 0 and again.exit_code == 0
    assert reused["originals_reused"] == 2 and remeasured["originals_reused"] == 0
    assert _faces_and_texts(reused) == _faces_and_texts(remeasured)  # the same verdicts, faces, texts and people
    # the anonymized image is always measured: the original put in its place fails, reuse or not
    (tmp_path / "o" / "a.png").write_bytes((src / "a.png").read_bytes())
    code, leaked = _check(tmp_path / "o")
    assert code == 1 and leaked["originals_reused"] == 2
    assert {i["key"]: i["verdict"] for i in leaked["per_image"]}["a.png"] in ("re-identified", "residual-face", "text-readable")
    # an original that is no longer the same file (same pixels, one more PNG chunk) is searched again
    img = Image.open(src / "b.png")
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "edited")
    img.save(src / "b.png", pnginfo=info)
    code, changed = _check(tmp_path / "o")
    assert changed["originals_reused"] == 1


def test_a_measurement_of_another_version_or_a_damaged_one_is_measured_again():
    from anonlens.verify import original_cache, original_record, pair_checker

    checker = pair_checker()
    record = original_record(checker, {"boxes": [((10.0, 10.0, 50.0, 60.0), "centerface", 0.9)]})
    assert original_cache(checker, record)["boxes"] == [((10.0, 10.0, 50.0, 60.0), "centerface", 0.9)]
    assert original_cache(checker, {**record, "key": "anonlens 0.0.1 r0"}) == {}
    assert original_cache(checker, {**record, "faces": [["x"]]}) == {}
    assert original_cache(checker, None) == {} and original_record(checker, {}) is None
