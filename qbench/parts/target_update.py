"""How the target parameters follow the online parameters (elementwise, so every seed of a batch follows its own)."""

from __future__ import annotations

import torch


@torch.no_grad()
def hard_update(targets: list[torch.Tensor], onlines: list[torch.Tensor]) -> None:
    torch._foreach_copy_(targets, onlines)


@torch.no_grad()
def polyak_update(targets: list[torch.Tensor], onlines: list[torch.Tensor], tau: float) -> None:
    """target <- tau * online + (1 - tau) * target."""
    torch._foreach_lerp_(targets, onlines, tau)
