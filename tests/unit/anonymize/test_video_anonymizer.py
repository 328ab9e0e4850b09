"""Video frames go through the photos' anonymizer: one per-image entry (``Anonymizer.anonymize_found``),
so every option of photos holds on videos, ``--keep-text`` included. The clip is made here with PyAV
from the astronaut's real face beside an exit sign rendered with OpenCV."""

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("av")

from anonlens.audit import find_manifest  # noqa: E402
from anonlens.cli.main import app  # noqa: E402
from anonlens.detectors.text import TextRecognizer, rotated_crop  # noqa: E402
from anonlens.pipeline import Anonymizer, AnonymizeConfig  # noqa: E402
from anonlens.regions import box_iou  # noqa: E402
from anonlens.video import anonymize_frames  # noqa: E402

from tests.helpers import decoded_frames, write_clip  # noqa: E402

runner = CliRunner()
FACE = (40, 70, 170, 200)  # x1, y1, x2, y2 in the first frame; the face moves 6 px right per frame
SIGN = (420, 250, 600, 330)  # white plate with "EXIT" in black, still


def sign_frames(n: int) -> list[np.ndarray]:
    from skimage import data

    face = data.astronaut()[60:190, 160:290]
    frames = []
    for i in range(n):
        canvas = np.full((360, 640, 3), 90, np.uint8)
        x = FACE[0] + 6 * i
        canvas[FACE[1] : FACE[3], x : x + 130] = face
        cv2.rectangle(canvas, SIGN[:2], (SIGN[2] - 1, SIGN[3] - 1), (255, 255, 255), -1)
        cv2.putText(canvas, "EXIT", (438, 310), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 4, cv2.LINE_AA)
        frames.append(canvas)
    return frames


def crop(image, box, inset=0):
    x1, y1, x2, y2 = box
    return image[y1 + inset : y2 - inset, x1 + inset : x2 - inset].astype(int)


def read_sign(recognizer, image) -> str:
    x1, y1, x2, y2 = SIGN
    quad = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
    return recognizer([rotated_crop(image, quad)])[0][0].strip()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    src = tmp_path_factory.mktemp("in")
    write_clip(src / "hall.mp4", sign_frames(5), fps=10, clock=10)
    return src


def test_keep_text_leaves_the_sign_readable_in_every_frame_and_records_it(clip, tmp_path):
    recognizer = TextRecognizer()
    inputs = decoded_frames(clip / "hall.mp4")  # what the anonymizer saw (after the input's encoding)
    assert all(read_sign(recognizer, f) == "EXIT" for f in inputs)  # readable before
    r = runner.invoke(app, ["anonymize", str(clip), "-o", str(tmp_path / "kept"), "-q", "--scope", "face,text",
                            "--keep-text", "EXIT"])
    assert r.exit_code == 0, r.output
    outs = decoded_frames(tmp_path / "kept" / "hall.mp4")
    assert len(outs) == len(inputs) == 5
    for i, (before, after) in enumerate(zip(inputs, outs)):
        assert np.abs(crop(before, SIGN) - crop(after, SIGN)).mean() < 3, i  # the sign kept (codec tolerance)
        assert read_sign(recognizer, after) == "EXIT", i
        face = (FACE[0] + 6 * i, FACE[1], FACE[2] + 6 * i, FACE[3])
        assert np.abs(crop(before, face, 20) - crop(after, face, 20)).mean() > 15, i  # the face anonymized
    (rec,) = json.loads(find_manifest(tmp_path / "kept").read_text())["images"]
    assert rec["status"] == "anonymized" and rec["keep_text"] == "EXIT"
    (kept,) = rec["kept_text"]
    assert kept["text"] == "EXIT" and kept["frames"] == [[0, 4]] and kept["confidence"] > 0.5
    x1, y1, x2, y2 = kept["box"]
    assert SIGN[0] - 20 <= x1 and SIGN[1] - 20 <= y1 and x2 <= SIGN[2] + 20 and y2 <= SIGN[3] + 20  # on the sign


def test_without_keep_text_the_sign_is_anonymized(clip, tmp_path):
    recognizer = TextRecognizer()
    inputs = decoded_frames(clip / "hall.mp4")
    r = runner.invoke(app, ["anonymize", str(clip), "-o", str(tmp_path / "all"), "-q", "--scope", "face,text"])
    assert r.exit_code == 0, r.output
    outs = decoded_frames(tmp_path / "all" / "hall.mp4")
    for i, (before, after) in enumerate(zip(inputs, outs)):
        assert np.abs(crop(before, SIGN) - crop(after, SIGN)).mean() > 15, i
        assert read_sign(recognizer, after) != "EXIT", i
    (rec,) = json.loads(find_manifest(tmp_path / "all").read_text())["images"]
    assert "kept_text" not in rec and "EXIT" not in json.dumps(rec)  # the text of anonymized regions is never recorded
    assert any(t["label"] == "text" for t in rec["tracks"])


def test_frame_records_list_the_kept_text_and_no_region_over_it():
    anon = Anonymizer(AnonymizeConfig(scope="face,text", keep_text="EXIT"))
    results = list(anonymize_frames(iter(sign_frames(3)), anon, detect_every=2))
    assert [rec["frame"] for _, rec in results] == [0, 1, 2]
    assert [[k["text"] for k in rec["kept_text"]] for _, rec in results] == [["EXIT"], [], ["EXIT"]]  # found on detection frames
    for out, rec in results:
        assert not any(r["label"] == "text" and box_iou(r["box"], SIGN) > 0.3 for r in rec["regions"]), rec["regions"]
        assert {r["how"] for r in rec["regions"] if r["label"] == "face"} <= {"detected", "between"}


def test_video_frames_and_photos_go_through_the_same_entry(monkeypatch):
    calls = []
    real = Anonymizer.anonymize_found

    def spy(self, image, found, **kw):
        calls.append((image.shape, len(found.regions), kw.get("on_empty")))
        return real(self, image, found, **kw)

    monkeypatch.setattr(Anonymizer, "anonymize_found", spy)
    finds = []
    real_find = Anonymizer.find
    monkeypatch.setattr(Anonymizer, "find", lambda self, image, **kw: finds.append(1) or real_find(self, image, **kw))
    anon = Anonymizer(AnonymizeConfig(operator="pixelate"))
    frames = sign_frames(5)
    outs = list(anonymize_frames(iter(frames), anon, detect_every=2))
    assert len(calls) == len(outs) == 5  # one call per frame, each with the frame's tracked regions
    assert all(n >= 1 and on_empty == "keep" for _, n, on_empty in calls)
    assert len(finds) == 3  # detection on frames 0, 2 and 4; the tracker carries the face between
    photo = anon(frames[0])
    assert len(calls) == 6 and len(finds) == 4 and photo.action == "anonymized"
    assert np.array_equal(photo.image, outs[0][0])  # the same regions anonymized the same way


def test_person_scope_detects_people_on_key_frames_and_the_tracker_carries_them(astronaut, monkeypatch):
    """--scope person on video: faces on every frame, the person detector on every 3rd frame (the
    default ``person_every``); between key frames the person's track is carried, so every frame
    has the person covered, and the face track is detected on every frame."""
    anon = Anonymizer(AnonymizeConfig(scope="person"))
    calls = []
    real = anon.detector.detect
    monkeypatch.setattr(anon.detector, "detect", lambda image, **kw: calls.append(1) or real(image, **kw))
    frames = [np.roll(astronaut, 4 * i, axis=1) for i in range(7)]
    results = list(anonymize_frames(iter(frames), anon, person_every=3))
    assert len(calls) == 3  # frames 0, 3, 6
    for (out, rec), frame in zip(results, frames):
        people = [r for r in rec["regions"] if r["label"] == "person"]
        faces = [r for r in rec["regions"] if r["label"] == "face"]
        assert len(people) == 1 and people[0]["how"] == ("detected" if rec["frame"] % 3 == 0 else "between"), rec["regions"]
        assert faces and all(f["how"] == "detected" for f in faces)
        x1, y1, x2, y2 = (int(v) for v in people[0]["box"])
        assert np.abs(out[y1:y2, x1:x2].astype(int) - frame[y1:y2, x1:x2]).max(axis=2).astype(bool).mean() > 0.9
    calls.clear()
    list(anonymize_frames(iter(frames[:3]), anon, person_every=1))
    assert len(calls) == 3
