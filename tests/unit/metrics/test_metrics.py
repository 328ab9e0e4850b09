"""Metric values against scikit-image, scipy, pytorch-fid and lpips; ideal values; errors."""

import cv2
import numpy as np
import pytest
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from anonlens.errors import WeightsUnavailableError
from anonlens.metrics import METRICS, PairBatch, column_directions, create_metric, list_metrics
from anonlens.metrics import functional as F

from tests.helpers import tiny_features


def _pair(shape, seed, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, shape), 0, 255).astype(np.uint8)
    return a, b


@pytest.mark.parametrize("shape", [(16, 16, 3), (224, 224, 3), (97, 131, 3), (64, 64)])
@pytest.mark.parametrize("seed", [0, 1])
def test_classic_metrics_equal_scikit_image(shape, seed):
    a, b = _pair(shape, seed)
    if a.ndim == 2:  # grayscale goes through as three equal channels, as files are read
        a, b = np.repeat(a[:, :, None], 3, 2), np.repeat(b[:, :, None], 3, 2)
    batch = PairBatch([b], [a])
    fa, fb = a / 255.0, b / 255.0
    assert create_metric("mse")(batch)["mse"][0] == pytest.approx(mean_squared_error(fa, fb), rel=1e-12)
    assert create_metric("psnr")(batch)["psnr"][0] == pytest.approx(peak_signal_noise_ratio(fa, fb, data_range=1), rel=1e-12)
    ref = structural_similarity(fa, fb, channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert create_metric("ssim")(batch)["ssim"][0] == pytest.approx(ref, abs=1e-6)
    ref_pa = structural_similarity(
        fa, fb, channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, K1=0.01**2, K2=0.03**2
    )
    assert create_metric("ssim-perceptanon")(batch)["ssim-perceptanon"][0] == pytest.approx(ref_pa, abs=1e-9)
    assert ref_pa != pytest.approx(ref, abs=1e-4)  # the variant really differs


def test_smooth_images_with_the_reference_constants_match_exactly():
    """Tiny constants magnify float32 cancellation on smooth images; the variant runs in float64."""
    y, x = np.mgrid[0:96, 0:96]
    a = np.dstack([(x + y) % 256, (2 * x) % 256, (y * 3) % 256]).astype(np.uint8)
    b = np.clip(a.astype(int) + 1, 0, 255).astype(np.uint8)
    ref = structural_similarity(a / 255.0, b / 255.0, channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, K1=0.01**2, K2=0.03**2)
    assert F.ssim(a, b, k1=0.01**2, k2=0.03**2) == pytest.approx(ref, abs=1e-9)


def test_mse_is_exact_and_does_not_overflow_on_large_images():
    a = np.zeros((1500, 1500, 3), np.uint8)
    b = np.full((1500, 1500, 3), 255, np.uint8)
    assert F.mse(a, b) == 1.0 and F.psnr(a, b) == 0.0


def test_batched_values_equal_one_at_a_time():
    pairs = [_pair((40, 50, 3), s) for s in range(5)]
    batch = PairBatch([b for _, b in pairs], [a for a, _ in pairs])
    together = create_metric("ssim")(batch)["ssim"]
    alone = [create_metric("ssim")(PairBatch([b], [a]))["ssim"][0] for a, b in pairs]
    assert together == pytest.approx(alone, abs=1e-12)


def test_float_inputs_are_scaled_from_0_1():
    a, b = _pair((32, 32, 3), 3)
    t_u8 = F.to_batch([a])
    assert float(t_u8.max()) <= 1.0 and t_u8.dtype == torch.float32
    with pytest.raises(TypeError, match="uint8"):
        F.to_batch([a.astype(np.float64)])


def _lpips(net="alex"):
    return create_metric("lpips" if net == "alex" else f"lpips-{net}", random_backbone=True)


#: what every full-reference pair metric reports for an image compared with itself ("nothing changed")
IDEAL_ON_IDENTICAL = {
    "mse": 0.0, "psnr": float("inf"), "ssim": 1.0, "ssim-perceptanon": 1.0,
    "lpips": 0.0, "lpips-vgg": 0.0, "lpips-squeeze": 0.0,
    "identity_distance": 0.0, "identity_distance_at_position": 0.0, "reidentified": True,
    "orig_face_found": True, "anon_face_found": True,
    "psnr_outside": float("inf"), "ssim_outside": 1.0, "people_kept": 1.0, "semsim": 0.0,
}


@pytest.mark.parametrize("name", list_metrics(level="pair", full_reference=True))
def test_every_full_reference_metric_reports_no_change_on_identical_images(name, astronaut, tmp_path):
    image = astronaut
    options = {"random_backbone": True} if name.startswith("lpips") else {}
    if name == "semsim":  # a model with random weights
        from anonlens.learn.semsim import SemSimConfig, SemSimModel, save_semsim

        options = {"checkpoint": str(save_semsim(SemSimModel(SemSimConfig(width=8)), tmp_path / "s"))}
    out = create_metric(name, **options)(PairBatch([image], [image.copy()]))
    for column, values in out.items():
        if column == "residual_face_score":  # unchanged: the original's own face score
            assert values[0] > 0.5
            continue
        if column == "identity_engine":  # a label: which engine computed the descriptors
            assert values[0] in ("torch", "dlib")
            continue
        assert column in IDEAL_ON_IDENTICAL, f"declare the identical-image value of the new column '{column}'"
        assert values[0] == pytest.approx(IDEAL_ON_IDENTICAL[column], abs=1e-6), column


def test_identity_distance_is_zero_on_identical_images(astronaut):
    out = create_metric("identity")(PairBatch([astronaut], [astronaut]))
    assert out["identity_distance"][0] == pytest.approx(0.0, abs=1e-6)
    assert out["reidentified"] == [True]


@pytest.mark.parametrize("net", ["alex", "squeeze", "vgg"])
@pytest.mark.slow
def test_lpips_equals_the_lpips_package_with_identical_weights(net):
    import lpips
    from torchvision import models

    from anonlens.metrics.lpips import build_lpips, copy_backbone

    torch.manual_seed(0)
    ref = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
    ours = build_lpips(net, random_backbone=True)
    tv = {"alex": models.alexnet, "squeeze": models.squeezenet1_1, "vgg": models.vgg16}[net](weights=None)
    for sl in ref.net.children():  # lpips' random backbone -> a torchvision network -> ours
        for i, m in sl.named_children():
            tv.features[int(i)].load_state_dict(m.state_dict())
    copy_backbone(ours, tv.features)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = ref(x, y, normalize=True).flatten()
        got = ours(x, y, normalize=True).flatten()
    assert torch.allclose(expected, got, atol=1e-6)


def test_lpips_without_backbone_weights_is_a_clear_offline_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=r"alexnet-owt-7be5be79\.pth.*download\.pytorch\.org"):
        create_metric("lpips")


def test_frechet_distance_equals_pytorch_fid():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 16)), rng.normal(0.3, 1.2, size=(40, 16))
    mu1, s1 = F.gaussian_stats(a)
    mu2, s2 = F.gaussian_stats(b)
    assert F.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(calculate_frechet_distance(mu1, s1, mu2, s2), rel=1e-9)


def test_fid_feature_extractor_equals_pytorch_fid(monkeypatch):
    import pytorch_fid.inception as pfi

    from anonlens.metrics.features import FIDInceptionV3, build_fid_inception

    torch.manual_seed(0)
    net = build_fid_inception(random_weights=True)
    state = net.state_dict()
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: state)
    ref = pfi.InceptionV3([3]).eval()
    x = torch.rand(2, 3, 75, 90)
    with torch.no_grad():
        assert torch.equal(ref(x)[0].flatten(1), FIDInceptionV3(net)(x))


def test_group_metrics_refuse_too_small_groups_instead_of_nan():
    fid = create_metric("fid", feature=tiny_features())
    kid = create_metric("kid", feature=tiny_features(), subset_size=5, subsets=10)
    x = torch.rand(1, 3, 16, 16)
    for m in (fid, kid):
        m.update("one", x, x)
        m.update("four", torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16))
    assert "at least 2 images" in fid.compute()["one"]["error"] and fid.compute()["four"]["value"] > 0
    assert "subset size 5 is larger" in kid.compute()["four"]["error"]


def test_fid_is_zero_for_identical_groups_and_grows_with_change():
    fid = create_metric("fid", feature=tiny_features())
    x = torch.rand(8, 3, 16, 16)
    fid.update("same", x, x)
    fid.update("blurred", x, torch.nn.functional.avg_pool2d(x, 3, 1, 1))
    out = fid.compute()
    assert out["same"]["value"] == pytest.approx(0.0, abs=1e-6) and out["blurred"]["value"] > 1e-4


@pytest.mark.slow
def test_identity_distance_small_for_same_face_large_for_others(astronaut):
    from skimage import data

    metric = create_metric("identity")
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    buf = cv2.imencode(".jpg", astronaut, [cv2.IMWRITE_JPEG_QUALITY, 50])[1]
    recompressed = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    out = metric(PairBatch([recompressed, np.roll(astronaut, 9, axis=1)], [astronaut, astronaut]))
    assert all(d < 0.4 for d in out["identity_distance"]) and out["reidentified"] == [True, True]
    lfw = data.lfw_subset()[:12]
    faces = [cv2.resize((np.repeat(f[:, :, None], 3, 2) * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC) for f in lfw]
    astro_small = cv2.resize(astronaut, (200, 200), interpolation=cv2.INTER_AREA)
    out = create_metric("identity").__call__(PairBatch(faces, [astro_small] * len(faces)))
    # a different person is never "found" near the astronaut's face at a matching distance
    assert all(not r for r in out["reidentified"])
    assert min(d for d in out["identity_distance_at_position"] if d is not None) > 0.6
    assert flipped.shape == astronaut.shape


def test_no_face_in_the_original_is_recorded_as_such(no_face_image):
    out = create_metric("identity")(PairBatch([no_face_image], [no_face_image]))
    assert out["orig_face_found"] == [False] and out["identity_distance"] == [None] and out["reidentified"] == [None]


def test_registry_declares_direction_and_reference_for_every_metric():
    dirs = column_directions()
    assert dirs["ssim"] == "lower" and dirs["lpips"] == "higher" and dirs["identity_distance"] == "higher"
    for entry in METRICS.entries():
        assert entry.tags["more_private"] in ("higher", "lower")
        assert isinstance(entry.tags["full_reference"], bool)
    assert set(list_metrics(level="group")) == {"fid", "kid", "agan-rates"}
