"""Regression losses on the TD error, and gradient norms, per seed of a batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def td_loss(prediction: torch.Tensor, target: torch.Tensor, kind: str, huber_delta: float = 1.0) -> torch.Tensor:
    """Mean loss over the batch, per seed: (K, B) predictions and targets -> (K,).

    mse is 0.5 * err^2 so that Huber equals it inside delta: the two then differ only in that Huber's gradient is
    clipped to +-delta outside, which is the whole point of the comparison.
    """
    if kind == "mse":
        return 0.5 * F.mse_loss(prediction, target, reduction="none").mean(dim=-1)
    if kind == "huber":
        return F.huber_loss(prediction, target, reduction="none", delta=huber_delta).mean(dim=-1)
    raise ValueError(f"unknown loss {kind!r}")


def seed_grad_norms(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Each seed's global gradient norm over all parameters (seed axis first), shape (K,); with max_norm > 0 each
    seed's gradients are scaled to norm max_norm where they exceed it, as torch's clip_grad_norm_ does for one
    network (coefficient max_norm / (norm + 1e-6), at most 1), so one seed's large gradient never shrinks
    another's."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if len(grads) == 1:   # one arena (parts/networks.py): a row per seed
        norms = torch.linalg.vector_norm(grads[0].flatten(1), dim=1)
    else:
        norms = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1)
                                                      for g in grads]), dim=0)
    if max_norm > 0:
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    return norms
