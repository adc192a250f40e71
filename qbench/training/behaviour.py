"""The behaviour policy of a batch: warm-up draws, epsilon-greedy (both forms), Boltzmann, Gaussian or OU noise,
each seed drawing from its own stream, with the probability of the action drawn (what trace corrections weigh)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qbench.config import Config
from qbench.envs.tasks import Spaces
from qbench.parts.exploration import (
    GaussianNoise,
    OrnsteinUhlenbeckNoise,
    boltzmann_probs,
    capped_epsilon,
    epsilon_greedy_draw,
    epsilon_greedy_probs,
    inverse_cdf_draw,
    linear_schedule,
)
from qbench.parts.maximisers import Maximiser


class Behaviour:
    """The behaviour policy of every seed: one forward pass for the batch, then each seed's own random draw."""

    def __init__(self, cfg: Config, spaces: Spaces, online, maximiser: Maximiser, rngs: list[np.random.Generator]):
        self.cfg, self.spaces, self.online, self.maximiser, self.rngs = cfg, spaces, online, maximiser, rngs
        self.discrete = spaces.action_kind == "discrete"
        if cfg.action_noise == "ou":
            self.noises = [OrnsteinUhlenbeckNoise(spaces.action_dim, cfg.noise_std, cfg.ou_theta, cfg.ou_dt, rng)
                           for rng in rngs]
        else:
            self.noises = [GaussianNoise(spaces.action_dim, cfg.noise_std, rng) for rng in rngs]

    # Checkpoints (qbench/training/checkpoint.py): each per-seed part bundles and unbundles its own state.
    def bundle(self, k: int) -> dict[str, Any]:
        """Seed k's agent stream (shared with replay sampling: one stream per seed) and its action noise."""
        return {"rng": self.rngs[k].bit_generator.state, "noise": getattr(self.noises[k], "state", None)}

    def unbundle(self, k: int, bundle: dict[str, Any]) -> None:
        self.rngs[k].bit_generator.state = bundle["rng"]
        if bundle["noise"] is not None and hasattr(self.noises[k], "state"):
            self.noises[k].state = np.array(bundle["noise"])

    def act(self, obs: np.ndarray, progress_frac: float,
            warming_up: bool) -> tuple[np.ndarray, float, np.ndarray]:
        """(actions (K,) or (K, d) in the engine's units, exploration level: epsilon, temperature or noise std,
        mu(a | s): the probability each seed's action had under the policy that drew it, (K,), NaN for Box
        actions, whose density is not what trace corrections weigh by).

        During warm-up every action is uniform (an untrained net's greedy choice is arbitrary but not random;
        an untrained actor plus small noise covers little of the box)."""
        cfg, spaces = self.cfg, self.spaces
        if warming_up:
            if self.discrete and spaces.valid_actions is not None:   # uniform over what each state offers
                offered = [np.flatnonzero(spaces.valid_actions[int(np.argmax(o))]) for o in obs]
                return (np.array([a[rng.integers(len(a))] for a, rng in zip(offered, self.rngs)]), float("nan"),
                        np.array([1.0 / len(a) for a in offered]))
            if self.discrete:
                return (np.array([rng.integers(spaces.n_actions) for rng in self.rngs]), float("nan"),
                        np.full(len(self.rngs), 1.0 / spaces.n_actions))
            return np.stack([rng.uniform(-1.0, 1.0, spaces.action_dim).astype(np.float32)
                             for rng in self.rngs]), float("nan"), np.full(len(self.rngs), np.nan)
        obs_t = torch.as_tensor(obs)[:, None].to(self.online.arena.device)
        if not self.discrete:
            with torch.inference_mode():
                greedy = self.maximiser.argmax(self.online, obs_t)[:, 0].cpu().numpy()
            noise = np.stack([n.sample() for n in self.noises])
            return (np.clip(greedy + noise, -1.0, 1.0).astype(np.float32), cfg.noise_std,
                    np.full(len(self.rngs), np.nan))
        with torch.inference_mode():
            q = self.online.all_actions(obs_t)[:, 0].cpu().numpy()
        # Inverse CDF with one uniform per seed, from the seed's own stream.
        uniforms = [rng.random() for rng in self.rngs]
        if cfg.exploration == "epsilon_greedy":
            level = linear_schedule(cfg.eps_start, cfg.eps_end, cfg.eps_decay_fraction, progress_frac)
            if cfg.epsilon_form == "non_greedy":
                level = capped_epsilon(level, spaces.n_actions)
            drawn = epsilon_greedy_draw(q, level, uniforms, cfg.epsilon_form)
            if drawn is not None:
                return drawn[0], level, drawn[1]
            probs = epsilon_greedy_probs(q, level, cfg.epsilon_form)
        else:
            level = linear_schedule(cfg.temperature_start, cfg.temperature_end, cfg.temperature_decay_fraction,
                                    progress_frac)
            probs = boltzmann_probs(q, level)
        actions, mu = inverse_cdf_draw(probs, uniforms)
        return actions, level, mu
