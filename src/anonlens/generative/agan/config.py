"""A-GAN training configuration: the stages, the options of a run, and the reference's presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from ...errors import AnonlensError
from ...registry import suggest

__all__ = ["StageSpec", "TrainConfig", "PRESETS", "preset"]


@dataclass(frozen=True)
class StageSpec:
    """One generator with its two discriminators."""

    generator: str  # AGAN_NETWORKS name
    image_d: str
    person_d: str
    size: int  # working resolution (px)
    conditional: bool  # the image D sees the input beside the output
    lambda_l1: float
    pool_image: int
    pool_person: int


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on (recorded in the checkpoints and ``config.json``)."""

    preset: str
    stages: tuple[StageSpec, ...]
    epochs: int
    epochs_decay: int
    lr: float
    clip: float
    stage1_epochs: int = 0  # two-stage: epochs of stage 1 before stage 2 starts
    pretrain_d_iters: int = 0  # two-stage: stage-2 iterations where only the stage-2 Ds step
    beta1: float = 0.5
    batch_size: int = 1
    ngf: int = 64
    ndf: int = 64
    l1: Literal["all", "outside"] = "all"
    update: Literal["single-forward", "reference"] = "single-forward"
    fill: Literal["grey", "noise"] = "grey"
    dropout: bool = True
    decoder_noise: bool = True
    amp: bool = True  # mixed precision (CUDA only; ignored elsewhere)
    device: str = "cpu"
    seed: int = 0
    select_by: Literal["fid", "kid", "none"] = "fid"
    num_val: int = 200
    workers: int = 0

    def __post_init__(self):
        if self.batch_size < 1:
            raise AnonlensError(f"batch size must be >= 1; got {self.batch_size}")
        if self.l1 not in ("all", "outside"):
            raise AnonlensError(f"l1 must be 'all' or 'outside'; got {self.l1!r}")
        if self.update not in ("single-forward", "reference"):
            raise AnonlensError(f"update must be 'single-forward' or 'reference'; got {self.update!r}")
        if self.select_by not in ("fid", "kid", "none"):
            raise AnonlensError(f"select_by must be fid, kid or none; got {self.select_by!r}")

    @property
    def total_epochs(self) -> int:
        return self.epochs + self.epochs_decay

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["stages"] = tuple(StageSpec(**s) for s in d["stages"])
        return cls(**d)


_SINGLE = StageSpec("unet_256", "basic", "spp", 256, True, 100.0, 50, 50)
PRESETS: dict[str, TrainConfig] = {
    # the seed README's EXP_SINGLE_STAGE
    "single-stage": TrainConfig("single-stage", (_SINGLE,), epochs=100, epochs_decay=100, lr=2e-4, clip=100.0),
    # the seed README's EXP_TWO_STAGE
    "two-stage": TrainConfig("two-stage", (StageSpec("unet_128", "basic_2", "spp_128", 128, True, 80.0, 0, 0),
                                           StageSpec("unet_256_diff_map", "basic", "spp", 256, False, 80.0, 0, 0)),
                             epochs=150, epochs_decay=50, lr=1.2e-4, clip=10.0, stage1_epochs=100, pretrain_d_iters=1000),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A preset with some fields changed, e.g. ``preset("single-stage", ngf=8, epochs=1)``."""
    if name not in PRESETS:
        raise AnonlensError(f"unknown A-GAN preset '{name}'.{suggest(name, list(PRESETS))} Known: {', '.join(PRESETS)}")
    try:
        return replace(PRESETS[name], **overrides)
    except TypeError as exc:
        raise AnonlensError(f"A-GAN training option: {exc}") from None
