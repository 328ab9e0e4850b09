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
    vit = ModelConfig(ha="HA1", backbone="vit_b_16")
    with pytest.raises(AnonlensError, match="convolutional backbone"):
        gradcam(create_model(vit, pretrained=False), vit, astronaut)


def test_explain_cli_writes_an_overlay(tmp_path, astronaut):
    config = ModelConfig(ha="HA1", backbone="mobilenet_v2", input_size=64)
    save_checkpoint(create_model(config, pretrained=False), config, tmp_path / "m")
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    r = runner.invoke(app, ["explain", str(tmp_path / "m.safetensors"), "-a", str(tmp_path / "a.png"), "-o", str(tmp_path / "cam.png")])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "cam.png").size == (512, 512) and np.load(tmp_path / "cam.npy").shape == (512, 512)
