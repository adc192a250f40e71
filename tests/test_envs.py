import gymnasium as gym
import numpy as np
import pytest

from qbench.config import ConfigError
from qbench.envs.tasks import get_task, observation_encoder


def test_discrete_observations_become_one_hot():
    dim, encode = observation_encoder(gym.spaces.Discrete(4, start=1))
    assert dim == 4
    assert encode(3).tolist() == [0.0, 0.0, 1.0, 0.0]
    assert encode(np.int64(1)).dtype == np.float32


def test_box_observations_are_flat_float32():
    dim, encode = observation_encoder(gym.spaces.Box(-1, 1, shape=(2, 3), dtype=np.float64))
    out = encode(np.arange(6, dtype=np.float64).reshape(2, 3))
    assert dim == 6 and out.dtype == np.float32 and out.tolist() == [0, 1, 2, 3, 4, 5]


def test_other_observation_spaces_are_refused_with_the_supported_ones():
    with pytest.raises(ConfigError, match="MultiBinary is not supported; supported: Box, Discrete"):
        observation_encoder(gym.spaces.MultiBinary(3))


def test_module_class_tasks_load_or_fail_clearly():
    task = get_task("gymnasium.envs.classic_control.cartpole:CartPoleEnv")
    assert task.env_id.endswith(":CartPoleEnv")
    with pytest.raises(ConfigError, match="cannot load environment class"):
        get_task("no_such_module_xyz:Env")
