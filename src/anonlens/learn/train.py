"""Train and evaluate HA1/HA2 metrics.

Defaults are the reference's: SGD (lr 0.01, momentum 0.9) or Adam (weight decay 1e-4), cosine
schedule over the epochs, 200 epochs, batch 128, 224x224 inputs (aspect not kept), training
augmentation horizontal flip + rotation within +-10 degrees, ImageNet normalisation, cross-entropy
(optionally class-weighted N / count) or MSE on the sigmoid output, best-validation-loss
checkpoint. Differences: the device is chosen explicitly (never a hard-wired cuda:0), mixed
precision on CUDA, images are decoded once (``ImageCache``), and ``freeze_backbone`` computes the
backbone features once and trains only the head (seconds per epoch on a CPU).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from scipy import stats
from torch import nn

from ..assess.correlate import correlations
from ..errors import AnonlensError
from ..io import atomic_writer
from .checkpoint import save_checkpoint
from .data import ImageCache, PairDataset, augment_pair, normalize
from .labels import label_transform, num_outputs
from .models import ModelConfig, create_model
from .scoring import to_human_scale

__all__ = ["TrainOptions", "TrainResult", "train", "predict", "evaluate", "choose_device"]


@dataclass(frozen=True)
class TrainOptions:
    ha: Literal["HA1", "HA2"] = "HA1"
    backbone: str = "resnet50"
    labels: str = "mean"
    task: Literal["regression", "classification"] = "regression"
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.01
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.9
    weight_decay: float | None = None  # None: 0 for SGD, 1e-4 for Adam (the reference's)
    class_weights: bool = False
    input_size: int = 224
    augment: bool = True
    freeze_backbone: bool = False
    pretrained: bool = True
    weights: str | None = None
    seed: int = 42
    device: str | None = None  # None: CUDA when present, else CPU
    amp: bool = True  # mixed precision, CUDA only
    tensorboard: bool = False  # also log every epoch to OUT/tensorboard (needs the tensorboard package)


@dataclass
class TrainResult:
    best_checkpoint: Path
    best_epoch: int
    best_val_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)
    device: str = "cpu"


def choose_device(requested: str | None) -> str:
    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise AnonlensError("--device cuda was asked for, but torch sees no CUDA GPU")
    if requested == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise AnonlensError("--device mps was asked for, but MPS is not available")
    if requested not in ("cpu", "cuda", "mps"):
        raise AnonlensError(f"device must be cpu, cuda or mps; got '{requested}'")
    return requested


def _config(options: TrainOptions) -> ModelConfig:
    return ModelConfig(ha=options.ha, backbone=options.backbone, labels=options.labels, task=options.task,
                       outputs=num_outputs(options.labels, options.task), input_size=options.input_size)


def _loss_fn(options: TrainOptions, targets: np.ndarray, device: str) -> nn.Module:
    if options.task == "regression":
        return nn.MSELoss()
    weight = None
    if options.class_weights:
        n = num_outputs(options.labels, options.task)
        counts = np.bincount(targets.astype(int), minlength=n).astype(np.float64)
        weight = torch.tensor(np.where(counts > 0, len(targets) / np.maximum(counts, 1), 0.0), dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight)


def _target_tensor(values: np.ndarray, task: str, device: str) -> torch.Tensor:
    if task == "regression":
        return torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1)
    return torch.tensor(values, dtype=torch.long, device=device)


class _Features:
    """Frozen-backbone mode: backbone features of every cached image, computed once."""

    def __init__(self, model, cache: ImageCache, config: ModelConfig, device: str, batch: int = 64):
        model.backbone.eval()
        n = len(cache._images)
        chunks = []
        with torch.inference_mode():
            for i in range(0, n, batch):
                x = normalize(cache.tensor(range(i, min(n, i + batch))).to(device), config.mean, config.std)
                chunks.append(model.backbone(x).float())
        self.all = torch.cat(chunks) if chunks else torch.zeros(0)


def _forward(model, config, cache, ds: PairDataset, idx, device, *, features=None, augment=None, gen=None):
    if features is not None:
        fa = features.all[torch.as_tensor(ds.anon[idx])]
        if config.ha == "HA1":
            out = model.head(fa)
        else:
            fo = features.all[torch.as_tensor(ds.orig[idx])]
            out = model.head(torch.cat([fo, fa], dim=1))
        return torch.sigmoid(out) if config.outputs == 1 else out
    anon = cache.tensor(ds.anon[idx])
    orig = cache.tensor(ds.orig[idx]) if ds.orig is not None else None
    if augment:
        anon, orig = augment_pair(anon, orig, gen)
    anon = normalize(anon.to(device), config.mean, config.std)
    orig = normalize(orig.to(device), config.mean, config.std) if orig is not None else None
    return model(anon, orig)


def train(
    train_df,
    val_df,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: TrainOptions | None = None,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train a metric on ``train_df``, keep the checkpoint with the lowest validation loss in
    ``out_dir/best.{safetensors,json}``, log every epoch to ``out_dir/metrics.csv``, and save
    ``out_dir/last_state.pt`` (tensors and numbers only; loaded with ``weights_only=True``) so that
    ``resume=True`` continues an interrupted run where it stopped."""
    options = options or TrainOptions()
    device = choose_device(options.device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(options.seed)
    np.random.seed(options.seed)
    config = _config(options)
    model = create_model(config, pretrained=options.pretrained, weights=options.weights).to(device)
    target_fn = label_transform(options.labels, options.task)
    cache = ImageCache(root, options.input_size)
    need_orig = options.ha == "HA2"
    train_ds = PairDataset(train_df, cache, target_fn, need_original=need_orig)
    val_ds = PairDataset(val_df, cache, target_fn, need_original=need_orig)
    features = _Features(model, cache, config, device) if options.freeze_backbone else None
    params = model.head.parameters() if options.freeze_backbone else model.parameters()
    if options.freeze_backbone:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    wd = options.weight_decay if options.weight_decay is not None else (1e-4 if options.optimizer == "adam" else 0.0)
    if options.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=options.lr, momentum=options.momentum, weight_decay=wd)
    else:
        opt = torch.optim.Adam(params, lr=options.lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=options.epochs)
    loss_fn = _loss_fn(options, train_ds.targets, device)
    use_amp = options.amp and device == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    gen = torch.Generator().manual_seed(options.seed)
    history: list[dict[str, Any]] = []
    writer = _tensorboard(out) if options.tensorboard else None
    best = (math.inf, -1)
    start_epoch = 0
    state_path = out / "last_state.pt"
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        (model.head if options.freeze_backbone else model).load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        if use_amp and state.get("scaler"):  # the loss scale carries on where it was (CUDA mixed precision)
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"]) + 1
        best = (float(state["best_val_loss"]), int(state["best_epoch"]))
        history = json.loads((out / "history.json").read_text()) if (out / "history.json").is_file() else []

    for epoch in range(start_epoch, options.epochs):
        t0 = time.perf_counter()
        model.train()
        if options.freeze_backbone:
            model.backbone.eval()
        order = torch.randperm(len(train_ds), generator=gen).numpy()
        total, seen = 0.0, 0
        for i in range(0, len(order), options.batch_size):
            idx = order[i : i + options.batch_size]
            y = _target_tensor(train_ds.targets[idx], options.task, device)
            with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
                pred = _forward(model, config, cache, train_ds, idx, device, features=features,
                                augment=options.augment and not options.freeze_backbone, gen=gen)
                loss = loss_fn(pred.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += loss.item() * len(idx)
            seen += len(idx)
        sched.step()
        val_loss, val_scores = _evaluate_loss(model, config, cache, val_ds, device, loss_fn, options, features)
        rho = float(stats.spearmanr(val_scores, val_ds.scores).statistic) if len(val_ds) > 2 and np.ptp(val_scores) > 0 else float("nan")
        row = {"epoch": epoch, "train_loss": total / max(seen, 1), "val_loss": val_loss, "val_spearman": rho,
               "lr": sched.get_last_lr()[0], "seconds": round(time.perf_counter() - t0, 3),
               "images_per_second": round(seen / max(time.perf_counter() - t0, 1e-9), 2)}
        history.append(row)
        if writer is not None:
            for key in ("train_loss", "val_loss", "val_spearman", "lr", "images_per_second"):
                writer.add_scalar(key, row[key], epoch)
            writer.flush()
        if val_loss < best[0]:
            best = (val_loss, epoch)
            save_checkpoint(model, config, out / "best", extra={"epoch": epoch, "val_loss": val_loss, "options": asdict(options)})
        _write_log(out, history)
        buf = io.BytesIO()
        trained = model.head if options.freeze_backbone else model  # frozen: the backbone never changes
        torch.save({"model": trained.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "generator": gen.get_state(), "scaler": scaler.state_dict(), "epoch": epoch, "best_val_loss": best[0], "best_epoch": best[1]}, buf)
        with atomic_writer(state_path) as fh:
            fh.write(buf.getvalue())
        if progress:
            progress(row)
    if writer is not None:
        writer.close()
    return TrainResult(out / "best.safetensors", best[1], best[0], history, device)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise AnonlensError("--tensorboard needs the tensorboard package: pip install 'anonlens[tensorboard]'") from None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def _evaluate_loss(model, config, cache, ds, device, loss_fn, options, features, batch: int = 64):
    model.eval()
    total, outputs = 0.0, []
    with torch.inference_mode():
        for i in range(0, len(ds), batch):
            idx = np.arange(i, min(len(ds), i + batch))
            pred = _forward(model, config, cache, ds, idx, device, features=features)
            total += float(loss_fn(pred.float(), _target_tensor(ds.targets[idx], options.task, device))) * len(idx)
            outputs.append(pred.float().cpu())
    out = torch.cat(outputs) if outputs else torch.zeros(0, config.outputs)
    return total / max(len(ds), 1), to_human_scale(out, config.labels, config.task)


def _write_log(out: Path, history: list[dict[str, Any]]) -> None:
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    with atomic_writer(out / "metrics.csv") as fh:
        fh.write(text.getvalue().encode("utf-8"))
    with atomic_writer(out / "history.json") as fh:
        fh.write(json.dumps(history).encode("utf-8"))


def predict(model, config: ModelConfig, df, root, *, device: str = "cpu", batch: int = 32) -> tuple[np.ndarray, torch.Tensor]:
    """Scores on the human 1..10 scale and the raw outputs for every row of ``df``."""
    cache = ImageCache(root, config.input_size)
    ds = PairDataset(df, cache, lambda s: 0, need_original=config.ha == "HA2")
    model = model.to(device).eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(ds), batch):
            outs.append(_forward(model, config, cache, ds, np.arange(i, min(len(ds), i + batch)), device).float().cpu())
    raw = torch.cat(outs) if outs else torch.zeros(0, config.outputs)
    return to_human_scale(raw, config.labels, config.task), raw


def evaluate(model, config: ModelConfig, df, root, *, device: str = "cpu") -> dict[str, Any]:
    """Spearman/Kendall/Pearson of the model's scores against the human mean score, and, as the
    reference reports them, of its class index (classification) or sigmoid output (regression)
    against the transformed labels."""
    scores, raw = predict(model, config, df, root, device=device)
    human = df["score_mean"].to_numpy(dtype=np.float64)
    target = np.array([label_transform(config.labels, config.task)(s) for s in human], dtype=np.float64)
    ref_pred = raw.argmax(dim=1).numpy().astype(np.float64) if config.task == "classification" else raw.reshape(-1).numpy()

    def corr(a, b):
        r = correlations(np.asarray(a, np.float64), b)
        return {k: r[k] for k in ("spearman", "kendall", "pearson")}

    return {"n": len(df), "vs_human_mean": corr(scores, human), "vs_transformed_labels": corr(ref_pred, target)}
