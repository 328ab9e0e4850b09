"""Commands for the learned metrics: splits. Thin shells over anonlens.learn."""

from __future__ import annotations

import io as _io
import json
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from ..display import display_name, one_line
from ..errors import AnonlensError
from ..io import encode_image, read_image, write_atomic
from ..io.images import LoadedImage
from ..learn.annotations import check_images, load_annotations
from ..learn.labels import ORIGINAL_PATTERN, num_outputs
from ..learn.splits import write_splits
from .kit import app, epoch_progress, err_console, fail, metric_options, out_console, parse_size, require


@app.command("splits")
def splits_cmd(
    data_dir: Path = typer.Argument(..., help="Folder with HA1.csv and/or HA2.csv and the images they name."),
    csv: Optional[List[Path]] = typer.Option(None, help="Annotation CSV(s) to split (default: HA1.csv and HA2.csv in DATA_DIR)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where dataset_splits/ goes (default: DATA_DIR, as the reference)."),
    split: Optional[List[str]] = typer.Option(None, help="Only these splits (default: all, task-*, loov-<dataset>, anon-<method> for the values present)."),
    seed: int = typer.Option(42, help="Random seed (the reference uses 42)."),
    verify_images: bool = typer.Option(False, "--verify-images", help="Also decode every image (slower) instead of only checking that it exists."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Write the PerceptAnon reference splits, dataset_splits/<HA>/<split>/{train,val,test}.csv:
    the same rows as the reference for the same CSV and seed. Image paths are checked first (inside
    DATA_DIR, present); every problem is listed before anything is written."""
    require("learn", "anonlens splits")

    csvs = list(csv or [p for p in (data_dir / "HA1.csv", data_dir / "HA2.csv") if p.is_file()])
    if not csvs:
        fail(f"no HA1.csv or HA2.csv in {display_name(data_dir)}; name the annotation file(s) with --csv")
    results = {}
    try:
        for path in csvs:
            df, raw = load_annotations(path, with_raw=True)
            problems = check_images(df, data_dir, decode=verify_images)
            if problems:
                for problem in problems[:30]:  # one line each, whatever a file name holds
                    err_console.print(f"  {escape(one_line(problem))}")
                if len(problems) > 30:
                    err_console.print(f"  ... and {len(problems) - 30} more")
                fail(f"{display_name(path)}: {len(problems)} image problem(s) (listed above), nothing written")
            results[path.stem] = write_splits(df, output or data_dir, path.stem, split or None, seed=seed, raw=raw)
    except AnonlensError as exc:
        fail(str(exc))
    failed = [(n, s, c["error"]) for n, splits in results.items() for s, c in splits.items() if "error" in c]
    if json_out:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
        raise typer.Exit(1 if failed else 0)
    table = Table(title=f"splits written to {escape(display_name((output or data_dir) / 'dataset_splits'))}", header_style="bold")
    for col in ("annotations", "split", "train", "val", "test"):
        table.add_column(col, justify="left" if col in ("annotations", "split") else "right")
    for name, splits in results.items():
        for s, c in splits.items():
            if "error" not in c:
                table.add_row(name, s, str(c["train"]), str(c["val"]), str(c["test"]))
    out_console.print(table)
    for name, s, error in failed:
        out_console.print(f"[red]{escape(one_line(name))} {escape(one_line(s))} not written:[/] {escape(one_line(error))}")
    raise typer.Exit(1 if failed else 0)


@app.command("train")
def train_cmd(
    train_csv: Path = typer.Option(..., "--train", help="Training rows (a split's train.csv, or any HA1/HA2-format CSV)."),
    val_csv: Path = typer.Option(..., "--val", help="Validation rows (the best-validation checkpoint is kept)."),
    root: Path = typer.Option(..., help="Data root the image paths are relative to."),
    output: Path = typer.Option(..., "--output", "-o", help="Run folder: best.safetensors/.json, metrics.csv, last_state.pt."),
    ha: str = typer.Option("HA1", help="HA1 (anonymized image) or HA2 (original + anonymized pair)."),
    task: str = typer.Option("regression", help="regression or classification."),
    labels: str = typer.Option("mean", help="mean, labels10, labels5, labels3 or binary."),
    backbone: str = typer.Option("resnet50", help="resnet18/50/152, densenet121, vgg11, alexnet, vit_b_16, mobilenet_v2, efficientnet_b0."),
    epochs: int = typer.Option(200, help="Epochs (reference: 200)."),
    batch_size: int = typer.Option(128, help="Batch size (reference: 128)."),
    lr: float = typer.Option(0.01, help="Learning rate (reference: 0.01)."),
    optimizer: str = typer.Option("sgd", help="sgd (momentum 0.9) or adam (weight decay 1e-4)."),
    class_weights: bool = typer.Option(False, "--class-weights", help="Weight cross-entropy by N / count per class."),
    input_size: int = typer.Option(224, help="Square input size (aspect not kept, as the reference)."),
    freeze_backbone: bool = typer.Option(False, "--freeze-backbone", help="Compute backbone features once, train only the head (fast on a CPU)."),
    pretrained: bool = typer.Option(True, "--pretrained/--no-pretrained", help="Start from ImageNet weights (from the weights registry)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or mps. Default: CUDA when present, else CPU."),
    seed: int = typer.Option(42),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in OUTPUT."),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="Also log every epoch to OUTPUT/tensorboard (pip install 'anonlens\\[tensorboard]')."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train a PerceptAnon metric (HA1 CNN or HA2 Siamese) with the reference's defaults."""
    require("learn", "anonlens train")
    from ..learn.train import TrainOptions, choose_device, train

    try:
        options = TrainOptions(ha=ha, backbone=backbone, labels=labels, task=task, epochs=epochs, batch_size=batch_size,
                               lr=lr, optimizer=optimizer, class_weights=class_weights, input_size=input_size,
                               freeze_backbone=freeze_backbone, pretrained=pretrained, seed=seed, device=device,
                               tensorboard=tensorboard)
        dev = choose_device(device)
        out_console.print(f"device: {dev}" + (" (mixed precision)" if dev == "cuda" else ""))
        train_df, val_df = load_annotations(train_csv), load_annotations(val_csv)
        progress = epoch_progress("training", quiet)
        with progress:
            task_id = progress.add_task("train", total=epochs, info="")
            result = train(train_df, val_df, root, output, options, resume=resume, progress=lambda row: progress.update(
                task_id, completed=row["epoch"] + 1, info=f"loss {row['train_loss']:.4f} val {row['val_loss']:.4f} rho {row['val_spearman']:.3f}"))
    except AnonlensError as exc:
        fail(str(exc))
    out_console.print(f"best epoch {result.best_epoch} (val loss {result.best_val_loss:.4f}): {escape(display_name(result.best_checkpoint))}")


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: Path = typer.Argument(..., help="A trained metric (.safetensors with its .json)."),
    csv: Path = typer.Option(..., help="Rows to evaluate (e.g. a split's test.csv)."),
    root: Path = typer.Option(..., help="Data root the image paths are relative to."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or mps."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Spearman / Kendall / Pearson of a trained metric against the human mean score (and, as the
    paper reports them, against the transformed labels)."""
    require("learn", "anonlens evaluate")
    from ..learn.checkpoint import load_checkpoint
    from ..learn.train import choose_device, evaluate

    try:
        dev = choose_device(device)
        model, config = load_checkpoint(checkpoint, device=dev)
        result = evaluate(model, config, load_annotations(csv), root, device=dev)
    except AnonlensError as exc:
        fail(str(exc))
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    for what, values in (("vs human mean score", result["vs_human_mean"]), ("vs transformed labels (paper)", result["vs_transformed_labels"])):
        shown = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in values.items())
        out_console.print(f"{what}: {shown} (n={result['n']})")


@app.command("explain")
def explain_cmd(
    checkpoint: Path = typer.Argument(..., help="A trained metric (.safetensors with its .json)."),
    anonymized: Path = typer.Option(..., "--anonymized", "-a", help="The anonymized image to explain."),
    original: Optional[Path] = typer.Option(None, help="Its original (needed for HA2 pair models)."),
    target: str = typer.Option("raise", help="raise: what makes the image look more anonymous; lower: what still gives the person away."),
    output: Path = typer.Option(Path("gradcam.png"), "--output", "-o", help="Overlay PNG to write (the raw map goes beside it as .npy)."),
) -> None:
    """Grad-CAM heat map of a trained HA1/HA2 metric over the anonymized image."""
    require("learn", "anonlens explain")
    from ..learn.checkpoint import load_checkpoint
    from ..learn.explain import gradcam, overlay

    try:
        model, config = load_checkpoint(checkpoint)
        anon = read_image(anonymized)
        orig = read_image(original).rgb if original is not None else None
        heat = gradcam(model, config, anon.rgb, orig, target=target)  # type: ignore[arg-type]
    except AnonlensError as exc:
        fail(str(exc))

    write_atomic(output, encode_image(LoadedImage(rgb=anon.rgb), overlay(anon.rgb, heat), format="PNG"))
    buf = _io.BytesIO()
    np.save(buf, heat.astype(np.float32))
    write_atomic(output.with_suffix(".npy"), buf.getvalue())
    out_console.print(f"Grad-CAM ({target} the anonymity score): {escape(display_name(output))}")


semsim_app = typer.Typer(help="SemSim: a triplet embedding of human recognition judgements (train, evaluate).", no_args_is_help=True)
app.add_typer(semsim_app, name="semsim")


@semsim_app.command("train")
def semsim_train_cmd(
    data_dir: Path = typer.Argument(..., help="<id>/ (original + recognised reconstructions), -<id>/ (not recognised), others/."),
    output: Path = typer.Option(..., "--output", "-o", help="Model path (writes PATH.safetensors, PATH.json, PATH.metrics.csv)."),
    epochs: int = typer.Option(100, help="Epochs (reference: 100)."),
    batch_size: int = typer.Option(64, help="Triplets per batch (reference: 64)."),
    lr: float = typer.Option(0.05, help="SGD learning rate, Nesterov momentum 0.9, weight decay 5e-4 (reference)."),
    margin: float = typer.Option(1.0, help="Triplet margin (reference: 1.0)."),
    width: int = typer.Option(64, help="Channels of the first ResNet stage (64 = ResNet-18, the reference; smaller is faster)."),
    original_pattern: str = typer.Option(ORIGINAL_PATTERN, help="Regex on file names that marks each id's original."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or mps. Default: CUDA when present."),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train SemSim (CIFAR-style ResNet-18, triplet loss, 32x32 inputs) with the reference's hyperparameters."""
    require("learn", "anonlens semsim train")
    from ..learn.semsim import SemSimTrainOptions, train_semsim
    from ..learn.train import choose_device

    try:
        dev = choose_device(device)
        out_console.print(f"device: {dev}")
        opts = SemSimTrainOptions(epochs=epochs, batch_size=batch_size, lr=lr, margin=margin, width=width, seed=seed, device=dev)
        progress = epoch_progress("training SemSim", quiet)
        with progress:
            tid = progress.add_task("semsim", total=epochs, info="")
            weights, history = train_semsim(data_dir, output, opts, original_pattern=original_pattern, progress=lambda row: progress.update(
                tid, completed=row["epoch"], info=f"loss {row['triplet_loss']:.4f}"))
    except AnonlensError as exc:
        fail(str(exc))
    out_console.print(f"final triplet loss {history[-1]['triplet_loss']:.4f} (first epoch {history[0]['triplet_loss']:.4f}): {escape(display_name(weights))}")


@semsim_app.command("evaluate")
def semsim_evaluate_cmd(
    checkpoint: Path = typer.Argument(..., help="A SemSim model (.safetensors with its .json)."),
    data_dir: Path = typer.Argument(..., help="Folder in the SemSim layout with human judgements (<id>/, -<id>/)."),
    config_pattern: str = typer.Option(r"^(.*?)_[^_]*$", help="Regex whose first group, on a file's stem, names its attack configuration (default: all before the last '_')."),
    original_pattern: str = typer.Option(ORIGINAL_PATTERN, help="Regex marking each id's original."),
    normalize: bool = typer.Option(False, "--normalize", help="L2-normalise embeddings before the distance (the reference does not)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the per-image table (CSV) here."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Correlation of SemSim distances with human recognition: per attack configuration (set level,
    human = 1 - recognised/total, as the reference) and per image."""
    require("learn", "anonlens semsim evaluate")
    from ..learn.semsim import image_level_correlation, load_semsim, load_semsim_folders, semsim_distances, semsim_table, set_level_correlation

    try:
        model = load_semsim(checkpoint)
        data = load_semsim_folders(data_dir, original_pattern=original_pattern)
        table = semsim_table(data, config_pattern=config_pattern)
        table["semsim"] = semsim_distances(model, [read_image(p).rgb for p in table["original"]],
                                           [read_image(p).rgb for p in table["reconstruction"]], normalize=normalize)
    except AnonlensError as exc:
        fail(str(exc))
    result = {"set_level": set_level_correlation(table), "image_level": image_level_correlation(table), "normalized": normalize}
    if output is not None:
        write_atomic(output, table.to_csv(index=False).encode())
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2, default=float) + "\n")
        return
    t = Table(title="SemSim vs human recognition", header_style="bold")
    for col in ("level", "n", "spearman", "kendall", "pearson"):
        t.add_column(col, justify="left" if col == "level" else "right")
    for r in (result["set_level"], result["image_level"]):
        t.add_row(r["level"] + (" (configurations)" if r["level"] == "set" else " (images)"), str(r["n"]),
                  *("n/a" if r[k] is None else f"{r[k]:.3f}" for k in ("spearman", "kendall", "pearson")))
    out_console.print(t)


@app.command("benchmark")
def benchmark_cmd(
    data_dir: Path = typer.Argument(..., help="Data root with dataset_splits/<HA>/<split>/test.csv (from `anonlens splits`) and the images."),
    output: Path = typer.Option(Path("benchmark"), "--output", "-o", help="Folder for benchmark.md, benchmark.csv, benchmark.png and scores/."),
    models: Optional[List[Path]] = typer.Option(None, "--models", help="Trained HA1/HA2 checkpoints to include (repeatable)."),
    semsim: Optional[List[Path]] = typer.Option(None, "--semsim", help="SemSim models to include (repeatable)."),
    ha: str = typer.Option("HA1", help="HA1 or HA2 splits."),
    split: Optional[List[str]] = typer.Option(None, help="Only these splits (default: every split found)."),
    metrics: str = typer.Option("psnr,mse,ssim,lpips,identity", help="Per-pair metrics (a metric whose weights are missing is reported as not computed)."),
    metric_option: Optional[List[str]] = typer.Option(None, "--metric-option", "-m", help="metric.key=value, e.g. -m lpips.weights=alex.pth -m fid.weights=pt_inception.pth."),
    fid: bool = typer.Option(True, "--fid/--no-fid", help="FID per (data set, method) group."),
    resize: Optional[str] = typer.Option(None, help="Resize both images to WxH before the per-pair metrics, e.g. 224x224."),
    json_out: bool = typer.Option(False, "--json"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """The paper's table: Spearman rho and Kendall tau of PSNR, MSE, SSIM, LPIPS, FID, identity
    distance and each learned model against the human mean score, for every split (Markdown, CSV, plot)."""
    require("learn", "anonlens benchmark")
    from ..assess.benchmark import BenchmarkOptions, run_benchmark

    try:
        opts = BenchmarkOptions(ha=ha, splits=tuple(split) if split else None, metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()),
                                fid=fid, models=tuple(str(m) for m in models or ()), semsim=tuple(str(s) for s in semsim or ()),
                                metric_options=metric_options(metric_option), resize=parse_size(resize))
        res = run_benchmark(data_dir, output, opts, progress=None if quiet else (lambda msg: out_console.print(msg, style="dim")))
    except AnonlensError as exc:
        fail(str(exc))
    if json_out:
        sys.stdout.write(json.dumps({"rows": res.rows, "notes": res.notes, "files": {k: str(v) for k, v in res.files.items()}}, indent=2) + "\n")
        return
    out_console.print(res.files["md"].read_text(encoding="utf-8"))
    out_console.print(f"written: {escape(display_name(res.files['md']))}, {escape(display_name(res.files['csv']))}, {escape(display_name(res.files['png']))}")


@app.command("import-checkpoint")
def import_checkpoint_cmd(
    source: Path = typer.Argument(..., help="A PerceptAnon reference checkpoint (.pth.tar with a 'state_dict'); loaded with weights_only=True."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the anonlens checkpoint (PATH.safetensors + PATH.json)."),
    ha: str = typer.Option("HA1", help="HA1 or HA2 (the model the checkpoint was trained as)."),
    backbone: str = typer.Option("resnet50", help="Its backbone."),
    task: str = typer.Option("regression", help="regression or classification."),
    labels: str = typer.Option("mean", help="mean, labels10, labels5, labels3 or binary."),
    input_size: int = typer.Option(224),
) -> None:
    """Convert a reference PerceptAnon checkpoint into anonlens' safe format (once; pickles are never loaded afterwards)."""
    require("learn", "anonlens import-checkpoint")
    from ..learn.checkpoint import import_reference_checkpoint
    from ..learn.models import ModelConfig

    try:
        config = ModelConfig(ha=ha, backbone=backbone, labels=labels, task=task, outputs=num_outputs(labels, task), input_size=input_size)  # type: ignore[arg-type]
        path = import_reference_checkpoint(source, config, output)
    except AnonlensError as exc:
        fail(str(exc))
    out_console.print(f"imported: {escape(display_name(path))}")
