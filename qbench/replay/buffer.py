"""Uniform replay over a ring of single-env transitions; n-step windows are assembled at sampling time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qbench.replay.nstep import cut_trace_lengths, discounted_window, window_lengths


@dataclass
class Batch:
    obs: np.ndarray            # (B, *obs_shape) states s_t
    actions: np.ndarray        # (B, *action_shape) actions a_t
    reward_n: np.ndarray       # (B,) discounted reward over the window
    discount_n: np.ndarray     # (B,) gamma^L, 0 when the window ended in a termination
    bootstrap_obs: np.ndarray  # (B, *obs_shape) s_{t+L}
    lengths: np.ndarray        # (B,) L, the number of rewards in each return


class ReplayBuffer:
    """Stores transitions in insertion order so that consecutive slots hold consecutive steps of one env.

    The loss never sees n: sample() returns per-sample (reward_n, discount_n, bootstrap_obs), so 1-step, n-step
    and cut-trace returns reach the same target function.
    """

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: type, n_step: int, gamma: float):
        self.capacity = capacity
        self.n_step = n_step
        self.gamma = gamma
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.actions = np.zeros((capacity, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(capacity, dtype=np.float64)
        self.terminated = np.zeros(capacity, dtype=bool)
        self.episode_end = np.zeros(capacity, dtype=bool)
        self.pos = 0
        self.size = 0
        self.total_added = 0   # transitions ever added: global index g lives in slot g % capacity

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward: float, next_obs, terminated: bool, truncated: bool) -> None:
        i = self.pos
        self.obs[i] = obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = terminated
        self.episode_end[i] = terminated or truncated
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.total_added += 1

    _ARRAYS = ("obs", "next_obs", "actions", "rewards", "terminated", "episode_end")

    # Checkpoints store the buffer as chunks: each checkpoint writes only the transitions added since the previous
    # one, so its cost does not grow with the run. A chunk [start, end) of global indices is obsolete once every
    # one of its slots has been written again, i.e. once total_added >= end + capacity.

    def counters(self) -> dict:
        return {"pos": self.pos, "size": self.size, "total_added": self.total_added}

    def chunk(self, start: int) -> dict:
        """The transitions with global index in [start, total_added) that are still stored, as arrays."""
        first = max(start, self.total_added - self.size)
        slots = np.arange(first, self.total_added) % self.capacity
        return {"start": first, "end": self.total_added, **{k: getattr(self, k)[slots] for k in self._ARRAYS}}

    def chunk_is_obsolete(self, end: int) -> bool:
        return self.total_added >= end + self.capacity

    def load_chunks(self, counters: dict, chunks: list[dict]) -> None:
        """Rebuild the ring from its counters and its chunks, oldest first (a later chunk overwrites slots)."""
        for chunk in chunks:
            slots = np.arange(int(chunk["start"]), int(chunk["end"])) % self.capacity
            for k in self._ARRAYS:
                getattr(self, k)[slots] = chunk[k]
        self.pos, self.size, self.total_added = (int(counters["pos"]), int(counters["size"]),
                                                 int(counters["total_added"]))

    def sample(self, batch_size: int, rng: np.random.Generator,
               greedy_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> Batch:
        """Sample uniformly. greedy_fn, when given, maps states to greedy actions and cuts each n-step trace at
        the first later action that differs from it (the "cut the trace" correction)."""
        idx = rng.integers(0, self.size, size=batch_size)
        return self.gather(idx, greedy_fn)

    def gather(self, idx: np.ndarray, greedy_fn: Callable[[np.ndarray], np.ndarray] | None = None) -> Batch:
        n = self.n_step
        window = (idx[:, None] + np.arange(n)[None, :]) % self.capacity
        available = (self.pos - 1 - idx) % self.capacity + 1
        lengths = window_lengths(self.episode_end[window], available)
        if greedy_fn is not None and n > 1:
            later = window[:, 1:]
            greedy = greedy_fn(self.obs[later].reshape(-1, *self.obs.shape[1:])).reshape(later.shape)
            lengths = cut_trace_lengths(lengths, self.actions[later], greedy)
        reward_n, discount_n = discounted_window(self.rewards[window], self.terminated[window], lengths, self.gamma)
        last = window[np.arange(len(idx)), lengths - 1]
        return Batch(self.obs[idx], self.actions[idx], reward_n, discount_n, self.next_obs[last], lengths)
