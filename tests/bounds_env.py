"""A test environment with asymmetric Box action bounds that fails loudly if an action leaves them."""

import gymnasium as gym
import numpy as np


class BoundsCheckingEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float64)
    action_space = gym.spaces.Box(np.array([0.0, -5.0], dtype=np.float32), np.array([3.0, -1.0], dtype=np.float32))
    seen_low = np.full(2, np.inf)
    seen_high = np.full(2, -np.inf)

    def __init__(self):
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 3), {}

    def step(self, action):
        action = np.asarray(action)
        if action.shape != (2,) or np.any(action < self.action_space.low) or np.any(action > self.action_space.high):
            raise AssertionError(f"action {action} left the bounds")
        type(self).seen_low = np.minimum(self.seen_low, action)
        type(self).seen_high = np.maximum(self.seen_high, action)
        self.t += 1
        reward = -float(np.sum((action - np.array([2.0, -2.0])) ** 2))
        return self.np_random.uniform(-1, 1, 3), reward, False, self.t >= 50, {}
