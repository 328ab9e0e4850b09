"""Attack a set of labelled images and write what leaks, in SemSim's folder layout.

``OUT/<id>/original.png`` is the image as the client's model saw it (resized to the victim's
input); ``OUT/<id>/<config>_s<seed>.png`` are the reconstructions, ``<config>`` =
``<attack>-<preset>`` plus ``+<defence>-<level>`` when a defence was applied. Everything before the
last ``_`` is the configuration, as ``anonlens semsim evaluate`` groups them; a person labelling
the leak moves a reconstruction they do not recognise into ``OUT/-<id>/``.

Beside them: ``attack.jsonl`` (one record per reconstruction: attack, preset, seed, iterations,
final gradient loss, time, labels, and PSNR/SSIM/LPIPS/identity distance from the metric
registry), ``attack.json`` (the last run's settings and means), ``pairs.csv`` (for
``anonlens score --pairs``) and ``.state/`` (the saved state of an attack in progress).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..audit import dumps_strict
from ..edi.classifier import square_unit_tensor
from ..errors import AnonlensError
from ..io import discover_inputs, read_image, write_atomic
from ..io.files import atomic_writer
from ..metrics import create_metric
from ..metrics.base import PairBatch
from .defences import Defence
from .inversion import GradientInversionAttack, invert
from .objectives import client_gradient
from .victims import Victim

__all__ = ["AttackImage", "collect_images", "AttackRun", "run_attack", "DEFAULT_ATTACK_METRICS", "config_label"]

DEFAULT_ATTACK_METRICS = ("psnr", "ssim", "lpips", "identity")
RECORDS, SUMMARY, PAIRS = "attack.jsonl", "attack.json", "pairs.csv"


@dataclass(frozen=True)
class AttackImage:
    path: Path
    label: str
    id: str


def _safe_id(stem: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "image"
    return text


def collect_images(inputs: Sequence[str | os.PathLike], *, label: str | None = None) -> tuple[list[AttackImage], list[str]]:
    """Images to attack, each with its class: ``label`` for all, or the name of the folder the
    image lies in under a named folder (``DATA/<class>/img.png``). Returns (images, problems)."""
    images, problems, used = [], [], set()
    for f in discover_inputs(inputs):
        if f.skip:
            problems.append(f"{f.path}: {f.skip}")
            continue
        if not f.supported:
            if f.explicit:
                problems.append(f"{f.path}: not an image this tool reads")
            continue
        parts = Path(f.rel).parts
        cls = label if label is not None else (parts[0] if len(parts) > 1 else None)
        if cls is None:
            problems.append(f"{f.path}: no class (put it in a folder named after its class, or give --label)")
            continue
        base = _safe_id(f"{cls}-{f.path.stem}" if label is None else f.path.stem)
        ident, k = base, 2
        while ident in used:
            ident, k = f"{base}-{k}", k + 1
        used.add(ident)
        images.append(AttackImage(f.path, cls, ident))
    return images, problems


def config_label(attack: GradientInversionAttack, defence: Defence) -> str:
    text = f"{attack.name}-{attack.preset}"
    if attack.overrides:
        text += "+" + "+".join(f"{k}-{v}" for k, v in sorted(attack.overrides.items()))
    if defence.level is not None:
        text += f"+{defence.label}"
    return text.replace("_", "-")


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _to_uint8(x: torch.Tensor) -> list[np.ndarray]:
    arr = (x.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(a) for a in arr]


def _read_records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise AnonlensError(f"{path}: line {i} is not JSON (edit or remove it)") from None
    return out


@dataclass
class AttackRun:
    output: Path
    config: str
    records: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # ids already done (resume)
    errors: list[str] = field(default_factory=list)
    metric_notes: dict[str, str] = field(default_factory=dict)
    class_names: dict[str, int] = field(default_factory=dict)  # names given to an unnamed victim's outputs
    summary: dict[str, Any] = field(default_factory=dict)


class _Metrics:
    """The attack's metrics from the registry; one that cannot be built (LPIPS without its
    backbone's weights offline) is left out with its reason, said once."""

    def __init__(self, names: Sequence[str]):
        self.metrics, self.notes = [], {}
        for name in names:
            try:
                m = create_metric(name)
                self.metrics.append(m)
            except Exception as exc:  # noqa: BLE001 - reported, the attack goes on
                self.notes[name] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    def __call__(self, originals: list[np.ndarray], reconstructions: list[np.ndarray]) -> list[dict]:
        rows = [dict() for _ in originals]
        batch = PairBatch(anonymized_images=reconstructions, original_images=originals)
        for m in list(self.metrics):
            try:
                values = m(batch)
            except Exception as exc:  # noqa: BLE001
                self.notes[m.name] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self.metrics.remove(m)
                continue
            for col, vals in values.items():
                for row, v in zip(rows, vals):
                    row[col] = None if isinstance(v, float) and not np.isfinite(v) else (v.item() if hasattr(v, "item") else v)
        return rows


def run_attack(
    victim: Victim,
    images: Sequence[AttackImage],
    output: str | os.PathLike,
    attack: GradientInversionAttack,
    defence: Defence,
    *,
    seed: int = 0,
    batch_size: int = 1,
    device: str = "cpu",
    amp: bool = False,
    resume: bool = False,
    metrics: Sequence[str] = DEFAULT_ATTACK_METRICS,
    on_batch: Callable[[int, int, list[AttackImage]], None] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> AttackRun:
    """Compute each batch's shared gradient (the victim in eval mode, mean cross-entropy over the
    batch, then the defence), reconstruct it, write originals and reconstructions, record them.
    A batch whose images cannot be read is an error of those images; the others go on."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise AnonlensError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    cfg = config_label(attack, defence)
    records_path = out / RECORDS
    previous = _read_records(records_path)
    done = {r["id"] for r in previous if r.get("config") == cfg and r.get("seed") == seed}
    if done and not resume:
        raise AnonlensError(f"{out}: already holds reconstructions of {cfg} (seed {seed}) for {len(done)} image(s); "
                            "--resume to finish the set, or another --output")
    run = AttackRun(out, cfg)
    run.class_names = victim.name_classes([im.label for im in images])
    measure = _Metrics(metrics)
    model = victim.model.to(device).eval()
    todo = [im for im in images if im.id not in done]
    run.skipped = sorted(im.id for im in images if im.id in done)
    gen = torch.Generator().manual_seed(seed)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    state_dir = out / ".state"
    for bi, batch in enumerate(batches):
        if on_batch is not None:
            on_batch(bi, len(batches), batch)
        pixels, ok = [], []
        for im in batch:
            try:
                rgb = read_image(im.path).rgb
                label = victim.label_index(im.label)
            except AnonlensError as exc:
                run.errors.append(f"{im.path}: {exc}" if str(im.path) not in str(exc) else str(exc))
                continue
            pixels.append(rgb)
            ok.append((im, label))
        if not ok:
            continue
        x01 = square_unit_tensor(pixels, victim.input_size).to(device)
        x = victim.normalize(x01)
        y = torch.tensor([lab for _, lab in ok], device=device)
        gradient = defence(client_gradient(model, x, y), gen)
        state_dir.mkdir(exist_ok=True)
        state = state_dir / f"{cfg}_s{seed}_{'+'.join(im.id for im, _ in ok)}.pt"
        if len(state.name) > 200:
            state = state_dir / f"{cfg}_s{seed}_{ok[0][0].id}-and-{len(ok) - 1}.pt"
        res = invert(model, gradient, y, tuple(x.shape), attack.config, mean=victim.mean, std=victim.std,
                     seed=seed, amp=amp, state_path=state, progress=progress)
        recs = _to_uint8(victim.denormalize(res.images))
        origs = _to_uint8(x01)
        rows = measure(origs, recs)
        for k, ((im, lab), orig, rec, row) in enumerate(zip(ok, origs, recs, rows)):
            folder = out / im.id
            folder.mkdir(exist_ok=True)
            orig_path, rec_path = folder / "original.png", folder / f"{cfg}_s{seed}.png"
            data = _png(orig)
            if orig_path.is_file() and orig_path.read_bytes() != data:
                raise AnonlensError(f"{orig_path}: differs from {im.path} as this victim sees it "
                                    f"({victim.input_size}x{victim.input_size}); use another --output for another victim")
            write_atomic(orig_path, data)
            write_atomic(rec_path, _png(rec))
            record = {
                "id": im.id, "source": str(im.path), "label": im.label, "label_index": lab,
                "recovered_label": int(res.labels[k]) if res.labels.ndim else int(res.labels),
                "label_strategy": res.label_strategy, "config": cfg, "attack": attack.name, "preset": attack.preset,
                "settings": attack.describe()["config"], "defence": defence.name, "defence_level": defence.level,
                "seed": seed, "batch": len(ok), "iterations": res.iterations, "gradient_loss": res.gradient_loss,
                "objective": res.objective, "restart_scores": res.restart_scores, "seconds": res.seconds / len(ok),
                "resumed_from_iteration": res.resumed_from, "device": device, "victim": victim.source,
                "original": str(orig_path.relative_to(out)), "reconstruction": str(rec_path.relative_to(out)),
                **row,
            }
            run.records.append(record)
            with atomic_writer(records_path) as fh:  # the whole file rewritten: never half a line
                for r in previous + run.records:
                    fh.write((dumps_strict(r) + "\n").encode())
    run.metric_notes = dict(measure.notes)
    _write_pairs(out, previous + run.records)
    run.summary = _summary(run, victim, attack, defence, seed, batch_size, device)
    write_atomic(out / SUMMARY, (dumps_strict(run.summary, indent=2) + "\n").encode())
    if state_dir.is_dir() and not any(state_dir.iterdir()):
        state_dir.rmdir()
    return run


def _write_pairs(out: Path, records: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["original", "anonymized", "method", "id"])
    for r in records:
        w.writerow([r["original"], r["reconstruction"], r["config"], r["id"]])

    write_atomic(out / PAIRS, buf.getvalue().encode())


def _summary(run: AttackRun, victim: Victim, attack, defence, seed, batch_size, device) -> dict:
    means = {}
    for col in ("psnr", "ssim", "lpips", "identity_distance", "gradient_loss", "seconds"):
        vals = [r[col] for r in run.records if isinstance(r.get(col), (int, float)) and r.get(col) is not None]
        means[col] = float(np.mean(vals)) if vals else None
    return {"config": run.config, "victim": victim.source, "classes": len(victim.classes), "input_size": victim.input_size,
            **attack.describe(), "defence": defence.name, "defence_level": defence.level, "seed": seed,
            "batch_size": batch_size, "device": device, "class_names": run.class_names, "reconstructed": len(run.records), "already_done": len(run.skipped),
            "errors": run.errors, "metrics_left_out": run.metric_notes, "means": means}
