"""Commands for EDI-Anon: train-identity and tradeoff. Thin shells over anonlens.edi."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..detectors import create_detector
from ..display import display_name
from ..edi.oracles import create_oracle
from ..errors import AnonlensError
from ..io import discover_inputs, read_image
from .kit import app, err_console, fail, out_console, parse_options, require, train_classifier_cli


@app.command("train-identity")
def train_identity_cmd(
    data_dir: Path = typer.Argument(..., help="One sub-folder per identity (or per attribute value, for an attribute classifier), images inside."),
    output: Path = typer.Option(..., "--output", "-o", help="Checkpoint path (writes PATH.safetensors and PATH.json)."),
    arch: str = typer.Option("resnet18", help="tiny (small CNN, CPU), resnet18, resnet50, mobilenet_v2, efficientnet_b0, vgg11, densenet121; or the 32x32 attack victims resnet20-4, cifar-resnet18, lenet-zhu."),
    input_size: int = typer.Option(224, help="Input size in pixels (images are resized, aspect not kept)."),
    epochs: int = typer.Option(30),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    val_fraction: float = typer.Option(0.2, help="Share of each identity's images held out for validation (best checkpoint)."),
    pretrained: bool = typer.Option(True, "--pretrained/--no-pretrained", help="Start from ImageNet weights (weights registry; offline a clear error)."),
    weights: Optional[Path] = typer.Option(None, help="ImageNet weights file for the backbone."),
    device: str = typer.Option("cpu", help="cpu, cuda or mps."),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train the identity classifier EDI-Anon's white-box attacker uses (`anonymize --method edi
    --oracle-model PATH`); on attribute folders it is the attribute classifier of `tradeoff`."""
    require("learn", "anonlens train-identity")
    opts = dict(arch=arch, input_size=input_size, epochs=epochs, batch_size=batch_size, lr=lr, val_fraction=val_fraction,
                pretrained=pretrained, weights=None if weights is None else str(weights), seed=seed)
    train_classifier_cli(data_dir, output, opts, device, quiet, "training identity classifier", "checkpoint")


@app.command("tradeoff")
def tradeoff_cmd(
    faces: List[Path] = typer.Argument(..., help="Face images or folders of them (aligned crops, or photos with --scope face)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for tradeoff.png, .html, .csv and .json."),
    operator: str = typer.Option("pixelate", help="pixelate, blur, dp-pix, mask or noise."),
    operator_option: Optional[List[str]] = typer.Option(None, "--operator-option", "-p", help="Operator option for EDI, key=value (repeatable)."),
    strengths: Optional[str] = typer.Option(None, help="Comma-separated values of the uniform sweep (pixelate: blocks, blur: strength, dp-pix: epsilon, noise: sigma). Default: a built-in ladder."),
    scope: str = typer.Option("image", help="image: each file is a face crop; face: detect the largest face (centerface) and work inside it."),
    q: float = typer.Option(90.0, "--q", help="EDI percentile."),
    max_iters: int = typer.Option(20, help="EDI rounds at most."),
    saliency: str = typer.Option("auto", help="occlusion, rise, gradient, gradcam (auto: gradient with --oracle-model, else occlusion)."),
    oracle_model: Optional[Path] = typer.Option(None, help="Identity classifier (train-identity) as the attacker; default dlib."),
    threshold: float = typer.Option(0.6, help="dlib oracle: same person below this distance."),
    attribute_model: Optional[Path] = typer.Option(None, help="Attribute classifier (train-identity on attribute folders): adds attribute agreement to both curves."),
    target_risk: float = typer.Option(0.0, help="EDI stops when the re-identification rate is at or below this."),
    seed: int = typer.Option(0),
    json_out: bool = typer.Option(False, "--json"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Measure the privacy-utility trade-off: EDI vs the uniform operator at increasing strengths
    (re-identification rate against SSIM inside the face), as PNG, HTML, CSV and JSON."""
    require("learn", "anonlens tradeoff")
    from ..edi.classifier import attribute_predictor
    from ..edi.tradeoff import tradeoff, write_tradeoff

    try:
        paths = [f.path for f in discover_inputs(faces) if f.supported]
        if not paths:
            fail("no face images found")
        images = [read_image(p).rgb for p in paths]
        oracle = create_oracle("classifier", model=str(oracle_model)) if oracle_model else create_oracle("dlib", threshold=threshold)
        regions = None
        if scope == "face":
            det = create_detector("centerface")
            regions = []
            for p, im in zip(paths, images):
                found = det.detect(im)
                if not found:
                    raise AnonlensError(f"{p}: no face found (use --scope image for face crops)")
                regions.append(max(found, key=lambda r: r.size))
        elif scope != "image":
            fail("--scope must be image or face")
        attribute = attribute_predictor(attribute_model) if attribute_model is not None else None

        values = None
        if strengths:
            values = [json.loads(v) for v in strengths.split(",")]
        result = tradeoff(images, oracle=oracle, operator=operator, operator_options=parse_options(operator_option, "operator"),
                          regions=regions, shape="ellipse", margin=0.25 if scope == "face" else 0.0, strengths=values, q=q,
                          max_iters=max_iters, saliency=saliency, target_risk=target_risk, attribute=attribute, seed=seed,
                          progress=None if quiet else (lambda msg: err_console.print(msg)))
        files = write_tradeoff(result, output)
    except AnonlensError as exc:
        fail(str(exc))
    if json_out:
        sys.stdout.write(json.dumps({"files": {k: str(v) for k, v in files.items()}, **result.to_dict()}, indent=2, default=str) + "\n")
        return
    table = Table(title=f"SSIM inside the face at matched re-identification rate ({result.faces} faces)", header_style="bold")
    for col in ("rate at most", "EDI SSIM", f"uniform {operator} SSIM", "gap"):
        table.add_column(col, justify="right")
    for m in result.matched:
        table.add_row(f"{100 * m['risk']:.1f} %", f"{m['edi_ssim']:.3f}", f"{m['uniform_ssim']:.3f}", f"{m['ssim_gap']:+.3f}")
    out_console.print(table)
    out_console.print(f"plot: {escape(display_name(files['png']))}\nreport: {escape(display_name(files['html']))}")
