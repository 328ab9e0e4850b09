"""Optimisation-based gradient inversion: find images whose gradient matches the shared one.

One loop (:func:`invert`) serves both registered attacks; an attack is a set of published
settings (presets) over :class:`InversionConfig`:

- ``dlg`` (Zhu et al. 2019): L-BFGS on the squared gradient distance, labels optimised jointly
  (soft labels) unless iDLG recovers them from the last layer (single images);
- ``inverting-gradients`` (Geiping et al. 2020): cosine gradient distance + total variation,
  Adam with signed gradients, box constraint, step decay, restarts keeping the best.

Differences from the reference code (ATSPrivacy's ``inversefed``, which SemSim used), on purpose:

- the best iterate of each restart (lowest objective seen) is kept, not the last one, so an
  L-BFGS run that diverges to NaN still returns its best image; the score used to choose between
  restarts is, as in the reference, the gradient distance without the prior;
- the L1/L2 costs are not divided by a counter that only the cosine costs set (in ATSPrivacy
  ``inversed-adam-L1``/``-L2`` divide by zero, print ``inf`` and exit 0);
- the optimisation state is checkpointed, so a long attack resumes where it stopped with the same
  result as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import AnonlensError
from ..registry import Registry, suggest
from .objectives import COSTS, gradient_distance, idlg_labels, soft_cross_entropy, total_variation

__all__ = ["InversionConfig", "GradientInversionAttack", "DLG", "InvertingGradients", "ATTACKS", "create_attack",
           "InversionResult", "invert"]

OPTIMIZERS = ("adam", "sgd", "lbfgs")
INITS = ("randn", "rand", "zeros")
LABELS = ("known", "recover", "joint")


@dataclass(frozen=True)
class InversionConfig:
    """Settings of one reconstruction (the fields of the reference's config dicts)."""

    cost: str = "cosine"
    optimizer: str = "adam"
    lr: float = 0.1
    iterations: int = 4800
    restarts: int = 1
    tv: float = 1e-4
    signed: bool = True
    boxed: bool = True
    init: str = "randn"
    lr_decay: bool = True
    #: known: the labels are given; recover: iDLG for single images where it applies, else joint;
    #: joint: soft labels optimised with the image (DLG)
    labels: str = "known"

    def check(self) -> "InversionConfig":
        problems = []
        if self.cost not in COSTS:
            problems.append(f"cost '{self.cost}' (known: {', '.join(COSTS)})")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer '{self.optimizer}' (known: {', '.join(OPTIMIZERS)})")
        if self.init not in INITS:
            problems.append(f"init '{self.init}' (known: {', '.join(INITS)})")
        if self.labels not in LABELS:
            problems.append(f"labels '{self.labels}' (known: {', '.join(LABELS)})")
        if not (self.iterations >= 1 and self.restarts >= 1):
            problems.append(f"iterations and restarts must be at least 1 (got {self.iterations}, {self.restarts})")
        if not (self.lr > 0 and self.tv >= 0):
            problems.append(f"lr must be above 0 and tv at least 0 (got {self.lr}, {self.tv})")
        if problems:
            raise AnonlensError("invalid attack settings: " + "; ".join(problems))
        return self


class GradientInversionAttack:
    """An attack = a name, presets of published settings, and a default preset."""

    name = "gradient-inversion"
    presets: dict[str, InversionConfig] = {}
    default_preset = ""
    notes: dict[str, str] = {}

    def __init__(self, *, preset: str | None = None, **overrides):
        preset = preset or self.default_preset
        if preset not in self.presets:
            raise AnonlensError(f"attack '{self.name}' has no preset '{preset}'.{suggest(preset, list(self.presets))} "
                                f"Presets: {', '.join(self.presets)}")
        fields = set(InversionConfig.__dataclass_fields__)
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise AnonlensError(f"attack '{self.name}' has no setting '{unknown[0]}'.{suggest(unknown[0], sorted(fields))} "
                                f"Settings: {', '.join(sorted(fields))}")
        self.preset = preset
        base = self.presets[preset]
        self.overrides = {k: _coerce(k, v, getattr(base, k)) for k, v in overrides.items() if v is not None}
        self.config = replace(self.presets[preset], **self.overrides).check()

    def describe(self) -> dict:
        return {"attack": self.name, "preset": self.preset, "overrides": dict(self.overrides), "config": asdict(self.config)}


def _coerce(key: str, value, like):
    """A setting given as text or a number -> the type of the preset's value (one-line error)."""
    try:
        if isinstance(like, bool):
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                return str(value).strip().lower() in ("true", "1", "yes", "on")
            raise ValueError
        if isinstance(like, int):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if isinstance(like, float):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        kind = {bool: "true or false", int: "a whole number", float: "a number"}.get(type(like), "text")
        raise AnonlensError(f"attack setting '{key}' must be {kind}, got {value!r}") from None


class DLG(GradientInversionAttack):
    """Deep Leakage from Gradients (Zhu et al. 2019): L-BFGS on the squared gradient distance."""

    name = "dlg"
    default_preset = "dlg"
    presets = {
        # mit-han-lab/dlg: LBFGS (lr 1) on dummy data and dummy labels, 300 iterations
        "dlg": InversionConfig(cost="euclidean", optimizer="lbfgs", lr=1.0, iterations=300, restarts=1, tv=0.0,
                               signed=False, boxed=False, init="randn", lr_decay=False, labels="recover"),
        # the same with the labels always optimised jointly (the original DLG, no iDLG)
        "dlg-joint": InversionConfig(cost="euclidean", optimizer="lbfgs", lr=1.0, iterations=300, restarts=1, tv=0.0,
                                     signed=False, boxed=False, init="randn", lr_decay=False, labels="joint"),
        # SemSim / ATSPrivacy benchmark/comm.py 'zhu' (labels given, as SemSim ran it)
        "zhu": InversionConfig(cost="euclidean", optimizer="lbfgs", lr=1e-4, iterations=50, restarts=2, tv=1e-3,
                               signed=False, boxed=False, init="randn", lr_decay=False, labels="known"),
    }
    notes = {"zhu": "SemSim's comm.py 'zhu' (ATSPrivacy passes its lr 1e-4 to L-BFGS)"}


def _ig(**kw) -> InversionConfig:
    base = dict(cost="cosine", optimizer="adam", lr=0.1, iterations=4800, restarts=1, tv=1e-4, signed=True, boxed=True,
                init="randn", lr_decay=True, labels="known")
    return InversionConfig(**{**base, **kw})


class InvertingGradients(GradientInversionAttack):
    """Inverting Gradients (Geiping et al. 2020): cosine distance + TV, signed Adam, box constraint."""

    name = "inverting-gradients"
    default_preset = "inversed"
    presets = {  # SemSim / ATSPrivacy benchmark/comm.py create_config
        "inversed": _ig(),
        "inversed-zero": _ig(init="zeros"),
        "inversed-sim-out": _ig(cost="cosine-rows", init="zeros"),
        # the reference's SGD ignores the configured lr 0.1: lr 0.01, momentum 0.9, Nesterov
        "inversed-sgd-sim": _ig(optimizer="sgd", lr=0.01),
        "inversed-LBFGS-sim": _ig(optimizer="lbfgs", lr=1e-4, restarts=16, iterations=300, lr_decay=False),
        "inversed-adam-L1": _ig(cost="l1"),
        "inversed-adam-L2": _ig(cost="euclidean"),
    }
    notes = {
        "inversed": "SemSim's configuration: 4800 iterations, TV 1e-4",
        "inversed-sgd-sim": "SGD lr 0.01, momentum 0.9, Nesterov (what the reference runs; its config says 0.1)",
        "inversed-adam-L1": "fixed: the reference divides by zero here and exits",
        "inversed-adam-L2": "fixed: the reference divides by zero here and exits",
    }


ATTACKS: Registry[GradientInversionAttack] = Registry("attack")
ATTACKS.add("dlg", DLG, summary=DLG.__doc__.splitlines()[0], extra="learn")
ATTACKS.add("inverting-gradients", InvertingGradients, summary=InvertingGradients.__doc__.splitlines()[0], extra="learn")


def create_attack(name: str, **options) -> GradientInversionAttack:
    return ATTACKS.create(name, **options)


@dataclass
class InversionResult:
    """Reconstructions in the model's (normalised) input space, the labels used, and the record."""

    images: torch.Tensor
    labels: torch.Tensor
    label_strategy: str
    gradient_loss: float  # the gradient distance of the chosen reconstruction (no prior)
    objective: float  # distance + prior at the kept iterate
    iterations: int  # iterations run, all restarts
    restart_scores: list[float]
    seconds: float
    resumed_from: int = 0
    history: list[tuple[int, int, float]] = field(default_factory=list)  # (restart, iteration, objective)


def _milestones(iterations: int) -> list[int]:
    # the reference's MultiStepLR milestones at 3/8, 5/8 and 7/8 of the run
    return [int(iterations // 2.667), int(iterations // 1.6), int(iterations // 1.142)]


def _fingerprint(config: InversionConfig, target: Sequence[torch.Tensor], shape, seed: int, labels) -> str:
    h = hashlib.sha256(repr((sorted(asdict(config).items()), tuple(shape), seed)).encode())
    for g in target:
        h.update(g.detach().cpu().contiguous().numpy().tobytes())
    if labels is not None:
        h.update(labels.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def invert(
    model: nn.Module,
    target: Sequence[torch.Tensor],
    labels: torch.Tensor | None,
    shape: tuple[int, int, int, int],
    config: InversionConfig,
    *,
    mean: Sequence[float] = (0.0, 0.0, 0.0),
    std: Sequence[float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    amp: bool = False,
    state_path: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    progress: Callable[[int, int, float], None] | None = None,
) -> InversionResult:
    """Reconstruct ``shape`` = (N, C, H, W) images from the shared gradient ``target``.

    ``labels`` are the true labels (``config.labels == "known"``) or None. The images live in the
    model's normalised space; the box constraint keeps them inside the image of [0, 1] under
    ``mean``/``std``. ``state_path``: the optimisation state is saved there every
    ``checkpoint_every`` iterations and on interruption, and a run with the same inputs resumes
    from it (the file is removed when the reconstruction finishes). ``progress(restart, iteration,
    objective)`` is called every iteration."""
    config.check()
    model.eval()
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    target = [g.to(device) for g in target]
    if len(target) != len(params):
        raise AnonlensError(f"the shared gradient has {len(target)} tensors; the model has {len(params)} trainable parameters")
    target_norm = torch.stack([g.pow(2).sum() for g in target]).sum().sqrt()
    n = shape[0]
    if amp and device.type != "cuda":
        raise AnonlensError("mixed precision is only used on CUDA (second-order gradients in bfloat16 on a CPU are slow and lose the signal)")
    if config.labels == "known":
        if labels is None or labels.shape[0] != n:
            raise AnonlensError(f"this attack uses the true labels: give {n} label(s)")
        labels, strategy = labels.to(device), "known"
    else:
        labels, strategy = None, "joint"
        if config.labels == "recover" and n == 1:
            found = idlg_labels(model, target)
            if found is not None:
                labels, strategy = found.to(device), "idlg"
    dm = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    ds = torch.tensor(std, device=device).view(1, -1, 1, 1)
    lo, hi = -dm / ds, (1 - dm) / ds

    gen = torch.Generator().manual_seed(seed)
    if config.init == "randn":
        starts = torch.randn((config.restarts, *shape), generator=gen)
    elif config.init == "rand":
        starts = (torch.rand((config.restarts, *shape), generator=gen) - 0.5) * 2
    else:
        starts = torch.zeros((config.restarts, *shape))
    label_starts = torch.randn((config.restarts, n, _num_outputs(model, starts[0, :1].to(device))), generator=gen)

    path = Path(state_path) if state_path is not None else None
    fingerprint = _fingerprint(config, target, shape, seed, labels)
    state = None
    if path is not None and path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a damaged state file is named, never trusted
            raise AnonlensError(f"{path}: cannot read the saved attack state ({type(exc).__name__}); delete it to start over") from None
        if state.get("fingerprint") != fingerprint:
            raise AnonlensError(f"{path}: saved state of a different attack (settings, gradient, seed or shape differ); delete it to start over")

    scores: list[float] = list(state["scores"]) if state else []
    kept: list[torch.Tensor] = list(state["kept"]) if state else []
    kept_labels: list[torch.Tensor | None] = [None if t.numel() == 0 else t for t in state["kept_labels"]] if state else []
    history: list[tuple[int, int, float]] = [tuple(h) for h in state["history"]] if state else []
    done_iterations = int(state["done_iterations"]) if state else 0
    resumed_from = done_iterations
    elapsed = float(state["elapsed"]) if state else 0.0
    t0 = time.perf_counter()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if amp else None

    def task_loss(x, lab, lab_param):
        if autocast is not None:
            with autocast:
                logits = model(x)
            logits = logits.float()
        else:
            logits = model(x)
        if lab is not None:
            return F.cross_entropy(logits, lab)
        return soft_cross_entropy(logits, lab_param)

    for trial in range(len(scores), config.restarts):
        x = starts[trial].clone().to(device).requires_grad_(True)
        lab_param = None if labels is not None else label_starts[trial].clone().to(device).requires_grad_(True)
        variables = [x] + ([lab_param] if lab_param is not None else [])
        if config.optimizer == "adam":
            opt = torch.optim.Adam(variables, lr=config.lr)
        elif config.optimizer == "sgd":
            opt = torch.optim.SGD(variables, lr=config.lr, momentum=0.9, nesterov=True)
        else:
            opt = torch.optim.LBFGS(variables, lr=config.lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=_milestones(config.iterations), gamma=0.1) if config.lr_decay else None
        best = {"value": float("inf"), "x": x.detach().clone(), "lab": None if lab_param is None else lab_param.detach().clone()}
        start_it = 0
        if state is not None and int(state["trial"]) == trial:
            start_it = int(state["iteration"])
            x.data.copy_(state["x"].to(device))
            if lab_param is not None:
                lab_param.data.copy_(state["lab_param"].to(device))
            opt.load_state_dict(state["optimizer"])
            if sched is not None:
                sched.load_state_dict(state["scheduler"])
            best = {"value": float(state["best_value"]), "x": state["best_x"].to(device),
                    "lab": None if lab_param is None else state["best_lab"].to(device)}
        state = None

        def closure():
            opt.zero_grad()
            loss = task_loss(x, labels, lab_param)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            objective = gradient_distance(grads, target, config.cost, target_norm=target_norm)
            if config.tv > 0:
                objective = objective + config.tv * total_variation(x)
            objective.backward(inputs=variables)
            value = float(objective.detach())
            if value < best["value"]:  # the iterate this value belongs to (before the step)
                best["value"], best["x"] = value, x.detach().clone()
                best["lab"] = None if lab_param is None else lab_param.detach().clone()
            if config.signed:
                for v in variables:
                    v.grad.sign_()
            return objective

        def snapshot(iteration: int) -> dict:
            empty = torch.empty(0)
            return {"fingerprint": fingerprint, "trial": trial, "iteration": iteration, "x": x.detach().cpu(),
                    "lab_param": empty if lab_param is None else lab_param.detach().cpu(),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched is not None else {},
                    "best_value": best["value"], "best_x": best["x"].cpu(),
                    "best_lab": empty if best["lab"] is None else best["lab"].cpu(),
                    "scores": scores, "kept": [k.cpu() for k in kept],
                    "kept_labels": [empty if k is None else k.cpu() for k in kept_labels],
                    "history": [list(h) for h in history], "done_iterations": done_iterations,
                    "elapsed": elapsed + time.perf_counter() - t0}

        next_it, in_step = start_it, False
        try:
            for iteration in range(start_it, config.iterations):
                if path is not None and iteration > start_it and iteration % checkpoint_every == 0:
                    _save_state(path, snapshot(iteration))
                in_step = True
                value = float(opt.step(closure).detach())
                if sched is not None:
                    sched.step()
                with torch.no_grad():
                    if config.boxed:
                        x.data = torch.max(torch.min(x, hi), lo)
                done_iterations += 1
                next_it, in_step = iteration + 1, False
                if iteration % 10 == 0 or iteration + 1 == config.iterations:
                    history.append((trial, iteration + 1, value))
                if progress is not None:
                    progress(trial, iteration + 1, value)
                if not torch.isfinite(x).all() or value != value:
                    break  # diverged: the best iterate so far is kept
        except KeyboardInterrupt:
            # saved only between iterations (mid-step the optimiser is half updated): the last
            # periodic checkpoint stands otherwise
            if path is not None and not in_step:
                _save_state(path, snapshot(next_it))
            raise
        # the restart's score: the gradient distance (no prior) at its kept iterate, as the reference
        xb = best["x"].detach().clone().requires_grad_(True)
        lb = None if best["lab"] is None else best["lab"]
        loss = task_loss(xb, labels, lb)
        grads = torch.autograd.grad(loss, params)
        score = float(gradient_distance(grads, target, config.cost))
        scores.append(score if score == score else float("inf"))
        kept.append(best["x"].detach())
        kept_labels.append(None if lb is None else lb.detach())
    if path is not None and path.is_file():
        path.unlink()

    best_i = min(range(len(scores)), key=lambda i: scores[i])
    x_best = kept[best_i]
    if labels is None:
        final_labels = kept_labels[best_i].argmax(dim=-1)
    else:
        final_labels = labels
    # the kept iterate's objective: its gradient distance (the restart's score) plus the prior
    objective = scores[best_i] + (config.tv * float(total_variation(x_best)) if config.tv > 0 else 0.0)
    return InversionResult(x_best.detach(), final_labels.detach(), strategy, scores[best_i], objective,
                           done_iterations, scores, elapsed + time.perf_counter() - t0, resumed_from, history)


def _num_outputs(model: nn.Module, probe: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(probe).shape[1])
