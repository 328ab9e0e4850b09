"""Checkpoints of learned metrics: safetensors weights plus a JSON config, nothing executable.

``model.safetensors`` holds the tensors and ``model.json`` the :class:`ModelConfig` and the
anonlens version. A pickle (``.pt``, ``.pth``) is never loaded as a checkpoint; the reference's
``.pth.tar`` files can be imported once (``weights_only=True``, the ``state_dict`` key, a
DataParallel ``module.`` prefix removed) and saved in this format.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from .._version import __version__
from ..errors import AnonlensError
from ..io import atomic_writer
from ..weights import load_state_dict
from .models import ModelConfig, create_model

__all__ = ["save_checkpoint", "load_checkpoint", "import_reference_checkpoint"]


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_suffix(".safetensors"), p.with_suffix(".json")


_PICKLE_SUFFIXES = (".pt", ".pth", ".tar", ".pkl", ".ckpt")


def write_model_files(model, path: str | os.PathLike, doc: dict) -> Path:
    """``path.safetensors`` (the model's tensors) and ``path.json`` (``doc`` plus the anonlens
    version), both written atomically; returns the weights path. Shared by every trained model."""
    from safetensors.torch import save

    weights, meta = _paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_writer(weights) as fh:
        fh.write(save(state))
    with atomic_writer(meta) as fh:
        fh.write(json.dumps({"anonlens_version": __version__, **doc}, indent=2, default=str).encode("utf-8"))
    return weights


def read_model_files(path: str | os.PathLike, *, kind: str | None, what: str, hint: str = "") -> tuple[Path, dict]:
    """The weights path and the JSON document of a model written by :func:`write_model_files`.
    Pickles are refused; ``kind`` (when given) must match the document's."""
    weights, meta = _paths(path)
    if Path(path).suffix in _PICKLE_SUFFIXES or str(path).endswith(".pth.tar"):
        raise AnonlensError(f"{path}: refusing to load a pickle; {what}s are .safetensors + .json{hint}")
    if not weights.is_file() or not meta.is_file():
        raise AnonlensError(f"{what} not found: need both {weights} and {meta}")
    doc = json.loads(meta.read_text(encoding="utf-8"))
    if kind is not None and doc.get("kind") != kind:
        raise AnonlensError(f"{meta} is not a {what}")
    return weights, doc


def save_checkpoint(model, config: ModelConfig, path: str | os.PathLike, *, extra: dict | None = None) -> Path:
    """Write ``path.safetensors`` and ``path.json`` (atomically); returns the weights path."""
    return write_model_files(model, path, {"config": asdict(config), **(extra or {})})


def load_checkpoint(path: str | os.PathLike, *, device: str = "cpu"):
    """``(model, config)`` from ``path.safetensors`` + ``path.json``; refuses anything else."""
    weights, doc = read_model_files(path, kind=None, what="checkpoint",
                                    hint=" (import a reference .pth.tar with `anonlens import-checkpoint`)")
    cfg = doc["config"]
    config = ModelConfig(**{**cfg, "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"])})
    model = create_model(config, pretrained=False)
    model.load_state_dict(load_state_dict(weights))
    return model.to(device).eval(), config


def import_reference_checkpoint(src: str | os.PathLike, config: ModelConfig, dest: str | os.PathLike) -> Path:
    """Convert a PerceptAnon ``.pth.tar`` (loaded with ``weights_only=True``) for ``config``.

    The reference's HA1 keeps torchvision's own layer names (``fc.weight``...); its HA2 names are
    mapped by position onto anonlens' model when shapes match in order.
    """
    state = load_state_dict(src)
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    model = create_model(config, pretrained=False)
    target = model.state_dict()
    if config.ha == "HA1":
        renamed = {}
        head_keys = [k for k in target if k.startswith("head.")]
        for k, v in state.items():
            key = f"backbone.{k}"
            if key in target and target[key].shape == v.shape:
                renamed[key] = v
        leftover = [(k, v) for k, v in state.items() if f"backbone.{k}" not in renamed]
        for (k, v), hk in zip(leftover[-len(head_keys):], head_keys):
            renamed[hk] = v
        state = renamed
    else:
        if len(state) != len(target) or any(a.shape != b.shape for a, b in zip(state.values(), target.values())):
            raise AnonlensError(f"{src}: its tensors do not match an HA2 {config.backbone} model in order and shape")
        state = dict(zip(target.keys(), state.values()))
    missing = set(target) - set(state)
    if missing:
        raise AnonlensError(f"{src}: {len(missing)} tensors of the model are not in the checkpoint, e.g. {sorted(missing)[:3]}")
    model.load_state_dict(state)
    return save_checkpoint(model, config, dest, extra={"imported_from": str(src)})
