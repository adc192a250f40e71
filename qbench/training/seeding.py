"""The one derivation of every random number a run draws.

Every random stream of a run is a named child of SeedSequence(seed) (its spawn key), so no two streams share a
state; an env seeded at every reset (ALE, MinAtar) and an evaluation that seeds every episode derive those seeds
from theirs by the same rule (derived_seed).
"""

from __future__ import annotations

import numpy as np
import torch

# Gymnasium seeds an env's reset with SeedSequence(seed) itself: an agent drawing from default_rng(seed)
# would replay the env's own draws (CartPole's first reset state would equal the agent's first uniforms).
STREAMS = {"agent": 0, "env": 1, "eval_env": 2, "init": 3, "maximiser": 4, "eval_maximiser": 5}


def derived_seed(seed: int, *spawn_key: int) -> int:
    """An integer seed (for env.reset or torch): the first 63 bits of SeedSequence(seed)'s child at spawn_key."""
    return int(np.random.SeedSequence(seed, spawn_key=spawn_key).generate_state(1, np.uint64)[0] >> 1)


def stream_sequence(seed: int, name: str, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(STREAMS[name], *key))


def stream_seed(seed: int, name: str, *key: int) -> int:
    """An integer seed (for env.reset or torch) of the named stream of the job seed."""
    return derived_seed(seed, STREAMS[name], *key)


def torch_generators(seeds: list[int], name: str) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(stream_seed(seed, name)) for seed in seeds]


def agent_rngs(seeds: list[int]) -> list[np.random.Generator]:
    """Each seed's agent stream: behaviour draws, replay sampling, Double Q-learning's coins."""
    return [np.random.default_rng(stream_sequence(seed, "agent")) for seed in seeds]
