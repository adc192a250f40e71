"""Function approximators: plain MLPs and the Q heads built on them."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden_sizes: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden_sizes:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class DiscreteQ(nn.Module):
    """Q(s, .) for a finite action set: one output per action."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: list[int]):
        super().__init__()
        self.n_actions = n_actions
        self.net = mlp(obs_dim, hidden_sizes, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    def all_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """Q(s, a) for every action: shape (batch, n_actions)."""
        return self.net(obs)

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, a) for the given actions: shape (batch,)."""
        return self.net(obs).gather(1, actions.long().view(-1, 1)).squeeze(1)
