"""Pairs, scoring, correlation, set-level rates and the report's order through the library, on a small
synthetic set (the same from the command line: ``tests/integration/test_assess_cli.py``)."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from anonlens.assess import calibrate_threshold, pairs_from_csv, rank1_rate, reid_rate, safe_join, score_pairs
from anonlens.assess.correlate import CorrelationOptions, correlate
from anonlens.errors import AnonlensError

from tests.helpers import tiny_features, write_perceptanon_set


@pytest.fixture(scope="module")
def annotated(tmp_path_factory, astronaut):
    return write_perceptanon_set(tmp_path_factory.mktemp("perceptanon"), astronaut)


def test_pairs_from_csv_accepts_the_reference_column_spellings(annotated):
    pairs = pairs_from_csv(annotated / "HA2.csv")
    assert len(pairs) == 12 and not any(p.error for p in pairs)
    assert pairs[0].groups == {"dataset": "lfw", "scope": "global", "method": "blurpix"}
    assert pairs[0].extra["score_mean"] == 3.5 and pairs[0].original.name == "0.png"


def test_paths_from_a_csv_stay_inside_the_data_root(tmp_path):
    with pytest.raises(AnonlensError, match="absolute"):
        safe_join(tmp_path, "/etc/passwd")
    with pytest.raises(AnonlensError, match="leaves the data root"):
        safe_join(tmp_path, "../../etc/passwd")
    pd.DataFrame({"original_image_path": ["../x.png", "a.png"], "anonymized_image_path": ["b.png", "missing.png"]}).to_csv(
        tmp_path / "p.csv", index=False
    )
    pairs = pairs_from_csv(tmp_path / "p.csv")
    assert "leaves the data root" in pairs[0].error and "missing file" in pairs[1].error  # listed up front


def test_score_writes_a_row_per_pair_with_groups(annotated, tmp_path):
    pairs = pairs_from_csv(annotated / "HA2.csv")
    from anonlens.assess import ScoreOptions

    from anonlens.metrics import create_metric

    metrics = [create_metric("mse"), create_metric("ssim"), create_metric("fid", feature=tiny_features())]
    result = score_pairs(pairs, tmp_path, ScoreOptions(batch_size=5), metrics=metrics)
    df = pd.read_csv(result.table_csv)
    assert len(df) == 12 and set(df["method"]) == {"blurpix", "mask"} and "score_mean" in df.columns
    assert (df["ssim"] < 1).all() and (df["mse"] > 0).all()
    assert set(result.groups["fid"]) >= {"all", "method=mask", "dataset=lfw"}
    assert result.groups["fid"]["all"]["n"] == 12
    lines = (tmp_path / "scores.jsonl").read_text().splitlines()
    assert len(lines) == 12 and json.loads(lines[0])["key"]
    assert json.loads((tmp_path / "summary.json").read_text())["summary"]["scored"] == 12


def test_correlation_numbers_equal_scipy(annotated, tmp_path):
    pairs = pairs_from_csv(annotated / "HA2.csv")
    result = score_pairs(pairs, tmp_path)
    df = pd.read_csv(result.table_csv)
    table = correlate(df, CorrelationOptions(bootstrap=200, by=("method",)))
    row = table[(table.group_by == "all") & (table.metric == "ssim")].iloc[0]
    assert row.spearman == pytest.approx(stats.spearmanr(df.ssim, df.score_mean).statistic)
    assert row.kendall == pytest.approx(stats.kendalltau(df.ssim, df.score_mean, variant="b").statistic)
    assert row.pearson == pytest.approx(stats.pearsonr(df.ssim, df.score_mean).statistic)
    assert row.spearman_ci_low <= row.spearman <= row.spearman_ci_high
    # stronger blur is more anonymous and lowers SSIM: the declared direction turns rho < 0 into agreement > 0
    blur = table[(table.group == "blurpix") & (table.metric == "ssim")].iloc[0]
    assert blur.spearman < -0.9 and blur.agreement > 0.9


def test_set_level_rates():
    assert reid_rate([True, False, None, True]) == pytest.approx(2 / 3)
    g = [np.array([0.0, 0]), np.array([1.0, 0]), np.array([0, 1.0])]
    assert rank1_rate(g, [np.array([0.1, 0]), np.array([0.1, 0]), None]) == pytest.approx(1 / 3)
    tau, f1 = calibrate_threshold([0.2, 0.3, 0.5, 0.7, 0.9], [True, True, True, False, False])
    assert tau == 0.5 and f1 == 1.0


def test_report_lists_the_most_at_risk_first():
    from anonlens.assess.report import risk_order

    df = pd.DataFrame({
        "reidentified": [False, True, False, None],
        "identity_distance_at_position": [0.9, 0.5, 0.7, None],
        "residual_face_score": [0.1, 0.2, 0.9, 0.0],
    })
    assert risk_order(df) == [1, 2, 0, 3]
    # the files the release gate does not pass come first, whatever their scores
    df["anonymized"] = ["a.png", "b.png", "c.png", "d.png"]
    assert risk_order(df, failing={"d.png", "a.png"}) == [0, 3, 1, 2]
