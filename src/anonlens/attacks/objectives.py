"""The functional core of gradient inversion: the gradient a client shares, the distances an
attacker minimises, the image prior, and label recovery.

Every function works on lists of per-parameter tensors (the order of ``model.parameters()``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import AnonlensError

__all__ = ["COSTS", "client_gradient", "gradient_distance", "total_variation", "soft_cross_entropy",
           "last_linear_index", "idlg_labels"]

Grads = Sequence[torch.Tensor]

#: gradient distances by name; the reference's names (ATSPrivacy / inversefed ``cost_fn``) in brackets
COSTS = {
    "euclidean": "sum of squared differences over all layers (DLG; inversefed 'l2')",
    "l1": "sum of absolute differences (inversefed 'l1')",
    "cosine": "1 - cosine similarity of the whole gradient vectors (Inverting Gradients; inversefed 'sim')",
    "cosine-rows": "1 - cosine similarity per output row of every layer, averaged (ATSPrivacy 'out_sim')",
}


def client_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of the mean cross-entropy over ``images`` w.r.t. every trainable parameter:
    what a federated client shares after one local step (FedSGD)."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(images), labels)
    return [g.detach() for g in torch.autograd.grad(loss, params)]


def soft_cross_entropy(logits: torch.Tensor, label_logits: torch.Tensor) -> torch.Tensor:
    """DLG's loss with optimised labels: cross-entropy against ``softmax(label_logits)``."""
    return torch.mean(torch.sum(-F.softmax(label_logits, dim=-1) * F.log_softmax(logits, dim=-1), dim=1))


def gradient_distance(trial: Grads, target: Grads, cost: str = "cosine", *, target_norm: torch.Tensor | None = None) -> torch.Tensor:
    """How far the candidate's gradient ``trial`` is from the shared ``target`` (0: identical).

    ``euclidean`` is DLG's objective as written in its code (no factor 1/2; `breaching`'s
    ``Euclidean`` is half of it); ``cosine`` equals `breaching`'s ``CosineSimilarity``.
    ``target_norm``: the shared gradient's norm, when the caller computed it once."""
    if len(trial) != len(target):
        raise AnonlensError(f"gradient has {len(trial)} tensors, the shared one {len(target)}")
    if cost == "euclidean":
        return torch.stack([(t - g).pow(2).sum() for t, g in zip(trial, target)]).sum()
    if cost == "l1":
        return torch.stack([(t - g).abs().sum() for t, g in zip(trial, target)]).sum()
    if cost == "cosine":
        dot = torch.stack([(t * g).sum() for t, g in zip(trial, target)]).sum()
        tn = torch.stack([t.pow(2).sum() for t in trial]).sum().sqrt()
        gn = target_norm if target_norm is not None else torch.stack([g.pow(2).sum() for g in target]).sum().sqrt()
        return 1 - dot / (tn * gn)
    if cost == "cosine-rows":
        terms = []
        for t, g in zip(trial, target):
            if t.ndim >= 2:
                terms.append(1 - F.cosine_similarity(t.flatten(1), g.flatten(1), dim=1, eps=1e-10))
            else:
                terms.append((1 - F.cosine_similarity(t.flatten(), g.flatten(), dim=0, eps=1e-10)).reshape(1))
        return torch.cat(terms).mean()
    raise AnonlensError(f"unknown gradient cost '{cost}'; known: {', '.join(COSTS)}")


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation, mean |dx| + mean |dy| (inversefed's ``total_variation``)."""
    return (x[:, :, :, :-1] - x[:, :, :, 1:]).abs().mean() + (x[:, :, :-1, :] - x[:, :, 1:, :]).abs().mean()


def last_linear_index(model: nn.Module) -> int | None:
    """Position, in the trainable-parameter list, of the last linear layer's weight."""
    params = [p for p in model.parameters() if p.requires_grad]
    ids = {id(p): i for i, p in enumerate(params)}
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.weight.requires_grad:
            last = ids.get(id(m.weight))
    return last


def idlg_labels(model: nn.Module, gradient: Grads) -> torch.Tensor | None:
    """iDLG (Zhao et al. 2020): for one image and cross-entropy, the last layer's weight gradient
    is ``(p - y) h^T``; with non-negative features ``h`` only the true class row sums below zero.
    Returns that class, or None when the rule does not apply (not exactly one negative row)."""
    i = last_linear_index(model)
    if i is None:
        return None
    rows = gradient[i].sum(dim=-1)
    negative = torch.nonzero(rows < 0).flatten()
    if negative.numel() != 1:
        return None
    return negative.reshape(1).detach().clone()
