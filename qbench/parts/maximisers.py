"""Maximisers answer argmax_a Q(s, a) and max_a Q(s, a), for acting and for targets.

Continuous actions are normalised to [-1, 1]^d everywhere inside the engine; the env wrapper scales them. States
carry the seed axis first, (K, B, obs_dim); a sampling maximiser draws seed k's candidates from seed k's own
generator, so no seed's draws depend on its batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from qbench.parts.networks import layer_parameters


class Maximiser:
    """The interface: argmax and max. A learned maximiser also trains (learn) and has target networks."""

    def argmax(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def max(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def learn(self, q_fn, obs: torch.Tensor) -> torch.Tensor | None:
        """One optimisation step of the maximiser itself, returning its loss per seed (K,); None when it has
        nothing to learn."""
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
    def reseeded(self, seeds: list[int]) -> Iterator[None]:
        """Draw from streams seeded with `seeds` (one per seed of the batch) inside the block, then continue the
        previous streams, so that evaluation never shifts the random numbers training sees."""
        yield


class ExactMaximiser(Maximiser):
    """Exact maximisation over a finite action set (ties go to the lowest action index)."""

    def argmax(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return q_fn.all_actions(obs).argmax(dim=-1)

    def max(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return q_fn.all_actions(obs).amax(dim=-1)


# Rows (state, candidate pairs) per seed evaluated in one call. A target's candidates are 25,600 rows per seed
# (256 states x 100) and their activations tens of MB, far beyond the caches, so every elementwise op streams from
# memory; in pieces of this size they stay in cache. Each row's Q is the same number in a piece as in the whole
# (a row of a matrix product does not depend on the others; tests/test_continuous.py checks it bit for bit).
CANDIDATE_ROWS = 2048


def q_of_candidates(q_fn, obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Q(s_b, a_bn) for candidates of shape (K, B, n, d): batched calls over pieces of the states, (K, B, n)."""
    k, b, n, d = candidates.shape
    if hasattr(q_fn, "features"):   # encode each state once (an image encoder is the costly part), then repeat
        features = q_fn.features(obs)

        def q_piece(start: int, end: int) -> torch.Tensor:
            rep = features[:, start:end].unsqueeze(2).expand(k, end - start, n, features.shape[-1])
            return q_fn.q_features(rep.reshape(k, (end - start) * n, -1),
                                   candidates[:, start:end].reshape(k, (end - start) * n, d))
    else:
        def q_piece(start: int, end: int) -> torch.Tensor:
            rep = obs[:, start:end].unsqueeze(2).expand(k, end - start, n, obs.shape[-1])
            return q_fn.q(rep.reshape(k, (end - start) * n, -1),
                          candidates[:, start:end].reshape(k, (end - start) * n, d))
    step = max(1, CANDIDATE_ROWS // n)
    pieces = [q_piece(start, min(b, start + step)).view(k, -1, n) for start in range(0, b, step)]
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)


class _SamplingMaximiser(Maximiser):
    generators: list[torch.Generator]   # one per seed of the batch, on the CPU (the same draws on every device)
    device: torch.device | str          # where the networks run (candidates are moved there)

    def draw(self, fn, *shape: int) -> torch.Tensor:
        """(K, *shape): seed k's slice drawn from seed k's generator."""
        return torch.stack([fn(*shape, generator=g) for g in self.generators]).to(self.device)

    def state_dict(self) -> dict:
        """The generators' states stacked along the seed axis."""
        return {"generators": torch.stack([g.get_state() for g in self.generators])}

    def load_state_dict(self, state: dict) -> None:
        for g, saved in zip(self.generators, state["generators"], strict=True):
            g.set_state(saved)

    @contextlib.contextmanager
    def reseeded(self, seeds: list[int]) -> Iterator[None]:
        saved = [g.get_state() for g in self.generators]
        for g, seed in zip(self.generators, seeds, strict=True):
            g.manual_seed(seed)
        try:
            yield
        finally:
            for g, state in zip(self.generators, saved, strict=True):
                g.set_state(state)

    def best(self, q_fn, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def argmax(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return self.best(q_fn, obs)[0]

    def max(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        return self.best(q_fn, obs)[1]


class RandomSamplingMaximiser(_SamplingMaximiser):
    """The best of n_samples uniform actions in the box, per state."""

    def __init__(self, n_samples: int, action_dim: int, generators: list[torch.Generator],
                 device: torch.device | str = "cpu"):
        self.n_samples, self.action_dim, self.generators, self.device = n_samples, action_dim, generators, device

    def best(self, q_fn, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = obs.shape[1]
        candidates = self.draw(torch.rand, b, self.n_samples, self.action_dim) * 2.0 - 1.0
        values, index = q_of_candidates(q_fn, obs, candidates).max(dim=-1)
        best = candidates.gather(2, index[..., None, None].expand(-1, -1, 1, self.action_dim)).squeeze(2)
        return best, values


class CEMMaximiser(_SamplingMaximiser):
    """Cross-entropy method (as in QT-Opt): sample a Gaussian, keep the elites, refit, repeat.

    Starts from N(0, 1) per dimension (the box is [-1, 1]), clips samples to the box, and returns the best action
    evaluated in any iteration together with its Q value.
    """

    def __init__(self, iterations: int, population: int, elites: int, action_dim: int,
                 generators: list[torch.Generator], min_std: float = 1e-3, device: torch.device | str = "cpu"):
        self.iterations, self.population, self.elites = iterations, population, elites
        self.action_dim, self.generators, self.min_std, self.device = action_dim, generators, min_std, device

    def best(self, q_fn, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, b, d = obs.shape[0], obs.shape[1], self.action_dim
        mean = torch.zeros(k, b, d, device=obs.device)
        std = torch.ones(k, b, d, device=obs.device)
        best_action = torch.zeros(k, b, d, device=obs.device)
        best_value = torch.full((k, b), -torch.inf, device=obs.device)
        for _ in range(self.iterations):
            noise = self.draw(torch.randn, b, self.population, d)
            candidates = (mean.unsqueeze(2) + std.unsqueeze(2) * noise).clamp(-1.0, 1.0)
            values = q_of_candidates(q_fn, obs, candidates)
            top_values, top_index = values.topk(self.elites, dim=-1)
            elites = candidates.gather(2, top_index.unsqueeze(-1).expand(-1, -1, -1, d))
            mean = elites.mean(dim=2)
            std = elites.std(dim=2, correction=0).clamp(min=self.min_std)
            improved = top_values[..., 0] > best_value
            best_value = torch.where(improved, top_values[..., 0], best_value)
            best_action = torch.where(improved.unsqueeze(-1), elites[:, :, 0], best_action)
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

    def learn(self, q_fn, obs: torch.Tensor) -> torch.Tensor:
        """One gradient step on each seed's actor to maximise its Q(s, mu(s)); the critic's parameters are not
        changed. Seeds' losses are summed: seed k's actor gets the gradient of seed k's loss only."""
        loss = -q_fn.q(obs, self.actor(obs)).mean(dim=1)
        self.optimiser.zero_grad(set_to_none=False)   # in place: the layers' .grad are views of the arena's
        loss.sum().backward(inputs=layer_parameters(self.actor))
        self.optimiser.step()
        return loss.detach()

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
