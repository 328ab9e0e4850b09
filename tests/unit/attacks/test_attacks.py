"""Reconstruction attacks (#16): DLG, Inverting Gradients, defences, the SemSim layout, resume.

Victims are untrained and seeded; the images are 32x32 crops of real photos (scikit-image)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from anonlens.attacks.defences import parse_defence  # noqa: E402
from anonlens.attacks.inversion import ATTACKS, InvertingGradients, create_attack, invert  # noqa: E402
from anonlens.attacks.objectives import client_gradient, gradient_distance, idlg_labels, total_variation  # noqa: E402
from anonlens.attacks.victims import load_victim  # noqa: E402
from anonlens.errors import AnonlensError  # noqa: E402


def crop32(photo, box):
    import cv2

    y0, y1, x0, x1 = box
    return cv2.resize(photo[y0:y1, x0:x1], (32, 32), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def face32():
    from skimage import data

    return crop32(data.astronaut(), (30, 230, 150, 350))  # the astronaut's face


@pytest.fixture(scope="module")
def cat32():
    from skimage import data

    return crop32(data.chelsea(), (0, 300, 50, 350))


def as_input(victim, rgb):
    x01 = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255
    return x01, victim.normalize(x01)


def psnr(a, b):
    return float(10 * torch.log10(1 / ((a.clamp(0, 1) - b) ** 2).mean()))


def reconstruct(victim, x, y, attack, *, defence="none", seed=0, **overrides):
    gradient = parse_defence(defence)(client_gradient(victim.model, x, y), torch.Generator().manual_seed(seed))
    a = create_attack(attack, **overrides)
    res = invert(victim.model, gradient, y if a.config.labels == "known" else None, tuple(x.shape), a.config,
                 mean=victim.mean, std=victim.std, seed=seed)
    return res, victim.denormalize(res.images)


@pytest.fixture(scope="module")
def dlg_result(face32):
    """DLG as published (L-BFGS lr 1, 300 iterations) on DLG's LeNet, label recovered by iDLG."""
    victim = load_victim("lenet-zhu", num_classes=10, seed=0)
    x01, x = as_input(victim, face32)
    res, rec = reconstruct(victim, x, torch.tensor([3]), "dlg", preset="dlg")
    return victim, x01, x, res, rec


def test_dlg_recovers_a_single_image_nearly_exactly(dlg_result):
    victim, x01, x, res, rec = dlg_result
    assert res.label_strategy == "idlg" and res.labels.tolist() == [3]  # iDLG found the true class
    assert psnr(rec, x01) > 30.0
    assert res.gradient_loss < 1e-3 and res.iterations == 300


def test_inverting_gradients_beats_its_random_start(face32):
    victim = load_victim("lenet-zhu", num_classes=10, seed=0)
    x01, x = as_input(victim, face32)
    res, rec = reconstruct(victim, x, torch.tensor([3]), "inverting-gradients", iterations=400)
    start = victim.denormalize(torch.randn((1, 1, 3, 32, 32), generator=torch.Generator().manual_seed(0))[0])
    assert psnr(rec, x01) > psnr(start, x01) + 2.5  # a few hundred iterations: clearly past the start
    # and the reconstruction is closer to this image than to another photo
    other = torch.from_numpy(crop32(__import__("skimage.data", fromlist=["x"]).chelsea(), (0, 300, 50, 350))).permute(2, 0, 1)[None].float() / 255
    assert psnr(rec, x01) > psnr(rec, other) + 1.0


def test_defences_lower_what_leaks(face32):
    victim = load_victim("lenet-zhu", num_classes=10, seed=0)
    x01, x = as_input(victim, face32)
    y = torch.tensor([3])
    plain = psnr(reconstruct(victim, x, y, "inverting-gradients", iterations=300)[1], x01)
    pruned = psnr(reconstruct(victim, x, y, "inverting-gradients", iterations=300, defence="prune:0.99")[1], x01)
    noisy = psnr(reconstruct(victim, x, y, "inverting-gradients", iterations=300, defence="gaussian-noise:0.1")[1], x01)
    assert pruned < plain - 1.0 and noisy < plain - 1.0


def test_defences_change_the_gradient_as_named():
    g = [torch.arange(1.0, 101.0).reshape(10, 10), torch.tensor([-5.0, 0.1, 3.0, -0.2])]
    pruned = parse_defence("prune:0.5")(g, torch.Generator().manual_seed(0))
    assert int((pruned[0] == 0).sum()) == 50 and pruned[0][-1, -1] == 100
    assert pruned[1].tolist() == [-5.0, 0.0, 3.0, 0.0]
    noisy = parse_defence("gaussian-noise:0.5")(g, torch.Generator().manual_seed(0))
    assert 0.3 < float((noisy[0] - g[0]).std()) < 0.7
    assert parse_defence(None).label == "none" and parse_defence("prune:0.9").label == "prune-0.9"
    for bad in ("prune:1.5", "gaussian-noise:-1", "prune:x", "noise:0.1"):
        with pytest.raises(AnonlensError):
            parse_defence(bad)


def test_objectives_equal_hand_computed_values():
    t = [torch.tensor([[1.0, 2.0], [0.0, -1.0]]), torch.tensor([3.0])]
    g = [torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([1.0])]
    assert float(gradient_distance(t, g, "euclidean")) == pytest.approx(0 + 4 + 1 + 4 + 4)
    assert float(gradient_distance(t, g, "l1")) == pytest.approx(0 + 2 + 1 + 2 + 2)
    dot, nt, ng = 1 + 0 + 0 - 1 + 3, (1 + 4 + 0 + 1 + 9) ** 0.5, (1 + 0 + 1 + 1 + 1) ** 0.5
    assert float(gradient_distance(t, g, "cosine")) == pytest.approx(1 - dot / (nt * ng))
    # ATSPrivacy's out_sim: 1 - cosine per output row (and per vector), averaged
    rows = [1 - 1 / (5**0.5 * 1), 1 - (-1) / (1 * 2**0.5), 1 - 1.0]
    assert float(gradient_distance(t, g, "cosine-rows")) == pytest.approx(sum(rows) / 3)
    x = torch.tensor([[[[0.0, 1.0], [3.0, 3.0]]]])
    assert float(total_variation(x)) == pytest.approx((1 + 0) / 2 + (3 + 2) / 2)


def test_objective_equals_breaching_for_the_same_model_gradient_and_candidate(face32, cat32):
    """The attack objective against `breaching` 0.1.2's (the peer): cosine equals its
    CosineSimilarity; DLG's squared distance is twice its Euclidean (breaching halves it)."""
    from breaching.attacks.auxiliaries.objectives import CosineSimilarity, Euclidean

    victim = load_victim("resnet20-4", num_classes=10, seed=1)
    _, x = as_input(victim, face32)
    _, cand = as_input(victim, cat32)
    y = torch.tensor([4])
    shared = client_gradient(victim.model, x, y)
    ours_grad = [g for g in client_gradient(victim.model, cand, y)]
    for cls, cost, factor in ((CosineSimilarity, "cosine", 1.0), (Euclidean, "euclidean", 2.0)):
        peer = cls()
        peer.initialize(torch.nn.CrossEntropyLoss(), SimpleNamespace(mixed_precision=False))
        theirs, _ = peer(victim.model, shared, cand.clone().requires_grad_(True), y)
        ours = gradient_distance(ours_grad, shared, cost)
        assert float(ours.detach()) == pytest.approx(factor * float(theirs.detach()), rel=1e-5)
        assert float(ours) > 0


def test_idlg_finds_the_label_of_a_single_image_only(face32, cat32):
    victim = load_victim("resnet20-4", num_classes=10, seed=2)
    _, x = as_input(victim, face32)
    for label in (0, 7):
        assert idlg_labels(victim.model, client_gradient(victim.model, x, torch.tensor([label]))).tolist() == [label]
    _, x2 = as_input(victim, cat32)
    batch = torch.cat([x, x2])
    res = invert(victim.model, client_gradient(victim.model, batch, torch.tensor([1, 2])), None, tuple(batch.shape),
                 create_attack("dlg", iterations=1).config, mean=victim.mean, std=victim.std)
    assert res.label_strategy == "joint" and res.labels.shape == (2,)  # no iDLG for a batch


def test_presets_are_semsims_configurations():
    c = InvertingGradients(preset="inversed").config
    assert (c.cost, c.optimizer, c.lr, c.iterations, c.tv, c.restarts, c.signed, c.boxed, c.init, c.lr_decay) == (
        "cosine", "adam", 0.1, 4800, 1e-4, 1, True, True, "randn", True)
    assert InvertingGradients(preset="inversed-zero").config.init == "zeros"
    assert InvertingGradients(preset="inversed-LBFGS-sim").config.restarts == 16
    zhu = create_attack("dlg", preset="zhu").config
    assert (zhu.optimizer, zhu.lr, zhu.iterations, zhu.restarts, zhu.tv, zhu.signed, zhu.boxed) == ("lbfgs", 1e-4, 50, 2, 1e-3, False, False)
    assert create_attack("inverting-gradients", iterations=10, tv=0.01).config.iterations == 10
    assert ATTACKS.names() == ["dlg", "inverting-gradients"]
    with pytest.raises(AnonlensError, match="Did you mean 'inversed'"):
        create_attack("inverting-gradients", preset="inversd")
    with pytest.raises(AnonlensError, match="no setting 'iteration'"):
        create_attack("dlg", iteration=3)
    with pytest.raises(AnonlensError, match="cost 'cos'"):
        create_attack("dlg", cost="cos")
    with pytest.raises(AnonlensError, match="'lr' must be a number"):
        create_attack("dlg", lr="abc")
    with pytest.raises(AnonlensError, match="'iterations' must be a whole number"):
        create_attack("dlg", iterations=2.5)
    c = create_attack("dlg", signed="true", tv="0.01", restarts="2").config  # as text from the command line
    assert (c.signed, c.tv, c.restarts) == (True, 0.01, 2)


def test_restarts_keep_the_best_and_l2_costs_run(face32):
    """ATSPrivacy's inversed-adam-L2 divides by zero and exits; here it runs, and of several
    restarts the one with the lowest gradient distance is returned."""
    victim = load_victim("lenet-zhu", num_classes=10, seed=0)
    _, x = as_input(victim, face32)
    res, _ = reconstruct(victim, x, torch.tensor([3]), "inverting-gradients", preset="inversed-adam-L2", iterations=20, restarts=3)
    assert len(res.restart_scores) == 3 and all(np.isfinite(res.restart_scores))
    assert res.gradient_loss == min(res.restart_scores) and res.iterations == 60


@pytest.mark.parametrize("attack,iterations,stop_at", [("inverting-gradients", 30, 17), ("dlg", 6, 4)])
def test_an_interrupted_attack_resumes_to_the_same_result(tmp_path, face32, attack, iterations, stop_at):
    victim = load_victim("lenet-zhu", num_classes=10, seed=0)
    _, x = as_input(victim, face32)
    y = torch.tensor([3])
    g = client_gradient(victim.model, x, y)
    cfg = create_attack(attack, iterations=iterations, restarts=2, labels="known").config
    whole = invert(victim.model, g, y, tuple(x.shape), cfg, mean=victim.mean, std=victim.std, seed=5)
    state = tmp_path / "state.pt"

    def stop(trial, iteration, value):
        if trial == 1 and iteration == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        invert(victim.model, g, y, tuple(x.shape), cfg, mean=victim.mean, std=victim.std, seed=5, state_path=state,
               checkpoint_every=5, progress=stop)
    assert state.is_file()
    resumed = invert(victim.model, g, y, tuple(x.shape), cfg, mean=victim.mean, std=victim.std, seed=5, state_path=state)
    assert resumed.resumed_from == iterations + stop_at
    assert torch.equal(resumed.images, whole.images) and resumed.restart_scores == whole.restart_scores
    assert not state.exists()  # removed when finished
    # a saved state of another attack is refused, not silently used
    with pytest.raises(KeyboardInterrupt):
        invert(victim.model, g, y, tuple(x.shape), cfg, mean=victim.mean, std=victim.std, seed=5, state_path=state, progress=stop)
    with pytest.raises(AnonlensError, match="different attack"):
        invert(victim.model, g, y, tuple(x.shape), cfg, mean=victim.mean, std=victim.std, seed=6, state_path=state)


def test_victims_load_from_checkpoints_builtins_and_torchvision(tmp_path, face32, cat32):
    from PIL import Image
    from safetensors.torch import save_file

    for cls, img in (("astronaut", face32), ("cat", cat32)):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.roll(img, 2 * k, axis=1)).save(tmp_path / "data" / cls / f"{k}.png")
    from typer.testing import CliRunner

    from anonlens.cli.main import app

    res = CliRunner().invoke(app, ["attack", "train-victim", str(tmp_path / "data"), "-o", str(tmp_path / "victim"),
                                   "--arch", "lenet-zhu", "--epochs", "2", "--val-fraction", "0", "-q"])
    assert res.exit_code == 0 and "victim:" in res.output, res.output
    v = load_victim(tmp_path / "victim")
    assert v.classes == ["astronaut", "cat"] and v.input_size == 32 and v.named
    assert v.mean[0] == pytest.approx(0.4914672374725342)  # CIFAR normalisation for the 32x32 victims
    assert v.label_index("cat") == 1
    with pytest.raises(AnonlensError, match="not a class"):
        v.label_index("dog")

    net = load_victim("cifar-resnet18", num_classes=4, seed=0)
    assert net.model(torch.zeros(1, 3, 32, 32)).shape == (1, 4) and not net.named
    assert net.name_classes(["b", "a", "b"]) == {"a": 0, "b": 1} and net.classes[:3] == ["a", "b", "2"]

    import torchvision

    tv = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=3)
    save_file(tv.state_dict(), tmp_path / "mnv3.safetensors")
    v = load_victim("torchvision:mobilenet_v3_small", weights=tmp_path / "mnv3.safetensors", input_size=64)
    assert len(v.classes) == 3 and v.model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
    with pytest.raises(AnonlensError, match="does not fit"):
        load_victim("resnet20-4", weights=tmp_path / "mnv3.safetensors")
    with pytest.raises(AnonlensError, match="Did you mean 'resnet20-4'"):
        load_victim("resnet20_4")
    with pytest.raises(AnonlensError, match="give its weights"):
        load_victim("torchvision:resnet18")


def test_attack_cli_writes_the_semsim_layout_and_records(tmp_path, face32, cat32):
    from PIL import Image
    from typer.testing import CliRunner

    from anonlens.cli.main import app
    from anonlens.learn.semsim import load_semsim_folders, semsim_table

    data = tmp_path / "data"
    for cls, img in (("person", face32), ("cat", cat32)):
        (data / cls).mkdir(parents=True)
        Image.fromarray(img).save(data / cls / f"{cls}.png")
    (data / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "leak"
    args = ["attack", "run", str(data), "-o", str(out), "--victim", "lenet-zhu", "--iterations", "15",
            "--defence", "prune:0.5", "--metrics", "psnr,ssim,identity", "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output  # the broken image is an error; the others were attacked
    assert "broken.png" in res.output
    cfg = "inverting-gradients-inversed+iterations-15+prune-0.5"
    for ident in ("cat-cat", "person-person"):
        assert (out / ident / "original.png").is_file() and (out / ident / f"{cfg}_s0.png").is_file()
        assert Image.open(out / ident / f"{cfg}_s0.png").size == (32, 32)
    records = [json.loads(line) for line in (out / "attack.jsonl").read_text().splitlines()]
    assert {r["id"] for r in records} == {"cat-cat", "person-person"}
    r = records[0]
    for key in ("attack", "preset", "seed", "iterations", "gradient_loss", "seconds", "psnr", "ssim", "identity_distance", "defence_level"):
        assert key in r
    assert r["iterations"] == 15 and r["defence"] == "prune" and r["defence_level"] == 0.5 and 0 < r["psnr"] < 60
    summary = json.loads((out / "attack.json").read_text())
    assert summary["class_names"] == {"cat": 0, "person": 1} and summary["reconstructed"] == 2
    table = semsim_table(load_semsim_folders(out))  # what `anonlens semsim evaluate` reads
    assert set(table["config"]) == {cfg} and len(table) == 2
    assert "psnr" in CliRunner().invoke(app, ["score", "--pairs", str(out / "pairs.csv"), "-o", str(tmp_path / "s"),
                                              "--metrics", "psnr", "-q"]).output
    # the same set again is refused; --resume keeps what is done
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = CliRunner().invoke(app, args + ["--resume"])
    assert "0 reconstruction(s)" in resumed.output and "2 already done" in resumed.output
    assert len((out / "attack.jsonl").read_text().splitlines()) == 2


def test_attack_cli_explains_mistakes(tmp_path, face32):
    from PIL import Image
    from typer.testing import CliRunner

    from anonlens.cli.main import app

    Image.fromarray(face32).save(tmp_path / "face.png")
    runner = CliRunner()
    res = runner.invoke(app, ["attack", "run", str(tmp_path / "face.png"), "-o", str(tmp_path / "o"), "--victim", "lenet-zhu"])
    assert res.exit_code == 2 and "no class" in res.output
    res = runner.invoke(app, ["attack", "run", str(tmp_path / "face.png"), "-o", str(tmp_path / "o"), "--label", "3",
                              "--attack", "dgl"])
    assert res.exit_code == 2 and "Did you mean 'dlg'" in res.output
    res = runner.invoke(app, ["attack", "run", str(tmp_path / "face.png"), "-o", str(tmp_path / "o"), "--label", "3", "--amp"])
    assert res.exit_code == 2 and "CUDA" in res.output
    res = runner.invoke(app, ["attack", "presets", "--json"])
    assert res.exit_code == 0 and any(p["preset"] == "zhu" for p in json.loads(res.output)["presets"])
