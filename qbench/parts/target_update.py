"""How the target parameters follow the online parameters."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def hard_update(target: nn.Module, online: nn.Module) -> None:
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.copy_(o)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o, tau)
