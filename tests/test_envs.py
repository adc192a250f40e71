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


def test_bounds_scaling_maps_the_box_bounds_to_minus_one_and_one():
    space = gym.spaces.Box(np.array([-1.2, -0.07], np.float32), np.array([0.6, 0.07], np.float32))
    dim, encode = observation_encoder(space, "bounds")
    assert dim == 2
    assert encode(space.low).tolist() == [-1.0, -1.0]
    assert encode(space.high).tolist() == [1.0, 1.0]
    # The middle of each range is 0; a quarter of the way up is -0.5.
    np.testing.assert_allclose(encode(np.array([-0.3, 0.0])), [0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(encode(np.array([-0.75, -0.035])), [-0.5, -0.5], atol=1e-6)
    assert encode(space.low).dtype == np.float32


def test_bounds_scaling_is_refused_for_unbounded_observations():
    with pytest.raises(ConfigError, match="observation_scaling 'bounds' needs finite Box observation bounds"):
        observation_encoder(gym.spaces.Box(-np.inf, np.inf, shape=(3,)), "bounds")
    big = np.finfo(np.float32).max
    with pytest.raises(ConfigError, match="high - low <= 1e6"):
        observation_encoder(gym.spaces.Box(np.array([-1, -big], np.float32), np.array([1, big], np.float32)), "bounds")


def test_bounds_scaling_is_checked_when_the_job_is_built():
    from qbench.jobs import build_job

    with pytest.raises(ConfigError, match="use observation_scaling 'none'"):
        build_job("dqn", "CartPole-v1", 0, {"observation_scaling": "bounds"})  # CartPole's velocities are unbounded
    job = build_job("dqn", "MountainCar-v0", 0, {"observation_scaling": "bounds"})
    assert job.config.observation_scaling == "bounds"


def test_box_actions_at_the_ends_stay_inside_asymmetric_bounds():
    """float32 low + 1 * (high - low) is 0.90000004 for [-0.3, 0.9]: the ends are clipped to the bounds, and the
    points inside are the affine map itself."""
    from qbench.envs.tasks import spaces_of

    class Asymmetric(gym.Env):
        observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        action_space = gym.spaces.Box(np.array([-0.3, 0.0], dtype=np.float32), np.array([0.9, 3.0], dtype=np.float32))

    spaces = spaces_of(Asymmetric())
    high, low = spaces.to_env(np.ones(2, np.float32)), spaces.to_env(-np.ones(2, np.float32))
    assert high.tolist() == Asymmetric.action_space.high.tolist() and Asymmetric.action_space.contains(high)
    assert low.tolist() == Asymmetric.action_space.low.tolist() and Asymmetric.action_space.contains(low)
    middle = spaces.to_env(np.array([0.0, 0.5], np.float32))
    assert np.allclose(middle, [0.3, 2.25]) and Asymmetric.action_space.contains(middle)
