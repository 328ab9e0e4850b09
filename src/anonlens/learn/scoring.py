"""From a model's output to an anonymity score on the human 1..10 scale.

Regression on ``mean``: ``1 + 9 p``. Classification: the *expected* score under the predicted class
distribution (not the argmax), each class standing for the middle of its score interval, so that
scores rank images finely. Regression on a class granularity: the continuous class index
``p (N - 1)`` interpolated between the class midpoints.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["CLASS_MIDPOINTS", "to_human_scale"]

#: the score each class stands for (middle of its interval on 1..10)
CLASS_MIDPOINTS = {
    "labels10": np.arange(1.0, 11.0),
    "labels5": np.array([2.0, 4.0, 6.0, 8.0, 9.5]),
    "labels3": np.array([3.0, 6.5, 9.0]),
    "binary": np.array([7.5, 3.0]),  # class 0: score > 5 (anonymous), class 1: <= 5
}


def to_human_scale(output: torch.Tensor, labels: str, task: str) -> np.ndarray:
    """``(B, outputs)`` model outputs -> ``(B,)`` scores in [1, 10]."""
    out = output.detach().float().cpu()
    if task == "regression":
        p = out.reshape(-1).clamp(0, 1).numpy().astype(np.float64)
        if labels == "mean":
            return 1.0 + 9.0 * p
        mids = CLASS_MIDPOINTS[labels]
        return np.interp(p * (len(mids) - 1), np.arange(len(mids)), mids)
    probs = torch.softmax(out, dim=1).numpy().astype(np.float64)
    return probs @ CLASS_MIDPOINTS[labels]
