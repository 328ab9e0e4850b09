"""The anonymizer's last verification (:meth:`Anonymizer.verify_release`): the release gate's own
pair check, run once every operator of a photo has been applied (strengthen, then mask, then the
wide mask, then fail the image), so that what ``anonymize`` writes passes ``check``."""

from dataclasses import replace

import numpy as np
import pytest

import anonlens
from anonlens import pipeline
from anonlens.assess.gate import check_images
from anonlens.errors import AnonlensError
from anonlens.verify import FaceVerifier, PairChecker

from tests.helpers import ASTRONAUT_FACE

TAG = (283, 364, 315, 377)  # the astronaut's name tag, EILEEN M. COLLINS


def _overlaps(b, box):
    return b[0] <= box[2] and box[0] <= b[2] and b[1] <= box[3] and box[1] <= b[3]


@pytest.mark.slow
def test_face_text_scope_is_checked_after_the_text_operator(monkeypatch, astronaut):
    """The reproduction: with face,text the face's check ran before the text operator painted
    over it. The pair check must see the final image, text regions anonymized."""
    seen = []
    real = pipeline.check_pair

    def spy(checker, original, anonymized, **kwargs):
        seen.append((anonymized.copy(), kwargs.get("faces", True), kwargs.get("text")))
        return real(checker, original, anonymized, **kwargs)

    monkeypatch.setattr(pipeline, "check_pair", spy)
    result = anonlens.Anonymizer(anonlens.AnonymizeConfig(scope="face,text"))(astronaut)
    labels = [r["label"] for r in result.record["regions"]]
    assert labels[0] == "face" and "text" in labels[1:]  # the text operator runs after the face's
    faces_checked = [img for img, faces, _ in seen if faces]
    assert faces_checked and np.array_equal(faces_checked[-1], result.image)  # judged on the output, text painted over
    assert any(text for _, _, text in seen)  # the text scope's text is checked too
    check = result.record["release_check"]
    assert check["faces"] >= 1 and check["faces_measured"] >= 1 and check["identity"]["criterion"] == "rank1"
    assert check["text"]["readable"] == 0 and "text_review" not in result.record  # the scope anonymizes text itself


@pytest.mark.slow
def test_a_face_the_check_still_recognises_is_strengthened(monkeypatch, astronaut):
    """A face no longer *detected* (the residual probe is silenced here) but still *recognised*
    (blur sigma 2: dlib puts it nearest its own original) is blurred more strongly on the
    verification's schedule until the check says not re-identified."""
    monkeypatch.setattr(FaceVerifier, "residual", lambda self, image, box: 0.0)
    config = anonlens.AnonymizeConfig(operator_options={"sigma": 2}, text_review=False)
    result = anonlens.Anonymizer(config)(astronaut)
    (region,) = result.record["regions"]
    assert region["verification"]["action"] == "passed"  # the detection check saw nothing
    history = region["release_check"]["history"]
    assert history[0]["reidentified"] is True and history[0]["rank1"] is True
    assert region["release_check"]["action"] == "strengthened" and result.record["release_check"]["rounds"] >= 1
    assert region["params"]["sigma"] > 2  # what was finally applied is recorded
    plain = anonlens.Anonymizer(replace(config, verify=False))(astronaut)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    assert np.abs(result.image[y1:y2, x1:x2].astype(int) - plain.image[y1:y2, x1:x2]).mean() > 1  # stronger than asked
    assert "release_check" not in plain.record  # --no-verify: the explicit opt-out of both checks
    # and the gate agrees with what was written
    verdict = check_images(astronaut, result.image, text=False)
    assert verdict.verdict == "passed", verdict.problems


@pytest.mark.slow
def test_a_face_recognised_even_under_the_wide_mask_fails_the_image(monkeypatch, astronaut):
    calls = []
    real = PairChecker.judge

    def judge(self, original, anonymized, *args, **kwargs):
        calls.append(anonymized.copy())
        return [replace(j, reidentified=True, rank1=True, rank=1, distance=0.1) for j in real(self, original, anonymized, *args, **kwargs)]

    monkeypatch.setattr(PairChecker, "judge", judge)
    anon = anonlens.Anonymizer(anonlens.AnonymizeConfig(text_review=False))
    with pytest.raises(AnonlensError, match=r"still fails the release check under a wide solid mask.*nothing written"):
        anon(astronaut)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    # judged after the operator, after each of the 2 steps, under the mask and under the wide mask
    assert len(calls) == 5 and (calls[-1][y1:y2, x1:x2] == 0).all()


def test_the_release_check_is_on_by_default_and_off_with_no_verify():
    blur = anonlens.Anonymizer(anonlens.AnonymizeConfig())
    assert blur.checks_release and blur.describe()["verify"]["release_check"]["criterion"] == "rank1"
    assert not anonlens.Anonymizer(anonlens.AnonymizeConfig(verify=False)).checks_release
    with pytest.raises(AnonlensError, match="criterion"):
        anonlens.AnonymizeConfig(identity_criterion="rank5")


def test_a_face_no_region_covers_becomes_a_region(monkeypatch, astronaut):
    """A face only the gate's detectors count (here: the anonymizer's own detector is told it saw
    nothing, so only the last verification finds the face) is anonymized as a new face region."""
    box = (float(ASTRONAUT_FACE[0]), float(ASTRONAUT_FACE[1]), float(ASTRONAUT_FACE[2]), float(ASTRONAUT_FACE[3]))
    monkeypatch.setattr(PairChecker, "faces_and_turn", lambda self, image, **kw: ([(box, "centerface", 0.9)], 0))
    anon = anonlens.Anonymizer(anonlens.AnonymizeConfig(text_review=False))
    found = pipeline.Found([anonlens.Region((0.0, 0.0, 20.0, 20.0), label="face")], ["main"])
    result = anon.anonymize_found(astronaut, found, release_check=True)
    added = [r for r in result.record["regions"] if r.get("found_by") == "release check"]
    assert len(added) == 1 and result.record["release_check"]["regions_added"] == 1
    x1, y1, x2, y2 = ASTRONAUT_FACE
    assert not np.array_equal(result.image[y1:y2, x1:x2], astronaut[y1:y2, x1:x2])


@pytest.mark.slow
def test_the_text_review_lists_the_name_tag(astronaut):
    result = anonlens.Anonymizer(anonlens.AnonymizeConfig())(astronaut)
    review = result.record["text_review"]
    assert review["found"] >= 1 and any(_overlaps(b, TAG) for b in review["boxes"])
    assert "text" not in {k for k in review}  # the reading itself (a name) is never recorded
    assert "COLLINS" not in str(result.record).upper()
