"""A person with no face found is never silent (issue 28): a face scope lists the image for review,
`check` says person-without-face, and a person who looked can accept it."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from anonlens.assess.gate import check_images
from anonlens.cli.main import app
from anonlens.verify import face_boxes_of, people_without_faces

from tests.helpers import ASTRONAUT_FACE, manifest_of

runner = CliRunner()


@pytest.fixture(scope="module")
def hidden_face(astronaut):
    """The astronaut with her head covered (a dark oval): no face detector finds a face, the person
    detector still finds the person."""
    return cv2.ellipse(astronaut.copy(), (218, 150), (80, 110), 0, 0, 360, (20, 20, 20), -1)


def test_people_without_faces_counts_only_real_faces_in_the_head_area(hidden_face):
    (person,) = people_without_faces(hidden_face, [])
    assert person["score"] >= 0.5 and person["box"][3] - person["box"][1] > 300
    head = [160.0, 60.0, 280.0, 200.0]
    assert people_without_faces(hidden_face, [head]) == []  # a face there: the person's face was found
    feet = [160.0, 450.0, 280.0, 500.0]
    assert len(people_without_faces(hidden_face, [feet])) == 1  # a "face" low in the box is not the head
    # a region the identity test calls "not a face" (a hand CenterFace scores 0.23) does not count
    records = [{"box": head, "identity": "not a face"}, {"box": feet, "identity": "unmeasurable pose"}]
    assert face_boxes_of(records) == [feet]


def test_check_says_person_without_face_and_a_visible_face_is_not_listed(hidden_face, astronaut):
    v = check_images(hidden_face, hidden_face.copy(), text=False)
    assert v.verdict == "person-without-face" and v.people and "no face found in the head area" in v.problems[0]
    assert check_images(hidden_face, hidden_face.copy(), text=False, people=False).verdict == "nothing-found"
    masked = astronaut.copy()
    x1, y1, x2, y2 = ASTRONAUT_FACE
    masked[y1 - 20:y2 + 20, x1 - 20:x2 + 20] = 0
    ok = check_images(astronaut, masked, text=False)
    assert ok.people == [] and ok.verdict == "passed", ok.problems


@pytest.mark.slow
def test_anonymize_lists_the_person_and_check_agrees(hidden_face, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(hidden_face).save(src / "p.png")
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "o"), "-q", "-j", "1", "--on-empty", "full", "--no-verify"])
    assert r.exit_code == 0, r.output  # --no-verify: no last verification, no review (the explicit opt-out)
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "o2"), "-q", "-j", "1", "--on-empty", "full", "--scope", "face,text"])
    assert r.exit_code == 3 and "People with no face found in 1 image(s)" in r.stdout, r.output
    rec = manifest_of(tmp_path / "o2")
    assert rec["summary"]["people_without_faces"] == 1 and rec["people_without_faces"][0]["input"].endswith("p.png")
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "o3"), "-q", "-j", "1", "--on-empty", "full", "--scope", "face,text",
                            "--on-faceless", "accept"])
    assert r.exit_code == 0 and "People with no face found" in r.stdout, r.output
    assert runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "o4"), "--on-faceless", "maybe"]).exit_code == 2
    # whole people anonymized: nothing to review
    r = runner.invoke(app, ["anonymize", str(src), "-o", str(tmp_path / "o5"), "-q", "-j", "1", "--scope", "person,text"])
    assert r.exit_code == 0 and "People with no face found" not in r.stdout, r.output
    # check on a face-scope output of the original (the person is left as is): person-without-face, reviewable
    r = runner.invoke(app, ["check", str(tmp_path / "o3"), "-q", "--json"])
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["counts"]["person-without-face"] == 1 and doc["people_without_faces"] == 1
    (tmp_path / "reviewed.txt").write_text(str(src / "p.png") + "\n")
    r = runner.invoke(app, ["check", str(tmp_path / "o3"), "-q", "--reviewed", str(tmp_path / "reviewed.txt")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["check", str(tmp_path / "o5"), "-q", "--json"])
    assert json.loads(r.stdout)["counts"]["person-without-face"] == 0  # the run's scope anonymized whole people


def test_person_scope_covers_the_person_box_and_agan_replaces_the_same_box(astronaut, tiny_agan_model):
    """--scope person anonymizes the box ssd-person gives (grown by the scope's margin); the agan
    operator gets the same person boxes (here with random weights: the path, not the look)."""
    import anonlens
    from anonlens import create_detector
    from anonlens.regions import box_iou

    (person,) = create_detector("ssd-person").detect(astronaut)
    blurred = anonlens.anonymize(astronaut, scope="person")
    bodies = [r for r in blurred.record["regions"] if r["label"] == "person"]
    assert len(bodies) == 1 and box_iou(bodies[0]["box"], person.box) > 0.8
    x1, y1, x2, y2 = (int(v) for v in person.box)
    changed = np.abs(blurred.image[y1:y2, x1:x2].astype(int) - astronaut[y1:y2, x1:x2]).max(axis=2) > 0
    assert changed.mean() > 0.9  # the whole person, not only the face
    generated = anonlens.anonymize(astronaut, scope="person", operator="agan", operator_options={"model": tiny_agan_model, "seed": 1})
    agan_bodies = [r for r in generated.record["regions"] if r["label"] == "person"]
    assert [r["box"] for r in agan_bodies] == [r["box"] for r in bodies]
    assert blurred.record["detector"] == generated.record["detector"] and "ssd-person" in json.dumps(generated.record["detector"])
    assert "agan" in json.dumps(generated.record["operator"]) and "params" in agan_bodies[0]
