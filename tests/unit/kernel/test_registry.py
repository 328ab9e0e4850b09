"""Registry behaviour and contract tests over every registered detector and operator."""

import numpy as np
import pytest

from anonlens import Region, create_detector, create_operator, list_detectors, list_operators
from anonlens.detectors import DETECTORS
from anonlens.errors import UnknownNameError
from anonlens.operators import OPERATORS
from anonlens.regions import region_mask

from tests.helpers import ASTRONAUT_FACE, iou


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'pixelate'"):
        create_operator("pixelat")
    with pytest.raises(UnknownNameError, match="Did you mean 'centerface'"):
        create_detector("centreface")


def test_unknown_option_suggests_closest():
    with pytest.raises(UnknownNameError, match="has no option 'strenght'.*Did you mean 'strength'"):
        create_operator("blur", strenght=0.3)


def test_listing_filters_by_tag():
    assert set(list_detectors(label="face")) == {"centerface", "dlib-hog"}
    assert set(list_detectors(label="person")) == {"hog-person", "maskrcnn-person", "ssd-person"}
    assert list_operators() == ["agan", "blur", "dp-pix", "inpaint", "mask", "noise", "pixelate"]


def _detector_options(name, tmp_path):
    if name == "boxes":
        f = tmp_path / "boxes.json"
        f.write_text('{"img.png": [{"box": [10, 10, 50, 60]}]}')
        return {"file": str(f)}
    if name == "maskrcnn-person":
        return {"random_weights": True, "min_size": 128, "max_size": 160, "threshold": 0.0}
    return {}


@pytest.mark.parametrize("name", DETECTORS.names())
def test_detector_contract(name, astronaut, tmp_path):
    det = create_detector(name, **_detector_options(name, tmp_path))
    regions = det.detect(astronaut, source="img.png")
    assert isinstance(regions, list)
    h, w = astronaut.shape[:2]
    scores = [r.score for r in regions]
    assert scores == sorted(scores, reverse=True)
    for r in regions:
        assert isinstance(r, Region)
        x1, y1, x2, y2 = r.box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        if r.mask is not None:
            assert r.mask.shape == (h, w) and r.mask.dtype == bool
    assert det.name == name
    assert isinstance(det.options(), dict)
    # the input image is never modified
    from skimage import data

    assert np.array_equal(astronaut, data.astronaut())


@pytest.mark.parametrize("name", ["centerface", "dlib-hog"])
def test_face_detectors_find_the_astronaut(name, astronaut):
    regions = create_detector(name).detect(astronaut)
    assert any(iou(r.box, ASTRONAUT_FACE) > 0.4 for r in regions), [r.box for r in regions]
    assert all(r.label == "face" for r in regions)


def _random_mask(rng, h, w):
    mask = np.zeros((h, w), bool)
    y1, x1 = rng.integers(0, h // 2), rng.integers(0, w // 2)
    mask[y1 : y1 + rng.integers(8, h // 2), x1 : x1 + rng.integers(8, w // 2)] = True
    return mask


@pytest.mark.parametrize("name", OPERATORS.names())
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_operator_contract(name, seed, astronaut, operator_options):
    """Every operator: pixels outside the mask unchanged, inside changed, input untouched."""
    rng = np.random.default_rng(seed)
    h, w = 96, 128
    y, x = rng.integers(0, 512 - h), rng.integers(0, 512 - w)
    image = np.ascontiguousarray(astronaut[y : y + h, x : x + w])
    before = image.copy()
    mask = _random_mask(rng, h, w)
    op = create_operator(name, **operator_options(name))
    ys, xs = np.nonzero(mask)
    region = Region((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    out, params = op(image, mask, region)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], image[~mask]), "pixels outside the mask changed"
    changed = np.any(out != image, axis=2)[mask].mean()
    assert changed > 0.5, f"only {changed:.0%} of the masked pixels changed"
    assert np.array_equal(image, before), "the input array was modified"
    assert isinstance(params, dict)


@pytest.mark.parametrize("name", OPERATORS.names())
def test_operator_empty_mask_is_identity(name, astronaut, operator_options):
    op = create_operator(name, **operator_options(name))
    mask = np.zeros(astronaut.shape[:2], bool)
    out, _ = op(astronaut, mask, Region((0, 0, 10, 10)))
    assert np.array_equal(out, astronaut)


@pytest.mark.parametrize("name", [n for n in OPERATORS.names() if OPERATORS.get(n).factory.stochastic])
def test_stochastic_operators_repeat_with_a_seed(name, astronaut, operator_options):
    mask = region_mask(Region(ASTRONAUT_FACE), astronaut.shape, shape="box")
    opts = operator_options(name)
    a, _ = create_operator(name, seed=7, **opts)(astronaut, mask, Region(ASTRONAUT_FACE))
    b, _ = create_operator(name, seed=7, **opts)(astronaut, mask, Region(ASTRONAUT_FACE))
    c, _ = create_operator(name, seed=8, **opts)(astronaut, mask, Region(ASTRONAUT_FACE))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
