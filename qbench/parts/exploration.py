"""Behaviour policies as action probabilities, and linear schedules."""

from __future__ import annotations

import math

import numpy as np


def linear_schedule(start: float, end: float, decay_fraction: float, progress: float) -> float:
    """Linear from start to end over the first decay_fraction of the run, then constant. progress is in [0, 1]."""
    if decay_fraction <= 0:
        return end
    frac = min(progress / decay_fraction, 1.0)
    return start + frac * (end - start)


EPSILON_FORMS = ("uniform", "non_greedy")


def non_greedy_mass(eps, n_available, form: str):
    """The probability mass an epsilon-greedy policy puts on the non-greedy actions, given its epsilon in either
    form, for n_available actions (a number or an array of them):

    - ``uniform`` (Stable-Baselines3, rl-baselines3-zoo, CleanRL, Dopamine, the MinAtar paper, Sutton and Barto): with
      probability eps a uniformly random action among the available ones, the greedy one included, so the
      non-greedy ones get eps (m - 1) / m in all; eps = 1 is the uniform policy.
    - ``non_greedy`` (the lecture's formula): 1 - eps on the greedy action, eps / (m - 1) on each other, with eps
      capped at (m - 1) / m, the uniform policy (beyond it the greedy action would get less than the others, and at
      eps = 1 none at all: on two actions, the anti-greedy policy).

    Both forms are one family: non_greedy eps_l and uniform eps_u are the same policy when eps_l = eps_u (m - 1) / m.
    """
    m = np.asarray(n_available, dtype=np.float64)
    if form == "uniform":
        return eps * (m - 1) / np.maximum(m, 1)
    if form == "non_greedy":
        return np.minimum(eps, (m - 1) / np.maximum(m, 1))
    raise ValueError(f"unknown epsilon form {form!r}; choose from {', '.join(EPSILON_FORMS)}")


def capped_epsilon(eps: float, n_actions: int) -> float:
    """non_greedy epsilon capped at (|A| - 1) / |A|: there every action has probability 1/|A|. Beyond it the greedy
    action would get less than the others, and at eps = 1 none at all (on two actions, the anti-greedy policy)."""
    return min(eps, (n_actions - 1) / n_actions)


def epsilon_greedy_probs(q_values: np.ndarray, eps: float, form: str) -> np.ndarray:
    """The epsilon-greedy policy of eps in the given form (see non_greedy_mass): the greedy action gets 1 minus the
    non-greedy mass, and each of the other m - 1 available ones an equal share of it. An action whose Q is -inf is
    not available in that state (probability 0). Tied greedy actions share the policy evenly: it is the mean of the
    epsilon-greedy policies around each of them (a table starts with every entry tied, and sending ties to the
    lowest index would make one action greedy until the others are learned, as in the maximisation-bias MDP, where
    Sutton and Barto break ties at random). In the uniform form that is (1 - eps) / |T| + eps / m on each tied
    action and eps / m on every other available one, the textbook's rule."""
    q = np.asarray(q_values, dtype=np.float64)
    n = q.shape[-1]
    available = q > -np.inf
    m = available.sum(axis=-1, keepdims=True)
    tied = (q == q.max(axis=-1, keepdims=True)) & available
    share = tied / tied.sum(axis=-1, keepdims=True)        # 1/|T| on each tied greedy action
    if n == 1:
        return np.ones_like(q)
    mass = non_greedy_mass(eps, m, form)
    others = np.where(m > 1, mass / np.maximum(m - 1, 1), 0.0)
    return np.where(available, (1.0 - mass) * share + others * (1.0 - share), 0.0)


def inverse_cdf_draw(probs: np.ndarray, uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's index drawn by the inverse CDF with one uniform in [0, 1) per row, and its probability under
    the row's normalised probabilities: (indices (K,), probabilities (K,))."""
    cdf = np.cumsum(probs, axis=1)
    u = np.asarray(uniforms, dtype=np.float64) * cdf[:, -1]
    drawn = np.minimum((cdf <= u[:, None]).sum(axis=1), probs.shape[1] - 1)
    return drawn, probs[np.arange(len(drawn)), drawn] / cdf[:, -1]


def epsilon_greedy_draw(q_values: np.ndarray, eps: float, uniforms: list[float],
                        form: str) -> tuple[np.ndarray, np.ndarray] | None:
    """inverse_cdf_draw(epsilon_greedy_probs(q_values, eps, form), uniforms) for the common case, every action available
    and one greedy action per state, in Python floats (IEEE doubles: the same additions, products and divisions
    in the same order as the numpy code, so the same numbers; tests/test_exploration.py). Acting happens at every
    env step on a handful of numbers, where each numpy call costs more than the arithmetic. None where a state has
    tied or unavailable actions (the caller then takes the general path)."""
    rows = np.asarray(q_values).tolist()
    n = len(rows[0])
    if n < 2:
        return None
    mass = eps * (n - 1) / n if form == "uniform" else min(eps, (n - 1) / n)   # non_greedy_mass, as numpy does it
    other, greedy_p = mass / (n - 1), 1.0 - mass
    drawn, drawn_p = [], []
    for row, u in zip(rows, uniforms, strict=True):
        if not all(map(math.isfinite, row)):
            return None
        best = max(row)
        if row.count(best) != 1:
            return None
        greedy = row.index(best)
        cdf, c = [], 0.0
        for j in range(n):
            c = c + (greedy_p if j == greedy else other)
            cdf.append(c)
        total = cdf[-1]
        x = u * total
        a = min(sum(1 for c in cdf if c <= x), n - 1)
        drawn.append(a)
        drawn_p.append((greedy_p if a == greedy else other) / total)
    return np.array(drawn), np.array(drawn_p)


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
