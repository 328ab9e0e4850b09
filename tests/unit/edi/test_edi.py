"""EDI-Anon: selection rule, white-box equality with the reference, black-box loop, pipeline, CLI."""

import json

import numpy as np

import pytest
import torch
from typer.testing import CliRunner

from anonlens.cli.main import app
from anonlens.edi import (
    ClassifierOracle,
    EDIProcess,
    IdentityOracle,
    Measure,
    edi_anonymize,
    edi_set,
    reid_curve,
    select_elements,
)
from anonlens.edi.classifier import IdentityClassifier, IdentityConfig, load_identity_classifier, save_identity_classifier
from anonlens.edi.tradeoff import matched_risk, tradeoff, write_tradeoff
from anonlens.errors import AnonlensError
from anonlens.operators import functional as F
from anonlens.audit import find_manifest

from tests.helpers import ASTRONAUT_FACE

runner = CliRunner()


class DistanceOracle(IdentityOracle):
    """Toy black-box attacker: identified while the region's mean absolute change is below
    ``need`` (grey levels)."""

    name = "toy"

    def __init__(self, need=20.0):
        self.need = need
        self.calls = 0

    def prepare(self, original, region=None, *, label=None):
        return original.astype(np.float64)

    def measure(self, target, images):
        self.calls += len(images)
        return [Measure(self.need - float(np.abs(im - target).mean()), distance=float(np.abs(im - target).mean())) for im in images]


def _identities(n_ids=3, per_id=12, size=32, seed=0):
    """Synthetic identities: a smooth random colour pattern each, seen with noise and shifts."""
    import cv2

    rng = np.random.default_rng(seed)
    out = {}
    for k in range(n_ids):
        base = cv2.resize(rng.integers(0, 256, (4, 4, 3)).astype(np.uint8), (size + 8, size + 8), interpolation=cv2.INTER_CUBIC)
        imgs = []
        for _ in range(per_id):
            dy, dx = rng.integers(0, 8, 2)
            crop = base[dy : dy + size, dx : dx + size].astype(np.float64) + rng.normal(0, 6, (size, size, 3))
            imgs.append(np.clip(crop, 0, 255).astype(np.uint8))
        out[f"person{k}"] = imgs
    return out


def _tiny_classifier(classes=3, size=32, seed=0):
    torch.manual_seed(seed)
    return IdentityClassifier(IdentityConfig(arch="tiny", classes=tuple(f"person{i}" for i in range(classes)), input_size=size)).eval()


def test_select_elements_is_the_percentile_rule():
    rng = np.random.default_rng(1)
    sal = rng.normal(size=(20, 30, 3))
    cand = np.zeros((20, 30), bool)
    cand[5:15, 3:25] = True
    sel = select_elements(sal, cand, 90)
    thr = np.percentile(sal[np.broadcast_to(cand[..., None], sal.shape)], 90)
    assert np.array_equal(sel, (sal >= thr) & cand[..., None])
    assert not sel[~cand].any()
    assert abs(sel.sum() - 0.1 * cand.sum() * 3) <= 1


def test_white_box_step_selects_exactly_what_the_reference_would():
    """The reference: input gradient of CE toward the runner-up class w.r.t. the [0, 1] image (its
    input space), elements >= the q-th percentile of the signed gradient, swapped in from the
    perturbed copy. The normalised space, an option, selects a few per cent differently."""
    model = _tiny_classifier()
    oracle = ClassifierOracle(model=model)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    target = oracle.prepare(image)
    perturb = lambda im: F.pixelate(im, np.ones(im.shape[:2], bool), block=4)  # noqa: E731

    # the reference, written out
    x = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float().div(255.0).requires_grad_(True)
    logits = model(model.normalize(x))
    runner_up = int(logits.detach().argsort(dim=1, descending=True)[0, 1])
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([runner_up]))
    loss.backward()
    grad = x.grad[0].permute(1, 2, 0).numpy()
    ref_mask = grad >= np.percentile(grad, 90)
    expected = np.where(ref_mask, perturb(image), image)

    proc = EDIProcess(image, np.ones((32, 32), bool), oracle=oracle, target=target, perturb=perturb, saliency="gradient", q=90)
    assert proc.identified
    proc.step()
    assert np.array_equal(proc.current, expected)
    assert abs(ref_mask.mean() - 0.10) < 0.01
    normalized = ClassifierOracle(model=model, gradient_space="normalized")
    grad_n, _ = normalized.input_gradient(target, image)
    sel_n = grad_n >= np.percentile(grad_n, 90)
    assert 0 < (sel_n != ref_mask).mean() < 0.1  # the same rule, other elements
    with pytest.raises(AnonlensError, match="gradient_space"):
        ClassifierOracle(model=model, gradient_space="logits")


def test_black_box_loop_stops_when_not_identified_and_touches_only_selected_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 48, 3)).astype(np.uint8)
    cand = np.zeros((48, 48), bool)
    cand[8:40, 8:40] = True
    oracle = DistanceOracle(need=25.0)
    perturb = lambda im: F.pixelate(im, cand, block=8)  # noqa: E731
    proc = EDIProcess(image, cand, oracle=oracle, target=oracle.prepare(image), perturb=perturb, saliency="occlusion", q=90)
    while proc.identified and proc.iterations < 30:
        before = proc.current.copy()
        proc.step()
        moved = (proc.current != before).any(axis=2)
        assert not moved[~cand].any(), "a pixel outside the candidate region changed"
        assert moved.sum() <= 0.25 * cand.sum(), "more than the top share of the region changed in one step"
    assert not proc.identified and proc.history[-2].identified, "should stop right after the oracle lets go"
    assert np.array_equal(proc.current[~cand], image[~cand])


def test_edi_is_deterministic_with_a_seed_and_falls_back_closed():
    image = np.random.default_rng(2).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    cand = np.ones((40, 40), bool)

    def run(seed):
        rng = np.random.default_rng(seed)
        perturb = lambda im: F.dp_pixelate(im, cand, block=5, epsilon=1.0, rng=rng)  # noqa: E731
        oracle = DistanceOracle(need=30.0)
        return edi_anonymize(image, cand, oracle=oracle, perturb=perturb, saliency="rise", max_iters=10,
                             rng=np.random.default_rng(seed)).image

    assert np.array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))
    # an attacker EDI cannot shake off in 2 iterations: the whole region gets the operator
    hard = DistanceOracle(need=1e9)
    res = edi_anonymize(image, cand, oracle=hard, perturb=lambda im: F.fill(im, cand), max_iters=2, saliency="occlusion")
    assert res.fallback and res.image.max() == 0 and res.iterations == 2
    kept = edi_anonymize(image, cand, oracle=hard, perturb=lambda im: F.fill(im, cand), max_iters=2, saliency="occlusion", on_fail="keep")
    assert kept.identified and not kept.fallback and kept.image.max() > 0


def test_edi_set_stops_at_the_target_rate():
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (32, 32, 3)).astype(np.uint8) for _ in range(4)]
    cand = np.ones((32, 32), bool)
    oracle = DistanceOracle(need=15.0)
    res = edi_set(images, oracle=oracle, perturbs=[lambda im: F.pixelate(im, cand, block=8)] * 4, target_risk=0.0,
                  max_iters=30, saliency="occlusion")
    assert res.rates[0] == 1.0 and res.rates[-1] == 0.0 and res.reached_target
    assert all(a >= b for a, b in zip(res.rates, res.rates[1:]))
    assert res.mean_ssim[0] == 1.0 and res.mean_ssim[-1] < 1.0
    assert reid_curve([[m.evidence for m in r.history] for r in res.results]) == res.rates


@pytest.mark.slow
def test_real_face_edi_beats_uniform_utility(astronaut):
    """dlib oracle on the astronaut: EDI stops once dlib no longer matches the face, and keeps
    more of the face (SSIM inside it) than the same pixelation over the whole face."""
    from anonlens.edi import create_oracle, utility_record
    from anonlens.regions import Region, region_mask

    oracle = create_oracle("dlib")
    region = Region(tuple(float(v) for v in ASTRONAUT_FACE), 1.0, "face")
    mask = region_mask(region, astronaut.shape, shape="ellipse", margin=0.25)
    target = oracle.prepare(astronaut, region)
    perturb = lambda im: F.pixelate(im, mask, block=12)  # noqa: E731
    res = edi_anonymize(astronaut, mask, oracle=oracle, perturb=perturb, target=target, max_iters=12)
    assert not res.identified and not res.fallback
    assert res.final.distance >= 0.6
    assert np.array_equal(res.image[~mask], astronaut[~mask])
    uniform = perturb(astronaut)
    assert utility_record(astronaut, res.image, mask)["ssim_region"] > utility_record(astronaut, uniform, mask)["ssim_region"] + 0.1


@pytest.mark.slow
def test_edi_never_stops_below_the_margin_and_warns(tmp_path, astronaut):
    """A face kept below tau + margin (on_fail=keep) is named in a warning. (That EDI stops only at
    tau + margin on a real face is asserted by test_edi_cli_on_a_real_face_and_option_errors.)"""
    from PIL import Image

    Image.fromarray(astronaut).save(tmp_path / "a.png")
    r = runner.invoke(app, ["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--method", "edi", "--operator", "pixelate",
                            "--max-iters", "1", "-e", "on_fail=keep", "-q"])
    assert "warning" in r.stdout and "a.png" in r.stdout and ("safety margin" in r.stdout or "still re-identified" in r.stdout)
    assert r.exit_code == 1  # still re-identified at the margin's threshold: above the target risk


def test_identity_classifier_checkpoint_round_trip_and_pickle_refused(tmp_path):
    model = _tiny_classifier()
    path = save_identity_classifier(model, tmp_path / "ids")
    loaded = load_identity_classifier(path)
    x = model.preprocess([np.zeros((32, 32, 3), np.uint8)])
    assert torch.allclose(model(x), loaded(x))
    torch.save(model.state_dict(), tmp_path / "ids.pth")
    with pytest.raises(AnonlensError, match="pickle"):
        load_identity_classifier(tmp_path / "ids.pth")


@pytest.mark.slow
def test_train_identity_then_white_box_edi_cli(tmp_path):
    from PIL import Image

    data = tmp_path / "ids"
    for name, imgs in _identities().items():
        (data / name).mkdir(parents=True)
        for i, im in enumerate(imgs):
            Image.fromarray(im).save(data / name / f"{i}.png")
    ckpt = tmp_path / "attacker"
    r = runner.invoke(app, ["train-identity", str(data), "-o", str(ckpt), "--arch", "tiny", "--input-size", "32",
                            "--epochs", "15", "--lr", "3e-3", "--batch-size", "8", "-q"])
    assert r.exit_code == 0, r.output
    assert "validation accuracy" in r.output
    acc = float(r.output.split("validation accuracy")[1].split()[0])
    assert acc >= 0.75
    faces = tmp_path / "faces"
    faces.mkdir()
    for name in ("person0", "person1"):
        Image.open(data / name / "0.png").save(faces / f"{name}.png")
    out = tmp_path / "out"
    r = runner.invoke(app, ["anonymize", str(faces), "-o", str(out), "--scope", "image", "--operator", "mask",
                            "--method", "edi", "--oracle-model", str(ckpt), "--target-risk", "0", "-q", "--json",
                            "-e", f"attribute_model={ckpt}"])  # the same classifier standing in for an attribute model
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)["summary"]
    assert summary["edi"]["faces"] == 2 and summary["edi"]["final_reid_rate"] == 0.0
    assert 0.0 <= summary["edi"]["attribute_agreement"] <= 1.0
    manifest = json.loads(find_manifest(out).read_text())
    edi = manifest["images"][0]["regions"][0]["edi"]
    assert edi["saliency"] == "gradient" and "true_identity_probability" in edi
    assert edi["attribute_original"] == "person0" and edi["attribute_kept"] == (edi["attribute_anonymized"] == "person0")
    r = runner.invoke(app, ["tradeoff", str(faces), "-o", str(tmp_path / "trade"), "--oracle-model", str(ckpt),
                            "--strengths", "8,4", "-q", "--json", "--attribute-model", str(ckpt)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert [p["value"] for p in doc["uniform"]] == [8, 4]
    assert all(0 <= p["attribute_agreement"] <= 1 for p in doc["uniform"]) and "attribute_agreement" in doc["edi"][-1]
    assert (tmp_path / "trade" / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    # the trade-off in the assessment report
    r = runner.invoke(app, ["score", "-a", str(out), "--original", str(faces), "-o", str(tmp_path / "s"), "--metrics", "ssim", "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", str(tmp_path / "s"), "-o", str(tmp_path / "r.html"), "--tradeoff", str(tmp_path / "trade")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text()
    assert "Privacy-utility trade-off" in page and "data:image/png;base64" in page


@pytest.mark.slow
def test_edi_cli_on_a_real_face_and_option_errors(tmp_path, astronaut):
    from PIL import Image

    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    out = tmp_path / "out"
    r = runner.invoke(app, ["anonymize", str(tmp_path / "astronaut.png"), "-o", str(out), "--method", "edi",
                            "--operator", "pixelate", "--max-iters", "8", "-q"])
    assert r.exit_code == 0, r.output
    assert "re-identification rate" in r.output
    rec = json.loads(find_manifest(out).read_text())["images"][0]
    edi = rec["regions"][0]["edi"]
    assert edi["identity_distance"] >= 0.6 + 0.1 and not edi["identified"] and edi["ssim_region"] > 0.4  # tau + margin
    bad = runner.invoke(app, ["anonymize", str(tmp_path / "astronaut.png"), "-o", str(tmp_path / "o2"), "-e", "q=50"])
    assert bad.exit_code == 2 and "--method edi" in bad.output
    bad = runner.invoke(app, ["anonymize", str(tmp_path / "astronaut.png"), "-o", str(tmp_path / "o3"), "--method", "edi",
                              "--saliency", "gradcam"])
    assert bad.exit_code == 2 and "needs a classifier oracle" in bad.output


def test_matched_risk_and_tradeoff_files(tmp_path):
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (32, 32, 3)).astype(np.uint8) for _ in range(3)]
    res = tradeoff(images, oracle=DistanceOracle(need=12.0), operator="pixelate", operator_options={"block": 8},
                   strengths=[16, 8, 4], saliency="occlusion")
    assert res.edi[0]["rate"] == 1.0 and res.edi[-1]["rate"] == 0.0
    assert len(res.uniform) == 3
    assert res.matched and all(m["ssim_gap"] == round(m["edi_ssim"] - m["uniform_ssim"], 6) for m in res.matched)
    files = write_tradeoff(res, tmp_path)
    assert "EDI SSIM" in files["html"].read_text()
    assert matched_risk([{"rate": 0.5, "ssim": 0.9}], [{"rate": 0.6, "ssim": 0.95}]) == []


def test_batched_white_box_set_equals_image_by_image():
    """edi_set checks a round's images in one batch; each gradient must equal its batch-of-one
    gradient, so the set loop gives the same images as running EDI on each image alone."""
    model = _tiny_classifier(classes=4, seed=1)
    oracle = ClassifierOracle(model=model)
    rng = np.random.default_rng(9)
    images = [rng.integers(0, 256, (32, 32, 3)).astype(np.uint8) for _ in range(5)]
    targets = [oracle.prepare(im) for im in images]
    grads, measures = oracle.input_gradients(targets, images)
    for im, t, g, m in zip(images, targets, grads, measures):
        g1, m1 = oracle.input_gradient(t, im)
        np.testing.assert_allclose(g, g1, rtol=1e-4, atol=1e-7)
        assert m.identified == m1.identified
    cand = np.ones((32, 32), bool)
    perturb = lambda im: F.fill(im, cand)  # noqa: E731
    res = edi_set(images, oracle=oracle, perturbs=[perturb] * 5, targets=targets, target_risk=0.0, max_iters=6, q=95)
    for im, t, r in zip(images, targets, res.results):
        alone = edi_anonymize(im, cand, oracle=oracle, perturb=perturb, target=t, max_iters=6, q=95, on_fail="keep")
        assert alone.iterations == r.iterations
        assert (alone.image != r.image).mean() < 0.01  # identical up to float ties at the percentile


def test_fresh_selection_only_picks_elements_that_still_change():
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, 8:] = 200
    cand = np.ones((16, 16), bool)
    perturb = lambda im: F.fill(im, cand)  # noqa: E731  # already black on the left half: no change there
    sal = np.zeros((16, 16))
    sal[:, :8] = 10.0  # the reference's rule would pick the (unchangeable) left half first

    class Fixed(DistanceOracle):
        white_box = False

    oracle = Fixed(need=1e9)
    from anonlens.edi import saliency as S

    S.SALIENCY._entries.pop("fixed-test", None)
    S.SALIENCY.add("fixed-test", lambda oracle, target, current, perturbed, candidates, *, rng=None: sal)
    try:
        proc = EDIProcess(image, cand, oracle=oracle, target=oracle.prepare(image), perturb=perturb, saliency="fixed-test",
                          q=75, select="fresh")
        proc.step()
        changed = (proc.current != image).any(axis=2)
        assert changed.any() and not changed[:, :8].any()
    finally:
        S.SALIENCY._entries.pop("fixed-test", None)


def test_refresh_reuses_the_saliency_and_takes_the_next_elements():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 48, 3)).astype(np.uint8)
    cand = np.ones((48, 48), bool)
    oracle = DistanceOracle(need=1e9)
    perturb = lambda im: F.fill(im, cand)  # noqa: E731
    proc = EDIProcess(image, cand, oracle=oracle, target=oracle.prepare(image), perturb=perturb, saliency="occlusion",
                      saliency_options={"windows": 4}, q=90, refresh=3)
    calls = []
    for _ in range(3):
        before = oracle.calls
        proc.step()
        calls.append(oracle.calls - before)
    assert calls == [18, 1, 1]  # one saliency pass (base + 16 windows) and the check, then checks only
    changed = (proc.current != image).any(axis=2)
    assert 0.25 <= changed.mean() <= 0.45  # three different tiers of about 10 % (whole windows)
    before = oracle.calls
    proc.step()
    assert oracle.calls - before == 18  # the 4th iteration recomputes
