"""Videos: short synthetic clips made here from the astronaut's real face moving across the frame,
with audio, container metadata, rotation and variable frame rate, written with PyAV."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

av = pytest.importorskip("av")

from anonlens.audit import find_manifest  # noqa: E402
from anonlens.cli.main import app  # noqa: E402
from anonlens.detectors import create_detector  # noqa: E402
from anonlens.detectors.base import Detector  # noqa: E402
from anonlens.pipeline import Anonymizer, AnonymizeConfig  # noqa: E402
from anonlens.video import TrackerConfig, anonymize_frames  # noqa: E402

from tests.helpers import write_clip  # noqa: E402

runner = CliRunner()
SECRET_META = {"title": "Jane Roe at home", "comment": "secret", "location": "+48.85+002.29/", "creation_time": "2024-05-01T12:00:00Z"}


@pytest.fixture(scope="module")
def face():
    from skimage import data

    return data.astronaut()[60:190, 160:290]  # the face and some hair, 130 px


def frames_of(face, n=30, w=480, h=270, step=None):
    """(frame, face box) per frame: the face moving left to right."""
    out = []
    for i in range(n):
        canvas = np.full((h, w, 3), 90, np.uint8)
        x = int(10 + (w - 150) * i / max(n - 1, 1)) if step is None else 10 + step * i
        canvas[70:200, x : x + 130] = face
        out.append((canvas, (x, 70, x + 130, 200)))
    return out


def write_walk(path, clip, *, audio=True, **kw):
    """``clip`` ((frame, face box) pairs) as a video file with SECRET_META and, unless told, audio."""
    return write_clip(path, [frame for frame, _ in clip], metadata=SECRET_META, audio=audio, **kw)


def read_clip(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(f.to_ndarray(format="rgb24"), f.pts * v.time_base, f.rotation) for f in c.decode(v)]
        return frames, dict(c.metadata), [s.type for s in c.streams]


def audio_payloads(path):
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def changed(a, b, box) -> float:
    x1, y1, x2, y2 = box
    return float(np.abs(a[y1 + 20 : y2 - 20, x1 + 20 : x2 - 20].astype(int) - b[y1 + 20 : y2 - 20, x1 + 20 : x2 - 20]).mean())


class Flaky(Detector):
    """CenterFace, with its results withheld on the given frames."""

    name = "flaky"
    label = "face"

    def __init__(self, drop):
        self.drop, self.n, self._inner = set(drop), -1, create_detector("centerface")

    def detect(self, image, *, source=None):
        self.n += 1
        return [] if self.n in self.drop else self._inner.detect(image)


def test_gaps_and_the_frames_before_a_track_are_covered(face):
    clip = frames_of(face, n=30)
    drop = {0, 1, 2, 10, 11, 12, 13, 20}  # the detector misses the first three frames and two gaps
    anon = Anonymizer(AnonymizeConfig(), detector=Flaky(drop))
    tracks = []
    results = list(anonymize_frames((f for f, _ in clip), anon, tracker=TrackerConfig(max_gap=8, pre_frames=4), tracks_out=tracks))
    assert [r["frame"] for _, r in results] == list(range(30))
    for (out, rec), (orig, box) in zip(results, clip):
        assert changed(orig, out, box) > 15, (rec["frame"], rec["regions"])  # every frame's face is covered
        hows = {r["how"] for r in rec["regions"]}
        if rec["frame"] in (0, 1, 2):
            assert hows == {"before"}
        elif rec["frame"] in drop:
            assert hows == {"filled"}
        else:
            assert "detected" in hows
    (track,) = tracks
    assert track.to_dict()["filled_frames"] == [[10, 13], [20, 20]] and track.first == 3


def test_cli_video_keeps_frames_and_timestamps_and_drops_audio_and_metadata(face, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    clip = frames_of(face, n=24)
    times = write_walk(src / "walk.mp4", clip, vfr=True)
    (src / "still.png").write_bytes(b"")  # a broken photo beside it: the video is still done
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "out"), "-q", "--json", "--on-empty", "keep"])
    assert r.exit_code == 1, r.output  # the broken photo
    payload = json.loads(r.stdout)
    assert payload["summary"]["anonymized"] == 1 and [Path(f["input"]).name for f in payload["failed"]] == ["still.png"]
    frames, meta, streams = read_clip(tmp_path / "out" / "walk.mp4")
    assert len(frames) == len(clip) and [t for _, t, _ in frames] == times  # variable frame rate kept exactly
    assert streams == ["video"]  # audio dropped by default
    assert not {"title", "comment", "location", "location-eng", "creation_time"} & set(meta), meta
    for (out, _, _), (orig, box) in zip(frames, clip):
        assert changed(orig, out, box) > 15
    rec = json.loads(find_manifest(tmp_path / "out").read_text())["images"]
    (video,) = [x for x in rec if x["input"].endswith("walk.mp4")]
    assert video["video"]["frames"] == 24 and video["video"]["codec"] == "h264" and video["tracks"][0]["first_frame"] == 0
    assert video["output_sha256"] and video["input_sha256"]


def test_keep_audio_copies_it_bit_for_bit(face, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_walk(src / "talk.mkv", frames_of(face, n=20))
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "out"), "-q", "--keep-audio"])
    assert r.exit_code == 0, r.output
    before, after = audio_payloads(src / "talk.mkv"), audio_payloads(tmp_path / "out" / "talk.mkv")
    assert before and after == before


def test_rotation_is_applied_so_the_detector_sees_an_upright_face(face, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    clip = frames_of(face, n=12, step=4)
    write_walk(src / "phone.mov", clip, rotation=90, audio=False)
    stored, _, _ = read_clip(src / "phone.mov")
    assert stored[0][0].shape[:2] == (480, 270) and stored[0][2] == 90  # sideways on disk
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.output
    frames, _, _ = read_clip(tmp_path / "out" / "phone.mov")
    assert frames[0][0].shape[:2] == (270, 480) and frames[0][2] == 0  # upright, nothing left to rotate
    for (out, _, _), (orig, box) in zip(frames, clip):
        assert changed(orig, out, box) > 15
    rec = json.loads(find_manifest(tmp_path / "out").read_text())["images"][0]
    assert rec["video"]["rotation_applied"] == 90


def test_a_truncated_video_fails_closed(face, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_walk(tmp_path / "whole.mp4", frames_of(face, n=20))
    data = (tmp_path / "whole.mp4").read_bytes()
    (src / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "out"), "-q", "--json"])
    assert r.exit_code == 1
    (failed,) = json.loads(r.stdout)["failed"]
    assert failed["input"].endswith("cut.mp4") and "cut.mp4" in failed["error"]
    assert not list((tmp_path / "out").rglob("*"))  # nothing written, not even a temporary file


def test_nothing_found_in_a_video_follows_the_review_policy(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    empty = [(np.full((120, 160, 3), 90, np.uint8), (0, 0, 1, 1)) for _ in range(8)]
    write_walk(src / "empty.mp4", empty, audio=False)
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "o1"), "-q"])
    assert r.exit_code == 3 and "empty.mp4" in r.output
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "o2"), "-q", "--on-empty", "skip"])
    assert r.exit_code == 0 and not (tmp_path / "o2" / "empty.mp4").exists()
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "o3"), "-q", "--on-empty", "full"])
    assert r.exit_code == 0
    frames, _, _ = read_clip(tmp_path / "o3" / "empty.mp4")
    assert len(frames) == 8


def test_noise_stays_the_same_along_a_track(face):
    clip = frames_of(face, n=12, step=0)  # a face that does not move
    anon = Anonymizer(AnonymizeConfig(operator="noise", operator_options={"seed": 3}))
    outs = [o for o, _ in anonymize_frames((f for f, _ in clip), anon)]
    box = clip[0][1]
    same = changed(outs[8], outs[9], box)
    assert same < 3.0 and changed(clip[8][0], outs[8], box) > 15  # the same noise frame after frame


def test_videos_need_the_video_extra(face, tmp_path, monkeypatch):
    from anonlens import extras

    src = tmp_path / "in"
    src.mkdir()
    write_walk(src / "a.mp4", frames_of(face, n=4), audio=False)
    real = extras._installed
    monkeypatch.setattr(extras, "_installed", lambda m: False if m == "av" else real(m))
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "out"), "-q", "--json"])
    assert r.exit_code == 1
    assert "pip install 'anonlens[video]'" in json.loads(r.stdout)["failed"][0]["error"]


def test_check_and_score_work_on_videos(face, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_walk(src / "walk.mp4", frames_of(face, n=30), audio=False)
    assert runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "out"), "-q"]).exit_code == 0
    r = runner.invoke(app, ["check", str(tmp_path / "out"), "-q", "--json"])
    assert r.exit_code == 0, r.output
    (item,) = json.loads(r.stdout)["per_image"]
    assert item["verdict"] == "passed" and {0, 25, 29} <= {f["frame"] for f in item["faces"]}  # 1/s and the track's end
    # the same check fails a video whose output shows the face: the original copied over it
    leak = tmp_path / "leak"
    assert runner.invoke(app, ["anonymize", str(src), "-o", str(leak), "-q"]).exit_code == 0
    (leak / "walk.mp4").write_bytes((src / "walk.mp4").read_bytes())
    r = runner.invoke(app, ["check", str(leak), "-q", "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["per_image"][0]["verdict"] == "re-identified"
    r = runner.invoke(app, ["score", "-a", str(tmp_path / "out"), "--original", str(src), "-o", str(tmp_path / "sc"), "-q",
                            "--metrics", "ssim,identity"])
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "sc" / "scores.csv").read_text().splitlines()
    assert rows[1].startswith("walk.mp4#frame=0,") and len(rows) == 1 + 2  # frames 0 and 25


def test_detecting_every_few_frames_still_covers_every_frame(face):
    clip = frames_of(face, n=20)
    anon = Anonymizer(AnonymizeConfig())
    results = list(anonymize_frames((f for f, _ in clip), anon, detect_every=3))
    for (out, rec), (orig, box) in zip(results, clip):
        assert changed(orig, out, box) > 15, rec
    hows = [{r["how"] for r in rec["regions"]} for _, rec in results]
    assert hows[0] == {"detected"} and hows[1] == {"between"} and hows[3] == {"detected"}
    from anonlens.video import VideoOptions

    with pytest.raises(Exception, match="at most pre_frames"):
        VideoOptions(detect_every=6)


@pytest.mark.parametrize("suffix,codec,out_codec", [(".webm", "libvpx-vp9", "vp9"), (".avi", "mpeg4", "h264")])
def test_other_containers(face, tmp_path, suffix, codec, out_codec):
    src = tmp_path / "in"
    src.mkdir()
    clip = frames_of(face, n=10)
    write_clip(src / f"c{suffix}", [frame for frame, _ in clip], fps=10, clock=10, codec=codec)
    r = runner.invoke(app, ["anonymize", str(src / f"c{suffix}"), "-o", str(tmp_path / "out"), "-q"])
    assert r.exit_code == 0, r.output
    with av.open(str(tmp_path / "out" / f"c{suffix}")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
        assert c.streams.video[0].codec_context.name == out_codec
    assert len(frames) == 10 and all(changed(o, a, box) > 15 for a, (o, box) in zip(frames, clip))
