"""Small MDPs with exact models (``P``, ``initial_state_distrib``) for checking learners against dynamic programming.

Importing this module registers ``qbench/MaximisationBias-v0`` and ``qbench/TwoStateChain-v0``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np


class MaximisationBiasEnv(gym.Env):
    """Sutton & Barto (2nd ed.) Example 6.7: left from A leads to B, whose many actions all pay N(-0.1, 1).

    State 0 is A (the start), state 1 is B. In A, action 0 goes left to B and action 1 goes right and ends
    the episode, both with reward 0; the other actions exist only because B needs them. Every action in B
    ends the episode. A learner that maximises over noisy estimates of B's actions overrates going left.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, b_actions: int = 10, reward_mean: float = -0.1, reward_std: float = 1.0):
        if b_actions < 1:
            raise ValueError(f"b_actions must be at least 1, got {b_actions}")
        if reward_std < 0:
            raise ValueError(f"reward_std must be non-negative, got {reward_std}")
        self.b_actions = int(b_actions)
        self.reward_mean = float(reward_mean)
        self.reward_std = float(reward_std)
        n_actions = max(2, self.b_actions)
        self.observation_space = gym.spaces.Discrete(2)
        self.action_space = gym.spaces.Discrete(n_actions)
        self.valid_actions = np.zeros((2, n_actions), dtype=bool)
        self.valid_actions[0, :2] = True
        self.valid_actions[1, : self.b_actions] = True
        self.initial_state_distrib = np.array([1.0, 0.0])
        # Where an episode ends the next state is irrelevant to the model; the step returns the same one.
        invalid = [(1.0, 0, 0.0, True)]
        self.P = {
            0: {a: ([(1.0, 1, 0.0, False)] if a == 0 else [(1.0, 0, 0.0, True)] if a == 1 else invalid)
                for a in range(n_actions)},
            1: {a: ([(1.0, 1, self.reward_mean, True)] if a < self.b_actions else invalid)
                for a in range(n_actions)},
        }
        self._state = 0
        self._went_left = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._state, self._went_left = 0, 0
        return 0, {}

    def step(self, action):
        action = int(action)
        if not self.valid_actions[self._state, action]:
            raise ValueError(f"action {action} is not available in state {'AB'[self._state]}")
        if self._state == 0:
            if action == 0:
                self._state, self._went_left = 1, 1
                return 1, 0.0, False, False, {"left": 1}
            return 0, 0.0, True, False, {"left": 0}
        reward = float(self.np_random.normal(self.reward_mean, self.reward_std))
        return 1, reward, True, False, {"left": self._went_left}


class TwoStateChainEnv(gym.Env):
    """Two states, two actions, small enough to solve by hand (see tests/test_theory.py for Q* at gamma 0.9).

    State 0: action 0 moves to state 1 (reward 0); action 1 pays 1 and stays in 0, or pays 3 and ends,
    each with probability 1/2. State 1: action 0 pays 5 and ends; action 1 pays 1 and returns to state 0
    with probability 0.8, else stays in 1. Discounted, shuttling between the states for ever beats
    cashing in 5: the optimal policy never ends an episode, which is why it is registered with a time limit.
    """

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Discrete(2)
        self.action_space = gym.spaces.Discrete(2)
        self.initial_state_distrib = np.array([1.0, 0.0])
        self.P = {
            0: {0: [(1.0, 1, 0.0, False)],
                1: [(0.5, 0, 1.0, False), (0.5, 0, 3.0, True)]},
            1: {0: [(1.0, 1, 5.0, True)],
                1: [(0.8, 0, 1.0, False), (0.2, 1, 1.0, False)]},
        }
        self._state = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._state = int(self.np_random.choice(2, p=self.initial_state_distrib))
        return self._state, {}

    def step(self, action):
        outcomes = self.P[self._state][int(action)]
        pick = int(self.np_random.choice(len(outcomes), p=[o[0] for o in outcomes]))
        _, nxt, reward, terminated = outcomes[pick]
        self._state = int(nxt)
        return self._state, float(reward), bool(terminated), False, {}


def _register_toy_envs() -> None:
    # Re-importing (a reload, or two import paths) must not trip Gymnasium's duplicate-id error.
    specs = {
        "qbench/MaximisationBias-v0": {"entry_point": "qbench.envs.toy:MaximisationBiasEnv"},
        "qbench/TwoStateChain-v0": {"entry_point": "qbench.envs.toy:TwoStateChainEnv", "max_episode_steps": 200},
    }
    for env_id, kwargs in specs.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **kwargs)


_register_toy_envs()
