"""Regression losses on the TD error."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def td_loss(prediction: torch.Tensor, target: torch.Tensor, kind: str, huber_delta: float = 1.0) -> torch.Tensor:
    """Mean loss over the batch.

    mse is 0.5 * err^2 so that Huber equals it inside delta: the two then differ only in that Huber's gradient is
    clipped to +-delta outside, which is the whole point of the comparison.
    """
    if kind == "mse":
        return 0.5 * F.mse_loss(prediction, target)
    if kind == "huber":
        return F.huber_loss(prediction, target, delta=huber_delta)
    raise ValueError(f"unknown loss {kind!r}")


def global_grad_norm(parameters, max_norm: float) -> float:
    """Clip the gradients' global norm to max_norm when max_norm > 0; return the norm before clipping."""
    params = [p for p in parameters if p.grad is not None]
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])))
