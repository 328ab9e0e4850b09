"""The audit trail: runs never overwrite each other's history, resume only continues what it
recorded, one run per folder at a time, and the release folder holds only anonymized images."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from anonlens.audit import AuditLayout, OutputLock, default_audit_dir, dumps_strict, find_manifest
from anonlens.batch import BatchOptions, run_batch
from anonlens.cli.main import app
from anonlens.errors import AnonlensError
from anonlens.pipeline import AnonymizeConfig

from tests.helpers import encode, tree_files, tree_hashes

runner = CliRunner()


@pytest.fixture
def photos(tmp_path, astronaut, no_face_image):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    (src / "a.png").write_bytes(encode(astronaut))
    (src / "sub" / "b.jpg").write_bytes(encode(np.roll(astronaut, 13, axis=1), "JPEG"))
    (src / "c.png").write_bytes(encode(no_face_image))
    return src


def anonymize(*args):
    return runner.invoke(app, ["anonymize", *map(str, args), "-q", "--on-empty", "keep", "--on-text", "accept"])


def test_release_folder_holds_only_anonymized_images(photos, tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(app, ["anonymize", str(photos), "-o", str(out), "-q", "--on-empty", "keep", "--on-text", "accept", "--assess", "--json"])
    assert r.exit_code == 0, r.output
    released = tree_files(out)
    assert sorted(released) == ["a.png", "c.png", "sub/b.jpg"]  # no manifest, journal, scores or temporary files
    # nothing in the release names an original or carries its hash
    hashes = set(tree_hashes(photos).values())
    blob = b"".join(released.values())
    for h in hashes:
        assert h.encode() not in blob
    assert str(photos).encode() not in blob and b"photos/" not in blob
    # the records are beside it, and check / report find them from the release folder
    audit = default_audit_dir(out)
    assert audit == tmp_path / "out.anonlens-audit" and find_manifest(out) == audit / "manifest.json"
    manifest = json.loads((audit / "manifest.json").read_text())
    assert {r_["input_sha256"] for r_ in manifest["images"]} <= hashes and manifest["assessment"]["summary"]["scored"] == 3
    assert (audit / "assessment" / "scores.csv").is_file() and not (out / "anonlens-assessment").exists()
    check = runner.invoke(app, ["check", str(out), "--json", "-q"])
    assert json.loads(check.stdout)["images"] == 3, check.output
    html = tmp_path / "r.html"
    rep = runner.invoke(app, ["report", str(audit / "assessment"), "-o", str(html), "-q", "--no-gate"])
    assert rep.exit_code == 0 and html.is_file(), rep.output


def test_a_second_run_into_a_used_folder_is_refused(photos, tmp_path):
    out = tmp_path / "out"
    assert anonymize(photos, "-o", out).exit_code == 0
    before = tree_files(out)
    r = anonymize(photos, "-o", out, "--operator", "mask")
    assert r.exit_code == 2 and "already holds the outputs of an earlier run" in r.output and "--overwrite" in r.output
    assert tree_files(out) == before
    history = AuditLayout(default_audit_dir(out))
    assert json.loads(history.manifest.read_text())["options"]["anonymize"]["operator"] == "blur"  # not rewritten
    # a folder with files no run recorded is refused too
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    r = anonymize(photos, "-o", tmp_path / "other")
    assert r.exit_code == 2 and "not empty" in r.output


def test_overwrite_replaces_the_run_and_keeps_its_history(photos, tmp_path):
    out = tmp_path / "out"
    assert anonymize(photos, "-o", out).exit_code == 0
    (photos / "c.png").unlink()  # the next run has one input fewer: its old output must go
    r = anonymize(photos, "-o", out, "--operator", "mask", "--overwrite")
    assert r.exit_code == 0, r.output
    assert sorted(tree_files(out)) == ["a.png", "sub/b.jpg"]
    layout = AuditLayout(default_audit_dir(out))
    runs = sorted(layout.runs.glob("*.json"))
    assert len(runs) == 2 and len(layout.history.read_text().splitlines()) == 2
    first, second = (json.loads(p.read_text()) for p in runs)
    assert first["options"]["anonymize"]["operator"] == "blur" and second["options"]["anonymize"]["operator"] == "mask"
    assert second["mode"] == "overwrite" and second["previous_run"] == first["run_id"]
    assert second["removed_outputs"] == [str(out / "c.png")]
    # a file no run wrote stays, is named, and fails the run: the folder is not a clean release
    (out / "stray.jpg").write_bytes(b"not ours")
    r = anonymize(photos, "-o", out, "--operator", "mask", "--overwrite")
    assert r.exit_code == 1 and "were not written by this run" in r.output and "stray.jpg" in r.output


def test_resume_with_other_options_is_refused_naming_them(photos, tmp_path):
    out = tmp_path / "out"
    assert anonymize(photos, "-o", out).exit_code == 0
    before = tree_files(out)
    r = runner.invoke(app, ["anonymize", str(photos), "-o", str(out), "-q", "--resume", "--on-empty", "full", "--on-text", "accept", "-p", "strength=0.5"])
    assert r.exit_code == 2, r.output
    assert "only with the same options" in r.output and "on_empty: 'keep' -> 'full'" in r.output
    assert "operator_options.strength" in r.output
    assert tree_files(out) == before


def test_resume_reverifies_outputs_and_redoes_a_tampered_one(photos, tmp_path):
    out = tmp_path / "out"
    assert anonymize(photos, "-o", out).exit_code == 0
    (out / "a.png").write_bytes((photos / "a.png").read_bytes())  # someone put the original back
    r = runner.invoke(app, ["anonymize", str(photos), "-o", str(out), "-q", "--resume", "--on-empty", "keep", "--on-text", "accept", "--json"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["summary"]["resumed"] == 2 and payload["summary"]["anonymized"] == 1
    (replaced,) = payload["replaced_outputs"]
    assert replaced["input"] == str(photos / "a.png") and "no longer matched the hash" in replaced["why"]
    assert (out / "a.png").read_bytes() != (photos / "a.png").read_bytes()  # anonymized again
    manifest = json.loads(Path(payload["manifest"]).read_text())
    by_name = {Path(m["input"]).name: m for m in manifest["images"]}
    assert by_name["a.png"]["output_sha256"] == tree_hashes(out)["a.png"]
    assert by_name["c.png"]["status"] == "resumed" and by_name["c.png"]["resumed_from"]
    # resuming again: everything verifies, nothing is reported replaced twice
    again = runner.invoke(app, ["anonymize", str(photos), "-o", str(out), "-q", "--resume", "--on-empty", "keep", "--on-text", "accept", "--json"])
    assert json.loads(again.stdout)["summary"]["resumed"] == 3 and json.loads(again.stdout)["replaced_outputs"] == []


def test_resume_of_an_interrupted_run_continues_its_options(photos, tmp_path):
    out = tmp_path / "out"
    seen = []

    def crash(rec):
        seen.append(rec)
        if len(seen) == 2:
            raise KeyboardInterrupt

    opts = BatchOptions(workers=1, config=AnonymizeConfig(operator="pixelate", on_empty="keep"))
    with pytest.raises(KeyboardInterrupt):
        run_batch([photos], out, opts, progress=crash)
    layout = AuditLayout(default_audit_dir(out))
    assert layout.current.is_file() and layout.journal.is_file() and not layout.manifest.exists()
    with pytest.raises(AnonlensError, match="operator: 'pixelate' -> 'blur'"):
        run_batch([photos], out, BatchOptions(workers=1, resume=True, config=AnonymizeConfig(on_empty="keep")))
    with pytest.raises(AnonlensError, match="interrupted run"):
        run_batch([photos], out, BatchOptions(workers=1))  # a new run cannot mix with it either
    report = run_batch([photos], out, BatchOptions(workers=1, resume=True, config=opts.config))
    assert sorted(r["status"] for r in report.records) == ["anonymized", "resumed", "resumed"]
    assert report.ok and not layout.current.exists() and not layout.journal.exists()
    assert all(r["operator"]["name"] == "pixelate" for r in report.records if r["status"] != "kept")


def test_a_concurrent_run_is_refused_naming_the_first(photos, tmp_path):
    out = tmp_path / "out"
    layout = AuditLayout(default_audit_dir(out))
    with OutputLock(out, layout.lock_info):  # the first run holds the folder
        r = anonymize(photos, "-o", out)
        assert r.exit_code == 2, r.output
        assert "another anonlens run is writing into" in r.output and "pid" in r.output
        assert not [p for p in out.iterdir()]
    assert anonymize(photos, "-o", out).exit_code == 0  # released: the next run goes ahead


def test_audit_folder_may_not_sit_in_the_release(photos, tmp_path):
    r = anonymize(photos, "-o", tmp_path / "out", "--audit", tmp_path / "out" / "records")
    assert r.exit_code == 2 and "release folder must hold only anonymized images" in r.output
    r = anonymize(photos, "-o", tmp_path / "out", "--audit", tmp_path / "private")
    assert r.exit_code == 0 and (tmp_path / "private" / "manifest.json").is_file()
    assert find_manifest(tmp_path / "private") == tmp_path / "private" / "manifest.json"


def test_manifest_is_strict_json():
    assert dumps_strict({"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float32(2.5)}) == '{"a": null, "b": [null, 1.5], "c": 2.5}'


def test_check_on_a_folder_without_a_run_says_the_exact_command(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out.anonlens-audit").mkdir()
    (tmp_path / "out.anonlens-audit" / "manifest.json").write_text("{}")
    hints = {}
    for name in ("photos", "out/sub", "missing"):
        r = runner.invoke(app, ["check", str(tmp_path / name)])
        assert r.exit_code == 2 and "Traceback" not in r.output
        hints[name] = " ".join(r.output.split())
    photos = tmp_path / "photos"
    assert f"`anonlens check {photos} --original ORIGINALS`" in hints["photos"]
    assert f"`anonlens anonymize {photos} -o {photos}-anonymized`, then `anonlens check {photos}-anonymized`" in hints["photos"]
    assert f"is inside {tmp_path / 'out'}, the release folder" in hints["out/sub"]
    assert f"`anonlens check {tmp_path / 'out'}`" in hints["out/sub"]
    assert hints["missing"].endswith(f"{tmp_path / 'missing'} does not exist")
