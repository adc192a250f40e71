"""Uniform replay with a seed axis: one ring per seed of a batch, all filled in lockstep (every seed adds one
transition per env step), so they share their counters. n-step windows are assembled at sampling time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qbench.replay.nstep import (
    cut_trace_lengths,
    discounted_window,
    trace_coefficients,
    traced_window_target,
    window_lengths,
)


@dataclass
class Batch:
    obs: np.ndarray            # (K, B, *obs_shape) states s_t
    actions: np.ndarray        # (K, B, *action_shape) actions a_t
    reward_n: np.ndarray       # (K, B) float32, discounted reward over the window (summed in float64)
    discount_n: np.ndarray     # (K, B) float32, gamma^L, 0 when the window ended in a termination
    bootstrap_obs: np.ndarray  # (K, B, *obs_shape) s_{t+L}
    lengths: np.ndarray        # (K, B) L, the number of rewards in each return
    # With a trace correction (OffPolicyTrace), the buffer computes the whole target: the loss uses it as it is.
    target: np.ndarray | None = None       # (K, B) float32, the corrected n-step target
    trace_mass: np.ndarray | None = None   # (K, B) sum_{j < L} C_j, the steps the target effectively uses


@dataclass(frozen=True)
class OffPolicyTrace:
    """A trace correction of n-step targets (importance_sampling, retrace, tree_backup; qbench.replay.nstep).

    evaluate(states (K, N, *obs_shape)) -> (Q (K, N, A), pi (K, N, A)): the bootstrapping Q (the target net) and
    the target policy's probabilities at those states, as float64 arrays; an action with pi 0 may have Q -inf."""

    kind: str
    evaluate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    trace_lambda: float = 1.0
    is_clip: float = 0.0


class ReplayBuffer:
    """Stores each seed's transitions in insertion order, so that consecutive slots hold consecutive steps of one
    env.

    The loss never sees n: sample() returns per-sample (reward_n, discount_n, bootstrap_obs), so 1-step, n-step
    and cut-trace returns reach the same target function. Seed k's samples are indices drawn from seed k's own
    generator into seed k's own ring: no seed's batch depends on another seed.
    """

    def __init__(self, seeds: int, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: type, n_step: int, gamma: float, obs_dtype: type = np.float32):
        self.seeds = seeds
        self.obs_shape = tuple(obs_shape)
        self.capacity = capacity
        self.n_step = n_step
        self.gamma = gamma
        # float32 vectors; uint8 images (MinAtar's grids) stay uint8 until the network
        self.obs = np.zeros((seeds, capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((seeds, capacity, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((seeds, capacity, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros((seeds, capacity), dtype=np.float64)
        self.terminated = np.zeros((seeds, capacity), dtype=bool)
        self.episode_end = np.zeros((seeds, capacity), dtype=bool)
        self.behaviour_prob = np.full((seeds, capacity), np.nan, dtype=np.float32)   # mu(a_t | s_t)
        self.pos = 0
        self.size = 0
        self.total_added = 0   # transitions ever added per seed: global index g lives in slot g % capacity

    def __len__(self) -> int:
        return self.size

    def bytes_per_transition(self) -> float:
        """Bytes of all the arrays held, per transition and seed."""
        return sum(getattr(self, k).nbytes for k in self._ARRAYS) / self.capacity / self.seeds

    def add(self, obs, action, reward, next_obs, terminated, truncated, life_lost=None, live=None,
            behaviour_prob=None) -> None:
        """One transition per seed: each argument has the seed axis first. behaviour_prob: mu(a_t | s_t), the
        probability the behaviour policy gave the action it took (NaN: unknown, e.g. a Box action), which trace
        corrections weigh by. life_lost and live are accepted for FrameReplayBuffer's interface and mean nothing
        here: a life loss is passed as terminated, and next_obs is stored explicitly."""
        i = self.pos
        self.behaviour_prob[:, i] = np.nan if behaviour_prob is None else behaviour_prob
        self.obs[:, i] = obs
        self.actions[:, i] = action
        self.rewards[:, i] = reward
        self.next_obs[:, i] = next_obs
        self.terminated[:, i] = terminated
        self.episode_end[:, i] = np.logical_or(terminated, truncated)
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.total_added += 1

    _ARRAYS = ("obs", "next_obs", "actions", "rewards", "terminated", "episode_end", "behaviour_prob")

    # Checkpoints store the buffer as chunks: each checkpoint writes only the transitions added since the previous
    # one, so its cost does not grow with the run. A chunk [start, end) of global indices is obsolete once every
    # one of its slots has been written again, i.e. once total_added >= end + capacity.

    def counters(self) -> dict:
        return {"pos": self.pos, "size": self.size, "total_added": self.total_added}

    def chunk(self, start: int, seed_index: int) -> dict:
        """Seed seed_index's transitions with global index in [start, total_added) still stored, as arrays."""
        first = max(start, self.total_added - self.size)
        slots = np.arange(first, self.total_added) % self.capacity
        return {"start": first, "end": self.total_added,
                **{k: getattr(self, k)[seed_index, slots] for k in self._ARRAYS}}

    def chunk_is_obsolete(self, end: int) -> bool:
        return self.total_added >= end + self.capacity

    def load_chunks(self, counters: dict, chunks_per_seed: list[list[dict]]) -> None:
        """Rebuild every seed's ring from the shared counters and its chunks, oldest first (a later chunk
        overwrites slots)."""
        for seed_index, chunks in enumerate(chunks_per_seed):
            for chunk in chunks:
                slots = np.arange(int(chunk["start"]), int(chunk["end"])) % self.capacity
                for k in self._ARRAYS:
                    getattr(self, k)[seed_index, slots] = chunk_array(chunk, k)
        self.pos, self.size, self.total_added = (int(counters["pos"]), int(counters["size"]),
                                                 int(counters["total_added"]))

    def sample(self, batch_size: int, rngs: list[np.random.Generator],
               greedy_fn: Callable[[np.ndarray], np.ndarray] | None = None, n: int | None = None,
               trace: OffPolicyTrace | None = None) -> Batch:
        """Sample uniformly, seed k's indices from rngs[k]. greedy_fn, when given, maps states (K, N, obs) to
        greedy actions (K, N) and cuts each n-step trace at the first later action that differs from it (the "cut
        the trace" correction); trace, when given, computes each window's target under a trace correction. n: the
        return's length now, at most the buffer's n_step (an annealed n; None: n_step)."""
        idx = np.stack([rng.integers(0, self.size, size=batch_size) for rng in rngs])
        return self.gather(idx, greedy_fn, n, trace)

    def gather(self, idx: np.ndarray, greedy_fn: Callable[[np.ndarray], np.ndarray] | None = None,
               n: int | None = None, trace: OffPolicyTrace | None = None) -> Batch:
        """The batch of windows starting at idx, shape (K, B)."""
        return gather_windows(self, np.asarray(idx), greedy_fn, self._stored(self.obs), self._stored(self.next_obs),
                              n, trace)

    def _stored(self, array: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """slots (K, ...) -> array's entries there, (K, ..., *obs_shape)."""
        return lambda slots: take_slots(array, slots)


def take_slots(array: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """array (K, capacity, *item) at slots (K, ...) of each seed's own ring: (K, ..., *item). One take over the
    flattened rings (seed k's slot i is row k * capacity + i), a third of the cost of broadcast fancy indexing."""
    k, capacity = array.shape[:2]
    rows = (np.arange(k) * capacity).reshape(-1, *[1] * (slots.ndim - 1))
    flat = array.reshape(k * capacity, *array.shape[2:])
    return flat.take((slots + rows).ravel(), axis=0).reshape(*slots.shape, *array.shape[2:])


def chunk_array(chunk, key: str) -> np.ndarray:
    """A chunk's array; behaviour_prob is NaN in chunks written before buffers kept it (no correction read it)."""
    if key == "behaviour_prob" and key not in chunk:
        return np.full(int(chunk["end"]) - int(chunk["start"]), np.nan, dtype=np.float32)
    return chunk[key]


def gather_windows(buffer, idx: np.ndarray, greedy_fn: Callable[[np.ndarray], np.ndarray] | None,
                   obs_at: Callable[[np.ndarray], np.ndarray], next_obs_at: Callable[[np.ndarray], np.ndarray],
                   n: int | None = None, trace: OffPolicyTrace | None = None) -> Batch:
    """The batch of n-step windows starting at slots idx (K, B) of a buffer with a seed axis (ReplayBuffer or
    FrameReplayBuffer: rewards, terminated, episode_end, actions, pos, capacity, n_step, gamma, obs_shape).
    obs_at(slots) and next_obs_at(slots) give the states and next states stored at slots of any shape (K, ...):
    stored as they are, or rebuilt from frames. n: the window's length, at most buffer.n_step (None: n_step); a
    buffer keeps the transitions every n up to its n_step needs, so n may change from one batch to the next.
    trace: an off-policy trace correction, whose target the batch carries (Batch.target)."""
    rows = np.arange(buffer.seeds)[:, None]
    n = buffer.n_step if n is None else n
    if not 1 <= n <= buffer.n_step:
        raise ValueError(f"n = {n} is outside 1..{buffer.n_step}, the n-step windows this buffer serves")
    if n == 1 and trace is None:   # a 1-step window is the transition itself: no window arithmetic
        terminated = take_slots(buffer.terminated, idx)
        return Batch(obs_at(idx), take_slots(buffer.actions, idx), take_slots(buffer.rewards, idx).astype(np.float32),
                     np.where(terminated, np.float32(0.0), np.float32(buffer.gamma)), next_obs_at(idx),
                     np.ones(idx.shape, int))
    k, b = idx.shape
    window = (idx[..., None] + np.arange(n)) % buffer.capacity                 # (K, B, n)
    row3 = rows[..., None]
    available = (buffer.pos - 1 - idx) % buffer.capacity + 1
    lengths = window_lengths(buffer.episode_end[row3, window].reshape(k * b, n), available.reshape(-1))
    if greedy_fn is not None:
        # states past a window's end (another episode, or past the newest transition) may be anything finite:
        # cut_trace_lengths never lengthens a window, so their greedy actions cannot matter
        later = window[..., 1:]
        greedy = greedy_fn(obs_at(later).reshape(k, b * (n - 1), *buffer.obs_shape))
        lengths = cut_trace_lengths(lengths, buffer.actions[row3, later].reshape(k * b, n - 1),
                                    np.asarray(greedy).reshape(k * b, n - 1))
    rewards = buffer.rewards[row3, window].reshape(k * b, n)
    terminated = buffer.terminated[row3, window].reshape(k * b, n)
    reward_n, discount_n = discounted_window(rewards, terminated, lengths, buffer.gamma)
    target = trace_mass = None
    if trace is not None:
        target, trace_mass = traced_targets(buffer, trace, window, rewards, terminated, lengths, next_obs_at)
    lengths = lengths.reshape(k, b)
    last = np.take_along_axis(window, (lengths - 1)[..., None], axis=2)[..., 0]
    return Batch(obs_at(idx), buffer.actions[rows, idx], reward_n.reshape(k, b).astype(np.float32),
                 discount_n.reshape(k, b).astype(np.float32), next_obs_at(last), lengths,
                 None if target is None else target.reshape(k, b).astype(np.float32),
                 None if trace_mass is None else trace_mass.reshape(k, b))


def traced_targets(buffer, trace: OffPolicyTrace, window: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                   lengths: np.ndarray, next_obs_at: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(target, trace mass), each (K * B,), of the windows (K, B, n) under a trace correction. One evaluation of
    the next states of every step of every window gives V(s_{j+1}) for all j and, since s_j is the next state of
    step j - 1 inside a window, Q(s_j, a_j) and pi(a_j | s_j) for the later steps."""
    k, b, n = window.shape
    rows = np.arange(buffer.seeds)[:, None, None]
    q, pi = trace.evaluate(next_obs_at(window).reshape(k, b * n, *buffer.obs_shape))
    q, pi = np.asarray(q, np.float64).reshape(k * b, n, -1), np.asarray(pi, np.float64).reshape(k * b, n, -1)
    next_values = np.where(pi > 0, pi * np.where(pi > 0, q, 0.0), 0.0).sum(axis=2)   # Q -inf where pi is 0
    later = buffer.actions[rows, window[..., 1:]].reshape(k * b, n - 1, 1)
    later_q = np.take_along_axis(q[:, :-1], later, axis=2)[..., 0]
    later_pi = np.take_along_axis(pi[:, :-1], later, axis=2)[..., 0]
    later_mu = buffer.behaviour_prob[rows, window[..., 1:]].reshape(k * b, n - 1)
    traces = trace_coefficients(trace.kind, later_pi, later_mu, trace.trace_lambda, trace.is_clip)
    return traced_window_target(rewards, terminated, lengths, next_values, later_q, traces, buffer.gamma)
