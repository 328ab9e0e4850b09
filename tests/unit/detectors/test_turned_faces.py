"""Faces in a photo whose orientation tag was lost (a quarter turn): the release check's face search
(CenterFace ``orientations=4``) finds them; upright photos get no extra detections."""

import cv2
import numpy as np
import pytest

from anonlens import create_detector
from anonlens.regions import box_iou, rot90_box_back


@pytest.fixture(scope="module")
def grid(astronaut):
    """20 astronauts shrunk to 96 px (faces of about 20 px), 4 rows of 5: a crowd of small faces."""
    small = cv2.resize(astronaut, (96, 96), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.vstack([np.hstack([small] * 5)] * 4))


def _matched(found, expected):
    return sum(any(box_iou(f, e) > 0.5 for f in found) for e in expected)


def test_a_turned_crowd_of_small_faces_is_found_and_mapped_back(grid):
    upright = [r.box for r in create_detector("centerface").detect(grid)]
    assert len(upright) == 20
    h, w = grid.shape[:2]
    for k in (1, 3):
        turned = np.ascontiguousarray(np.rot90(grid, k))
        # the upright faces' boxes in the turned image: np.rot90(turned, -k) is the grid again
        expected = [rot90_box_back(b, (4 - k) % 4, turned.shape[1], turned.shape[0]) for b in upright]
        one = [r.box for r in create_detector("centerface").detect(turned)]
        four = [r.box for r in create_detector("centerface", orientations=4).detect(turned)]
        assert _matched(one, expected) <= 8, k  # the upright search misses most of them
        assert _matched(four, expected) >= 19, (k, _matched(four, expected))
    assert h, w


def test_upright_photos_get_no_extra_detections(grid, astronaut, no_face_image):
    for image in (grid, astronaut, no_face_image):
        one = create_detector("centerface").detect(image)
        four = create_detector("centerface", orientations=4).detect(image)
        assert [r.box for r in four] == [r.box for r in one]


def test_orientations_must_be_one_or_four():
    from anonlens.errors import AnonlensError

    with pytest.raises((AnonlensError, ValueError), match="orientations"):
        create_detector("centerface", orientations=2)


def test_the_check_reuses_an_upright_search_and_finds_the_same_faces(grid, astronaut):
    """The anonymizer's CenterFace (its defaults) already searched the original upright: the release
    check's face search reuses those detections and searches only the turned copies; the faces are
    the same as a search of its own. Another search (another threshold) is not reused."""
    from anonlens.verify import FaceVerifier

    verifier = FaceVerifier()
    same = create_detector("centerface")
    other = create_detector("centerface", threshold=0.5)
    for image in (grid, np.ascontiguousarray(np.rot90(grid)), astronaut):
        own = [(r.box, r.score) for r in verifier.faces(image)]
        reused = [(r.box, r.score) for r in verifier.faces(image, upright=(same, same.detect(image)))]
        assert reused == own
        assert [(r.box, r.score) for r in verifier.faces(image, upright=(other, []))] == own  # not reused: searched again
