"""Environments that make a job fail on purpose, for the runner's crash and divergence tests."""

import gymnasium as gym
import numpy as np


class _Base(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}


class CrashingEnv(_Base):
    """Raises after 30 steps: a bug in a user's environment."""

    def step(self, action):
        self.t += 1
        if self.t > 30:
            raise RuntimeError("CrashingEnv broke on purpose")
        return np.zeros(2, dtype=np.float32), 1.0, False, self.t >= 100, {}


class NaNRewardEnv(_Base):
    """Every reward is NaN, so the first TD loss is NaN: the engine reports a divergence."""

    def step(self, action):
        self.t += 1
        return np.zeros(2, dtype=np.float32), float("nan"), False, self.t >= 20, {}


class HardCrashEnv(_Base):
    """Kills its own process after 30 steps, as a segfault or the out-of-memory killer would."""

    def step(self, action):
        import os
        import signal
        self.t += 1
        if self.t > 30:
            os.kill(os.getpid(), signal.SIGKILL)
        return np.zeros(2, dtype=np.float32), 1.0, False, self.t >= 100, {}


class EvenSeedNaNEnv(gym.Env):
    """Rewards turn NaN 20 steps after a reset with an even seed: the seeds of a job whose training env draws an
    even seed diverge at their first gradient step, the others train. An evaluation (reset with its own seed, one
    episode of 20 steps) never sees a NaN."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.t = 0
        self.poisoned = False
        self.since_seeded = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.poisoned, self.since_seeded = seed % 2 == 0, 0
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        self.since_seeded += 1
        reward = float("nan") if self.poisoned and self.since_seeded > 20 else 1.0
        return np.zeros(2, dtype=np.float32), reward, False, self.t >= 20, {}
