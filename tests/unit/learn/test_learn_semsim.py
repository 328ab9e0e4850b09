"""SemSim: folder layout, triplets, training, checkpoints, set- and image-level correlation."""

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from anonlens.cli.main import app
from anonlens.errors import AnonlensError
from anonlens.learn.semsim import (
    SemSimConfig,
    SemSimModel,
    SemSimTrainOptions,
    _triplets,
    cifar_resnet18,
    image_level_correlation,
    load_semsim,
    load_semsim_folders,
    save_semsim,
    semsim_distances,
    semsim_table,
    set_level_correlation,
    train_semsim,
)

runner = CliRunner()


def make_semsim_data(root, n_ids=6, seed=0):
    """Ids with a smooth random pattern; reconstructions at 5 noise levels ('cfg<level>'), recognised
    less often the noisier they are (as people would)."""
    rng = np.random.default_rng(seed)
    for k in range(n_ids):
        base = cv2.resize(rng.integers(0, 256, (6, 6, 3)).astype(np.uint8), (32, 32), interpolation=cv2.INTER_CUBIC)
        (root / f"{k}").mkdir(parents=True)
        (root / f"-{k}").mkdir(parents=True)
        Image.fromarray(base).save(root / f"{k}" / "original.png")
        for level in range(5):
            for j in range(2):
                noisy = np.clip(base + rng.normal(0, 12 + 30 * level, base.shape), 0, 255).astype(np.uint8)
                folder = f"{k}" if level < 2 or (level < 4 and j == 0) else f"-{k}"
                Image.fromarray(noisy).save(root / folder / f"cfg{level}_{j}.png")
    (root / "others").mkdir()
    for j in range(4):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)).save(root / "others" / f"o{j}.png")
    return root


def test_cifar_resnet18_is_the_reference_architecture():
    net = cifar_resnet18()
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity) and isinstance(net.fc, torch.nn.Identity)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    assert sum(p.numel() for p in net.parameters()) == 11_168_832  # ResNet-18 minus fc, 3x3 stem


def test_folder_layout_and_triplets(tmp_path):
    data = load_semsim_folders(make_semsim_data(tmp_path / "d"))
    assert set(data.originals) == {str(k) for k in range(6)}
    assert all("original" not in p.name for files in data.folders.values() for p in files)
    paths = sorted({p for fs in data.folders.values() for p in fs} | set(data.originals.values()) | set(data.others))
    index = {p: i for i, p in enumerate(paths)}
    folder_of = {index[p]: name for name, fs in data.folders.items() for p in fs}
    folder_of.update({index[p]: k for k, p in data.originals.items()})
    trip = _triplets(data, index, np.random.default_rng(0))
    assert len(trip) > 0
    for a, p, n in trip:
        assert a != p and folder_of[a] == folder_of[p]
        fa = folder_of[a]
        opposite = fa[1:] if fa.startswith("-") else f"-{fa}"
        assert folder_of.get(n, "others") in (opposite, "others")
    (tmp_path / "d" / "0" / "original.png").unlink()
    with pytest.raises(AnonlensError, match="no original"):
        load_semsim_folders(tmp_path / "d")


@pytest.mark.slow
def test_training_lowers_the_loss_and_scores_follow_people(tmp_path):
    root = make_semsim_data(tmp_path / "d")
    weights, hist = train_semsim(root, tmp_path / "m", SemSimTrainOptions(epochs=8, width=16, lr=0.05))
    assert min(h["triplet_loss"] for h in hist[-3:]) < hist[0]["triplet_loss"]
    model = load_semsim(weights)
    data = load_semsim_folders(root)
    table = semsim_table(data)
    assert set(table["config"]) == {f"cfg{k}" for k in range(5)}
    from anonlens.io import read_image

    table["semsim"] = semsim_distances(model, [read_image(p).rgb for p in table["original"]], [read_image(p).rgb for p in table["reconstruction"]])
    assert table.loc[table.recognised == 0, "semsim"].mean() > table.loc[table.recognised == 1, "semsim"].mean()
    s = set_level_correlation(table)
    assert s["n"] == 5 and s["spearman"] > 0.5
    # the human side, as the reference: 1 - recognised / total per configuration
    per = {r["config"]: r["human"] for r in s["per_config"]}
    assert per["cfg0"] == 0.0 and per["cfg4"] == 1.0 and per["cfg2"] == 0.5
    assert image_level_correlation(table)["spearman"] > 0


def test_checkpoint_round_trip_normalisation_and_pickle_refused(tmp_path):
    torch.manual_seed(0)
    model = SemSimModel(SemSimConfig(width=8)).eval()
    w = save_semsim(model, tmp_path / "s")
    loaded = load_semsim(w)
    a = np.random.default_rng(0).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    b = np.random.default_rng(1).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    d1 = semsim_distances(model, [a], [b])
    assert np.allclose(d1, semsim_distances(loaded, [a], [b]))
    dn = semsim_distances(model, [a], [b], normalize=True)
    assert 0 <= dn[0] <= 2 and not np.isclose(dn[0], d1[0])
    assert semsim_distances(model, [a], [a])[0] == 0
    torch.save(model.state_dict(), tmp_path / "s.pth")
    with pytest.raises(AnonlensError, match="pickle"):
        load_semsim(tmp_path / "s.pth")


def test_semsim_cli_train_evaluate_and_score(tmp_path):
    root = make_semsim_data(tmp_path / "d")
    r = runner.invoke(app, ["semsim", "train", str(root), "-o", str(tmp_path / "m"), "--epochs", "2", "--width", "8", "-q"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.metrics.csv").read_text().startswith("epoch,triplet_loss")
    r = runner.invoke(app, ["semsim", "evaluate", str(tmp_path / "m"), str(root), "--json", "-o", str(tmp_path / "t.csv")])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["set_level"]["n"] == 5 and doc["image_level"]["n"] == 60 and doc["normalized"] is False
    (tmp_path / "a").mkdir()
    (tmp_path / "o").mkdir()
    Image.open(root / "0" / "original.png").save(tmp_path / "o" / "x.png")
    Image.open(root / "0" / "cfg0_0.png").save(tmp_path / "a" / "x.png")
    r = runner.invoke(app, ["score", "-a", str(tmp_path / "a"), "--original", str(tmp_path / "o"), "-o", str(tmp_path / "sc"),
                            "--metrics", "mse", "--semsim", str(tmp_path / "m"), "-q"])
    assert r.exit_code == 0, r.output
    header, row = (tmp_path / "sc" / "scores.csv").read_text().splitlines()[:2]
    assert "semsim" in header.split(",")
    assert float(row.split(",")[header.split(",").index("semsim")]) > 0


def test_cli_default_original_pattern_is_the_library_default():
    import inspect

    from anonlens.cli.learn import semsim_evaluate_cmd, semsim_train_cmd
    from anonlens.learn.semsim import ORIGINAL_PATTERN

    for command in (semsim_train_cmd, semsim_evaluate_cmd):
        assert inspect.signature(command).parameters["original_pattern"].default.default == ORIGINAL_PATTERN
