"""Uniform replay with a seed axis: one ring per seed of a batch, all filled in lockstep (every seed adds one
transition per env step), so they share their counters. Sampling returns windows of consecutive transitions;
what a window's target is (1-step, n-step, cut, traced) is computed from it by qbench.parts.targets, on the
learner's device: the buffers never call a network."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class Window:
    """The transitions t .. t+n-1 after each sampled start t, per seed: (K, B) windows of n steps.

    Entries past a window's end (lengths: cut by an episode end or the newest data) belong to another episode or
    to older data: they may be anything, and targets only ever mask them. States are read lazily (obs_at and
    next_obs_at map ring slots of any shape (K, ...) to stored or rebuilt states), so a target reads only the
    states it needs: plain n-step the last next state of each window, a trace correction every step's."""

    obs: np.ndarray                    # (K, B, *obs_shape) s_t
    actions: np.ndarray                # (K, B, *action_shape) a_t
    rewards: np.ndarray                # (K, B, n) float64 r_{t+j}
    terminated: np.ndarray             # (K, B, n) bool
    lengths: np.ndarray                # (K, B) L: steps up to and including the first episode end, within the data
    later_actions: np.ndarray          # (K, B, n - 1) a_{t+j}, j = 1 .. n-1
    later_behaviour_prob: np.ndarray   # (K, B, n - 1) float32 mu(a_{t+j} | s_{t+j}), NaN where unknown
    slots: np.ndarray                  # (K, B, n) the ring slots of the window's steps
    obs_at: Callable[[np.ndarray], np.ndarray]
    next_obs_at: Callable[[np.ndarray], np.ndarray]

    @property
    def n(self) -> int:
        return self.slots.shape[-1]

    def later_obs(self) -> np.ndarray:
        """(K, B, n - 1, *obs_shape) s_{t+j}, j = 1 .. n-1: the states whose actions a cut checks."""
        return self.obs_at(self.slots[..., 1:])

    def next_obs(self, steps: np.ndarray | None = None) -> np.ndarray:
        """The next states s_{t+j+1}: at each window's step steps (K, B), (K, B, *obs_shape); or, with steps None,
        of every step, (K, B, n, *obs_shape)."""
        if steps is None:
            return self.next_obs_at(self.slots)
        if self.n == 1:
            return self.next_obs_at(self.slots[..., 0])
        return self.next_obs_at(np.take_along_axis(self.slots, np.asarray(steps)[..., None], axis=2)[..., 0])

    @classmethod
    def of_transitions(cls, obs, actions, rewards, terminated, next_obs) -> Window:
        """1-step windows of given transitions (K, B, ...), held as they are: for tests and callers without a ring."""
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        k, b = np.shape(rewards)
        slots = np.broadcast_to(np.arange(b), (k, b))[..., None]   # transition j of seed k is "slot" j
        return cls(obs, np.asarray(actions), np.asarray(rewards, np.float64)[..., None],
                   np.asarray(terminated, bool)[..., None], np.ones((k, b), int), np.zeros((k, b, 0), np.int64),
                   np.zeros((k, b, 0), np.float32), slots, lambda s: take_slots(obs, s),
                   lambda s: take_slots(next_obs, s))


class Ring:
    """What the two replay buffers (ReplayBuffer, FrameReplayBuffer) share: K rings of `capacity` slots filled in
    lockstep (global index g in slot g % capacity), the arrays every window reads, and window assembly. A buffer
    provides _obs_at(slots) and _next_obs_at(slots), its stored (or rebuilt) states at ring slots (K, ...)."""

    def __init__(self, seeds: int, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: type, n_step: int, gamma: float):
        self.seeds = seeds
        self.capacity = capacity
        self.obs_shape = tuple(int(d) for d in obs_shape)
        self.n_step = n_step
        self.gamma = gamma
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

    def _store(self, action, reward, terminated, episode_end, behaviour_prob) -> None:
        """Write the arrays every window reads into slot pos (before advance())."""
        i = self.pos
        self.actions[:, i] = action
        self.rewards[:, i] = reward
        self.terminated[:, i] = terminated
        self.episode_end[:, i] = episode_end
        self.behaviour_prob[:, i] = np.nan if behaviour_prob is None else behaviour_prob

    def _advance(self) -> None:
        """One transition per seed was written at slot pos."""
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.total_added += 1

    # Checkpoints store a buffer as chunks: each checkpoint writes only the transitions added since the previous
    # one, so its cost does not grow with the run. A chunk [start, end) of global indices is obsolete once every
    # one of its slots has been written again, i.e. once total_added >= end + capacity.

    def counters(self) -> dict:
        return {"pos": self.pos, "size": self.size, "total_added": self.total_added}

    def chunk_is_obsolete(self, end: int) -> bool:
        return self.total_added >= end + self.capacity

    def _chunk_slots(self, start: int) -> tuple[int, np.ndarray]:
        """(first global index, slots) of the transitions with global index in [start, total_added) still stored."""
        first = max(start, self.total_added - self.size)
        return first, np.arange(first, self.total_added) % self.capacity

    def gather(self, idx: np.ndarray, n: int | None = None) -> Window:
        """The windows of n steps starting at slots idx (K, B). n: at most n_step (None: n_step); a buffer keeps
        the transitions every n up to its n_step needs, so n may change from one batch to the next (annealing)."""
        idx = np.asarray(idx)
        n = self.n_step if n is None else n
        if not 1 <= n <= self.n_step:
            raise ValueError(f"n = {n} is outside 1..{self.n_step}, the n-step windows this buffer serves")
        k, b = idx.shape
        if n == 1:   # a 1-step window is the transition itself: one take per array, no window arithmetic
            nothing = np.zeros((k, b, 0))
            return Window(self._obs_at(idx), take_slots(self.actions, idx), take_slots(self.rewards, idx)[..., None],
                          take_slots(self.terminated, idx)[..., None], np.ones(idx.shape, int),
                          nothing.astype(self.actions.dtype), nothing.astype(np.float32), idx[..., None],
                          self._obs_at, self._next_obs_at)
        slots = (idx[..., None] + np.arange(n)) % self.capacity                 # (K, B, n)
        rows = np.arange(self.seeds)[:, None, None]
        available = (self.pos - 1 - idx) % self.capacity + 1
        lengths = window_lengths(self.episode_end[rows, slots].reshape(k * b, n), available.reshape(-1))
        later = slots[..., 1:]
        return Window(self._obs_at(idx), self.actions[rows[..., 0], idx], self.rewards[rows, slots],
                      self.terminated[rows, slots], lengths.reshape(k, b), self.actions[rows, later],
                      self.behaviour_prob[rows, later], slots, self._obs_at, self._next_obs_at)

    def _obs_at(self, slots: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _next_obs_at(self, slots: np.ndarray) -> np.ndarray:
        raise NotImplementedError


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


class ReplayBuffer(Ring):
    """Stores each seed's transitions in insertion order, so that consecutive slots hold consecutive steps of one
    env, with obs and next_obs stored as they are.

    The loss never sees n: sample() returns windows, and qbench.parts.targets makes 1-step, n-step, cut and traced
    targets of them alike. Seed k's samples are indices drawn from seed k's own generator into seed k's own ring:
    no seed's batch depends on another seed.
    """

    def __init__(self, seeds: int, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: type, n_step: int, gamma: float, obs_dtype: type = np.float32):
        super().__init__(seeds, capacity, obs_shape, action_shape, action_dtype, n_step, gamma)
        # float32 vectors; uint8 images (MinAtar's grids) stay uint8 until the network
        self.obs = np.zeros((seeds, capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((seeds, capacity, *obs_shape), dtype=obs_dtype)

    def bytes_per_transition(self) -> float:
        """Bytes of all the arrays held, per transition and seed."""
        return sum(getattr(self, k).nbytes for k in self._ARRAYS) / self.capacity / self.seeds

    def add(self, obs, action, reward, next_obs, terminated, truncated, life_lost=None, live=None,
            behaviour_prob=None) -> None:
        """One transition per seed: each argument has the seed axis first. behaviour_prob: mu(a_t | s_t), the
        probability the behaviour policy gave the action it took (NaN: unknown, e.g. a Box action), which trace
        corrections weigh by. life_lost and live are accepted for FrameReplayBuffer's interface and mean nothing
        here: a life loss is passed as terminated, and next_obs is stored explicitly."""
        self._store(action, reward, terminated, np.logical_or(terminated, truncated), behaviour_prob)
        self.obs[:, self.pos] = obs
        self.next_obs[:, self.pos] = next_obs
        self._advance()

    _ARRAYS = ("obs", "next_obs", "actions", "rewards", "terminated", "episode_end", "behaviour_prob")

    def chunk(self, start: int, seed_index: int) -> dict:
        """Seed seed_index's transitions with global index in [start, total_added) still stored, as arrays."""
        first, slots = self._chunk_slots(start)
        return {"start": first, "end": self.total_added,
                **{k: getattr(self, k)[seed_index, slots] for k in self._ARRAYS}}

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

    def sample(self, batch_size: int, rngs: list[np.random.Generator], n: int | None = None) -> Window:
        """Windows of n steps (None: n_step) from starts drawn uniformly, seed k's from rngs[k]."""
        idx = np.stack([rng.integers(0, self.size, size=batch_size) for rng in rngs])
        return self.gather(idx, n)

    def _obs_at(self, slots: np.ndarray) -> np.ndarray:
        return take_slots(self.obs, slots)

    def _next_obs_at(self, slots: np.ndarray) -> np.ndarray:
        return take_slots(self.next_obs, slots)


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
