"""What training K seeds side by side needs besides the networks: one env per seed that can be checkpointed at any
step, and per-seed slices of state that is stacked along the seed axis."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qbench.envs.checks import EnvFault
from qbench.envs.tasks import Spaces, make_env
from qbench.training.seeding import derived_seed


class SeedEnvs:
    """One env per seed, stepped one after another (no vector env: each seed's transitions are exactly those of a
    plain env, and the seeds' episodes end whenever they end).

    Seeds act in lockstep, so their episode ends never line up and a checkpoint cannot wait for one. Each env's
    state is therefore kept as "how its current episode began" (the seed of the first reset, or its random
    stream's state just before a later reset) plus the actions taken since: replaying them restores the env
    exactly, for any env whose only randomness is its own np_random. Envs with random streams of their own (ALE,
    MinAtar: task.seeds_every_reset) get a fresh seed at every reset instead, drawn from the env seed's stream.

    `life_lost` says, after each step, which seeds' envs lost a life without the episode ending (from the
    "lives" entry of the step's info, where the env reports one).

    An env that breaks its contract (qbench.envs.checks.EnvFault) in start, reset or step_all stops only its own
    seed: the fault is kept in `faults` (seed index -> EnvFault) until the loop takes it, and the seed is treated
    as not stepped (its obs stay, its reward is 0, its episode goes on).
    """

    def __init__(self, task, spaces: Spaces, env_seeds: list[int], cfg: Any = None,
                 info_keys: tuple[str, ...] = ()):
        self.spaces = spaces
        self.info_keys = tuple(info_keys)
        # per seed, each named info entry's last value in the current episode, its reset included ("" where the
        # env gave none yet): an env may report a key at any step, e.g. the maximisation-bias MDP at its first
        self.last_info: list[dict[str, Any]] = [dict.fromkeys(self.info_keys, "") for _ in env_seeds]
        self.info_seen: list[set[str]] = [set() for _ in env_seeds]   # named keys the env ever reported
        self.envs = [make_env(task, cfg) for _ in env_seeds]
        self.env_seeds = env_seeds
        self.seed_every_reset = task.seeds_every_reset
        self.resets = np.zeros(len(env_seeds), dtype=np.int64)   # resets after the first, per seed
        self.obs = np.zeros((len(env_seeds), *spaces.obs_shape), dtype=spaces.obs_dtype)
        self.needs_reset = np.zeros(len(env_seeds), dtype=bool)
        self.lives = np.zeros(len(env_seeds), dtype=np.int64)
        self.life_lost = np.zeros(len(env_seeds), dtype=bool)
        self.episode_start: list[dict[str, Any]] = [{} for _ in env_seeds]
        self.episode_actions: list[list] = [[] for _ in env_seeds]
        self.faults: dict[int, EnvFault] = {}

    def take_faults(self) -> dict[int, EnvFault]:
        """The faults since the last call (seed index -> EnvFault), forgotten here."""
        faults, self.faults = self.faults, {}
        return faults

    def start(self) -> None:
        for k in range(len(self.envs)):
            try:
                self._reset_with(k, {"seed": self.env_seeds[k]})
            except EnvFault as fault:
                self.faults[k] = fault

    def _reset_with(self, k: int, start: dict[str, Any]) -> None:
        """Begin seed k's episode as `start` says: from a seed, or from the env's stream in a saved state."""
        env = self.envs[k]
        if "seed" in start:
            raw, info = env.reset(seed=int(start["seed"]))
        else:
            env.unwrapped.np_random.bit_generator.state = start["rng"]
            raw, info = env.reset()
        self.episode_start[k] = start
        self.episode_actions[k] = []
        if self.info_keys:
            self.last_info[k] = dict.fromkeys(self.info_keys, "")
            self._note_info(k, info)
        self.obs[k] = self.spaces.encode(raw)
        self.lives[k] = int(info.get("lives", 0))
        self.needs_reset[k] = False

    def episode_seed(self, k: int) -> int:
        """The reset seed of seed k's next episode, for envs that are seeded at every reset."""
        return derived_seed(self.env_seeds[k], int(self.resets[k]))

    def reset(self, k: int) -> None:
        try:
            if self.seed_every_reset:
                self.resets[k] += 1
                self._reset_with(k, {"seed": self.episode_seed(k)})
            else:
                self._reset_with(k, {"rng": self.envs[k].unwrapped.np_random.bit_generator.state})
        except EnvFault as fault:
            self.faults[k] = fault

    def step(self, k: int, action) -> tuple[np.ndarray, float, bool, bool]:
        """Step seed k's env with an action in the engine's units: (next obs, reward, terminated, truncated)."""
        raw, reward, terminated, truncated, info = self.envs[k].step(self.spaces.to_env(action))
        self.episode_actions[k].append(action)
        if self.info_keys:
            self._note_info(k, info)
        lives = int(info.get("lives", 0))
        self.life_lost[k] = lives < self.lives[k] and not (terminated or truncated)
        self.lives[k] = lives
        return self.spaces.encode(raw), float(reward), bool(terminated), bool(truncated)

    def _note_info(self, k: int, info: dict[str, Any]) -> None:
        for key in self.info_keys:
            if key in info:
                self.last_info[k][key] = _plain(info[key])
                self.info_seen[k].add(key)

    def info_never_seen(self, k: int) -> list[str]:
        """The named info keys seed k's env has not reported once so far (their episodes.csv cells are empty)."""
        return [key for key in self.info_keys if key not in self.info_seen[k]]

    def step_all(self, actions: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, ...]:
        """Step every live seed's env: (next obs, rewards, terminated, truncated), each with the seed axis first
        (a masked seed's entries are its current obs and zeros)."""
        k_seeds = len(self.envs)
        next_obs = self.obs.copy()
        self.life_lost[:] = False
        rewards, terminated, truncated = np.zeros(k_seeds), np.zeros(k_seeds, bool), np.zeros(k_seeds, bool)
        for k in np.flatnonzero(alive):
            try:
                next_obs[k], rewards[k], terminated[k], truncated[k] = self.step(k, actions[k])
            except EnvFault as fault:
                self.faults[k] = fault
        return next_obs, rewards, terminated, truncated

    def advance(self, next_obs: np.ndarray, ended: np.ndarray, alive: np.ndarray) -> None:
        """Move on to the next states; a seed whose episode ended is reset at the next step."""
        self.obs[~ended] = next_obs[~ended]
        self.needs_reset |= ended & alive

    # Checkpoints (qbench/training/checkpoint.py): each per-seed part bundles and unbundles its own state.
    def bundle(self, k: int) -> dict[str, Any]:
        return {"env": self.state(k)}

    def unbundle(self, k: int, bundle: dict[str, Any]) -> None:
        self.restore(k, bundle["env"])

    def state(self, k: int) -> dict[str, Any]:
        seen = {"info_seen": sorted(self.info_seen[k])} if self.info_keys else {}
        if self.needs_reset[k]:   # between episodes: the next reset draws from the stream as it is now
            return {"needs_reset": True, "rng": self.envs[k].unwrapped.np_random.bit_generator.state,
                    "resets": int(self.resets[k]), **seen}
        return {"needs_reset": False, "start": self.episode_start[k], "resets": int(self.resets[k]),
                "actions": np.array(self.episode_actions[k]), **seen}

    def restore(self, k: int, state: dict[str, Any]) -> None:
        env = self.envs[k]
        self.resets[k] = state.get("resets", 0)
        self.info_seen[k] = set(state.get("info_seen", ()))
        env.reset(seed=self.env_seeds[k])   # creates the env's stream; then set it to the saved state
        if state["needs_reset"]:
            env.unwrapped.np_random.bit_generator.state = state["rng"]
            self.needs_reset[k] = True
            return
        self._reset_with(k, state["start"])
        for action in state["actions"]:
            self.obs[k] = self.step(k, action)[0]
        self.life_lost[k] = False

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _plain(value: Any) -> Any:
    """An info value as a CSV cell: numpy scalars as Python numbers."""
    return value.item() if isinstance(value, np.generic) else value


def slice_seed(state: Any, k: int) -> Any:
    """Seed k's part of a state dict whose tensors carry the seed axis first (0-d tensors and plain values are
    shared by all seeds and kept whole)."""
    if isinstance(state, torch.Tensor):
        return state[k].clone() if state.dim() > 0 else state.clone()
    if isinstance(state, dict):
        return {key: slice_seed(value, k) for key, value in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(slice_seed(value, k) for value in state)
    return state


def stack_seeds(states: list[Any]) -> Any:
    """The inverse of slice_seed: per-seed state dicts stacked along a new seed axis."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(states) if first.dim() > 0 else first.clone()
    if isinstance(first, dict):
        return {key: stack_seeds([s[key] for s in states]) for key in first}
    if isinstance(first, list | tuple):
        return type(first)(stack_seeds([s[i] for s in states]) for i in range(len(first)))
    return first
