"""Small environments for the correctness tests of the engine (module:Class tasks)."""

from typing import ClassVar

import gymnasium as gym
import numpy as np


class MutatingEnv(gym.Env):
    """Returns the same array every step, mutated in place, as user code often does: state[0] counts steps."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.state = np.zeros(2, dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state[:] = 0.0
        return self.state, {}

    def step(self, action):
        self.state[0] += 1.0
        return self.state, 0.0, False, self.state[0] >= 20, {}


class ConstantEnv(gym.Env):
    """One constant observation, two actions, no end but a time limit of 50 steps: the untrained net's greedy
    action is the same in every step, so the actions taken show the behaviour policy plainly. Records the seeds
    its resets receive."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)
    reset_seeds: ClassVar[list] = []
    actions: ClassVar[list] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        ConstantEnv.reset_seeds.append(seed)
        self.t = 0
        return np.array([0.3, -0.2, 0.5], dtype=np.float32), {}

    def step(self, action):
        ConstantEnv.actions.append(int(action))
        self.t += 1
        return np.array([0.3, -0.2, 0.5], dtype=np.float32), 0.0, False, self.t >= 50, {}
