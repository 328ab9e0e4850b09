"""Issue #25, items 7 and 8: damaged inputs are reported (not passed as clean), and a full audit
disk ends in one line, with the manifest completed from the journal by ``--resume``."""

import errno
import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from anonlens.audit import default_audit_dir
from anonlens.cli.main import app
from anonlens.io import decode_image

from tests.helpers import encode, manifest_of, write_clip

runner = CliRunner()


def zeroed_scan_jpeg(rgb: np.ndarray) -> tuple[bytes, bytes]:
    """(intact JPEG, the same with 2 KB of its entropy-coded data zeroed halfway through)."""
    good = encode(rgb, "JPEG", quality=90)
    sos = good.find(b"\xff\xda")
    start = sos + 2 + int.from_bytes(good[sos + 2 : sos + 4], "big")
    end = good.rfind(b"\xff\xd9")
    mid = (start + end) // 2
    bad = bytearray(good)
    bad[mid - 1024 : mid + 1024] = bytes(2048)
    return good, bytes(bad)


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


# -- item 7: a JPEG with zeroed scan data ------------------------------------------------------


def test_a_jpeg_with_zeroed_scan_data_decodes_silently_in_pillow_but_is_flagged(astronaut):
    good, bad = zeroed_scan_jpeg(astronaut)
    Image.open(io.BytesIO(bad)).load()  # the hole: Pillow decodes it without a word
    assert decode_image(good).decode_errors == []
    errors = decode_image(bad, name="x.jpg").decode_errors
    assert errors and any("Corrupt JPEG data" in e for e in errors), errors
    # a progressive JPEG damaged the same way
    buf = io.BytesIO()
    Image.fromarray(astronaut).save(buf, "JPEG", progressive=True)
    prog = bytearray(buf.getvalue())
    mid = (prog.find(b"\xff\xda") + len(prog)) // 2
    prog[mid - 1024 : mid + 1024] = bytes(2048)
    assert decode_image(bytes(prog)).decode_errors


def test_a_damaged_jpeg_is_anonymized_but_named_and_the_run_needs_review(astronaut, tmp_path):
    good, bad = zeroed_scan_jpeg(astronaut)
    src = tmp_path / "in"
    src.mkdir()
    (src / "intact.jpg").write_bytes(good)
    (src / "zeroed.jpg").write_bytes(bad)
    out = tmp_path / "out"
    r = runner.invoke(app, ["anonymize", "--scope", "face,text", str(src), "-o", str(out), "-q"])
    assert r.exit_code == 3, r.output
    damaged_lines = [line for line in r.stdout.splitlines() if "zeroed.jpg" in line]
    assert damaged_lines and "Corrupt JPEG data" in damaged_lines[0], r.stdout
    assert "damaged" in r.stdout and "intact.jpg" not in r.stdout
    manifest = manifest_of(out)
    assert [d["input"] for d in manifest["damaged"]] == [str(src / "zeroed.jpg")]
    assert manifest["summary"]["damaged"] == 1
    recs = {r_["key"]: r_ for r_ in manifest["images"]}
    assert recs["zeroed.jpg"]["status"] == "anonymized" and recs["zeroed.jpg"]["decode_errors"]
    assert "decode_errors" not in recs["intact.jpg"]
    assert (out / "zeroed.jpg").is_file()  # faces covered: written, but listed

    # --on-damaged accept: listed in the manifest, exit 0 (so the 3 above came from the damage)
    r = runner.invoke(app, ["anonymize", "--scope", "face,text", str(src), "-o", str(tmp_path / "acc"), "-q", "--on-damaged", "accept", "--json"])
    assert r.exit_code == 0, r.output
    assert [d["input"] for d in json.loads(r.stdout)["damaged"]] == [str(src / "zeroed.jpg")]
    # --on-damaged fail: no output for it, exit 1, named with the problem
    r = runner.invoke(app, ["anonymize", "--scope", "face,text", str(src), "-o", str(tmp_path / "fail"), "-q", "--on-damaged", "fail", "--json"])
    assert r.exit_code == 1, r.output
    (failed,) = json.loads(r.stdout)["failed"]
    assert failed["input"].endswith("zeroed.jpg") and "Corrupt JPEG data" in failed["error"]
    assert sorted(p.name for p in (tmp_path / "fail").iterdir()) == ["intact.jpg"]
    r = runner.invoke(app, ["anonymize", "--scope", "face,text", str(src), "-o", str(tmp_path / "bad"), "-q", "--on-damaged", "maybe"])
    assert r.exit_code == 2 and "--on-damaged" in r.output


# -- item 7: a video with corrupt packets mid-stream -------------------------------------------


def corrupt_clip(tmp_path, astronaut):
    """A 30-frame H.264 clip of the astronaut's face moving (keyframes every 10 frames), and a copy
    with 200 bytes zeroed in the middle of the keyframe at frame 10."""
    av = pytest.importorskip("av")
    face = astronaut[60:190, 160:290]
    frames = []
    for i in range(30):
        canvas = np.full((240, 320, 3), 90, np.uint8)
        canvas[40:170, 20 + 5 * i : 150 + 5 * i] = face
        frames.append(canvas)
    path = tmp_path / "clip.mp4"
    write_clip(path, frames, fps=10, clock=10, options={"g": "10", "crf": "20", "threads": "1"})
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size and p.is_keyframe]
    pos, size = packets[1]  # the keyframe mid-stream
    data = bytearray(path.read_bytes())
    data[pos + size // 2 : pos + size // 2 + 200] = bytes(200)
    bad = tmp_path / "in" / "damaged.mp4"
    bad.parent.mkdir()
    bad.write_bytes(bytes(data))
    with av.open(str(bad)) as c:  # the damage is concealed: every frame decodes, no exception
        assert sum(1 for _ in c.decode(c.streams.video[0])) == 30
    return path, bad


def test_a_video_with_corrupt_packets_is_named_as_damaged(astronaut, tmp_path):
    av = pytest.importorskip("av")
    intact, bad = corrupt_clip(tmp_path, astronaut)
    (bad.parent / "intact.mp4").write_bytes(intact.read_bytes())
    out = tmp_path / "out"
    r = runner.invoke(app, ["anonymize", str(bad.parent), "-o", str(out), "-q"])
    assert r.exit_code == 3, r.output
    lines = [line for line in r.stdout.splitlines() if "damaged.mp4" in line]
    assert lines and "frame 10: h264: " in lines[0], r.stdout  # the keyframe mid-stream
    assert "intact.mp4" not in r.stdout
    manifest = manifest_of(out)
    assert [d["input"] for d in manifest["damaged"]] == [str(bad)]
    recs = {r_["key"]: r_ for r_ in manifest["images"]}
    errors = recs["damaged.mp4"]["decode_errors"]
    assert any("error while decoding MB" in e for e in errors) and all(e.startswith("frame 10:") for e in errors), errors
    assert "decode_errors" not in recs["intact.mp4"]
    assert recs["damaged.mp4"]["status"] == "anonymized" and recs["damaged.mp4"]["video"]["frames"] == 30
    with av.open(str(out / "damaged.mp4")) as c:
        assert sum(1 for _ in c.decode(c.streams.video[0])) == 30
    # accepted by policy: exit 0, still in the manifest
    r = runner.invoke(app, ["anonymize", str(bad), "-o", str(tmp_path / "acc"), "-q", "--on-damaged", "accept", "--json"])
    assert r.exit_code == 0, r.output
    assert [d["input"] for d in json.loads(r.stdout)["damaged"]] == [str(bad)]
    # refused by policy: nothing written
    r = runner.invoke(app, ["anonymize", str(bad), "-o", str(tmp_path / "fail"), "-q", "--on-damaged", "fail", "--json"])
    assert r.exit_code == 1 and not list((tmp_path / "fail").rglob("*")), r.output


# -- item 8: a full audit disk -----------------------------------------------------------------


@pytest.fixture
def two_photos(tmp_path, astronaut):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "a.png").write_bytes(encode(astronaut))
    (src / "b.png").write_bytes(encode(np.roll(astronaut, 17, axis=1)))
    return src


def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def assert_one_line_naming(result, audit):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.exception
    (line,) = error_lines(result.output)
    assert str(audit) in line and "No space left on device" in line and "--resume" in line, line


def test_a_full_audit_disk_at_the_manifest_is_one_line_and_resume_completes_it(two_photos, tmp_path, monkeypatch):
    import anonlens.batch as batch
    from anonlens.io import files

    out = tmp_path / "out"
    audit = default_audit_dir(out)
    real = files.atomic_writer

    def full_audit_disk(path, **kw):
        if str(path).startswith(str(audit)):
            enospc()
        return real(path, **kw)

    monkeypatch.setattr(batch, "atomic_writer", full_audit_disk)
    r = runner.invoke(app, ["anonymize", "--scope", "face,text", str(two_photos), "-o", str(out), "-q"])
    assert_one_line_naming(r, audit)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]  # the outputs stay
    assert not (audit / "manifest.json").exists() and (audit / "journal.jsonl").is_file()
    r = runner.invoke(app, ["check", str(out), "-q"])  # no manifest yet: says how to complete it
    assert r.exit_code == 2 and "--resume" in r.output, r.output
    monkeypatch.undo()  # room again
    r = runner.invoke(app, ["anonymize", "--scope", "face,text", str(two_photos), "-o", str(out), "-q", "--resume", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["summary"]["resumed"] == 2  # completed from the journal, nothing redone
    manifest = json.loads((audit / "manifest.json").read_text())
    assert sorted(r_["key"] for r_ in manifest["images"]) == ["a.png", "b.png"]
    r = runner.invoke(app, ["check", str(out), "-q", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["images"] == 2, r.output


def test_a_full_audit_disk_at_the_journal_is_one_line_and_resume_completes_it(two_photos, tmp_path, monkeypatch):
    from anonlens.audit.runs import Journal

    out = tmp_path / "out"
    audit = default_audit_dir(out)
    real = Journal.append
    calls = []

    def fills_up(self, rec):
        calls.append(rec["input"])
        if len(calls) > 1:
            enospc()
        return real(self, rec)

    monkeypatch.setattr(Journal, "append", fills_up)
    r = runner.invoke(app, ["anonymize", "--scope", "face,text", str(two_photos), "-o", str(out), "-q", "-j", "1"])
    assert_one_line_naming(r, audit)
    assert len(calls) == 2 and not (audit / "manifest.json").exists()
    monkeypatch.undo()
    r = runner.invoke(app, ["anonymize", "--scope", "face,text", str(two_photos), "-o", str(out), "-q", "--resume", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)["summary"]
    assert summary["resumed"] == 1 and summary["anonymized"] == 1  # the unrecorded one is made again
    assert sorted(r_["key"] for r_ in json.loads((audit / "manifest.json").read_text())["images"]) == ["a.png", "b.png"]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_a_real_enospc_from_the_kernel_is_one_line(two_photos, tmp_path):
    """/dev/full answers every write with ENOSPC: the run history pointed at it fails for real."""
    import os

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    out = tmp_path / "out"
    audit = default_audit_dir(out)
    audit.mkdir()
    (audit / "history.jsonl").symlink_to("/dev/full")
    r = runner.invoke(app, ["anonymize", "--scope", "face,text", str(two_photos), "-o", str(out), "-q"])
    assert r.exit_code == 1, r.output
    (line,) = error_lines(r.output)
    assert str(audit) in line and "history.jsonl" in line and "No space left on device" in line, line
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_a_full_audit_disk_before_the_run_starts_writes_nothing(two_photos, tmp_path, monkeypatch):
    import anonlens.batch as batch

    out = tmp_path / "out"
    monkeypatch.setattr(batch, "write_atomic", enospc)  # run.json cannot be written
    r = runner.invoke(app, ["anonymize", "--scope", "face,text", str(two_photos), "-o", str(out), "-q"])
    assert r.exit_code == 1, r.output
    (line,) = error_lines(r.output)
    assert str(default_audit_dir(out)) in line and "run.json" in line and "nothing was written" in line, line
    assert not list(out.iterdir())
