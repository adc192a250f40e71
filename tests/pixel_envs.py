"""Small image environments of a user's own (module:Class tasks) for the pixel tests."""

import gymnasium as gym
import numpy as np


class SideImageEnv(gym.Env):
    """A 10x10 RGB uint8 image (H, W, C) with one bright 3x3 square on the left or the right half; the reward is 1
    when the action names its side, 0 otherwise; every episode is one step. Random play earns 0.5 a step, the
    optimal policy 1: only a network that reads the picture can tell the sides apart."""

    observation_space = gym.spaces.Box(0, 255, shape=(10, 10, 3), dtype=np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.side = int(self.np_random.integers(2))
        image = self.np_random.integers(0, 40, size=(10, 10, 3), dtype=np.uint8)   # dim noise everywhere
        row, col = int(self.np_random.integers(0, 7)), int(self.np_random.integers(0, 2)) + 5 * self.side
        image[row:row + 3, col:col + 3] = 255
        return image, {}

    def step(self, action):
        return np.zeros((10, 10, 3), dtype=np.uint8), float(int(action) == self.side), True, False, {}


class SideImageBoxEnv(SideImageEnv):
    """SideImageEnv with one continuous action: the reward is 1 - |a - target| / 2 with target -1 (left) or
    +1 (right)."""

    action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def step(self, action):
        target = 1.0 if self.side else -1.0
        return (np.zeros((10, 10, 3), dtype=np.uint8), float(1.0 - abs(float(action[0]) - target) / 2.0), True,
                False, {})


class GreyFrameEnv(gym.Env):
    """One 2-D uint8 greyscale frame (12, 12), as a user's env without a channel axis gives it; 3 actions, 10 steps."""

    observation_space = gym.spaces.Box(0, 255, shape=(12, 12), dtype=np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.integers(0, 256, size=(12, 12), dtype=np.uint8), {}

    def step(self, action):
        self.t += 1
        return (self.np_random.integers(0, 256, size=(12, 12), dtype=np.uint8), float(action == 1), False,
                self.t >= 10, {})
