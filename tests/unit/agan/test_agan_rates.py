"""A-GAN's four rates and the F1 calibration on synthetic embeddings with hand-computed values."""

import numpy as np
import pytest

from anonlens.assess.score import calibrate_threshold
from anonlens.generative.agan import agan_rates, cosine_distances


def unit(deg):
    """2-D unit vectors at these angles: cosine distance between two is 1 - cos(difference)."""
    r = np.radians(np.asarray(deg, float))
    return np.stack([np.cos(r), np.sin(r)], axis=1)


def test_cosine_distances_and_rounding():
    d = cosine_distances(unit([0]), unit([0, 90, 180, 60]))
    assert np.allclose(d, [[0, 1, 2, 0.5]])
    assert cosine_distances(unit([0]), unit([10]), decimals=4)[0, 0] == round(1 - np.cos(np.radians(10)), 4)


def test_the_four_rates_equal_hand_computed_values():
    # originals at 0, 90, 180, 270 degrees; generated near some of them
    originals = unit([0, 90, 180, 270])
    generated = unit([10, 150, 200, 200])  # g0 near o0, g1 nearest o2 (not its source), g2 near o2, g3 equals g2
    tau = 1 - np.cos(np.radians(25))  # "same person" within 25 degrees
    r = agan_rates(originals, generated, unit([205, 45]), tau=tau)
    # own distances: 10, 60, 20, 70 degrees -> g0 and g2 are within 25 degrees of their source
    assert r.not_anonymized == pytest.approx(2 / 4)
    # nearest original: g0 -> o0 (yes), g1 (150) -> o2 at 30 (no: o1 at 60), g2 -> o2 (yes), g3 (200) -> o2 (no)
    assert r.rank1_recall == pytest.approx(2 / 4)
    # training at 205 and 45: g2 and g3 (200) within 5 degrees of 205; g0 (10) is 35 from 45
    assert r.memorisation == pytest.approx(2 / 4)
    # g2 and g3 coincide: both share an identity (the reference counts only the first of the pair)
    assert r.shared_identity == pytest.approx(2 / 4)
    ref = agan_rates(originals, generated, unit([205, 45]), tau=tau, variant="reference")
    assert ref.shared_identity == pytest.approx(1 / 4)


def test_strict_and_inclusive_comparisons_differ_exactly_at_tau():
    originals, generated = unit([0, 90]), unit([30, 150])
    tau = 1 - np.cos(np.radians(30))  # g0 is exactly at tau from its source
    assert agan_rates(originals, generated, tau=tau).not_anonymized == pytest.approx(0.5)  # <=, as calibrated
    assert agan_rates(originals, generated, tau=tau, variant="reference").not_anonymized == 0.0  # the reference's <
    assert agan_rates(originals, generated, tau=tau).memorisation is None


def test_tau_is_calibrated_by_best_f1():
    # match pairs at distances 0.1, 0.2, 0.35; non-matches at 0.3, 0.5, 0.6
    d = [0.1, 0.2, 0.35, 0.3, 0.5, 0.6]
    same = [True, True, True, False, False, False]
    tau, f1 = calibrate_threshold(d, same)
    # tau 0.2: tp 2, predicted 2, actual 3 -> F1 0.8; tau 0.35: tp 3, predicted 4 -> F1 6/7 (the best)
    assert tau == pytest.approx(0.35) and f1 == pytest.approx(6 / 7)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="one original per generated"):
        agan_rates(unit([0, 1]), unit([0]), tau=0.1)
    with pytest.raises(ValueError, match="same width"):
        cosine_distances(np.zeros((2, 3)), np.zeros((2, 4)))
