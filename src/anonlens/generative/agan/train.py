"""Training A-GAN: the seed README's two configurations as presets, with the reference's losses.

Per stage, the generator ``G`` fills the person box of the input (box greyed, mask channel), the
image discriminator judges the whole crop (LSGAN; conditional on the input except in stage 2 of
the two-stage model) and the person discriminator the box crop (vanilla GAN, BCE with logits).
D losses are ``0.5 * (fake + real)``, fakes go through image pools; the G loss is
``GAN_image + GAN_person + lambda * L1``; every update clips gradients element-wise; Adam (0.5,
0.999); the learning rate is constant for ``epochs`` and decays linearly to zero over
``epochs_decay`` (pix2pix's ``linear`` policy).

**One generator forward per iteration.** The reference runs the generator three times per
iteration (before the image-D step, the person-D step and the G step). The D steps never change G,
so the three forwards compute the same function of G's weights; they differ only in the random
draws (dropout, decoder noise) and in BatchNorm's running averages. anonlens runs G once, steps
both discriminators on the detached output, then steps G through the updated discriminators, the
same losses in the same order. ``update="reference"`` keeps the three forwards (for comparison:
with the random draws switched off both orders give identical weights, which a test checks).

Fixes the reference does not have (options, off by default where they change the method):
``l1="outside"`` (L1 outside the box only, so nothing pulls the generated person towards the
original), batch sizes above 1 (person crops of several sizes are judged one by one), mixed
precision on CUDA, an explicit device, seeded runs, resume, a per-epoch ``metrics.jsonl`` and the
best checkpoint chosen by FID or KID over the validation crops (anonlens' group metrics with the
Inception weights when present, an injected feature extractor otherwise).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from ...errors import AnonlensError, WeightsUnavailableError
from ...io import write_atomic
from ...metrics.features import FIDInceptionV3
from ...metrics.group import FID, KID
from .config import PRESETS, StageSpec, TrainConfig, preset  # noqa: F401  (re-exported: the tests import them from here)
from .data import AganCrops
from .model import save_generator
from .networks import AGAN_NETWORKS

__all__ = ["StageSpec", "TrainConfig", "PRESETS", "preset", "ImagePool", "AganTrainer", "train_agan", "set_requires_grad"]


class ImagePool:
    """pix2pix's history of generated images: with ``size`` > 0, each query returns, per image,
    either the image itself or (p 0.5, once the pool is full) an older one it replaces."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng, self.images = int(size), rng, []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size <= 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif self.rng.uniform(0, 1) > 0.5:
                i = self.rng.randint(0, self.size - 1)
                out.append(self.images[i].clone())
                self.images[i] = img
            else:
                out.append(img)
        return torch.cat(out, 0)


def set_requires_grad(nets, flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(flag)


def _gan_loss(kind: str, pred: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(pred) if real else torch.zeros_like(pred)
    if kind == "lsgan":
        return F.mse_loss(pred.float(), target.float())
    return F.binary_cross_entropy_with_logits(pred.float(), target.float())


def _lr_lambda(epochs: int, decay: int) -> Callable[[int], float]:
    # pix2pix's 'linear' policy with epoch_count 1: constant, then linearly towards zero
    return lambda e: 1.0 - max(0, e + 1 - epochs) / float(decay + 1)


def _crops(images: torch.Tensor, boxes: torch.Tensor) -> list[torch.Tensor]:
    return [images[i : i + 1, :, int(b[1]) : int(b[3]), int(b[0]) : int(b[2])] for i, b in enumerate(boxes)]


class _Stage(nn.Module):
    """A generator, its discriminators, optimizers, schedulers and pools."""

    def __init__(self, spec: StageSpec, cfg: TrainConfig, rng: random.Random):
        super().__init__()
        self.spec = spec
        self.G = AGAN_NETWORKS.create(spec.generator, ngf=cfg.ngf, dropout=cfg.dropout, decoder_noise=cfg.decoder_noise)
        self.D_image = AGAN_NETWORKS.create(spec.image_d, ndf=cfg.ndf, input_nc=6 if spec.conditional else 3)
        self.D_person = AGAN_NETWORKS.create(spec.person_d, ndf=cfg.ndf)
        betas = (cfg.beta1, 0.999)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_D_image = torch.optim.Adam(self.D_image.parameters(), lr=cfg.lr, betas=betas)
        self.opt_D_person = torch.optim.Adam(self.D_person.parameters(), lr=cfg.lr, betas=betas)
        lam = _lr_lambda(cfg.epochs, cfg.epochs_decay)
        self.schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lam) for o in self.optimizers()]
        self.pool_image = ImagePool(spec.pool_image, rng)
        self.pool_person = ImagePool(spec.pool_person, rng)

    def optimizers(self):
        return [self.opt_G, self.opt_D_image, self.opt_D_person]


class AganTrainer:
    """Builds the networks of ``config`` and trains them one batch at a time (:meth:`step`) or
    over data sets (:meth:`fit`)."""

    def __init__(self, config: TrainConfig):
        self.cfg = config
        self.device = torch.device(config.device)
        torch.manual_seed(config.seed)
        self.rng = random.Random(config.seed)
        self.stages = [_Stage(s, config, self.rng).to(self.device) for s in config.stages]
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.iteration = 0  # iterations done in the current stage
        self.epoch = 0  # epochs done
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None

    # ----------------------------------------------------------------- one iteration
    def stage_index(self) -> int:
        return 0 if len(self.stages) == 1 or self.epoch < self.cfg.stage1_epochs else 1

    def _inputs(self, batch: dict[str, torch.Tensor], k: int):
        """``(generator input, real, boxes, condition)`` of stage ``k`` for ``batch``."""
        dev = self.device
        two = len(self.stages) == 2
        if two and k == 0:
            inp, real, mask, box = (batch[f"{n}_small"].to(dev) for n in ("input", "real", "mask", "box"))
            return torch.cat([inp, mask], 1), real, box, inp
        inp, real, mask, box = (batch[n].to(dev) for n in ("input", "real", "mask", "box"))
        if two:  # stage 2: the frozen stage-1 output, resized, is the input
            s0 = self.stages[0]
            with torch.no_grad(), self._autocast():
                small = s0.G(torch.cat([batch["input_small"].to(dev), batch["mask_small"].to(dev)], 1))
            inp = F.interpolate(small.float(), size=real.shape[-2:], mode="bilinear", align_corners=False, antialias=False)
        return torch.cat([inp, mask], 1), real, box, inp

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp)

    def _l1(self, fake, real, boxes) -> torch.Tensor:
        if self.cfg.l1 == "all":
            return F.l1_loss(fake.float(), real.float())
        keep = torch.ones_like(real[:, :1])
        for i, b in enumerate(boxes):
            keep[i, :, int(b[1]) : int(b[3]), int(b[0]) : int(b[2])] = 0
        return (keep * (fake.float() - real.float()).abs()).sum() / (keep.sum() * real.shape[1]).clamp_min(1)

    def _clip_step(self, opt, params, loss) -> None:
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(opt)
        nn.utils.clip_grad_value_(params, clip_value=self.cfg.clip)
        self.scaler.step(opt)

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One training iteration on ``batch``; returns its losses."""
        k = self.stage_index()
        st = self.stages[k]
        spec = st.spec
        g_in, real, boxes, cond = self._inputs(batch, k)
        for s in self.stages:
            s.train()
        if len(self.stages) == 2 and k == 1:
            set_requires_grad([self.stages[0].G, self.stages[0].D_image, self.stages[0].D_person], False)
        reference = self.cfg.update == "reference"
        pretrain = len(self.stages) == 2 and k == 1 and self.iteration < self.cfg.pretrain_d_iters

        def forward():
            with self._autocast():
                return st.G(g_in)

        def pair(x):
            return torch.cat([cond, x], 1) if spec.conditional else x

        fake = forward()
        # --- image discriminator
        set_requires_grad([st.D_image], True)
        with self._autocast():
            fake_d = st.pool_image.query(pair(fake.detach()))
            loss_di_fake = _gan_loss("lsgan", st.D_image(fake_d), False)
            loss_di_real = _gan_loss("lsgan", st.D_image(pair(real)), True)
            loss_di = 0.5 * (loss_di_fake + loss_di_real)
        self._clip_step(st.opt_D_image, st.D_image.parameters(), loss_di)
        # --- person discriminator (one crop at a time: boxes differ in size)
        if reference:
            fake = forward()
        set_requires_grad([st.D_person], True)
        with self._autocast():
            fakes, reals = _crops(fake.detach(), boxes), _crops(real, boxes)
            loss_dp_fake = sum(_gan_loss("vanilla", st.D_person(st.pool_person.query(f)), False) for f in fakes) / len(fakes)
            loss_dp_real = sum(_gan_loss("vanilla", st.D_person(r), True) for r in reals) / len(reals)
            loss_dp = 0.5 * (loss_dp_fake + loss_dp_real)
        self._clip_step(st.opt_D_person, st.D_person.parameters(), loss_dp)
        losses = {"D_image_fake": loss_di_fake, "D_image_real": loss_di_real, "D_person_fake": loss_dp_fake, "D_person_real": loss_dp_real}
        # --- generator
        if not pretrain:
            if reference:
                fake = forward()
            set_requires_grad([st.D_image, st.D_person], False)
            with self._autocast():
                loss_gi = _gan_loss("lsgan", st.D_image(pair(fake)), True)
                loss_gp = sum(_gan_loss("vanilla", st.D_person(f), True) for f in _crops(fake, boxes)) / len(boxes)
                loss_l1 = self._l1(fake, real, boxes) * spec.lambda_l1
                loss_g = loss_gi + loss_gp + loss_l1
            self._clip_step(st.opt_G, st.G.parameters(), loss_g)
            set_requires_grad([st.D_image, st.D_person], True)
            losses.update(G_image=loss_gi, G_person=loss_gp, G_L1=loss_l1)
        self.scaler.update()
        self.iteration += 1
        return {k_: float(v.detach()) for k_, v in losses.items()}

    # ----------------------------------------------------------------- epochs, validation, checkpoints
    def generator(self) -> nn.Module:
        """The generator of the current (last trained) stage."""
        return self.stages[self.stage_index()].G

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], stage: int | None = None) -> torch.Tensor:
        """Stage ``stage``'s (default: the current one's) raw generator output for ``batch``
        (training-mode BatchNorm and noise, as the reference evaluates)."""
        k = self.stage_index() if stage is None else stage
        g_in, _, _, _ = self._inputs(batch, k)
        with self._autocast():
            return self.stages[k].G(g_in).float()

    def _loader(self, ds, *, shuffle: bool):
        gen = torch.Generator().manual_seed(self.cfg.seed + self.epoch)
        return DataLoader(ds, batch_size=self.cfg.batch_size, shuffle=shuffle, generator=gen, drop_last=False,
                          num_workers=self.cfg.workers, collate_fn=_collate)

    def validate(self, val_ds, feature: nn.Module | None, stage: int | None = None) -> dict[str, Any]:
        """FID/KID (``select_by``) between the validation crops and stage ``stage``'s (default: the
        current one's) output on them."""
        if self.cfg.select_by == "none" or val_ds is None:
            return {}
        metric = (FID if self.cfg.select_by == "fid" else KID)(feature=feature, **({} if self.cfg.select_by == "fid" else
                                                                                 {"subset_size": min(50, len(val_ds)), "subsets": 20}))
        k = self.stage_index() if stage is None else stage
        key = "real_small" if len(self.stages) == 2 and k == 0 else "real"

        state = torch.random.get_rng_state()
        torch.manual_seed(self.cfg.seed + 7919)  # the same noise at every validation
        for batch in DataLoader(val_ds, batch_size=max(1, self.cfg.batch_size), shuffle=False, collate_fn=_collate):
            fake = self.generate(batch, k)
            metric.update("val", (batch[key].to(fake.device) + 1) / 2, (fake + 1) / 2)
        torch.random.set_rng_state(state)
        res = metric.compute()["val"]
        if res.get("value") is None:
            raise AnonlensError(f"validation {self.cfg.select_by.upper()} failed: {res.get('error')}")
        return {self.cfg.select_by: float(res["value"])}

    def fit(self, train_ds, val_ds=None, *, output: str | os.PathLike, feature: nn.Module | None = None,
            epochs: int | None = None, max_iters: int | None = None,
            progress: Callable[[int, int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train until ``epochs`` epochs are done in all (the config's total by default; a resumed
        trainer goes on from where it stopped), writing ``latest.pt`` (resume), the generator
        files ``latest`` and ``best`` and ``metrics.jsonl`` into ``output``. ``max_iters`` stops
        each epoch early (tests, benchmarks)."""
        out = Path(output)
        if self.cfg.select_by != "none" and feature is None:
            feature = default_feature()  # a missing weights file is named before anything is written
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "config.json", json.dumps(self.cfg.to_dict(), indent=2).encode())
        total = self.cfg.total_epochs if epochs is None else int(epochs)
        while self.epoch < total:
            if hasattr(train_ds, "seed"):
                train_ds.seed(self.cfg.seed + self.epoch)
            k_before = self.stage_index()
            t0, sums, n = time.perf_counter(), {}, 0
            for batch in self._loader(train_ds, shuffle=True):
                losses = self.step(batch)
                for key, v in losses.items():
                    sums[key] = sums.get(key, 0.0) + v
                n += 1
                if progress:
                    progress(self.epoch, total, {"iteration": n, **losses})
                if max_iters is not None and n >= max_iters:
                    break
            with warnings.catch_warnings():  # stage 2's optimizers have not stepped during stage 1
                warnings.simplefilter("ignore", UserWarning)
                for s in self.stages:
                    for sch in s.schedulers:
                        sch.step()
            self.epoch += 1
            if self.stage_index() != k_before:
                self.iteration = 0
            row: dict[str, Any] = {"epoch": self.epoch, "stage": k_before + 1, "iterations": n,
                                   "seconds": round(time.perf_counter() - t0, 3),
                                   "lr": self.stages[k_before].opt_G.param_groups[0]["lr"],
                                   **{key: round(v / max(n, 1), 6) for key, v in sums.items()}}
            row.update(self.validate(val_ds, feature, k_before))
            self.history.append(row)
            with open(out / "metrics.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            self._save_generators(out / "latest", row)
            score = row.get(self.cfg.select_by)
            final_stage = k_before == len(self.stages) - 1
            if score is not None and final_stage and (self.best is None or score < self.best["score"]):
                self.best = {"epoch": self.epoch, "score": score, "metric": self.cfg.select_by}
                self._save_generators(out / "best", row)
            self.save_state(out / "latest.pt")
            if progress:
                progress(self.epoch, total, row)
        if self.best is None:  # no validation: the last epoch is the result
            self._save_generators(out / "best", self.history[-1] if self.history else {})
        return {"epochs": self.epoch, "best": self.best, "history": self.history, "output": str(out)}

    def _save_generators(self, path: Path, row: dict[str, Any]) -> None:
        save_generator({f"G{i + 1}": s.G for i, s in enumerate(self.stages)}, path, config=self.cfg, extra={"epoch": self.epoch, "metrics": row})

    def save_state(self, path: str | os.PathLike) -> None:
        """Everything needed to resume: weights, optimizers, schedulers, pools, random states.
        Plain tensors and numbers only, so it loads with ``weights_only=True``."""
        state = {
            "config": json.dumps(self.cfg.to_dict()),
            "epoch": self.epoch, "iteration": self.iteration, "best": json.dumps(self.best),
            "history": json.dumps(self.history),
            "stages": [{"G": s.G.state_dict(), "D_image": s.D_image.state_dict(), "D_person": s.D_person.state_dict(),
                        "opt": [o.state_dict() for o in s.optimizers()], "sched": [x.state_dict() for x in s.schedulers],
                        "pool_image": list(s.pool_image.images), "pool_person": list(s.pool_person.images)} for s in self.stages],
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.random.get_rng_state(),
            "py_rng": json.dumps(self.rng.getstate()),
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        write_atomic(path, buf.getvalue())

    @classmethod
    def resume(cls, path: str | os.PathLike, *, device: str | None = None) -> "AganTrainer":
        """A trainer restored from :meth:`save_state`'s file (``weights_only=True``)."""
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise AnonlensError(f"nothing to resume: {path} not found") from None
        except (pickle.UnpicklingError, RuntimeError) as exc:
            raise AnonlensError(f"{path}: not an anonlens A-GAN training state ({exc})") from None
        cfg = TrainConfig.from_dict(json.loads(state["config"]))
        if device is not None:
            cfg = replace(cfg, device=device)
        tr = cls(cfg)
        for s, d in zip(tr.stages, state["stages"]):
            s.G.load_state_dict(d["G"])
            s.D_image.load_state_dict(d["D_image"])
            s.D_person.load_state_dict(d["D_person"])
            for o, od in zip(s.optimizers(), d["opt"]):
                o.load_state_dict(od)
            for x, xd in zip(s.schedulers, d["sched"]):
                x.load_state_dict(xd)
            s.pool_image.images = [t.to(tr.device) for t in d["pool_image"]]
            s.pool_person.images = [t.to(tr.device) for t in d["pool_person"]]
        tr.scaler.load_state_dict(state["scaler"])
        tr.epoch, tr.iteration = int(state["epoch"]), int(state["iteration"])
        tr.best = json.loads(state["best"])
        tr.history = json.loads(state["history"])
        torch.random.set_rng_state(state["torch_rng"])
        py = json.loads(state["py_rng"])
        tr.rng.setstate((py[0], tuple(py[1]), py[2]))
        return tr


def default_feature() -> nn.Module:
    """The FID Inception network from the weights registry; its absence is an error that names
    the file and the way out (``select_by="none"``)."""
    try:
        return FIDInceptionV3()
    except WeightsUnavailableError as exc:
        raise AnonlensError(f"{exc} Without it, choose the checkpoint another way: --select-by none keeps the last epoch.") from None


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        out[key] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


def train_agan(data: str | os.PathLike, output: str | os.PathLike, config: TrainConfig, *, resume: bool = False,
               feature: nn.Module | None = None, limit: int | None = None, max_iters: int | None = None,
               epochs: int | None = None, progress=None) -> dict[str, Any]:
    """Train on a folder made by ``anonlens agan prepare`` (``train`` crops; ``val`` crops choose
    the best checkpoint). ``resume`` goes on from ``output/latest.pt`` (same data, the stored config)."""
    out = Path(output)
    if config.select_by != "none" and feature is None:
        feature = default_feature()
    two = len(config.stages) == 2
    size = config.stages[-1].size
    train_ds = AganCrops(data, "train", size=size, fill=config.fill, small=two, limit=limit)
    val_ds = None
    if config.select_by != "none":
        val_ds = AganCrops(data, "val", augment=False, size=size, fill=config.fill, small=two, limit=min(config.num_val, limit or config.num_val))
    if resume:
        trainer = AganTrainer.resume(out / "latest.pt", device=config.device)
    else:
        if (out / "latest.pt").exists():
            raise AnonlensError(f"{out} already holds a training run; pass --resume to go on, or choose another folder")
        trainer = AganTrainer(config)
    result = trainer.fit(train_ds, val_ds, output=out, feature=feature, epochs=epochs, max_iters=max_iters, progress=progress)
    return result


def iterations_per_second(trainer: AganTrainer, batch: dict[str, torch.Tensor], n: int) -> float:
    """Benchmark helper: ``n`` iterations on the same batch (after one warm-up)."""
    trainer.step(batch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        trainer.step(batch)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)

