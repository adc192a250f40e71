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


class StateActionQ(nn.Module):
    """Q(s, a) with the (normalised) action as an input: one scalar per (state, action) pair."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: list[int]):
        super().__init__()
        self.net = mlp(obs_dim + action_dim, hidden_sizes, 1)

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, actions], dim=-1)).squeeze(-1)


class NAFQ(nn.Module):
    """Normalised advantage functions (Gu et al., 2016): Q(s, a) = V(s) - 1/2 (a - mu(s))^T P(s) (a - mu(s)).

    P = L L^T with L lower-triangular and a positive (exponentiated) diagonal, so P is positive definite and the
    advantage is a concave quadratic whose maximum, 0, lies at mu(s): argmax and max come in closed form.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: list[int]):
        super().__init__()
        self.action_dim = action_dim
        width = hidden_sizes[-1]
        self.trunk = nn.Sequential(mlp(obs_dim, hidden_sizes[:-1], width), nn.ReLU())
        self.value_head = nn.Linear(width, 1)
        self.mu_head = nn.Linear(width, action_dim)
        self.l_head = nn.Linear(width, action_dim * (action_dim + 1) // 2)
        self.register_buffer("tril_rows", torch.tril_indices(action_dim, action_dim)[0], persistent=False)
        self.register_buffer("tril_cols", torch.tril_indices(action_dim, action_dim)[1], persistent=False)

    def terms(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """V(s) (batch,), mu(s) (batch, d) in [-1, 1], P(s) (batch, d, d)."""
        h = self.trunk(obs)
        value = self.value_head(h).squeeze(-1)
        mu = torch.tanh(self.mu_head(h))
        entries = self.l_head(h)
        d = self.action_dim
        lower = torch.zeros(obs.shape[0], d, d, dtype=obs.dtype, device=obs.device)
        lower[:, self.tril_rows, self.tril_cols] = entries
        diag = torch.diagonal(lower, dim1=-2, dim2=-1)
        lower = lower - torch.diag_embed(diag) + torch.diag_embed(torch.exp(diag.clamp(max=10.0)))
        return value, mu, lower @ lower.transpose(-1, -2)

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        value, mu, p = self.terms(obs)
        diff = (actions - mu).unsqueeze(-1)
        return value - 0.5 * (diff.transpose(-1, -2) @ p @ diff).squeeze(-1).squeeze(-1)

    def mu(self, obs: torch.Tensor) -> torch.Tensor:
        return self.terms(obs)[1]

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value_head(self.trunk(obs)).squeeze(-1)


class Actor(nn.Module):
    """A deterministic policy mu_theta(s) in [-1, 1]^d (tanh), scaled to the env's bounds outside the network."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: list[int]):
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, action_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))
