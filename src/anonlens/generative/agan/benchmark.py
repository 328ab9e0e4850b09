"""Evaluating a trained A-GAN generator on a prepared data set: the rates of
:mod:`~anonlens.generative.agan.evaluate` plus fidelity (FID/KID)."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import torch

from ...errors import WeightsUnavailableError
from ...metrics.group import FID, KID
from .data import AganCrops
from .evaluate import Embedder, evaluate_generated, folder_pairs, person_crop
from .model import replace_people

__all__ = ["evaluate_model"]


def evaluate_model(generator, data: str | os.PathLike, *, embedder: Embedder, phase: str = "test", train_phase: str | None = "train",
                   limit: int | None = None, tau: float | None = None, calibrate_on: str | None = None, variant: str = "correct",
                   feature=None, fidelity: bool = True, seed: int = 0, feather: float = 0.1,
                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Generate a person for every ``phase`` crop of a prepared folder (box filled, generator
    run, feathered paste-back), then :func:`evaluate_generated` on the person crops, plus FID/KID
    between the real and generated crops (Inception weights, or ``feature``; skipped with the
    reason when neither is available)."""
    ds = AganCrops(data, phase, augment=False, size=generator.size, limit=limit)
    originals, generated, reals, fakes = [], [], [], []
    for i in range(len(ds)):
        real, _, box = ds.load(i)
        mask = np.zeros(real.shape[:2], bool)
        mask[box[1] : box[3], box[0] : box[2]] = True
        fake = replace_people(real, mask, generator, feather=feather, seed=seed + i)
        originals.append(person_crop(real, box))
        generated.append(person_crop(fake, box))
        reals.append(real)
        fakes.append(fake)
        if progress:
            progress(i + 1, len(ds))
    training = None
    if train_phase:
        tds = AganCrops(data, train_phase, augment=False, size=generator.size, limit=limit)
        training = [person_crop(r, b) for r, _, b in (tds.load(i) for i in range(len(tds)))]
    calibration, kind = None, "augmented"
    if calibrate_on is not None:
        calibration, kind = folder_pairs(calibrate_on, seed=seed), "identity-folder"
    res = evaluate_generated(originals, generated, embedder, training=training, tau=tau, calibration=calibration,
                             calibration_kind=kind, variant=variant, seed=seed)
    res["phase"], res["persons"] = phase, len(ds)
    if fidelity:
        res["fidelity"] = _fidelity(reals, fakes, feature)
    return res


def _fidelity(reals: list[np.ndarray], fakes: list[np.ndarray], feature) -> dict[str, Any]:
    try:
        fid = FID(feature=feature)
    except WeightsUnavailableError as exc:
        return {"skipped": str(exc)}
    kid = KID(feature=fid._feature, subset_size=min(50, len(reals)), subsets=50)

    def t(images):
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0

    for i in range(0, len(reals), 16):
        r, f = t(reals[i : i + 16]), t(fakes[i : i + 16])
        fid.update("all", r, f)
        kid.update("all", r, f)
    return {"fid": fid.compute()["all"], "kid": kid.compute()["all"], "feature_extractor": fid.feature_extractor}
