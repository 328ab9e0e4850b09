"""A-GAN's networks: the reference's sizes, layer names, noise and pyramid, on the CPU."""

import pytest

torch = pytest.importorskip("torch")

from anonlens.errors import AnonlensError  # noqa: E402
from anonlens.generative.agan.networks import AGAN_NETWORKS, DecoderNoise  # noqa: E402


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_generators_have_the_reference_sizes_and_noise_points():
    g256, g128 = AGAN_NETWORKS.create("unet_256"), AGAN_NETWORKS.create("unet_128")
    # REFERENCE.md: about 60 M (unet_256) and 46 M (unet_128) parameters, 7 noise injections for unet_256
    assert round(n_params(g256) / 1e6) == 60 and round(n_params(g128) / 1e6) == 46
    assert sum(isinstance(m, DecoderNoise) for m in g256.modules()) == 7
    assert sorted(m.channels for m in g256.modules() if isinstance(m, DecoderNoise)) == [128] * 6 + [256]
    assert g256.model.model[0].in_channels == 4  # RGB + the person mask


def test_state_dict_names_follow_the_reference():
    keys = set(AGAN_NETWORKS.create("unet_256").state_dict())
    # outermost: down conv, the nested block, ReLU, up conv (with bias); a middle block's noise conv at index 5
    assert {"model.model.0.weight", "model.model.3.weight", "model.model.3.bias", "model.model.1.model.1.weight",
            "model.model.1.model.2.running_mean", "model.model.1.model.5.weight"} <= keys
    assert "model.model.0.bias" not in keys
    spp = set(AGAN_NETWORKS.create("spp").state_dict())
    assert {"conv1.weight", "BN1.weight", "BN3.running_var", "conv5.weight"} <= spp


def test_generator_output_range_and_noise():
    torch.manual_seed(0)
    g = AGAN_NETWORKS.create("unet_128").eval()
    x = torch.rand(2, 4, 128, 128) * 2 - 1
    with torch.no_grad():
        a, b = g(x), g(x)
    assert a.shape == (2, 3, 128, 128) and a.abs().max() <= 1
    assert not torch.equal(a, b)  # the decoder noise is drawn on every pass
    torch.manual_seed(5)
    with torch.no_grad():
        c = g(x)
    torch.manual_seed(5)
    with torch.no_grad():
        d = g(x)
    assert torch.equal(c, d)  # seeded: reproducible


def test_the_residual_generator_starts_as_the_identity():
    g = AGAN_NETWORKS.create("unet_256_diff_map").eval()
    x = torch.rand(1, 4, 256, 256) * 2 - 1
    x[:, :3, :2, :2] = 1.0  # atanh(1) is infinite: clamped
    with torch.no_grad():
        y = g(x)
    assert torch.isfinite(y).all() and torch.allclose(y, x[:, :3], atol=1e-5)


def test_discriminators_shapes_and_small_boxes():
    assert AGAN_NETWORKS.create("basic")(torch.rand(1, 6, 256, 256)).shape == (1, 1, 30, 30)
    spp, spp128 = AGAN_NETWORKS.create("spp"), AGAN_NETWORKS.create("spp_128")
    assert spp(torch.rand(1, 3, 120, 48)).shape == (1, 21) and spp128(torch.rand(1, 3, 60, 24)).shape == (1, 5)
    assert spp.min_side() == 32 and spp128.min_side() == 16  # the reference's "about 32 px"
    with pytest.raises(AnonlensError, match="too small for the person discriminator: both sides must be at least 32 px"):
        spp(torch.rand(1, 3, 100, 22))
