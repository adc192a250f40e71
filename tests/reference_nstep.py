"""An independent reference for qbench.parts.targets: the n-step arithmetic as the replay buffer computed it in
float64 numpy before issue 26 (window lengths now live in qbench.replay.buffer). test_nstep checks the torch module
against it on random windows, bit for bit; and adapters that give the torch module's results on a window as the
old batch fields (reward_n, discount_n, bootstrap_obs, lengths; target, trace_mass), for the tests written
against them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from qbench.parts.targets import cut_lengths, traced_target, window_return


def cut_trace_lengths(lengths: np.ndarray, later_actions: np.ndarray, greedy_actions: np.ndarray) -> np.ndarray:
    """Cut each window at the first later action that is not greedy under the current Q.

    later_actions, greedy_actions: (batch, n - 1), the actions taken at steps t+1 .. t+n-1 of the window and the
    greedy actions in those states. The return from t may use reward t+k only if actions t+1 .. t+k were greedy,
    so the horizon is the first k >= 1 whose action differs, or the whole window.
    """
    n_minus_1 = later_actions.shape[1]
    if n_minus_1 == 0:
        return lengths
    off_policy = later_actions != greedy_actions
    first_off = np.where(off_policy.any(axis=1), off_policy.argmax(axis=1) + 1, n_minus_1 + 1)
    return np.minimum(lengths, first_off)


def discounted_window(rewards: np.ndarray, terminated: np.ndarray, lengths: np.ndarray,
                      gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """(reward_n, discount_n) for windows truncated to the given lengths (each >= 1).

    reward_n = sum_{i < L} gamma^i r_{t+i};  discount_n = gamma^L, or 0 if transition t+L-1 terminated.
    A truncated (time-limit) end keeps its discount: the state there still has a value.
    """
    n = rewards.shape[1]
    steps = np.arange(n)
    inside = steps[None, :] < lengths[:, None]
    powers = gamma ** steps
    # where, not a product: a NaN or inf reward after the window's end (the next episode) must not leak in.
    reward_n = np.where(inside, rewards * powers[None, :], 0.0).sum(axis=1)
    last_terminated = terminated[np.arange(len(lengths)), lengths - 1]
    discount_n = np.where(last_terminated, 0.0, gamma ** lengths.astype(np.float64))
    return reward_n, discount_n


# The trace corrections (qbench.config.TRACE_CORRECTIONS) share the general form of Munos et al. (2016, eq. 3): they
# differ only in c_k, a function of pi(a_k | s_k) and mu(a_k | s_k).


def trace_coefficients(kind: str, target_probs: np.ndarray, behaviour_probs: np.ndarray, trace_lambda: float = 1.0,
                       is_clip: float = 0.0) -> np.ndarray:
    """c_k for the later actions of each window, from pi(a_k | s_k) and mu(a_k | s_k) (same shapes).

    importance_sampling: rho_k = pi / mu, Precup et al. (2000)'s per-decision weight, truncated at is_clip when
                         is_clip > 0; unbiased for pi's n-step return, with a variance that grows with the product.
    retrace:             lambda min(1, rho_k), Munos et al. (2016): never above 1, so the product cannot blow up,
                         and no cut where mu and pi agree.
    tree_backup:         lambda pi(a_k | s_k), Precup et al. (2000): needs no mu at all, and cuts even on-policy
                         traces by pi's own randomness.
    """
    if kind == "tree_backup":
        return trace_lambda * np.asarray(target_probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):   # mu = 0 only past a window's end (never sampled there)
        rho = np.asarray(target_probs, dtype=np.float64) / np.asarray(behaviour_probs, dtype=np.float64)
    if kind == "retrace":
        return trace_lambda * np.minimum(1.0, rho)
    if kind == "importance_sampling":
        return np.minimum(rho, is_clip) if is_clip > 0 else rho
    raise ValueError(f"unknown trace correction {kind!r}; valid: importance_sampling, retrace, tree_backup")


def traced_window_target(rewards: np.ndarray, terminated: np.ndarray, lengths: np.ndarray, next_values: np.ndarray,
                         later_q_taken: np.ndarray, later_traces: np.ndarray,
                         gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """(target, trace mass) of windows under trace coefficients: the off-policy n-step target

        y = Q(s_0, a_0) + sum_{j < L} gamma^j C_j delta_j,   delta_j = r_j + gamma V(s_{j+1}) - Q(s_j, a_j),
        C_0 = 1,  C_j = c_1 ... c_j,

    written without Q(s_0, a_0), which cancels: y = sum_{j < L} gamma^j C_j (r_j + gamma V(s_{j+1}))
    - sum_{1 <= j < L} gamma^j C_j Q(s_j, a_j). V(s) = sum_a pi(a | s) Q(s, a), and V(s_{j+1}) = 0 after a
    termination; a window cut by a truncation bootstraps from its last next state like any other.

    rewards, terminated: (B, n); lengths: (B,) L; next_values: (B, n) V(s_{j+1}); later_q_taken, later_traces:
    (B, n - 1) Q(s_j, a_j) and c_j for j = 1 .. n - 1. The trace mass sum_{j < L} C_j is how many steps the
    target effectively uses (L when every c is 1, 1 when the first later one is 0). Entries past a window's end
    may be anything, inf and NaN included: they are never multiplied, only masked.
    """
    b, n = rewards.shape
    steps = np.arange(n)
    inside = steps[None, :] < lengths[:, None]
    traces = np.ones((b, n))
    if n > 1:   # the products of c are taken only inside the window, which is a prefix of it
        traces[:, 1:] = np.cumprod(np.where(inside[:, 1:], later_traces, 1.0), axis=1)
    powers = gamma ** steps
    bootstrap = np.where(terminated, 0.0, gamma * np.where(inside, next_values, 0.0))
    gain = np.where(inside, traces * powers * (rewards + bootstrap), 0.0).sum(axis=1)
    spent = np.where(inside[:, 1:], traces[:, 1:] * powers[1:] * np.where(inside[:, 1:], later_q_taken, 0.0),
                     0.0).sum(axis=1)
    return gain - spent, np.where(inside, traces, 0.0).sum(axis=1)


def next_values(q: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """V(s) = sum_a pi(a | s) Q(s, a) over the last axis, as the buffer computed it (Q -inf where pi is 0)."""
    return np.where(pi > 0, pi * np.where(pi > 0, q, 0.0), 0.0).sum(axis=-1)


# ---- adapters: the torch module applied to a window, as the fields of the batches the buffer used to return

def returns_of(window, gamma: float, greedy_fn=None) -> SimpleNamespace:
    """A window's n-step returns (cut by greedy_fn's actions, states (K, N, *obs) -> (K, N), when given):
    obs, actions, reward_n, discount_n (float32), lengths, bootstrap_obs, as numpy."""
    lengths = None
    if greedy_fn is not None and window.n > 1:
        k, b, n = window.slots.shape
        greedy = np.array(greedy_fn(window.later_obs().reshape(k, b * (n - 1), *window.obs.shape[2:])))
        lengths = cut_lengths(torch.as_tensor(window.lengths), torch.as_tensor(window.later_actions),
                              torch.as_tensor(greedy.reshape(k, b, n - 1)))
    reward_n, discount_n, lengths = window_return(window, gamma, "cpu", lengths)
    return SimpleNamespace(obs=window.obs, actions=window.actions, reward_n=reward_n.numpy(),
                           discount_n=discount_n.numpy(), lengths=lengths, bootstrap_obs=window.next_obs(lengths - 1))


def traced_of(window, kind: str, evaluate, gamma: float, trace_lambda: float = 1.0,
              is_clip: float = 0.0) -> SimpleNamespace:
    """A window's traced target (float32) and trace mass, with evaluate(states (K, N, *obs)) -> (Q, pi) (K, N, A)
    in place of the networks."""
    k, b, n = window.slots.shape
    q, pi = evaluate(window.next_obs().reshape(k, b * n, *window.obs.shape[2:]))
    q, pi = (torch.as_tensor(np.asarray(x, np.float64)).reshape(k, b, n, -1) for x in (q, pi))
    target, mass = traced_target(kind, window, q, pi, gamma, trace_lambda, is_clip)
    return SimpleNamespace(target=target.float().numpy(), trace_mass=mass.numpy(), lengths=window.lengths)
