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


def test_text_in_a_turned_photo_is_found_read_and_checked(grid):
    """A photo whose orientation tag was lost: its faces say which way is up (the check's turn),
    and the text the check reads there is found and counted as readable."""
    from PIL import Image

    from anonlens.samples import paste_text
    from anonlens.verify import check_pair, face_turn, pair_checker

    im = Image.fromarray(np.vstack([grid, np.full((200, grid.shape[1], 3), 200, np.uint8)]))
    plate = paste_text(im, "JANE DOE 4821", (60, grid.shape[0] + 60), size=24)
    upright = np.asarray(im.convert("RGB"))
    h, w = upright.shape[:2]
    checker = pair_checker()
    for k in (1, 2, 3):
        turned = np.ascontiguousarray(np.rot90(upright, k))
        expected = rot90_box_back(plate, (4 - k) % 4, turned.shape[1], turned.shape[0])  # the plate in the turned photo
        blurred = turned.copy()
        for box, _, _ in checker.face_boxes(turned):
            x1, y1, x2, y2 = (int(v) for v in box)
            blurred[y1:y2, x1:x2] = cv2.GaussianBlur(blurred[y1:y2, x1:x2], (0, 0), 8)
        cache: dict = {}
        faces, texts = check_pair(checker, turned, blurred, cache=cache)
        assert cache["turn"] == (4 - k) % 4 and len(faces) >= 15
        hits = [t for t in texts if box_iou(t["box"], expected) > 0.3]
        assert hits and hits[0]["readable"], (k, texts)
    assert face_turn([]) == 0


def test_text_found_in_the_photo_stood_upright_is_mapped_back(monkeypatch):
    """The text search of a turned photo (:func:`anonlens.verify.text_regions`): what the detector
    finds in the photo stood upright comes back at the right place, its corners in the text's order."""
    import anonlens.verify.release as release
    from anonlens.regions import Region

    h, w = 300, 500  # the turned photo: 500 wide, 300 high
    quad = np.array([[40, 100], [200, 100], [200, 130], [40, 130]], np.float32)  # upright text, 160 x 30

    class Stub:
        def detect(self, image):
            if image.shape[:2] == (w, h):  # the photo stood upright (turned by a quarter: 300 wide, 500 high)
                return [Region((40.0, 100.0, 200.0, 130.0), 0.9, "text", polygon=quad)]
            return []

    monkeypatch.setattr(release, "_text_models", lambda: (Stub(), None))
    turned = np.zeros((h, w, 3), np.uint8)
    for k in (1, 3):
        (region,) = release.text_regions(turned, turn=k)
        assert region.box == rot90_box_back((40.0, 100.0, 200.0, 130.0), k, w, h)
        top_left, top_right = region.polygon[0], region.polygon[1]
        assert np.linalg.norm(top_right - top_left) == pytest.approx(160)  # the reading direction is kept
    assert release.text_regions(turned, turn=0) == []
