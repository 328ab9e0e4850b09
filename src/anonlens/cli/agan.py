"""``anonlens agan ...``: prepare A-GAN's data, train it, import the reference's checkpoints and
evaluate a generator. Thin shells over :mod:`anonlens.generative.agan`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from ..audit import dumps_strict
from ..display import display_name, one_line
from ..errors import AnonlensError
from ..generative.agan.evaluate import AGAN_EMBEDDERS
from ..io import write_atomic
from .kit import app, epoch_progress, fail, out_console, require

agan_app = typer.Typer(help="A-GAN: replace people with generated ones (prepare data, train, import, evaluate).",
                       no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(agan_app, name="agan")


@agan_app.command("prepare")
def prepare_cmd(
    source: Path = typer.Argument(..., help="A CityScapes folder (leftImg8bit/ + gtBboxCityPersons/), or with --boxes a folder of your own images."),
    output: Path = typer.Option(..., "--output", "-o", help="New folder for images/<phase>/*.png (left original, right input) and bbox/<phase>/*.json."),
    boxes: Optional[Path] = typer.Option(None, "--boxes", help="Region file (anonlens' JSON/CSV format) naming the people in SOURCE: your own data instead of CityScapes."),
    size: int = typer.Option(256, help="Crop size in pixels."),
    min_width: int = typer.Option(40, help="Smallest person box width kept (reference: 40)."),
    max_width: int = typer.Option(100, help="Largest width kept (reference: 100)."),
    min_height: int = typer.Option(120, help="Smallest height kept (reference: 120)."),
    max_height: int = typer.Option(250, help="Largest height kept (reference: 250)."),
    val_fraction: float = typer.Option(0.1, help="Share of frames for validation (best checkpoint)."),
    test_fraction: float = typer.Option(0.1, help="Share of frames for testing (evaluate)."),
    splits: Optional[Path] = typer.Option(None, help="JSON {\"train\": [frames], \"val\": [...], \"test\": [...]} instead of a random split (e.g. the reference's lists)."),
    exclude: Optional[Path] = typer.Option(None, help="Persons to leave out, one <frame>_<i> per line or a JSON list (the reference's overlap list)."),
    seed: int = typer.Option(0, help="Seeds the frame split and the noise."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Build A-GAN's training crops as the reference's notebook does (visible pedestrian boxes, 40-100 x 120-250 px, noise-filled box, 256 px crops centred on it); input problems are listed before anything is written."""
    from ..generative.agan.data import PrepareOptions, prepare_cityscapes, prepare_from_boxes

    try:
        opts = PrepareOptions(size=size, min_width=min_width, max_width=max_width, min_height=min_height, max_height=max_height,
                              val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                              splits=None if splits is None else str(splits), exclude=None if exclude is None else str(exclude))
        bar = epoch_progress("preparing", quiet)
        with bar:
            tid = bar.add_task("frames", total=None, info="")
            progress = lambda done, total: bar.update(tid, completed=done, total=total)  # noqa: E731
            if boxes is None:
                report = prepare_cityscapes(source, output, opts, progress=progress)
            else:
                report = prepare_from_boxes(source, boxes, output, opts, progress=progress)
    except AnonlensError as exc:
        fail(str(exc))
    w = report.written
    out_console.print(f"{report.frames} frames, {report.persons} persons: wrote train {w['train']}, val {w['val']}, test {w['test']} "
                      f"to {escape(display_name(output))}; skipped {json.dumps(report.skipped)}")
    if sum(w.values()) == 0:
        fail("no person passed the filters; nothing to train on", 1)


@agan_app.command("train")
def train_cmd(
    data: Path = typer.Argument(..., help="A folder made by `anonlens agan prepare`."),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder: best/latest generator (.safetensors + .json), latest.pt (resume), metrics.jsonl."),
    preset: str = typer.Option("single-stage", help="single-stage or two-stage: the seed README's two configurations."),
    epochs: Optional[int] = typer.Option(None, help="Epochs at the full learning rate (preset: 100 / 150)."),
    epochs_decay: Optional[int] = typer.Option(None, help="Epochs of linear decay (preset: 100 / 50)."),
    stage1_epochs: Optional[int] = typer.Option(None, help="Two-stage: epochs of stage 1 (preset: 100)."),
    batch_size: int = typer.Option(1, help="Batch size (the reference supports only 1)."),
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (preset: 2e-4 / 1.2e-4)."),
    ngf: int = typer.Option(64, help="Generator width (64 as the reference; smaller for quick CPU trials)."),
    ndf: int = typer.Option(64, help="Discriminator width."),
    l1: str = typer.Option("all", help="all: L1 over the whole crop (reference); outside: L1 outside the box only (nothing pulls the new person towards the original)."),
    update: str = typer.Option("single-forward", help="single-forward (one generator pass per iteration) or reference (three passes)."),
    select_by: str = typer.Option("fid", help="Best checkpoint by fid or kid over the val crops (needs the Inception weights 'fid-inception-v3'), or none (the last epoch)."),
    num_val: int = typer.Option(200, help="Validation crops used for the best checkpoint (reference: 200)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or mps. Default: CUDA when present, else CPU."),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="Mixed precision (float16) on CUDA."),
    workers: int = typer.Option(0, help="Data loader worker processes."),
    seed: int = typer.Option(0),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in OUTPUT from latest.pt (its stored options)."),
    max_iters: Optional[int] = typer.Option(None, help="Stop each epoch after this many iterations (trials)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train A-GAN (a GPU is expected at full size: 200 epochs of ~1200 crops)."""
    require("learn", "anonlens agan train")
    from ..generative.agan.train import preset as make_preset
    from ..generative.agan.train import train_agan
    from ..learn.train import choose_device

    try:
        dev = choose_device(device)
        overrides = {k: v for k, v in {"epochs": epochs, "epochs_decay": epochs_decay, "stage1_epochs": stage1_epochs, "lr": lr}.items()
                     if v is not None}
        cfg = make_preset(preset, batch_size=batch_size, ngf=ngf, ndf=ndf, l1=l1, update=update, select_by=select_by, num_val=num_val,
                          device=dev, amp=amp, workers=workers, seed=seed, **overrides)
        out_console.print(f"device: {dev}" + (" (mixed precision)" if dev == "cuda" and amp else ""))
        bar = epoch_progress(f"A-GAN {cfg.preset}", quiet)
        with bar:
            tid = bar.add_task("train", total=cfg.total_epochs, info="")

            def progress(epoch, total, row):
                info = " ".join(f"{k} {row[k]:.3f}" for k in ("G_L1", "D_image_real", cfg.select_by) if isinstance(row.get(k), float))
                bar.update(tid, completed=epoch, total=total, info=info)

            res = train_agan(data, output, cfg, resume=resume, max_iters=max_iters, progress=progress)
    except AnonlensError as exc:
        fail(str(exc))
    best = res["best"]
    where = escape(display_name(Path(res["output"]) / "best.safetensors"))
    if best:
        out_console.print(f"best epoch {best['epoch']} ({best['metric']} {best['score']:.3f}): {where}")
    else:
        out_console.print(f"last epoch {res['epochs']} (no validation metric): {where}")


@agan_app.command("import")
def import_cmd(
    checkpoints: List[Path] = typer.Argument(..., help="The reference's best_net_G.pth (two-stage: best_net_G1.pth best_net_G2.pth); loaded with weights_only=True."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the anonlens generator (PATH.safetensors + PATH.json)."),
    preset: str = typer.Option("single-stage", help="The configuration it was trained with: single-stage or two-stage."),
    ngf: int = typer.Option(64, help="Its --ngf."),
) -> None:
    """Convert the reference's generator checkpoint(s) into anonlens' safe format (weights that do not fit are an error, never random weights)."""
    require("learn", "anonlens agan import")
    from ..generative.agan.model import import_reference

    try:
        path = import_reference(list(checkpoints), output, preset=preset, ngf=ngf)
    except AnonlensError as exc:
        fail(str(exc))
    out_console.print(f"imported: {escape(display_name(path))}")


@agan_app.command("evaluate")
def evaluate_cmd(
    model: Path = typer.Argument(..., help="A generator (PATH.safetensors + PATH.json from `agan train` or `agan import`)."),
    data: Path = typer.Option(..., "--data", help="The prepared folder (`agan prepare`)."),
    phase: str = typer.Option("test", help="Which crops to generate people for."),
    train_phase: Optional[str] = typer.Option("train", help="The training crops (memorisation); empty to skip."),
    embedder: str = typer.Option("dlib-face", help="osnet_ain_x1_0 (the reference's; weights 'osnet-ain-x1-0'), dlib-face or imagenet-mobilenet_v2 (stand-ins)."),
    embedder_weights: Optional[Path] = typer.Option(None, help="Weights file for the embedder."),
    tau: Optional[float] = typer.Option(None, help="Fixed threshold τ (cosine distance). Default: calibrated by best F1."),
    calibrate_on: Optional[Path] = typer.Option(None, help="Folder of person crops, one sub-folder per identity, for τ (default: augmented pairs of the originals)."),
    variant: str = typer.Option("correct", help="correct, or reference (strict < when scoring; shared identity counts the first of each pair)."),
    limit: Optional[int] = typer.Option(None, help="Use at most this many crops per phase."),
    fidelity: bool = typer.Option(True, "--fidelity/--no-fidelity", help="FID/KID between real and generated crops (needs the Inception weights; skipped with the reason otherwise)."),
    seed: int = typer.Option(0),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results to this JSON file."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """A-GAN's four rates over person-crop embeddings (not anonymized, rank-1 recall, memorisation, shared identity; lower is more private) with τ calibrated for the embedder, plus FID/KID."""
    require("learn", "anonlens agan evaluate")
    from ..generative.agan.benchmark import evaluate_model
    from ..generative.agan.model import load_generator

    try:
        gen, _ = load_generator(model)
        opts = {} if embedder_weights is None else {"weights": str(embedder_weights)}
        emb = AGAN_EMBEDDERS.create(embedder, **opts)
        bar = epoch_progress("generating", quiet)
        with bar:
            tid = bar.add_task("crops", total=None, info="")
            res = evaluate_model(gen, data, embedder=emb, phase=phase, train_phase=train_phase or None, limit=limit, tau=tau,
                                 calibrate_on=None if calibrate_on is None else str(calibrate_on), variant=variant, fidelity=fidelity,
                                 seed=seed, progress=lambda d, t: bar.update(tid, completed=d, total=t))
    except AnonlensError as exc:
        fail(str(exc))
    cal = res.get("calibration")
    out_console.print(f"embedder {res['embedder']}" + (" (stand-in)" if res["standin"] else "") +
                      f", τ {res['tau']:.4f}" + (f" (F1 {cal['f1']}, {cal['pairs']} {cal['kind']} pairs)" if cal else " (given)"))
    memo = "n/a" if res["memorisation"] is None else f"{res['memorisation']:.3f}"
    out_console.print(f"{res['n']} persons: not anonymized {res['not_anonymized']:.3f}, rank-1 recall {res['rank1_recall']:.3f}, "
                      f"memorisation {memo}, shared identity {res['shared_identity']:.3f}" +
                      (f" ({res['n_without']} without an embedding)" if res["n_without"] else ""))
    fid = res.get("fidelity")
    if fid:
        out_console.print("fidelity: " + (f"skipped ({escape(one_line(fid['skipped']))})" if "skipped" in fid else
                                          f"FID {fid['fid'].get('value')}, KID {fid['kid'].get('value')}"))
    if json_out is not None:
        write_atomic(json_out, dumps_strict(res, indent=2).encode())
