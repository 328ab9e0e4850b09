"""PerceptAnon annotations, reference splits and label granularities."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from typer.testing import CliRunner

from anonlens.cli.main import app
from anonlens.errors import AnonlensError
from anonlens.learn.labels import label_transform, num_outputs
from anonlens.learn.splits import _merge_small_strata, available_splits, make_split, strata

runner = CliRunner()


def annotations(n=240, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "original": [f"orig/{i}.jpg" for i in range(n)],
        "anonymized": [f"anon/{i}.jpg" for i in range(n)],
        "dataset": rng.choice(["coco", "voc", "lfw", "celeba"], n),
        "method": rng.choice(["mask", "blurpix", "inpaint"], n),
        "score_mean": rng.uniform(1, 10, n).round(2),
    })


def test_strata_follow_the_reference_binning():
    s = pd.Series([1.0, 4.4, 4.5, 5.5, 6.5, 9.49, 10.0])
    # pandas rounds halves to even: 4.5 -> 4 (stratum 0), 5.5 -> 6 (2), 6.5 -> 6 (2)
    assert strata(s).tolist() == [0, 0, 0, 2, 2, 5, 6]


def test_all_split_equals_the_hand_computed_reference_rows():
    df = annotations()
    train, val, test = make_split(df, "all")
    s = strata(df["score_mean"])
    rest, exp_test = train_test_split(df, test_size=0.2, stratify=s, random_state=42)
    exp_train, exp_val = train_test_split(rest, test_size=0.2 / (0.6 + 0.2), stratify=s[rest.index], random_state=42)
    assert list(test.index) == list(exp_test.index)
    assert list(val.index) == list(exp_val.index) and list(train.index) == list(exp_train.index)


def test_splits_are_deterministic_disjoint_complete_and_stratified():
    df = annotations()
    for split in available_splits(df):
        a = make_split(df, split)
        b = make_split(df, split)
        assert all(x.index.equals(y.index) for x, y in zip(a, b)), split
        train, val, test = a
        idx = [set(p.index) for p in a]
        assert not (idx[0] & idx[1] or idx[0] & idx[2] or idx[1] & idx[2]), split
    train, val, test = make_split(df, "all")
    assert len(train) + len(val) + len(test) == len(df) and (len(train), len(val), len(test)) == (144, 48, 48)
    # stratified: each part's stratum shares are close to the whole's
    whole = strata(df["score_mean"]).value_counts(normalize=True)
    for part in (train, test):
        share = strata(part["score_mean"]).value_counts(normalize=True)
        assert (share.reindex(whole.index, fill_value=0) - whole).abs().max() < 0.05
    _, _, test = make_split(df, "loov-lfw")
    assert set(test["dataset"]) == {"lfw"} and len(test) == (df["dataset"] == "lfw").sum()
    train, val, test = make_split(df, "task-face")
    assert set(pd.concat([train, val, test])["dataset"]) <= {"lfw", "celeba"}
    assert len(train) + len(val) + len(test) == df["dataset"].isin(["lfw", "celeba"]).sum()


def test_small_strata_are_merged_up_as_the_reference_does():
    df = pd.DataFrame({"_stratum": [0, 0, 5, 6, 6, 6]})
    assert _merge_small_strata(df)["_stratum"].tolist() == [0, 0, 6, 6, 6, 6]
    df = pd.DataFrame({"_stratum": [0, 0, 5, 6]})  # counts taken once: 5 -> 6, then 6 (count 1) -> 7
    assert _merge_small_strata(df)["_stratum"].tolist() == [0, 0, 7, 7]


def test_a_lone_top_stratum_is_fixed_instead_of_crashing():
    # the reference relabels the single stratum-6 row to a lone stratum 7 and scikit-learn raises
    df = pd.DataFrame({"_stratum": [0, 0, 0, 2, 2, 6]})
    merged = _merge_small_strata(df)["_stratum"].tolist()
    assert merged == [0, 0, 0, 2, 2, 2]
    with pytest.raises(ValueError, match="least populated class"):
        train_test_split(list(range(6)), test_size=0.5, stratify=[0, 0, 0, 2, 2, 7], random_state=42)
    train_test_split(list(range(6)), test_size=0.5, stratify=merged, random_state=42)  # ours splits


def test_unknown_or_empty_splits_are_clear_errors():
    df = annotations(60)
    with pytest.raises(AnonlensError, match="no row has method 'pixelate'"):
        make_split(df, "anon-pixelate")
    with pytest.raises(AnonlensError, match="unknown split"):
        make_split(df, "random")


@pytest.mark.parametrize(
    "score,l10,l5,l3,binary",
    [(1.0, 0, 0, 0, 1), (2.5, 1, 0, 0, 1), (2.99, 2, 0, 0, 1), (3.0, 2, 1, 0, 1), (4.99, 4, 1, 0, 1),
     (5.0, 4, 2, 1, 1), (5.01, 4, 2, 1, 0), (6.5, 5, 2, 1, 0), (7.0, 6, 3, 1, 0), (7.99, 7, 3, 1, 0),
     (8.0, 7, 3, 2, 0), (9.0, 8, 4, 2, 0), (10.0, 9, 4, 2, 0)],
)
def test_label_granularities_at_their_boundaries(score, l10, l5, l3, binary):
    assert label_transform("labels10", "classification")(score) == l10
    assert label_transform("labels5", "classification")(score) == l5
    assert label_transform("labels3", "classification")(score) == l3
    assert label_transform("binary", "classification")(score) == binary
    assert label_transform("labels5", "regression")(score) == pytest.approx(l5 / 4)
    assert label_transform("mean", "regression")(score) == pytest.approx((score - 1) / 9)


def test_label_errors_and_outputs():
    with pytest.raises(AnonlensError, match="regression only"):
        label_transform("mean", "classification")
    assert num_outputs("labels10", "classification") == 10 and num_outputs("labels10", "regression") == 1


def test_splits_cli_writes_reference_layout_with_original_columns(tmp_path):
    df = annotations(240)
    raw = df.rename(columns={"original": "original_image_path", "anonymized": "anonymized_image_path", "dataset": "source_dataset"})
    raw["source_dataset"] = raw["source_dataset"].str.upper()
    for p in list(df["original"]) + list(df["anonymized"]):
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(b"x")
    raw.to_csv(tmp_path / "HA1.csv", index=False)
    r = runner.invoke(app, ["splits", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.output
    counts = json.loads(r.stdout)["HA1"]
    assert counts["all"] == {"train": 144, "val": 48, "test": 48} and "loov-lfw" in counts and "anon-inpaint" in counts
    test = pd.read_csv(tmp_path / "dataset_splits" / "HA1" / "loov-lfw" / "test.csv")
    assert list(test.columns) == list(raw.columns) and set(test["source_dataset"]) == {"LFW"}
    small = raw.iloc[:40]
    small.to_csv(tmp_path / "HA2.csv", index=False)  # too few rows for some splits: the others are written
    r = runner.invoke(app, ["splits", str(tmp_path), "--csv", str(tmp_path / "HA2.csv"), "--json"])
    result = json.loads(r.stdout)["HA2"]
    assert r.exit_code == 1 and "error" in json.dumps(result) and result["all"]["test"] == 8
    (tmp_path / df["anonymized"][3]).unlink()
    r = runner.invoke(app, ["splits", str(tmp_path)])
    assert r.exit_code == 2 and "missing file anon/3.jpg" in r.output


def test_annotation_paths_must_stay_inside_the_data_root(tmp_path):
    pd.DataFrame({"img1": ["../../etc/passwd"], "img2": ["a.jpg"], "score_mean": [5.0]}).to_csv(tmp_path / "HA2.csv", index=False)
    r = runner.invoke(app, ["splits", str(tmp_path)])
    assert r.exit_code == 2 and "leaves the data root" in r.output
