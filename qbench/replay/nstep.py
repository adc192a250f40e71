"""N-step return arithmetic on windows of transitions, as pure numpy functions."""

from __future__ import annotations

import numpy as np


def window_lengths(episode_end: np.ndarray, available: np.ndarray) -> np.ndarray:
    """How many transitions of each window belong to the return.

    episode_end: (batch, n) bool, True where the transition ended its episode (terminated or truncated).
    available:   (batch,) how many transitions exist from the window's start to the newest one stored.
    A window stops after the first transition that ended an episode, and never runs past the newest data.
    """
    n = episode_end.shape[1]
    ends_before = np.cumsum(episode_end, axis=1) - episode_end  # episode ends strictly before each step
    inside = (ends_before == 0) & (np.arange(n)[None, :] < available[:, None])
    return inside.sum(axis=1)


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
