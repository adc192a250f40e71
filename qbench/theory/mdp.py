"""Exact dynamic programming on MDPs whose dynamics are known (Gymnasium toy-text ``P`` tables).

Terminating transitions are left out of ``continuation``: an episode that ends contributes its reward and
nothing after it, so rows of ``continuation`` sum to the probability of carrying on. That one convention
covers discounted tasks (gamma < 1) and episodic ones run undiscounted (gamma == 1) alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class KnownMDP:
    reward: np.ndarray        # (S, A) expected immediate reward, terminating outcomes included
    continuation: np.ndarray  # (S, A, S) probability of reaching s' with the episode still running
    initial: np.ndarray       # (S,) initial-state distribution
    valid: np.ndarray         # (S, A) bool, actions available in s
    observable: np.ndarray    # (S,) bool, states the agent can be in as a current state

    @property
    def n_states(self) -> int:
        return int(self.reward.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.reward.shape[1])


def reachable_states(initial: np.ndarray, continuation: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """States reachable from the initial support through non-terminating transitions under valid actions."""
    # A state entered only by a terminating transition (a hole, a goal) is never a current state, so a
    # learner's Q there is never trained and must not count towards its error.
    step = ((continuation > 0.0) & valid[:, :, None]).any(axis=1)   # (S, S') one-step adjacency
    seen = np.asarray(initial) > 0.0
    frontier = seen.copy()
    while frontier.any():
        nxt = step[frontier].any(axis=0) & ~seen
        seen |= nxt
        frontier = nxt
    return seen


def known_mdp(env: Any) -> KnownMDP | None:
    """The exact model of a toy-text style env, or None when it does not expose ``P`` and its start distribution."""
    base = getattr(env, "unwrapped", env)
    table = getattr(base, "P", None)
    initial = getattr(base, "initial_state_distrib", None)
    if table is None or initial is None:
        return None
    initial = np.asarray(initial, dtype=np.float64).reshape(-1)
    n_states = len(table)
    n_actions = max(len(table[s]) for s in range(n_states))
    reward = np.zeros((n_states, n_actions))
    continuation = np.zeros((n_states, n_actions, n_states))
    for s in range(n_states):
        for a, outcomes in table[s].items() if isinstance(table[s], dict) else enumerate(table[s]):
            for prob, nxt, r, terminated in outcomes:
                reward[s, a] += prob * r
                if not terminated:
                    continuation[s, a, int(nxt)] += prob
    valid = getattr(base, "valid_actions", None)
    valid = np.ones((n_states, n_actions), bool) if valid is None else np.asarray(valid, bool).copy()
    if valid.shape != (n_states, n_actions) or initial.shape != (n_states,):
        raise ValueError(f"valid_actions {valid.shape} / initial_state_distrib {initial.shape} do not match "
                         f"P's {n_states} states x {n_actions} actions")
    observable = reachable_states(initial, continuation, valid)
    return KnownMDP(reward, continuation, initial, valid, observable)


def _state_values(mdp: KnownMDP, q: np.ndarray) -> np.ndarray:
    v = np.where(mdp.valid, q, -np.inf).max(axis=-1)
    # A state with no valid action is a dead end worth nothing; keeping it finite avoids 0 * -inf = nan.
    return np.where(np.isfinite(v), v, 0.0)


def bellman_optimality(mdp: KnownMDP, q: np.ndarray, gamma: float) -> np.ndarray:
    """(T Q)(s, a) = R(s, a) + gamma * sum_s' C(s, a, s') max_{valid a'} Q(s', a'); -inf at invalid actions."""
    backed_up = mdp.reward + gamma * (mdp.continuation @ _state_values(mdp, q))
    return np.where(mdp.valid, backed_up, -np.inf)


@dataclass(frozen=True)
class QIteration:
    q_star: np.ndarray      # (S, A), -inf at invalid actions
    max_errors: np.ndarray  # (sweeps + 1,) ||Q_k - Q*||_inf over valid (s, a), k = 0..sweeps
    ratios: np.ndarray      # (sweeps,) max_errors[k + 1] / max_errors[k], nan where max_errors[k] == 0
    sweeps: int


def _max_valid_gap(mdp: KnownMDP, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.where(mdp.valid, a - np.where(mdp.valid, b, 0.0), 0.0)).max(initial=0.0))


def q_iteration(mdp: KnownMDP, gamma: float, *, tol: float = 1e-12, max_sweeps: int = 100_000,
                q0: np.ndarray | None = None) -> QIteration:
    """Q-value iteration from Q_0 = 0 (or q0) until a sweep changes Q by less than tol, or max_sweeps."""
    start = np.zeros(mdp.reward.shape) if q0 is None else np.asarray(q0, dtype=np.float64)
    start = np.where(mdp.valid, start, -np.inf)
    q, sweeps, converged = start, 0, False
    while sweeps < max_sweeps and not converged:
        q_next = bellman_optimality(mdp, q, gamma)
        sweeps += 1
        converged = _max_valid_gap(mdp, q_next, q) < tol
        q = q_next
    # Stopping at tol leaves Q_n up to gamma * tol / (1 - gamma) from the fixed point, which is as large as
    # the late errors being measured; polishing to float resolution keeps the measured ratios honest.
    reference, last_change = q, np.inf
    for _ in range(max(sweeps, 10) if converged else 0):
        polished = bellman_optimality(mdp, reference, gamma)
        change = _max_valid_gap(mdp, polished, reference)
        reference = polished
        if change == 0.0 or change >= last_change:
            break
        last_change = change
    # The errors need every iterate against the final one; replaying the (deterministic) sweeps costs as
    # much again as keeping them all, which for Taxi at gamma 0.99 would be thousands of 500 x 6 tables.
    errors = np.empty(sweeps + 1)
    q = start
    errors[0] = _max_valid_gap(mdp, q, reference)
    for k in range(1, sweeps + 1):
        q = bellman_optimality(mdp, q, gamma)
        errors[k] = _max_valid_gap(mdp, q, reference)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(errors[:-1] > 0.0, errors[1:] / np.where(errors[:-1] > 0.0, errors[:-1], 1.0), np.nan)
    return QIteration(q_star=reference, max_errors=errors, ratios=ratios, sweeps=sweeps)


def greedy_policy(q: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """argmax over the (valid) actions along the last axis, ties to the lowest index."""
    q = np.asarray(q, dtype=np.float64)
    if valid is not None:
        q = np.where(valid, q, -np.inf)
    return np.argmax(q, axis=-1)


def policy_value(mdp: KnownMDP, policy: np.ndarray, gamma: float, *, tol: float = 1e-12,
                 max_sweeps: int = 100_000) -> np.ndarray:
    """V^pi for a deterministic policy: a linear solve for gamma < 1, iterative evaluation for gamma == 1."""
    states = np.arange(mdp.n_states)
    policy = np.asarray(policy, dtype=np.int64)
    reward = mdp.reward[states, policy]
    moves = mdp.continuation[states, policy]
    if gamma < 1.0:
        return np.linalg.solve(np.eye(mdp.n_states) - gamma * moves, reward)
    # Undiscounted, I - C_pi is singular exactly when some states never end (C_pi is substochastic and
    # non-negative, so its spectral radius is an eigenvalue). If those never-ending states earn nothing
    # their value is 0 and the rest is an exact solve; that is FrozenLake's wall-bumping and the common case.
    ends = moves.sum(axis=1) < 1.0 - 1e-12
    can_end = ends.copy()
    while True:
        grown = can_end | (moves[:, can_end] > 0.0).any(axis=1)
        if (grown == can_end).all():
            break
        can_end = grown
    if not np.any(reward[~can_end]):
        v = np.zeros(mdp.n_states)
        sub = np.ix_(can_end, can_end)
        v[can_end] = np.linalg.solve(np.eye(int(can_end.sum())) - moves[sub], reward[can_end])
        return v
    # Otherwise the value is infinite somewhere; iterating from 0 gives the max_sweeps-step partial return.
    v = np.zeros(mdp.n_states)
    for _ in range(max_sweeps):
        v_next = reward + moves @ v
        done = np.abs(v_next - v).max(initial=0.0) < tol
        v = v_next
        if done:
            break
    return v


@dataclass(frozen=True)
class PolicyIteration:
    q_star: np.ndarray        # (S, A), -inf at invalid actions: Q of the final policy, which is optimal
    policy: np.ndarray        # (S,) the final (optimal) policy
    improvements: int         # improvement steps taken, the last of which changed nothing
    changed: list             # states whose action each improvement step changed


def policy_q(mdp: KnownMDP, policy: np.ndarray, gamma: float) -> np.ndarray:
    """Q^pi(s, a) = R(s, a) + gamma sum_s' C(s, a, s') V^pi(s'), exactly, -inf at invalid actions."""
    q = mdp.reward + gamma * mdp.continuation @ policy_value(mdp, policy, gamma)
    return np.where(mdp.valid, q, -np.inf)


def policy_iteration(mdp: KnownMDP, gamma: float, policy: np.ndarray | None = None,
                     max_improvements: int = 10_000) -> PolicyIteration:
    """Howard's policy iteration: evaluate the policy exactly, make it greedy in its own Q, repeat until no state
    changes. A state keeps its action unless another is better by more than rounding (1e-12 relative), so ties
    cannot make it cycle; with finitely many policies and each step an improvement, it stops. The first policy
    is `policy`, or the lowest valid action everywhere."""
    policy = (greedy_policy(np.where(mdp.valid, 0.0, -np.inf), mdp.valid) if policy is None
              else np.asarray(policy, dtype=np.int64).copy())
    states = np.arange(mdp.n_states)
    changed: list[np.ndarray] = []
    for _ in range(max_improvements):
        q = policy_q(mdp, policy, gamma)
        best = greedy_policy(q, mdp.valid)
        current = q[states, policy]
        better = q[states, best] > current + 1e-12 * np.maximum(1.0, np.abs(current))
        changed.append(np.flatnonzero(better))
        if not better.any():
            return PolicyIteration(q, policy, len(changed), changed)
        policy = np.where(better, best, policy)
    raise RuntimeError(f"policy iteration did not settle in {max_improvements} improvement steps")


def q_distance(mdp: KnownMDP, q_star: np.ndarray, q: np.ndarray, gamma: float) -> dict[str, np.ndarray]:
    """How far one Q table (S, A) or K tables (K, S, A) are from Q*, in values and in greedy return."""
    q = np.asarray(q, dtype=np.float64)
    single = q.ndim == 2
    tables = q[None] if single else q
    gap = np.abs(np.where(mdp.valid, tables, 0.0) - np.where(mdp.valid, q_star, 0.0))
    per_state = gap.max(axis=-1)[:, mdp.observable]          # (K, observable states)
    greedy_value = np.array([
        mdp.initial @ policy_value(mdp, greedy_policy(table, mdp.valid), gamma) for table in tables])
    optimal = float(mdp.initial @ _state_values(mdp, q_star))
    out = {
        "q_error_max": per_state.max(axis=-1),
        "q_error_mean": per_state.mean(axis=-1),
        "greedy_value": greedy_value,
        "optimal_value": np.full(len(tables), optimal),
    }
    return {k: np.asarray(v[0]) for k, v in out.items()} if single else out
