"""``anonlens attack ...``: reconstruct images from the gradient a federated client would share,
and measure the leak. Thin shells over :mod:`anonlens.attacks`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from ..display import display_name, one_line
from ..errors import AnonlensError
from .kit import app, epoch_progress, err_console, fail, out_console, parse_options, require, train_classifier_cli

attack_app = typer.Typer(help="Gradient-inversion attacks (DLG, Inverting Gradients): what a shared gradient gives away.",
                         no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(attack_app, name="attack")


@attack_app.command("run")
def run_cmd(
    images: List[Path] = typer.Argument(..., help="Images, or folders with one sub-folder per class (the folder name is the image's label)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for <id>/original.png, <id>/<config>_s<seed>.png, attack.jsonl, attack.json, pairs.csv (SemSim's layout)."),
    victim: str = typer.Option("resnet20-4", help="Classifier attacked: a checkpoint of `attack train-victim`/`train-identity`, a built-in architecture "
                               "(resnet20-4, cifar-resnet18, lenet-zhu; untrained unless --victim-weights) or torchvision:<arch> with --victim-weights."),
    victim_weights: Optional[Path] = typer.Option(None, help="State dict for a built-in or torchvision victim (safetensors, or a weights-only .pt)."),
    classes: Optional[int] = typer.Option(None, help="Number of classes of a built-in victim without weights (default 10)."),
    input_size: Optional[int] = typer.Option(None, help="Input size of a built-in/torchvision victim (default 32 / 224)."),
    attack: str = typer.Option("inverting-gradients", help="dlg or inverting-gradients (see `anonlens attack presets`)."),
    preset: Optional[str] = typer.Option(None, help="Published settings (default: dlg / inversed, SemSim's configuration)."),
    iterations: Optional[int] = typer.Option(None, help="Override the preset's iterations per restart."),
    restarts: Optional[int] = typer.Option(None, help="Override the preset's restarts (the best is kept)."),
    labels: Optional[str] = typer.Option(None, help="known (the attacker has the labels), recover (iDLG where it applies, else joint), joint (optimised with the image). Default: the preset's."),
    setting: Optional[List[str]] = typer.Option(None, "--setting", "-s", help="Any other setting, key=value (cost, optimizer, lr, tv, signed, boxed, init, lr_decay)."),
    defence: Optional[str] = typer.Option(None, help="Defence on the shared gradient: gaussian-noise[:sigma] or prune[:share]. Default: none."),
    label: Optional[str] = typer.Option(None, help="One class (name or index) for every image, instead of folder names."),
    batch_size: int = typer.Option(1, min=1, help="Images per shared gradient (1: SemSim's setting)."),
    seed: int = typer.Option(0, help="Seeds the starting images (and the defence's noise)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or mps (default: cuda when present)."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision for the model's forward pass (CUDA only)."),
    resume: bool = typer.Option(False, "--resume", help="Finish a set that was stopped: finished images are kept, an attack in progress goes on from its saved state."),
    metrics: str = typer.Option("psnr,ssim,lpips,identity", help="Metrics per reconstruction from the registry (a metric that cannot run offline is left out and said)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Reconstruct each image (or batch) from the gradient its client would share, write the reconstructions in
    SemSim's layout (ready for `anonlens score --pairs OUT/pairs.csv --semsim MODEL` and for human labelling) and
    record the leak per image. Exit 1 when some image could not be attacked."""
    require("learn", "anonlens attack run")
    from ..attacks.defences import parse_defence
    from ..attacks.inversion import create_attack
    from ..attacks.run import collect_images, run_attack
    from ..attacks.victims import load_victim
    from ..learn.train import choose_device

    try:
        dev = choose_device(device)
        overrides = parse_options(setting, "--setting")
        overrides.update({k: v for k, v in (("iterations", iterations), ("restarts", restarts), ("labels", labels)) if v is not None})
        atk = create_attack(attack, preset=preset, **overrides)
        dfc = parse_defence(defence)
        vic = load_victim(victim, weights=victim_weights, num_classes=classes, input_size=input_size, seed=seed)
        found, problems = collect_images(images, label=label)
        for p in problems:
            err_console.print(f"[yellow]{escape(one_line(p))}[/]")
        if not found:
            fail("no images to attack" + (f" ({len(problems)} problem(s) above)" if problems else ""))
        err_console.print(f"device: {dev}{' (mixed precision)' if amp else ''}; victim: {escape(one_line(vic.source))}; "
                          f"{atk.name} preset {atk.preset}; defence {dfc.label}; {len(found)} image(s)")
        total = atk.config.iterations * atk.config.restarts
        bar = epoch_progress("attack", quiet)
        with bar:
            task = bar.add_task("attack", total=total, info="")
            state = {"name": ""}

            def on_batch(i, n, batch):
                state["name"] = f"batch {i + 1}/{n} ({display_name(batch[0].id)}{' +' + str(len(batch) - 1) if len(batch) > 1 else ''})"
                bar.reset(task, total=total, info=escape(state["name"]))

            def progress(trial, iteration, value):
                bar.update(task, completed=trial * atk.config.iterations + iteration,
                           info=escape(f"{state['name']} restart {trial + 1} gradient loss {value:.4g}"))

            run = run_attack(vic, found, output, atk, dfc, seed=seed, batch_size=batch_size, device=dev, amp=amp,
                             resume=resume, metrics=[m.strip() for m in metrics.split(",") if m.strip()],
                             on_batch=on_batch, progress=progress)
    except KeyboardInterrupt:
        err_console.print(f"[yellow]stopped; run again with --resume to go on from the saved state in {escape(display_name(output))}[/]")
        raise typer.Exit(130)
    except AnonlensError as exc:
        fail(str(exc))
    for name, why in run.metric_notes.items():
        err_console.print(f"[yellow]metric {escape(name)} left out: {escape(one_line(why))}[/]")
    for e in run.errors:
        err_console.print(f"[red]{escape(one_line(e))}[/]")
    if json_out:
        sys.stdout.write(json.dumps(run.summary, indent=2, default=str) + "\n")
    else:
        m = run.summary["means"]
        fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
        out_console.print(f"{run.summary['reconstructed']} reconstruction(s) of {escape(run.config)} in {escape(display_name(run.output))}"
                          + (f" ({len(run.skipped)} already done)" if run.skipped else ""))
        out_console.print(f"mean PSNR {fmt(m['psnr'], '.2f')} dB, SSIM {fmt(m['ssim'], '.3f')}, LPIPS {fmt(m['lpips'], '.3f')}, "
                          f"identity distance {fmt(m['identity_distance'], '.3f')}, gradient loss {fmt(m['gradient_loss'], '.3g')}, "
                          f"{fmt(m['seconds'], '.1f')} s per image")
    raise typer.Exit(1 if run.errors or problems else 0)


@attack_app.command("presets")
def presets_cmd(json_out: bool = typer.Option(False, "--json")) -> None:
    """The attacks, their published presets and settings, and the defences."""
    require("learn", "anonlens attack presets")

    from ..attacks.defences import DEFENCES
    from ..attacks.inversion import ATTACKS

    rows = []
    for name in ATTACKS.names():
        cls = ATTACKS.get(name).factory
        for preset, cfg in cls.presets.items():
            rows.append({"attack": name, "preset": preset, "default": preset == cls.default_preset, **asdict(cfg),
                         "note": cls.notes.get(preset, "")})
    if json_out:
        sys.stdout.write(json.dumps({"presets": rows, "defences": {e.name: e.summary for e in DEFENCES.entries()}}, indent=2) + "\n")
        return
    for r in rows:
        flags = ", ".join(f for f, on in (("signed", r["signed"]), ("boxed", r["boxed"]), ("lr decay", r["lr_decay"])) if on) or "plain steps"
        line = (f"[bold]{r['attack']} --preset {r['preset']}[/]{' (default)' if r['default'] else ''}: {r['cost']} cost, {r['optimizer']} lr {r['lr']:g}, "
                f"{r['iterations']} iterations x {r['restarts']} restart(s), TV {r['tv']:g}, {flags}, init {r['init']}, labels {r['labels']}")
        out_console.print(line + (f"\n    {escape(r['note'])}" if r["note"] else ""))
    out_console.print("defences (--defence NAME[:LEVEL]): " + " | ".join(f"{e.name}: {e.summary}" for e in DEFENCES.entries()))


@attack_app.command("train-victim")
def train_victim_cmd(
    data_dir: Path = typer.Argument(..., help="One sub-folder per class, images inside."),
    output: Path = typer.Option(..., "--output", "-o", help="Checkpoint path (writes PATH.safetensors and PATH.json)."),
    arch: str = typer.Option("resnet20-4", help="resnet20-4, cifar-resnet18, lenet-zhu (32x32, from scratch) or any `train-identity` architecture."),
    input_size: int = typer.Option(32, help="Input size in pixels."),
    epochs: int = typer.Option(30),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(1e-3, help="Adam learning rate."),
    val_fraction: float = typer.Option(0.2, help="Share of each class held out for validation (best checkpoint)."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or mps (default: cuda when present)."),
    seed: int = typer.Option(0),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train the classifier a federated client would share gradients of (CIFAR-style ResNet20-4 by default):
    the victim of `anonlens attack run --victim PATH`."""
    require("learn", "anonlens attack train-victim")
    opts = dict(arch=arch, input_size=input_size, epochs=epochs, batch_size=batch_size, lr=lr, val_fraction=val_fraction,
                pretrained=False, seed=seed)
    train_classifier_cli(data_dir, output, opts, device, quiet, "training victim", "victim")
