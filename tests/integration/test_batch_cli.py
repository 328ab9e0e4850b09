"""The batch runner and the CLI end to end, on a folder of good and bad files."""

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from anonlens.audit import AuditLayout, default_audit_dir
from anonlens.batch import BatchOptions, run_batch
from anonlens.cli.main import app
from anonlens.io import metadata_segments
from anonlens.pipeline import AnonymizeConfig

from tests.helpers import anonlens_command, encode, jpeg_with_everything, manifest_of, run_anonlens, tree_hashes

runner = CliRunner()


@pytest.fixture
def mixed_folder(tmp_path, astronaut, no_face_image):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a.jpg").write_bytes(jpeg_with_everything(astronaut))
    (src / "sub" / "b.png").write_bytes(encode(astronaut))
    (src / "noface.png").write_bytes(encode(no_face_image))
    (src / "zero.jpg").write_bytes(b"")
    full = encode(astronaut, "JPEG")
    (src / "truncated.jpg").write_bytes(full[: len(full) // 3])
    (src / "fake.png").write_text("not a png")
    (src / "notes.txt").write_text("a note")
    (src / "scan.jp2").write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n")  # JPEG 2000: not read
    (src / ".hidden.jpg").write_bytes(encode(astronaut, "JPEG"))
    return src


def test_cli_end_to_end_good_and_bad_files(mixed_folder, tmp_path):
    before = tree_hashes(mixed_folder)
    out = tmp_path / "out"
    result = runner.invoke(app, ["anonymize", "--on-text", "accept", str(mixed_folder), "-o", str(out), "--json", "-q", "-j", "1"])
    assert result.exit_code == 1, result.output  # some images failed
    payload = json.loads(result.stdout)
    s = payload["summary"]
    assert (s["anonymized"], s["kept"], s["failed"], s["ignored"]) == (2, 1, 4, 1)
    assert s["images"] == 7 and s["nothing_found"] == 1
    failed = {Path(f["input"]).name: f["error"] for f in payload["failed"]}
    assert set(failed) == {"zero.jpg", "truncated.jpg", "fake.png", "scan.jp2"}
    assert "unsupported file type .jp2" in failed["scan.jp2"]
    assert "empty file" in failed["zero.jpg"] and str(mixed_folder / "zero.jpg") in failed["zero.jpg"]
    assert "truncated" in failed["truncated.jpg"] or "cannot decode" in failed["truncated.jpg"]
    # outputs mirror the input tree; failed images have no output; nothing partial is left
    produced = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert produced == sorted(["a.jpg", "sub/b.png", "noface.png"])  # only images: the records are beside it
    layout = AuditLayout(default_audit_dir(out))
    assert not layout.journal.exists() and not layout.current.exists() and not layout.tmp.exists()
    # outputs carry no metadata, inputs are untouched
    assert metadata_segments((out / "a.jpg").read_bytes()) == []
    assert tree_hashes(mixed_folder) == before
    # the manifest accounts for every image
    manifest = manifest_of(out)
    assert manifest["anonlens_version"] and manifest["options"]["anonymize"]["detector"] == "centerface"
    by_name = {Path(r["input"]).name: r for r in manifest["images"]}
    a = by_name["a.jpg"]
    assert a["status"] == "anonymized" and a["regions"][0]["score"] > 0.5
    assert a["operator"]["name"] == "blur" and "sigma" in a["regions"][0]["params"]
    assert a["input_sha256"] == before["a.jpg"] and a["output_sha256"] == tree_hashes(out)["a.jpg"]
    assert by_name["noface.png"]["nothing_found"] and manifest["nothing_found"] == [str(mixed_folder / "noface.png")]
    assert by_name["notes.txt"]["status"] == "ignored"
    assert ".hidden.jpg" not in by_name
    # the anonymized face differs from the original, the rest of the picture does not
    orig = np.asarray(Image.open(mixed_folder / "sub" / "b.png"))
    anon = np.asarray(Image.open(out / "sub" / "b.png"))
    assert np.abs(orig[76:167, 175:266].astype(int) - anon[76:167, 175:266]).mean() > 10
    assert np.array_equal(orig[300:], anon[300:])


def test_cli_table_summary_and_review_list(mixed_folder, tmp_path):
    """Nothing found is not success: with the default policy the image is named and the exit code
    is 3 (review needed); a policy chosen explicitly is the user's decision (exit 0)."""
    args = ["anonymize", "--on-text", "accept", str(mixed_folder / "noface.png"), str(mixed_folder / "a.jpg"), "-q"]
    result = runner.invoke(app, args + ["-o", str(tmp_path / "o")])
    assert result.exit_code == 3, result.output
    assert "anonymized" in result.stdout and "review" in result.stdout and f"  {mixed_folder / 'noface.png'}" in result.stdout.splitlines()
    assert (tmp_path / "o" / "a.jpg").is_file()
    manifest = manifest_of(tmp_path / "o")
    assert manifest["nothing_found"] == [str(mixed_folder / "noface.png")]
    for policy in ("keep", "skip", "full"):
        result = runner.invoke(app, args + ["-o", str(tmp_path / policy), "--on-empty", policy])
        assert result.exit_code == 0, (policy, result.output)
    failing = runner.invoke(app, args + [str(mixed_folder / "zero.jpg"), "-o", str(tmp_path / "f")])
    assert failing.exit_code == 1  # a failure outranks review


def test_refuses_to_write_into_an_input_folder(mixed_folder):
    result = runner.invoke(app, ["anonymize", "--on-text", "accept", str(mixed_folder), "-o", str(mixed_folder / "anon")])
    assert result.exit_code == 2
    assert "refusing to write into the input folder" in result.output
    assert not (mixed_folder / "anon").exists()


def test_explicit_non_image_file_is_an_error(tmp_path, mixed_folder):
    result = runner.invoke(app, ["anonymize", "--on-text", "accept", str(mixed_folder / "notes.txt"), "-o", str(tmp_path / "o"), "--json", "-q"])
    assert result.exit_code == 1
    assert "unsupported file type .txt" in json.loads(result.stdout)["failed"][0]["error"]


def test_unknown_names_fail_before_any_file_is_touched(mixed_folder, tmp_path):
    result = runner.invoke(app, ["anonymize", "--on-text", "accept", str(mixed_folder), "-o", str(tmp_path / "o"), "--operator", "pixelat"])
    assert result.exit_code == 2 and "Did you mean 'pixelate'" in result.output
    assert not (tmp_path / "o").exists()
    result = runner.invoke(app, ["anonymize", "--on-text", "accept", str(mixed_folder), "-o", str(tmp_path / "o"), "-p", "strenght=1"])
    assert result.exit_code == 2 and "Did you mean 'strength'" in result.output


def test_existing_files_are_refused_unless_overwrite(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(encode(astronaut))
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"precious")
    r = runner.invoke(app, ["anonymize", "--on-text", "accept", str(src), "-o", str(out), "--json", "-q"])
    assert r.exit_code == 2 and "not empty" in r.output
    assert (out / "a.png").read_bytes() == b"precious"
    r = runner.invoke(app, ["anonymize", "--on-text", "accept", str(src), "-o", str(out), "--json", "-q", "--overwrite"])
    assert r.exit_code == 0 and json.loads(r.stdout)["summary"]["anonymized"] == 1
    assert (out / "a.png").read_bytes() != b"precious"


@pytest.mark.parametrize("policy,status,written", [("keep", "kept", True), ("skip", "skipped", False), ("full", "full-frame", True)])
def test_on_empty_policies(tmp_path, no_face_image, policy, status, written):
    src = tmp_path / "in"
    src.mkdir()
    (src / "c.png").write_bytes(encode(no_face_image))
    report = run_batch([src], tmp_path / "out", BatchOptions(config=AnonymizeConfig(on_empty=policy)))
    rec = report.records[0]
    assert rec["status"] == status and rec["nothing_found"] and report.ok
    assert (tmp_path / "out" / "c.png").exists() == written
    if policy == "keep":
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "c.png")), no_face_image)
    if policy == "full":
        assert np.abs(np.asarray(Image.open(tmp_path / "out" / "c.png")).astype(int) - no_face_image).mean() > 10


def test_user_boxes_end_to_end(tmp_path, no_face_image):
    src = tmp_path / "in"
    src.mkdir()
    (src / "c.png").write_bytes(encode(no_face_image))
    (tmp_path / "boxes.json").write_text(json.dumps({"c.png": [{"box": [10, 10, 110, 90]}]}))
    r = runner.invoke(app, ["anonymize", "--on-text", "accept", str(src), "-o", str(tmp_path / "o"), "--boxes", str(tmp_path / "boxes.json"), "--operator", "mask", "-q"])
    assert r.exit_code == 0, r.output
    out = np.asarray(Image.open(tmp_path / "o" / "c.png"))
    assert (out[10:90, 10:110] == 0).all() and np.array_equal(out[100:], no_face_image[100:])


def test_resume_after_an_interrupted_run(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.png").write_bytes(encode(np.roll(astronaut, 7 * i, axis=1)))
    out = tmp_path / "out"
    seen = []

    def crash_after_two(rec):
        seen.append(rec)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch([src], out, BatchOptions(workers=1), progress=crash_after_two)
    layout = AuditLayout(default_audit_dir(out))
    assert not layout.manifest.exists() and layout.journal.is_file() and layout.current.is_file()
    first = {p.name: p.read_bytes() for p in out.glob("*.png")}
    assert len(first) == 2
    report = run_batch([src], out, BatchOptions(workers=1, resume=True))
    statuses = sorted(r["status"] for r in report.records)
    assert statuses == ["anonymized", "anonymized", "resumed", "resumed"]
    assert all((out / p).read_bytes() == b for p, b in first.items())  # done work is not redone
    manifest = manifest_of(out)
    assert len(manifest["images"]) == 4 and all(r.get("output_sha256") for r in manifest["images"])


def test_resume_redoes_an_image_whose_input_changed(tmp_path, astronaut, no_face_image):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.png").write_bytes(encode(astronaut))
    run_batch([src], tmp_path / "out", BatchOptions(workers=1))
    (src / "a.png").write_bytes(encode(no_face_image))
    report = run_batch([src], tmp_path / "out", BatchOptions(workers=1, resume=True))
    assert report.records[0]["status"] == "kept"


@pytest.mark.slow
def test_kill_midway_leaves_no_partial_output_and_resume_finishes(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):  # a second or more each with the last verification: killed after the 2nd, 4 left
        (src / f"{i:02d}.jpg").write_bytes(encode(np.roll(astronaut, 11 * i, axis=0), "JPEG"))
    out = tmp_path / "out"
    args = ["anonymize", "--on-text", "accept", "--on-faceless", "accept", src, "-o", out, "-q", "-j", "1"]
    proc = subprocess.Popen(anonlens_command(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = AuditLayout(default_audit_dir(out)).journal

    def journalled() -> int:  # records written so far (an output counts once its journal line is there)
        try:
            return sum(1 for line in journal.read_text().splitlines() if line.strip().endswith("}"))
        except FileNotFoundError:
            return 0

    deadline = time.time() + 600  # no timing assumption: a loaded machine only makes this slower
    while time.time() < deadline and journalled() < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    outputs = list(out.glob("*.jpg"))
    assert journalled() >= 2 and len(outputs) < 6, "the run was not interrupted midway"
    for p in outputs:  # every visible output is complete
        Image.open(p).load()
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    done = run_anonlens(*args, "--resume", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["summary"]
    assert summary["resumed"] >= 2 and summary["resumed"] + summary["anonymized"] == 6
    assert sorted(p.name for p in out.iterdir()) == [f"{i:02d}.jpg" for i in range(6)]
    assert not AuditLayout(default_audit_dir(out)).current.exists()


@pytest.mark.slow
def test_parallel_workers_give_the_same_outputs(tmp_path, astronaut):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        (src / f"{i}.png").write_bytes(encode(np.roll(astronaut, 9 * i, axis=0)))
    one = run_batch([src], tmp_path / "one", BatchOptions(workers=1))
    two = run_batch([src], tmp_path / "two", BatchOptions(workers=2))
    assert [r["output_sha256"] for r in one.records] == [r["output_sha256"] for r in two.records]
    assert two.ok and two.count("anonymized") == 4


def test_demo_writes_samples_outputs_and_manifest(tmp_path):
    r = runner.invoke(app, ["demo", "-o", str(tmp_path / "demo"), "-q"])
    assert r.exit_code == 0, r.output
    manifest = manifest_of(tmp_path / "demo" / "anonymized")
    assert manifest["summary"]["anonymized"] == 3 and manifest["summary"]["regions"] >= 3
    assert "anonymized:" in r.stdout
    # faces and the name tag: the release gate passes what the demo wrote (issue 27)
    assert any(reg["label"] == "text" for img in manifest["images"] for reg in img["regions"])
    checked = runner.invoke(app, ["check", str(tmp_path / "demo" / "anonymized"), "-q"])
    assert checked.exit_code == 0, checked.output


def test_listing_and_inspect_commands(tmp_path, astronaut):
    r = runner.invoke(app, ["detectors"])
    assert r.exit_code == 0 and "centerface" in r.stdout and "maskrcnn-person" in r.stdout
    r = runner.invoke(app, ["operators"])
    assert r.exit_code == 0 and "dp-pix" in r.stdout
    (tmp_path / "dirty.jpg").write_bytes(jpeg_with_everything(astronaut))
    (tmp_path / "clean.png").write_bytes(encode(astronaut))
    r = runner.invoke(app, ["inspect", str(tmp_path / "dirty.jpg"), str(tmp_path / "clean.png")])
    assert r.exit_code == 1 and "APP1:Exif" in r.stdout and "no metadata" in r.stdout
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and "anonlens" in r.stdout


def test_without_a_terminal_progress_is_plain_lines_and_the_summary_speaks_in_its_unit(tmp_path, monkeypatch):
    """A CI job or nohup: no progress bar, a plain line at most every PLAIN_PROGRESS_SECONDS (0 here);
    the summary's speed is images/s for photos and frames/s for a video, never 0.00 images/s."""
    import anonlens.cli.anonymize as cli_anonymize

    from tests.helpers import noise, write_clip

    monkeypatch.setattr(cli_anonymize, "PLAIN_PROGRESS_SECONDS", 0.0)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        (photos / f"{i}.png").write_bytes(encode(noise(64, 64, seed=i)))
    r = CliRunner().invoke(app, ["anonymize", str(photos), "-o", str(tmp_path / "o"), "--on-empty", "full"])
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert "anonymizing: 1 of 2 files, 0 failed" in r.stderr and "anonymizing: 2 of 2 files, 0 failed" in r.stderr, r.stderr
    assert not any("━" in line for line in lines)  # no bar drawn into a log
    assert "images/s" in r.stdout and "frames/s" not in r.stdout
    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips / "c.mp4", [noise(64, 96, seed=i) for i in range(6)])
    r = CliRunner().invoke(app, ["anonymize", str(clips), "-o", str(tmp_path / "v"), "--on-empty", "full", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)["summary"]
    assert summary["videos"] == 1 and summary["frames"] == 6 and summary["frames_per_second"] > 0
    assert "c.mp4: frame 6 of 6" in r.stderr, r.stderr
    r = CliRunner().invoke(app, ["anonymize", str(clips / "c.mp4"), "-o", str(tmp_path / "v2"), "--on-empty", "full", "-q"])
    assert "frames/s" in r.stdout and "images/s" not in r.stdout, r.stdout
