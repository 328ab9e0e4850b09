"""The functional operators against hand-computed and library references."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anonlens import Region, create_operator
from anonlens.operators import functional as F
from anonlens.regions import region_mask


def test_pixelate_cells_are_exact_block_means():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    mask = np.zeros((20, 20), bool)
    mask[2:12, 4:14] = True  # 10x10, block 4 -> cells of 4,4,2 rows/cols
    out = F.pixelate(img, mask, block=4)
    expected = img[2:6, 4:8].astype(float).mean(axis=(0, 1))
    assert np.array_equal(out[2, 4], np.rint(expected).astype(np.uint8))
    partial = img[10:12, 12:14].astype(float).mean(axis=(0, 1))  # the last, partial cell
    assert np.array_equal(out[11, 13], np.rint(partial).astype(np.uint8))
    assert len(np.unique(out[2:6, 4:8].reshape(-1, 3), axis=0)) == 1


def test_blur_matches_opencv_gaussian_inside_the_mask():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[15:25, 15:25] = True
    out = F.blur(img, mask, sigma=2.0)
    ref = cv2.GaussianBlur(img, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT)
    assert np.array_equal(out[mask], ref[mask])


def test_dp_pix_noise_scale_follows_the_reference_formula():
    assert F.dp_noise_scale(block=32, m=16, epsilon=0.5) == pytest.approx(255 * 16 / (32 * 32 * 0.5))
    # the empirical spread of the noise matches the Laplace scale
    img = np.full((256, 256, 3), 128, np.uint8)
    mask = np.ones((256, 256), bool)
    out = F.dp_pixelate(img, mask, block=2, m=1, epsilon=4.0, rng=np.random.default_rng(0))
    cells = out[::2, ::2].astype(float) - 128
    b = F.dp_noise_scale(block=2, m=1, epsilon=4.0)  # 15.9
    assert np.mean(np.abs(cells)) == pytest.approx(b, rel=0.05)  # E|Laplace(b)| = b


def test_fill_and_inpaint_leave_no_original_pixel_values_in_a_flat_surround():
    img = np.full((60, 60, 3), 200, np.uint8)
    img[20:40, 20:40] = 10  # the "face"
    mask = np.zeros((60, 60), bool)
    mask[18:42, 18:42] = True
    assert (F.fill(img, mask, color=(1, 2, 3))[mask] == [1, 2, 3]).all()
    inpainted = F.inpaint(img, mask, radius=5)
    assert inpainted[mask].min() > 150  # filled from the surroundings, the dark face is gone


@pytest.mark.parametrize("name,key", [("blur", "sigma"), ("pixelate", "block"), ("dp-pix", "block")])
def test_strength_scales_with_region_size(name, key):
    """A 30 px and a 300 px face get the same relative treatment."""
    op = create_operator(name)
    small = op.params_for(Region((0, 0, 30, 30)))[key]
    large = op.params_for(Region((0, 0, 300, 300)))[key]
    assert large / small == pytest.approx(10, rel=0.15)


def test_absolute_parameters_override_relative_ones():
    assert create_operator("blur", sigma=3).params_for(Region((0, 0, 300, 300))) == {"sigma": 3.0}
    assert create_operator("pixelate", block=5).params_for(Region((0, 0, 300, 300))) == {"block": 5}


@pytest.mark.parametrize("bad", [{"strength": 0}, {"strength": -1}, {"sigma": float("nan")}])
def test_invalid_options_are_clear_errors(bad):
    with pytest.raises(ValueError, match="must be"):
        create_operator("blur", **bad)


def test_wrong_image_types_are_clear_errors():
    mask = np.ones((4, 4), bool)
    with pytest.raises(TypeError, match="numpy array"):
        F.blur([[1, 2]], mask, sigma=1)
    with pytest.raises(ValueError, match=r"expected \[0, 1\]"):
        F.blur(np.full((4, 4, 3), 3.0), mask, sigma=1)
    with pytest.raises(ValueError, match="mask has shape"):
        F.blur(np.zeros((4, 4, 3), np.uint8), np.ones((5, 5), bool), sigma=1)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(8, 48),
    w=st.integers(8, 48),
    x1=st.integers(0, 40),
    y1=st.integers(0, 40),
    bw=st.integers(1, 30),
    bh=st.integers(1, 30),
    shape=st.sampled_from(["box", "ellipse"]),
    margin=st.floats(0, 1),
    op=st.sampled_from(["blur", "pixelate", "mask", "noise", "dp-pix", "inpaint"]),
)
def test_property_nothing_changes_outside_the_region_mask(h, w, x1, y1, bw, bh, shape, margin, op):
    rng = np.random.default_rng(h * w)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    region = Region((min(x1, w - 1), min(y1, h - 1), min(x1 + bw, w), min(y1 + bh, h)))
    mask = region_mask(region, img.shape, shape=shape, margin=margin)
    out, _ = create_operator(op)(img, mask, region)
    assert np.array_equal(out[~mask], img[~mask])


def test_region_mask_shapes():
    r = Region((10, 10, 30, 50))
    box = region_mask(r, (100, 100), shape="box")
    ell = region_mask(r, (100, 100), shape="ellipse")
    assert box.sum() == 20 * 40
    assert ell.sum() < box.sum() and not (ell & ~box).any()
    grown = region_mask(r, (100, 100), shape="box", margin=0.25)
    assert grown.sum() == 30 * 60
    with pytest.raises(ValueError, match="needs a region with a mask"):
        region_mask(r, (100, 100), shape="mask")
