"""Scoring, correlation, the release gate and the report from the command line, end to end on a small
synthetic set (the library's side: ``tests/unit/assess/test_assess.py``)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from anonlens.cli.main import app
from anonlens.audit import default_audit_dir, find_manifest

from tests.helpers import encode, write_perceptanon_set

runner = CliRunner()


@pytest.fixture(scope="module")
def annotated(tmp_path_factory, astronaut):
    return write_perceptanon_set(tmp_path_factory.mktemp("perceptanon"), astronaut)


def test_score_cli_folders_and_json(tmp_path, astronaut):
    orig, anon = tmp_path / "o", tmp_path / "a"
    orig.mkdir()
    anon.mkdir()
    (orig / "x.png").write_bytes(encode(astronaut))
    (anon / "x.png").write_bytes(encode(cv2.GaussianBlur(astronaut, (0, 0), 6)))
    (anon / "lonely.png").write_bytes(encode(astronaut))
    r = runner.invoke(app, ["score", "-a", str(anon), "--original", str(orig), "-o", str(tmp_path / "s"), "--json", "-q",
                            "--metrics", "mse,ssim,identity"])
    assert r.exit_code == 1  # one pair has no original
    payload = json.loads(r.stdout)
    assert payload["errors"][0]["error"].startswith("no original for lonely.png")
    assert payload["summary"]["scored"] == 1
    r = runner.invoke(app, ["score", "-a", str(anon), "-o", str(tmp_path / "s"), "--metrics", "ssim", "-q"])
    assert r.exit_code == 2 and "needs the original" in r.output
    r = runner.invoke(app, ["score", "-a", str(anon), "--original", str(orig), "-o", str(tmp_path / "s"), "--metrics", "ssmi"])
    assert r.exit_code == 2 and "Did you mean 'ssim'" in r.output


def test_correlate_cli(annotated, tmp_path):
    runner.invoke(app, ["score", "--pairs", str(annotated / "HA2.csv"), "-o", str(tmp_path / "s"), "-q", "--metrics", "mse,psnr,ssim"])
    r = runner.invoke(app, ["correlate", str(tmp_path / "s" / "scores.csv"), "--bootstrap", "100", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert {row["metric"] for row in rows} == {"mse", "psnr", "ssim"}
    r = runner.invoke(app, ["correlate", str(tmp_path / "s" / "scores.csv"), "--human", "nope"])
    assert r.exit_code == 2 and "human column 'nope'" in r.output


@pytest.mark.slow
def test_check_gates_a_release(tmp_path, astronaut, no_face_image):
    """Every image gets a verdict; failing files are named in text and JSON; exit 1 until a
    person reviews the nothing-found image; a weakly blurred real face fails."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(encode(astronaut))
    (src / "empty.png").write_bytes(encode(no_face_image))
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 3  # nothing found in empty.png: review needed
    r = runner.invoke(app, ["check", str(tmp_path / "out"), "-q", "--json"])
    result = json.loads(r.stdout)
    assert r.exit_code == 1 and result["verdict"] == "fail" and result["faces"] >= 1
    verdicts = {Path(i["anonymized"]).name: i["verdict"] for i in result["per_image"]}
    # the name tag (EILEEN M. COLLINS) is still readable after a face-only run: plain check says so (issue 27)
    assert verdicts == {"a.png": "text-readable", "empty.png": "nothing-found"}
    r = runner.invoke(app, ["check", str(tmp_path / "out"), "-q", "--json", "--no-text"])
    result = json.loads(r.stdout)
    verdicts = {Path(i["anonymized"]).name: i["verdict"] for i in result["per_image"]}
    assert verdicts == {"a.png": "passed", "empty.png": "nothing-found"} and result["text_checked"] is False
    assert result["failing"] == [str(tmp_path / "out" / "empty.png")]
    face = next(f for i in result["per_image"] for f in i["faces"])
    assert face["identity"] == "measured by dlib" and face["attacker"] == "dlib" and face["reidentified"] is False
    assert result["reid_rate"] == 0.0 and result["identity_tests"]["measured by dlib"] >= 1 and "reid_rate@0.6" in result
    r = runner.invoke(app, ["check", str(tmp_path / "out"), "-q", "--no-text"])
    assert r.exit_code == 1 and f"nothing-found {tmp_path / 'out' / 'empty.png'}:" in r.stdout and "FAIL" in r.stdout
    (tmp_path / "reviewed.txt").write_text(f"# looked at it: a coffee cup\n{src / 'empty.png'}\n")
    r = runner.invoke(app, ["check", str(tmp_path / "out"), "-q", "--no-text", "--reviewed", str(tmp_path / "reviewed.txt")])
    assert r.exit_code == 0 and "PASS" in r.stdout, r.stdout
    # a weakly blurred real face (verification switched off) fails and is named
    (tmp_path / "weak").mkdir()
    (tmp_path / "weak" / "a.png").write_bytes(encode(cv2.GaussianBlur(astronaut, (0, 0), 1.5)))
    r = runner.invoke(app, ["check", str(tmp_path / "weak"), "--original", str(src), "-q", "--json"])
    result = json.loads(r.stdout)
    assert r.exit_code == 1 and result["failing"] == [str(tmp_path / "weak" / "a.png")]
    assert result["per_image"][0]["verdict"] == "re-identified" and result["counts"]["re-identified"] == 1
    # an output that is gone cannot be evaluated, and never passes
    (tmp_path / "out" / "a.png").unlink()
    r = runner.invoke(app, ["check", str(tmp_path / "out"), "-q", "--json", "--reviewed", str(tmp_path / "reviewed.txt")])
    assert r.exit_code == 1 and json.loads(r.stdout)["counts"]["not-evaluated"] == 1


def test_weights_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    r = runner.invoke(app, ["weights", "list", "--json"])
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["centerface"]["status"] == "present" and rows["fid-inception-v3"]["status"] == "missing"
    r = runner.invoke(app, ["weights", "path", "fid-inception-v3"])
    assert r.exit_code == 1 and "pt_inception-2015-12-05-6726825d.pth" in r.output
    r = runner.invoke(app, ["weights", "verify"])
    assert r.exit_code == 0 and "centerface: ok" in r.stdout


@pytest.mark.slow
def test_anonymize_assess_and_report(tmp_path, astronaut, no_face_image):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(encode(astronaut))
    (src / "<img src=x onerror=alert(1)>.png").write_bytes(encode(astronaut))  # a hostile name must not inject HTML
    (src / "c.png").write_bytes(encode(no_face_image))
    out = tmp_path / "out"
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(out), "-q", "--assess", "--json"])
    assert r.exit_code == 3, r.output  # c.png: nothing found, review needed
    payload = json.loads(r.stdout)
    assert payload["assessment"]["faces_in_originals"] == 2 and payload["assessment"]["reid_rate@0.6"] == 0.0
    manifest = json.loads(find_manifest(out).read_text())
    assert manifest["assessment"]["summary"]["scored"] == 3 and (default_audit_dir(out) / "assessment" / "scores.csv").is_file()

    html_path = tmp_path / "report.html"
    r = runner.invoke(app, ["report", str(default_audit_dir(out) / "assessment"), "-o", str(html_path)])  # finds the manifest
    assert r.exit_code == 0, r.output
    page = html_path.read_text()
    assert page.count("data:image/jpeg;base64,") == 6  # original + anonymized for 3 images
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;.png" in page
    assert "src='http" not in page and "<script" not in page  # self-contained, no scripts
    assert "<svg" in page and "contains thumbnails of the original" in page
    # the release gate's verdict at the top, a badge per image, utility labelled as utility
    assert "Release verdict: FAIL" in page and "<span class='badge nothing-found'>nothing-found</span>" in page
    # the astronaut's name tag is still readable after a face-only run: the report says so by default (issue 27)
    assert page.count("<span class='badge text-readable'>text-readable</span>") == 4  # in the list and in the table
    r = runner.invoke(app, ["report", str(default_audit_dir(out) / "assessment"), "-o", str(html_path), "--no-text"])
    assert r.exit_code == 0, r.output
    page = html_path.read_text()
    assert page.count("<span class='badge passed'>passed</span>") == 2
    assert "ssim_outside (utility)" in page and "no face found in the output" in page
    r = runner.invoke(app, ["report", str(default_audit_dir(out) / "assessment"), "-o", str(html_path), "--no-originals"])
    page = html_path.read_text()
    assert page.count("data:image/jpeg;base64,") == 3 and "contains thumbnails of the original" not in page


def test_calibrate_cli(tmp_path, astronaut):
    from skimage import data

    (tmp_path / "a.png").write_bytes(encode(astronaut))
    (tmp_path / "a_flip.png").write_bytes(encode(np.ascontiguousarray(astronaut[:, ::-1])))
    (tmp_path / "a_shift.png").write_bytes(encode(np.roll(astronaut, 15, axis=1)))
    for i, f in enumerate(data.lfw_subset()[:3]):
        face = cv2.resize((np.repeat(f[:, :, None], 3, 2) * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC)
        (tmp_path / f"lfw{i}.png").write_bytes(encode(face))
    rows = [("a.png", "a_flip.png", 1), ("a.png", "a_shift.png", 1), ("a_flip.png", "a_shift.png", 1)]
    rows += [("a.png", f"lfw{i}.png", 0) for i in range(3)] + [("a_flip.png", "lfw0.png", 0)]
    pd.DataFrame(rows, columns=["image_a", "image_b", "same"]).to_csv(tmp_path / "labels.csv", index=False)
    r = runner.invoke(app, ["calibrate", str(tmp_path / "labels.csv"), "--json"])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["f1"] == 1.0 and 0.1 < result["threshold"] < 0.7 and result["pairs"] + len(result["skipped"]) == 7


def test_no_reference_scoring_needs_no_original(tmp_path, astronaut, no_face_image):
    anon = tmp_path / "a"
    anon.mkdir()
    (anon / "face.png").write_bytes(encode(astronaut))
    (anon / "none.png").write_bytes(encode(no_face_image))
    r = runner.invoke(app, ["score", "-a", str(anon), "-o", str(tmp_path / "s"), "--metrics", "face-score", "-q", "--json"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "s" / "scores.csv").set_index("key")
    assert df.loc["face.png", "face_score"] > 0.5 and df.loc["none.png", "face_score"] == 0.0


@pytest.mark.slow
def test_check_score_and_report_agree_on_one_folder(tmp_path, astronaut):
    """One assessment, several views: on one folder `check --json`, `score` and `report` give the
    same re-identification rate and the same per-image verdicts (issue 27)."""
    orig, anon = tmp_path / "o", tmp_path / "a"
    orig.mkdir()
    anon.mkdir()
    masked = astronaut.copy()
    masked[40:200, 160:290] = 0
    outputs = {"same.png": astronaut, "weak.png": cv2.GaussianBlur(astronaut, (0, 0), 1), "masked.png": masked,
               "black.png": np.zeros_like(astronaut)}
    for name, img in outputs.items():
        (orig / name).write_bytes(encode(astronaut))
        (anon / name).write_bytes(encode(img))
    r = runner.invoke(app, ["check", str(anon), "--original", str(orig), "-q", "--json", "--no-text"])
    gate = json.loads(r.stdout)
    assert r.exit_code == 1
    check_reid = {Path(i["anonymized"]).name: any(f["reidentified"] for f in i["faces"]) for i in gate["per_image"]}
    assert check_reid == {"same.png": True, "weak.png": True, "masked.png": False, "black.png": False}
    r = runner.invoke(app, ["score", "-a", str(anon), "--original", str(orig), "-o", str(tmp_path / "s"), "-q", "--json",
                            "--metrics", "ssim,identity"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)["summary"]
    assert summary["reid_rate"] == gate["reid_rate"] == 0.5 and summary["faces_measured"] == gate["faces_measured"]
    assert summary["reid_rate@0.6"] == gate["reid_rate@0.6"] and summary["identity_tests"] == gate["identity_tests"]
    df = pd.read_csv(tmp_path / "s" / "scores.csv")
    score_reid = {Path(a).name: bool(v) for a, v in zip(df["anonymized"], df["reidentified"])}
    assert score_reid == check_reid
    gate_verdicts = {Path(i["anonymized"]).name: i["verdict"] for i in gate["per_image"]}
    assert {Path(a).name: v for a, v in zip(df["anonymized"], df["identity_verdict"])} == gate_verdicts
    (tmp_path / "gate.json").write_text(json.dumps(gate))
    for extra in (["--gate", str(tmp_path / "gate.json")], ["--no-text"]):  # the gate's file, and the gate run by the report
        r = runner.invoke(app, ["report", str(tmp_path / "s"), "-o", str(tmp_path / "r.html"), "-q", *extra])
        assert r.exit_code == 0, r.output
        page = (tmp_path / "r.html").read_text()
        assert "re-identification rate 0.500 (2 of" in page
        assert page.count("<span class='badge re-identified'>re-identified</span>") == 4  # in the list and in the table, twice
        assert page.count("<span class='badge passed'>passed</span>") == 2
