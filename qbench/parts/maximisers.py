"""Maximisers answer argmax_a Q(s, a) and max_a Q(s, a), for acting and for targets."""

from __future__ import annotations

import torch


class ExactMaximiser:
    """Exact maximisation over a finite action set (ties go to the lowest action index)."""

    def argmax(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return q_fn.all_actions(obs).argmax(dim=1)

    def max(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return q_fn.all_actions(obs).max(dim=1).values
