"""Training HA1/HA2 on a small annotated set made in the test: anonymized at known strengths,
scores that follow the strength."""

import json

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from anonlens.cli.main import app
from anonlens.learn.checkpoint import load_checkpoint
from anonlens.learn.scoring import to_human_scale
from anonlens.learn.train import TrainOptions, evaluate, train

runner = CliRunner()


@pytest.fixture(scope="module")
def blur_set(tmp_path_factory):
    from skimage import data

    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    rows = []
    for i in range(80):
        base = np.roll(cv2.resize(sources[i % 4], (96, 96), interpolation=cv2.INTER_AREA), int(rng.integers(0, 96)), axis=1)
        k = int(rng.integers(0, 6))
        anon = cv2.GaussianBlur(base, (0, 0), 0.3 + 1.2 * k) if k else base
        Image.fromarray(base).save(root / f"o{i}.png")
        Image.fromarray(anon).save(root / f"a{i}.png")
        rows.append({"original": f"o{i}.png", "anonymized": f"a{i}.png", "score_mean": float(np.clip(1 + 1.6 * k + rng.normal(0, 0.4), 1, 10))})
    df = pd.DataFrame(rows)
    return root, df.iloc[:50], df.iloc[50:65], df.iloc[65:]


@pytest.mark.parametrize("ha,task,labels", [("HA1", "regression", "mean"), ("HA2", "classification", "labels5")])
@pytest.mark.slow
def test_training_lowers_the_loss_and_ranks_held_out_rows(blur_set, tmp_path, ha, task, labels):
    root, tr, va, te = blur_set
    options = TrainOptions(ha=ha, backbone="resnet18", labels=labels, task=task, epochs=12, batch_size=16,
                           input_size=64, pretrained=False)
    result = train(tr, va, root, tmp_path, options)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0]
    model, config = load_checkpoint(result.best_checkpoint)
    assert config.ha == ha and config.labels == labels
    ev = evaluate(model, config, te, root)
    assert ev["vs_human_mean"]["spearman"] > 0.3, ev
    log = pd.read_csv(tmp_path / "metrics.csv")
    assert list(log["epoch"]) == list(range(12)) and {"val_loss", "val_spearman", "images_per_second"} <= set(log.columns)


@pytest.mark.slow
def test_resume_continues_where_training_stopped(blur_set, tmp_path):
    root, tr, va, _ = blur_set
    base = dict(ha="HA1", backbone="mobilenet_v2", epochs=4, batch_size=16, input_size=64, pretrained=False)
    train(tr, va, root, tmp_path, TrainOptions(**{**base, "epochs": 4}))
    first = json.loads((tmp_path / "history.json").read_text())
    resumed = train(tr, va, root, tmp_path, TrainOptions(**{**base, "epochs": 6}), resume=True)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3, 4, 5]
    assert resumed.history[:4] == first
    import torch

    state = torch.load(tmp_path / "last_state.pt", weights_only=True)
    assert state["epoch"] == 5 and "scaler" in state  # the mixed-precision loss scale is resumed too (empty on a CPU)


@pytest.mark.slow
def test_frozen_backbone_trains_only_the_head(blur_set, tmp_path):
    root, tr, va, _ = blur_set
    options = TrainOptions(ha="HA2", backbone="resnet18", epochs=30, batch_size=16, input_size=64, pretrained=False,
                           freeze_backbone=True, optimizer="adam", lr=1e-3)
    result = train(tr, va, root, tmp_path, options)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    import torch

    from anonlens.learn.models import ModelConfig, create_model

    torch.manual_seed(42)
    untouched = create_model(ModelConfig(ha="HA2", backbone="resnet18", input_size=64), pretrained=False)
    trained, _ = load_checkpoint(result.best_checkpoint)
    assert all(torch.equal(a, b) for a, b in zip(untouched.backbone.state_dict().values(), trained.backbone.state_dict().values()))


def test_classification_scores_are_expected_values_on_the_human_scale():
    import torch

    logits = torch.tensor([[10.0, 0, 0, 0, 0], [0, 0, 0, 0, 10.0], [0.0, 0, 0, 0, 0]])
    scores = to_human_scale(logits, "labels5", "classification")
    assert scores[0] == pytest.approx(2.0, abs=1e-3) and scores[1] == pytest.approx(9.5, abs=1e-3)
    assert scores[2] == pytest.approx(np.mean([2, 4, 6, 8, 9.5]))  # uncertain: in between, not an argmax
    assert to_human_scale(torch.tensor([[0.0], [1.0]]), "mean", "regression").tolist() == [1.0, 10.0]


def test_train_and_evaluate_cli(blur_set, tmp_path):
    root, tr, va, te = blur_set
    for name, part in (("train", tr), ("val", va), ("test", te)):
        part.to_csv(tmp_path / f"{name}.csv", index=False)
    r = runner.invoke(app, ["train", "--train", str(tmp_path / "train.csv"), "--val", str(tmp_path / "val.csv"), "--root", str(root),
                            "-o", str(tmp_path / "run"), "--backbone", "mobilenet_v2", "--epochs", "2", "--batch-size", "16",
                            "--input-size", "64", "--no-pretrained", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    assert "device: cpu" in r.output and (tmp_path / "run" / "best.safetensors").is_file()
    r = runner.invoke(app, ["evaluate", str(tmp_path / "run" / "best.safetensors"), "--csv", str(tmp_path / "test.csv"),
                            "--root", str(root), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n"] == 15


def test_score_with_a_trained_model_adds_the_learned_column(blur_set, tmp_path):
    root, tr, va, te = blur_set
    train(tr, va, root, tmp_path / "run", TrainOptions(ha="HA2", backbone="mobilenet_v2", epochs=1, batch_size=16,
                                                        input_size=64, pretrained=False))
    te.rename(columns={"original": "img1", "anonymized": "img2"}).to_csv(root / "pairs.csv", index=False)
    r = runner.invoke(app, ["score", "--pairs", str(root / "pairs.csv"), "-o", str(tmp_path / "s"), "--metrics", "ssim",
                            "--model", str(tmp_path / "run" / "best.safetensors"), "-q", "--json"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "s" / "scores.csv")
    assert df["learned_score"].between(1, 10).all() and len(df) == 15


@pytest.mark.slow
def test_benchmark_table_per_split(blur_set, tmp_path):
    """The paper-style table: rho/tau per split for the classic metrics, FID per group, a learned
    model; a metric whose weights are missing is reported, not dropped silently."""
    import torch

    from anonlens.assess.benchmark import BenchmarkOptions, run_benchmark

    root, tr, va, te = blur_set
    rows = pd.concat([va, te]).copy()
    rows["dataset"] = ["lfw" if i % 2 else "coco" for i in range(len(rows))]
    rows["method"] = [f"blur{int(s // 3)}" for s in rows["score_mean"]]
    for split, part in (("all", rows), ("task-face", rows.iloc[: len(rows) // 2 + 4])):
        d = root / "dataset_splits" / "HA1" / split
        d.mkdir(parents=True, exist_ok=True)
        part.to_csv(d / "test.csv", index=False)
    train(tr, va, root, tmp_path / "run", TrainOptions(ha="HA1", backbone="mobilenet_v2", epochs=1, batch_size=16,
                                                        input_size=64, pretrained=False))
    torch.manual_seed(0)
    feature = torch.nn.Sequential(torch.nn.AvgPool2d(16), torch.nn.Flatten())  # (B,3,299,299) -> (B, 972)
    opts = BenchmarkOptions(metrics=("psnr", "mse", "ssim", "lpips"), models=(str(tmp_path / "run" / "best.safetensors"),))
    res = run_benchmark(root, tmp_path / "bench", opts, fid_feature=feature)
    table = pd.DataFrame(res.rows)
    assert set(table["split"]) == {"all", "task-face"}
    get = lambda split, metric: table[(table.split == split) & (table.metric == metric)].iloc[0]  # noqa: E731
    assert get("all", "SSIM")["spearman"] < -0.4 and get("all", "PSNR")["spearman"] < -0.4
    assert get("all", "MSE")["spearman"] > 0.4 and get("all", "MSE")["n"] == 30
    assert get("all", "SSIM")["kendall"] < 0
    assert "groups" in get("all", "FID")["note"] and get("all", "FID")["n"] >= 3
    assert any(r.startswith("learned:") for r in table["metric"])
    assert any(n.startswith("lpips: not computed") for n in res.notes)
    md = res.files["md"].read_text()
    assert "| SSIM |" in md and "all ρ" in md
    assert res.files["png"].read_bytes()[:4] == b"\x89PNG"
    r = runner.invoke(app, ["benchmark", str(root), "-o", str(tmp_path / "b2"), "--metrics", "ssim", "--no-fid", "--split", "all", "-q", "--json"])
    assert r.exit_code == 0, r.output
    assert [row["metric"] for row in json.loads(r.stdout)["rows"]] == ["SSIM"]
    r = runner.invoke(app, ["benchmark", str(root), "--split", "nope", "-o", str(tmp_path / "b3")])
    assert r.exit_code == 2 and "not found" in r.output


def test_tensorboard_logging_or_a_clear_error(blur_set, tmp_path, monkeypatch):
    import builtins
    import importlib.util

    from anonlens.errors import AnonlensError

    root, tr, va, te = blur_set
    options = TrainOptions(ha="HA1", backbone="mobilenet_v2", epochs=2, batch_size=16, input_size=64, pretrained=False,
                           freeze_backbone=True, tensorboard=True)
    if importlib.util.find_spec("tensorboard") is not None:
        train(tr, va, root, tmp_path / "tb", options)
        events = list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 0
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name == "tensorboard":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(AnonlensError, match=r"anonlens\[tensorboard\]"):
        train(tr, va, root, tmp_path / "tb2", options)
