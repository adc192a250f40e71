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


class EvenSeedHugeRewardEnv(EvenSeedNaNEnv):
    """As EvenSeedNaNEnv, but the poisoned rewards are finite and huge (1e30): the env keeps its contract, and the
    squared TD errors overflow (1e60 is beyond float32): the variant diverges, not the env."""

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, (1e30 if np.isnan(reward) else reward), terminated, truncated, info


class HugeRewardEnv(_Base):
    """Every reward is finite and huge (1e30): the first TD loss overflows, and the engine reports a divergence."""

    def step(self, action):
        self.t += 1
        return np.zeros(2, dtype=np.float32), 1e30, False, self.t >= 20, {}


class _Breaking(_Base):
    """Healthy for `healthy_steps` steps of its first episode, then returns what `broken_step` says."""

    healthy_steps = 5

    def step(self, action):
        self.t += 1
        if self.t > self.healthy_steps:
            return self.broken_step()
        return np.zeros(2, dtype=np.float32), 1.0, False, self.t >= 100, {}

    def broken_step(self):
        raise NotImplementedError


class InfRewardEnv(_Breaking):
    def broken_step(self):
        return np.zeros(2, dtype=np.float32), float("inf"), False, False, {}


class NaNObservationEnv(_Breaking):
    def broken_step(self):
        return np.array([0.0, np.nan], dtype=np.float32), 1.0, False, False, {}


class WrongShapeStepEnv(_Breaking):
    def broken_step(self):
        return np.zeros(3, dtype=np.float32), 1.0, False, False, {}


class OldGymApiEnv(_Breaking):
    """The old Gym API: step returns (obs, reward, done, info)."""

    def broken_step(self):
        return np.zeros(2, dtype=np.float32), 1.0, False, {}


class WrongShapeResetEnv(_Base):
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 1.0, False, False, {}


class RaisingResetEnv(WrongShapeResetEnv):
    def reset(self, *, seed=None, options=None):
        raise OSError("RaisingResetEnv cannot find its simulator")


class EvaluationOnlyNaNEnv(_Base):
    """Trains cleanly; its second seeded reset (only an evaluation env gets one: training resets are seeded once)
    returns a NaN observation."""

    def __init__(self):
        super().__init__()
        self.seeded_resets = 0

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        self.seeded_resets += seed is not None
        return (np.full(2, np.nan, dtype=np.float32) if self.seeded_resets >= 2 else obs), info

    def step(self, action):
        self.t += 1
        return np.zeros(2, dtype=np.float32), 1.0, False, self.t >= 10, {}
