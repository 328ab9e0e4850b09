"""HA1/HA2 models over every backbone; checkpoints: round trip, pickles refused, reference import."""

import pytest
import torch

from anonlens.errors import AnonlensError, WeightsUnavailableError
from anonlens.learn.checkpoint import import_reference_checkpoint, load_checkpoint, save_checkpoint
from anonlens.learn.models import BACKBONES, ModelConfig, create_model


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("ha", ["HA1", "HA2"])
def test_every_backbone_works_for_ha1_and_ha2(backbone, ha):
    torch.manual_seed(0)
    model = create_model(ModelConfig(ha=ha, backbone=backbone, outputs=5, task="classification"), pretrained=False).eval()
    size = 224 if backbone.startswith("vit") else 64  # ViT-B/16 takes 224 px only
    x, y = torch.rand(2, 3, size, size), torch.rand(2, 3, size, size)
    with torch.no_grad():
        out = model(x, y)
    assert out.shape == (2, 5)


@pytest.mark.parametrize("backbone", ["resnet18", "vit_b_16"])
def test_ha2_output_depends_on_the_original(backbone):
    torch.manual_seed(0)
    model = create_model(ModelConfig(ha="HA2", backbone=backbone, outputs=5, task="classification"), pretrained=False).eval()
    size = 224 if backbone.startswith("vit") else 64
    x, y = torch.rand(2, 3, size, size), torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert not torch.allclose(model(x, y), model(x, x))


def test_regression_output_is_a_sigmoid_in_0_1():
    model = create_model(ModelConfig(ha="HA2", backbone="mobilenet_v2"), pretrained=False).eval()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 64, 64), torch.rand(3, 3, 64, 64))
    assert out.shape == (3, 1) and ((out > 0) & (out < 1)).all()


def test_pretrained_weights_offline_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=r"resnet18-f37072fd\.pth"):
        create_model(ModelConfig(backbone="resnet18"))


def test_pretrained_weights_load_from_a_local_file_like_torchvision(tmp_path):
    import torchvision

    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None).eval()
    torch.save(ref.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    model = create_model(ModelConfig(backbone="resnet18", outputs=2, task="classification"), weights=str(tmp_path / "resnet18-f37072fd.pth")).eval()
    x = torch.rand(1, 3, 64, 64)
    ref.fc = torch.nn.Identity()
    with torch.no_grad():
        assert torch.allclose(model.backbone(x), ref(x))


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path):
    torch.manual_seed(2)
    config = ModelConfig(ha="HA2", backbone="resnet18", labels="labels5", task="classification", outputs=5)
    model = create_model(config, pretrained=False).eval()
    weights = save_checkpoint(model, config, tmp_path / "metric")
    assert weights.suffix == ".safetensors" and (tmp_path / "metric.json").is_file()
    loaded, cfg = load_checkpoint(tmp_path / "metric.safetensors")
    assert cfg == config
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x, y), loaded(x, y))


def test_pickles_are_refused_as_checkpoints(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "model.pth")
    with pytest.raises(AnonlensError, match="refusing to load a pickle"):
        load_checkpoint(tmp_path / "model.pth")


def test_reference_ha1_checkpoint_is_imported(tmp_path):
    import torchvision

    torch.manual_seed(3)
    ref = torchvision.models.resnet18(weights=None)
    ref.fc = torch.nn.Linear(512, 10)  # the reference's HA1: last layer replaced
    ref.eval()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "best.pth.tar")
    config = ModelConfig(ha="HA1", backbone="resnet18", labels="labels10", task="classification", outputs=10)
    import_reference_checkpoint(tmp_path / "best.pth.tar", config, tmp_path / "imported")
    model, _ = load_checkpoint(tmp_path / "imported")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x), atol=1e-6)


def test_import_checkpoint_cli(tmp_path):
    import torchvision
    from typer.testing import CliRunner

    from anonlens.cli.main import app

    torch.manual_seed(4)
    ref = torchvision.models.resnet18(weights=None)
    ref.fc = torch.nn.Linear(512, 1)
    ref.eval()
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "best.pth.tar")
    r = CliRunner().invoke(app, ["import-checkpoint", str(tmp_path / "best.pth.tar"), "-o", str(tmp_path / "imp"), "--backbone", "resnet18"])
    assert r.exit_code == 0, r.output
    model, config = load_checkpoint(tmp_path / "imp")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), torch.sigmoid(ref(x)), atol=1e-6)
    assert config.outputs == 1 and config.backbone == "resnet18"
