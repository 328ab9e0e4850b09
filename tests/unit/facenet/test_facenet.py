"""dlib's face-identity network in PyTorch: the same descriptors and distances as dlib-bin, correct
gradients, EDI with the gradient oracle, and dlib's numbers where torch is missing."""

from __future__ import annotations

import csv

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from anonlens.identity import DlibFaceEmbedder, identity_distance, resolve_engine  # noqa: E402
from anonlens.samples import face_scene, sample_images  # noqa: E402

from tests.helpers import run_without_learn  # noqa: E402


@pytest.fixture(scope="module")
def engines():
    return DlibFaceEmbedder(engine="torch"), DlibFaceEmbedder(engine="dlib")


def _faces():
    """Real faces available offline: the astronaut, her face at several sizes on other photos,
    both faces of the group picture, and LFW faces from scikit-image (upscaled)."""
    import cv2
    from skimage import data

    images = [sample_images()["astronaut.png"], sample_images()["astronaut-and-cameraman.jpg"]]
    images += [face_scene(w, h, f)[0] for w, h, f in ((640, 480, 90), (800, 600, 260), (333, 517, 140))]
    lfw = data.lfw_subset()[:3]
    images += [np.repeat(cv2.resize((f * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC)[:, :, None], 3, axis=2)
               for f in lfw]
    return images


def test_descriptors_equal_dlib(engines):
    tnet, dnet = engines
    assert tnet.engine == "torch" and dnet.engine == "dlib"
    chips, n_real = [], 0
    for image in _faces():
        shapes = dnet.locate_all(image) or [dnet.shape_at(image, (0, 0, image.shape[1], image.shape[0]))]
        for shape in shapes:
            chips.append(dnet.chip(image, shape))
            t = tnet._embedding(image, shape).vector
            d = dnet._embedding(image, shape).vector
            assert np.abs(t - d).max() < 1e-5
            n_real += 1
    assert n_real >= 8
    rng = np.random.default_rng(0)
    chip = chips[0]
    odd = [chip[:, ::-1], np.clip(chip.astype(int) + rng.integers(-40, 41, chip.shape), 0, 255).astype(np.uint8),
           np.zeros_like(chip), np.full_like(chip, 255), rng.integers(0, 256, chip.shape, dtype=np.uint8),
           (chip // 4 + 96).astype(np.uint8)]  # flipped, noisy, black, white, random, low contrast
    t = tnet.describe_chips(chips + odd)  # one batch
    d = dnet.describe_chips(chips + odd)
    assert t.shape == d.shape == (len(chips) + len(odd), 128)
    assert np.abs(t - d).max() < 1e-5
    # distances equal: every pair of the set
    dt = np.linalg.norm(t[:, None] - t[None], axis=2)
    dd = np.linalg.norm(d[:, None] - d[None], axis=2)
    assert np.abs(dt - dd).max() < 1e-5
    # and a batch gives each chip's batch-of-one descriptor
    assert np.abs(tnet.describe_chips(chips[:1])[0] - t[0]).max() < 1e-6


def test_identity_metric_engines_agree_and_say_which(engines, astronaut):
    from anonlens.metrics import PairBatch, create_metric
    from anonlens.operators import functional as F

    images = [astronaut, face_scene(640, 480, 160)[0]]
    anon = [F.blur(im, np.ones(im.shape[:2], bool), sigma=3) for im in images]
    batch = PairBatch(anon, images, ["a", "b"])
    t = create_metric("identity", engine="torch")(batch)
    d = create_metric("identity", engine="dlib")(batch)
    assert t["identity_engine"] == ["torch", "torch"] and d["identity_engine"] == ["dlib", "dlib"]
    for col in ("identity_distance", "identity_distance_at_position"):
        for a, b in zip(t[col], d[col]):
            assert (a is None) == (b is None) and (a is None or abs(a - b) < 1e-5)
    assert t["reidentified"] == d["reidentified"]


def test_gradient_matches_finite_differences(engines):
    """d(distance)/d(image) through the warp and the network, float64, against central differences
    (sub-pixel noise breaks the exact ties of max-pool and ReLU at integer inputs)."""
    from anonlens.facenet.align import chip_to_image_affine, warp_chips
    from anonlens.identity import torch_network

    tnet, _ = engines
    image = sample_images()["astronaut.png"]
    face = tnet.embed(image)
    other = tnet.embed(np.ascontiguousarray(image[:, ::-1]))  # another descriptor to measure from
    net = torch_network("cpu")
    import copy

    net64 = copy.deepcopy(net).double()
    rng = np.random.default_rng(1)
    x = torch.from_numpy(image.astype(np.float64) + rng.uniform(-0.3, 0.3, image.shape)).permute(2, 0, 1).contiguous()
    affine = chip_to_image_affine(face.shape)[None]
    ref = torch.from_numpy(other.vector)

    def dist(img):
        return (net64(warp_chips(img, affine))[0] - ref).norm()

    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(dist(xg), xg)
    assert float(g.abs().sum()) > 0
    y1, y2, x1, x2 = 80, 170, 180, 270  # inside the face
    for _ in range(3):
        v = torch.zeros_like(x)
        v[:, y1:y2, x1:x2] = torch.from_numpy(rng.normal(size=(3, y2 - y1, x2 - x1)))
        eps = 1e-3
        with torch.no_grad():
            fd = (dist(x + eps * v) - dist(x - eps * v)) / (2 * eps)
        analytic = float((g * v).sum())
        assert abs(float(fd) - analytic) <= 1e-4 * max(1.0, abs(analytic)), (float(fd), analytic)
    # the oracle's gradient is that gradient (float32 network, exact chip measure), concentrated on the face
    from anonlens.edi import create_oracle

    oracle = create_oracle("dlib", engine="torch")
    assert oracle.white_box
    grad, m = oracle.input_gradient(oracle.prepare(image), image)
    assert grad.shape == image.shape and m.distance < 1e-5
    sal = np.abs(grad)
    inside = sal[60:200, 160:290].sum()
    assert inside > 0.9 * sal.sum()


def test_edi_gradient_oracle_reaches_the_target_with_margin():
    """EDI with the white-box dlib oracle on real faces: every face ends at or past threshold +
    margin, as measured by dlib-bin itself (not the network that steered it)."""
    import cv2
    from skimage import data

    from anonlens.edi import create_oracle, edi_anonymize
    from anonlens.operators import functional as F

    img = data.astronaut()
    faces = [np.ascontiguousarray(img[40:220, 140:310]),
             np.ascontiguousarray(cv2.resize(img[40:220, 140:310], None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)[:, ::-1]),
             np.ascontiguousarray(cv2.resize(img[30:210, 146:316], None, fx=1.25, fy=1.25, interpolation=cv2.INTER_CUBIC))]
    oracle = create_oracle("dlib", threshold=0.7, engine="torch")  # τ 0.6 + margin 0.1
    dlib_only = DlibFaceEmbedder(engine="dlib")
    for face in faces:
        target = oracle.prepare(face)
        res = edi_anonymize(face, oracle=oracle, perturb=lambda im: F.pixelate(im, np.ones(im.shape[:2], bool), block=max(1, max(im.shape[:2]) // 16)),
                            target=target, saliency="gradient", q=90, max_iters=15)
        assert not res.identified and not res.fallback
        assert res.history[-1].distance >= 0.7
        d = identity_distance(dlib_only._embedding(face, target.shape).vector, dlib_only._embedding(res.image, target.shape).vector)
        assert d >= 0.7 - 1e-5
        assert 0 < res.changed.mean() < 0.9  # only part of the face was changed


def test_engine_choice(monkeypatch):
    import anonlens.extras as extras

    assert resolve_engine("auto") == "torch"
    assert resolve_engine("auto", jitter=2) == "dlib"
    assert resolve_engine("dlib") == "dlib"
    monkeypatch.setattr(extras, "_installed", lambda m: m != "torch")
    assert resolve_engine("auto") == "dlib"
    with pytest.raises(Exception, match="pip install 'anonlens\\[learn\\]'"):
        resolve_engine("torch")
    with pytest.raises(Exception, match="unknown identity engine 'cuda'"):
        resolve_engine("cuda")


@pytest.mark.slow
def test_without_torch_the_scores_are_dlibs(tmp_path, monkeypatch):
    """The core install (torch unimportable) scores identity with dlib-bin and gets the torch
    engine's distances."""
    from PIL import Image

    (tmp_path / "o").mkdir()
    (tmp_path / "a").mkdir()
    from anonlens.operators import functional as F

    for i, (w, h, f) in enumerate(((640, 480, 150), (512, 512, 220))):
        img = face_scene(w, h, f)[0]
        Image.fromarray(img).save(tmp_path / "o" / f"{i}.png")
        Image.fromarray(F.blur(img, np.ones(img.shape[:2], bool), sigma=2 + 2 * i)).save(tmp_path / "a" / f"{i}.png")
    args = ["score", "-a", "a", "--original", "o", "-q", "--metrics", "identity"]
    [r] = run_without_learn([args + ["-o", "s-core"]], tmp_path)
    assert r["code"] == 0 and r["imported"] == [], r
    from typer.testing import CliRunner

    from anonlens.cli.main import app

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, args + ["-o", "s-torch"])
    assert res.exit_code == 0, res.output
    rows = {}
    for name in ("s-core", "s-torch"):
        with open(tmp_path / name / "scores.csv") as fh:
            rows[name] = {r["key"]: r for r in csv.DictReader(fh)}
    assert {r["identity_engine"] for r in rows["s-core"].values()} == {"dlib"}
    assert {r["identity_engine"] for r in rows["s-torch"].values()} == {"torch"}
    for key, core in rows["s-core"].items():
        for col in ("identity_distance_at_position",):
            assert abs(float(core[col]) - float(rows["s-torch"][key][col])) < 1e-5
