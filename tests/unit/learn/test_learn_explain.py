"""Grad-CAM for HA1 and HA2, regression and classification."""

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from anonlens.cli.main import app
from anonlens.errors import AnonlensError
from anonlens.learn.checkpoint import save_checkpoint
from anonlens.learn.explain import gradcam
from anonlens.learn.models import ModelConfig, create_model

runner = CliRunner()


@pytest.mark.parametrize("ha,task,labels,outputs", [("HA1", "regression", "mean", 1), ("HA1", "classification", "labels10", 10),
                                                    ("HA2", "regression", "labels3", 1), ("HA2", "classification", "labels5", 5)])
def test_gradcam_map_has_the_input_size_and_both_directions(astronaut, ha, task, labels, outputs):
    torch.manual_seed(0)
    config = ModelConfig(ha=ha, backbone="resnet18", task=task, labels=labels, outputs=outputs, input_size=96)
    model = create_model(config, pretrained=False)
    image = astronaut[:300, :400]
    original = image if ha == "HA2" else None
    raise_map = gradcam(model, config, image, original, target="raise")
    lower_map = gradcam(model, config, image, original, target="lower")
    assert raise_map.shape == (300, 400) and 0 <= raise_map.min() and raise_map.max() <= 1
    assert not np.allclose(raise_map, lower_map)


def test_gradcam_errors(astronaut):
    config = ModelConfig(ha="HA2", backbone="resnet18", input_size=64)
    model = create_model(config, pretrained=False)
    with pytest.raises(AnonlensError, match="needs the original"):
        gradcam(model, config, astronaut)
    with pytest.raises(AnonlensError, match="raise"):
        gradcam(model, config, astronaut, astronaut, target="up")


def test_gradcam_for_vit_pairs(astronaut):
    """ViT (HA2, the pair model the reference cannot build with ViT): patch tokens read as a 14x14 map."""
    torch.manual_seed(0)
    config = ModelConfig(ha="HA2", backbone="vit_b_16", task="regression", input_size=224)
    model = create_model(config, pretrained=False)
    up = gradcam(model, config, astronaut[:256, :320], astronaut[:256, :320], target="raise")
    down = gradcam(model, config, astronaut[:256, :320], astronaut[:256, :320], target="lower")
    assert up.shape == (256, 320) and up.max() <= 1 and not np.allclose(up, down)


def test_token_gradcam_equals_captum_on_the_same_map():
    """The ViT path's formula is captum's LayerGradCam: on a conv map turned into tokens (with a
    class token in front), both give the same attribution."""
    from captum.attr import LayerGradCam

    from anonlens.learn.explain import _token_gradcam

    class Tokens(torch.nn.Module):
        def forward(self, m):
            t = m.flatten(2).transpose(1, 2)
            return torch.cat([torch.zeros_like(t[:, :1]), t], dim=1)

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 6, 8, stride=8)
    tokens = Tokens()
    head = torch.nn.Linear(6, 1)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.tokens, self.head = conv, tokens, head

        def forward(self, x):
            return self.head(torch.tanh(self.tokens(self.conv(x))[:, 1:]).mean(1)).reshape(-1)

    net = Net()
    x = torch.randn(1, 3, 32, 32)
    ours = _token_gradcam(net, net.tokens, x)
    ref = LayerGradCam(net, net.conv).attribute(x, relu_attributions=True)
    assert ours.shape == ref.shape == (1, 1, 4, 4)
    assert torch.allclose(ours, ref.detach(), atol=1e-6)


def test_explain_cli_writes_an_overlay(tmp_path, astronaut):
    config = ModelConfig(ha="HA1", backbone="mobilenet_v2", input_size=64)
    save_checkpoint(create_model(config, pretrained=False), config, tmp_path / "m")
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    r = runner.invoke(app, ["explain", str(tmp_path / "m.safetensors"), "-a", str(tmp_path / "a.png"), "-o", str(tmp_path / "cam.png")])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "cam.png").size == (512, 512) and np.load(tmp_path / "cam.npy").shape == (512, 512)


def test_report_embeds_gradcam_overlays(tmp_path, astronaut):
    import cv2

    config = ModelConfig(ha="HA2", backbone="resnet18", input_size=64)
    torch.manual_seed(0)
    save_checkpoint(create_model(config, pretrained=False), config, tmp_path / "m")
    (tmp_path / "o").mkdir()
    (tmp_path / "a").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "o" / "x.png")
    Image.fromarray(cv2.GaussianBlur(astronaut, (0, 0), 4)).save(tmp_path / "a" / "x.png")
    r = runner.invoke(app, ["score", "-a", str(tmp_path / "a"), "--original", str(tmp_path / "o"), "-o", str(tmp_path / "s"),
                            "--metrics", "ssim", "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["report", str(tmp_path / "s"), "-o", str(tmp_path / "r.html"), "--gradcam", str(tmp_path / "m.safetensors")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text()
    assert "Grad-CAM (what still identifies)" in page and page.count("alt='explanation'") == 1
