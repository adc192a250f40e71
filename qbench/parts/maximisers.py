"""Maximisers answer argmax_a Q(s, a) and max_a Q(s, a), for acting and for targets.

Continuous actions are normalised to [-1, 1]^d everywhere inside the engine; the env wrapper scales them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class Maximiser:
    """The interface: argmax and max. A learned maximiser also trains (learn) and has target networks."""

    def argmax(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def max(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def learn(self, q_fn, obs: torch.Tensor) -> float | None:
        """One optimisation step of the maximiser itself; None when it has nothing to learn."""
        return None

    def target_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(target, online) network pairs that follow the online ones like the target critic does."""
        return []

    def optimisers(self) -> list[torch.optim.Optimizer]:
        """The maximiser's own optimisers, so that the run's learning-rate schedule reaches them too."""
        return []

    def state_dict(self) -> dict:
        """Everything needed to continue exactly where it stopped (random streams, learned parts)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    @contextlib.contextmanager
    def reseeded(self, seed: int) -> Iterator[None]:
        """Draw from a stream seeded with `seed` inside the block, then continue the previous stream, so that
        evaluation never shifts the random numbers training sees."""
        yield


class ExactMaximiser(Maximiser):
    """Exact maximisation over a finite action set (ties go to the lowest action index)."""

    def argmax(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return q_fn.all_actions(obs).argmax(dim=1)

    def max(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return q_fn.all_actions(obs).max(dim=1).values


def q_of_candidates(q_fn, obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Q(s_b, a_bk) for candidates of shape (batch, k, d): one batched call, shape (batch, k)."""
    b, k, d = candidates.shape
    obs_rep = obs.unsqueeze(1).expand(b, k, obs.shape[-1]).reshape(b * k, -1)
    return q_fn.q(obs_rep, candidates.reshape(b * k, d)).view(b, k)


class _SamplingMaximiser(Maximiser):
    generator: torch.Generator

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    @contextlib.contextmanager
    def reseeded(self, seed: int) -> Iterator[None]:
        saved = self.generator.get_state()
        self.generator.manual_seed(seed)
        try:
            yield
        finally:
            self.generator.set_state(saved)

    def best(self, q_fn, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def argmax(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return self.best(q_fn, obs)[0]

    def max(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return self.best(q_fn, obs)[1]


class RandomSamplingMaximiser(_SamplingMaximiser):
    """The best of n_samples uniform actions in the box, per state."""

    def __init__(self, n_samples: int, action_dim: int, generator: torch.Generator):
        self.n_samples, self.action_dim, self.generator = n_samples, action_dim, generator

    def best(self, q_fn, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = obs.shape[0]
        candidates = torch.rand(b, self.n_samples, self.action_dim, generator=self.generator) * 2.0 - 1.0
        values, index = q_of_candidates(q_fn, obs, candidates).max(dim=1)
        return candidates[torch.arange(b), index], values


class CEMMaximiser(_SamplingMaximiser):
    """Cross-entropy method (as in QT-Opt): sample a Gaussian, keep the elites, refit, repeat.

    Starts from N(0, 1) per dimension (the box is [-1, 1]), clips samples to the box, and returns the best action
    evaluated in any iteration together with its Q value.
    """

    def __init__(self, iterations: int, population: int, elites: int, action_dim: int,
                 generator: torch.Generator, min_std: float = 1e-3):
        self.iterations, self.population, self.elites = iterations, population, elites
        self.action_dim, self.generator, self.min_std = action_dim, generator, min_std

    def best(self, q_fn, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, d = obs.shape[0], self.action_dim
        mean = torch.zeros(b, d)
        std = torch.ones(b, d)
        best_action = torch.zeros(b, d)
        best_value = torch.full((b,), -torch.inf)
        rows = torch.arange(b)
        for _ in range(self.iterations):
            noise = torch.randn(b, self.population, d, generator=self.generator)
            candidates = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(-1.0, 1.0)
            values = q_of_candidates(q_fn, obs, candidates)
            top_values, top_index = values.topk(self.elites, dim=1)
            elites = candidates.gather(1, top_index.unsqueeze(-1).expand(-1, -1, d))
            mean = elites.mean(dim=1)
            std = elites.std(dim=1, correction=0).clamp(min=self.min_std)
            improved = top_values[:, 0] > best_value
            best_value = torch.where(improved, top_values[:, 0], best_value)
            best_action = torch.where(improved.unsqueeze(-1), candidates[rows, top_index[:, 0]], best_action)
        return best_action, best_value


class NAFMaximiser(Maximiser):
    """NAF's closed form: argmax_a Q = mu(s) and max_a Q = V(s)."""

    def argmax(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return q_fn.mu(obs)

    def max(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return q_fn.value(obs)


class ActorMaximiser(Maximiser):
    """DDPG's learned maximiser: a deterministic actor trained to climb Q(s, mu(s)), with a target actor."""

    def __init__(self, actor: nn.Module, target_actor: nn.Module, optimiser: torch.optim.Optimizer):
        self.actor, self.target_actor, self.optimiser = actor, target_actor, optimiser

    def argmax(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    def max(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return q_fn.q(obs, self.actor(obs))

    def target_policy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.target_actor(obs)

    def learn(self, q_fn, obs: torch.Tensor) -> float:
        """One gradient step on the actor to maximise Q(s, mu(s)); the critic's parameters are not changed."""
        loss = -q_fn.q(obs, self.actor(obs)).mean()
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.actor.parameters()))
        self.optimiser.step()
        return float(loss.detach())

    def target_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.target_actor, self.actor)]

    def optimisers(self) -> list[torch.optim.Optimizer]:
        return [self.optimiser]

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "target_actor": self.target_actor.state_dict(),
                "optimiser": self.optimiser.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.target_actor.load_state_dict(state["target_actor"])
        self.optimiser.load_state_dict(state["optimiser"])
