"""Behaviour policies as action probabilities, and linear schedules."""

from __future__ import annotations

import numpy as np


def linear_schedule(start: float, end: float, decay_fraction: float, progress: float) -> float:
    """Linear from start to end over the first decay_fraction of the run, then constant. progress is in [0, 1]."""
    if decay_fraction <= 0:
        return end
    frac = min(progress / decay_fraction, 1.0)
    return start + frac * (end - start)


def capped_epsilon(eps: float, n_actions: int) -> float:
    """eps capped at (|A| - 1) / |A|: there every action has probability 1/|A|. Beyond it the greedy action would
    get less than the others, and at eps = 1 none at all (on two actions, the anti-greedy policy)."""
    return min(eps, (n_actions - 1) / n_actions)


def epsilon_greedy_probs(q_values: np.ndarray, eps: float) -> np.ndarray:
    """1 - eps on the greedy action and eps / (|A| - 1) on each other one (ties go to the lowest index), with eps
    capped at the uniform point (see capped_epsilon)."""
    q_values = np.asarray(q_values)
    n = q_values.shape[-1]
    greedy = np.argmax(q_values, axis=-1)
    if n == 1:
        return np.ones_like(q_values, dtype=np.float64)
    eps = capped_epsilon(eps, n)
    probs = np.full(q_values.shape, eps / (n - 1), dtype=np.float64)
    if probs.ndim == 2:   # one row per seed: plain indexing is several times cheaper than put_along_axis
        probs[np.arange(len(probs)), greedy] = 1.0 - eps
    else:
        np.put_along_axis(probs, np.expand_dims(greedy, -1), 1.0 - eps, axis=-1)
    return probs


def boltzmann_probs(q_values: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(Q / temperature), computed stably."""
    z = np.asarray(q_values, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sample_from_probs(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Draw one index from a probability vector with a single uniform number (inverse CDF)."""
    cdf = np.cumsum(probs)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(probs) - 1))


class OrnsteinUhlenbeckNoise:
    """Temporally correlated noise: x += theta * (0 - x) * dt + sigma * sqrt(dt) * N(0, 1); reset each episode."""

    def __init__(self, dim: int, sigma: float, theta: float, dt: float, rng: np.random.Generator):
        self.sigma, self.theta, self.dt, self.rng = sigma, theta, dt, rng
        self.state = np.zeros(dim)

    def sample(self) -> np.ndarray:
        self.state = (self.state - self.theta * self.state * self.dt
                      + self.sigma * np.sqrt(self.dt) * self.rng.standard_normal(self.state.shape))
        return self.state.copy()

    def reset(self) -> None:
        self.state[:] = 0.0


class GaussianNoise:
    """Independent N(0, sigma^2) noise per step and dimension."""

    def __init__(self, dim: int, sigma: float, rng: np.random.Generator):
        self.dim, self.sigma, self.rng = dim, sigma, rng

    def sample(self) -> np.ndarray:
        return self.sigma * self.rng.standard_normal(self.dim)

    def reset(self) -> None:
        pass
