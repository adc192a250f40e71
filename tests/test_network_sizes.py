"""Issue 27: networks are sized before anything is built or written. parts/sizes.py counts parameters without torch;
these tests hold the count to the modules training/build.py actually builds, and the refusal to what a user sees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qbench.config import ConfigError
from qbench.envs.tasks import Spaces, get_task, probe_spaces
from qbench.jobs import build_job
from qbench.parts.networks import layer_parameters
from qbench.parts.sizes import network_bytes, q_parameters
from qbench.runner.plan import check_networks_fit, memory_bytes_total
from qbench.training.build import Learner


def _per_seed(module, k_seeds: int) -> int:
    total = sum(p.numel() for p in layer_parameters(module))
    assert total % k_seeds == 0
    return total // k_seeds


def _built_count(job, spaces, k_seeds: int = 2) -> tuple[int, int]:
    """(Q parameters, actor parameters) of one seed, counted on the networks the engine builds."""
    learner = Learner(job.config, spaces, list(range(k_seeds)))
    actor = getattr(learner.act_maximiser, "actor", None)
    return _per_seed(learner.online, k_seeds), (0 if actor is None else _per_seed(actor, k_seeds))


@pytest.mark.parametrize(("variant", "task", "settings"), [
    ("dqn", "CartPole-v1", {"hidden_sizes": [7, 5]}),                  # discrete head, MLP
    ("tabular_q", "FrozenLake-v1", {}),                                # a table over one-hot states
    ("naf", "Pendulum-v1", {"hidden_sizes": [6, 4]}),                  # trunk + V, mu and L heads
    ("ddpg", "Pendulum-v1", {"hidden_sizes": [6, 4]}),                 # critic (state, action) + actor
    ("naf", "LunarLanderContinuous-v3", {"hidden_sizes": [3]}),        # action dim 2: L has 3 entries
    ("cem_q", "Pendulum-v1", {"hidden_sizes": [5]}),                   # the action as an input
    ("dqn", "MinAtar/Breakout-v1", {"hidden_sizes": [8]}),             # MinAtar conv 16 3x3 then MLP
])
def test_count_equals_the_built_networks(variant, task, settings):
    if task.startswith("MinAtar"):
        pytest.importorskip("minatar")
    job = build_job(variant, task, 0, settings)
    spaces = probe_spaces(job.task, job.config)
    q, actor = _built_count(job, spaces)
    assert q_parameters(job.config, spaces) == q
    assert network_bytes(job.config, spaces)[0] == q + actor
    if variant == "ddpg":
        assert actor > 0


def test_count_of_nature_cnn_by_hand():
    """Mnih et al. (2015) on 4x84x84 frames with 512 hidden units and 6 actions, counted by hand: conv 8x8/4 to
    32x20x20, 4x4/2 to 64x9x9, 3x3/1 to 64x7x7 = 3136 features."""
    cfg = dataclasses.replace(build_job("dqn", "CartPole-v1", 0).config, encoder="nature_cnn", hidden_sizes=[512])
    spaces = Spaces(obs_dim=4 * 84 * 84, encode=lambda o: o, action_kind="discrete", n_actions=6,
                    obs_shape=(4, 84, 84), obs_dtype=np.uint8, image_layout="channels_first")
    convs = (32 * 4 * 8 * 8 + 32) + (64 * 32 * 4 * 4 + 64) + (64 * 64 * 3 * 3 + 64)
    assert q_parameters(cfg, spaces) == convs + 3136 * 512 + 512 + 512 * 6 + 6 == 1_687_206
    learner = Learner(cfg, spaces, [0])
    assert sum(p.numel() for p in layer_parameters(learner.online)) == 1_687_206


def test_bytes_count_every_copy():
    """dqn with Adam: online, gradient, two moments and the target = 5 float32 copies; no target (online_q) 4;
    DDPG's actor adds its own 5."""
    job = build_job("dqn", "CartPole-v1", 0, {"hidden_sizes": [7, 5]})
    spaces = probe_spaces(job.task, job.config)
    n = (4 * 7 + 7) + (7 * 5 + 5) + (5 * 2 + 2)
    assert network_bytes(job.config, spaces) == (n, 4 * 5 * n)
    online = build_job("online_q", "CartPole-v1", 0, {"hidden_sizes": [7, 5]})
    assert network_bytes(online.config, spaces) == (n, 4 * 4 * n)
    sgd = dataclasses.replace(online.config, optimizer="sgd")
    assert network_bytes(sgd, spaces) == (n, 4 * 2 * n)


def test_oversize_network_refused_before_anything_is_built():
    with pytest.raises(ConfigError, match=r"hidden_sizes \[1000000000\] make networks of 7,000,000,002 "
                                          r"parameters a seed.*set smaller hidden_sizes"):
        build_job("dqn", "CartPole-v1", 0, {"hidden_sizes": [1_000_000_000]})


def test_network_refused_exactly_above_the_machine(monkeypatch):
    """The boundary: networks that need one byte more than memory and swap are refused, those that fit are not."""
    job = build_job("dqn", "CartPole-v1", 0, {"hidden_sizes": [7, 5]})
    spaces = probe_spaces(get_task("CartPole-v1"), job.config)
    need = network_bytes(job.config, spaces)[1]
    memory_bytes_total.cache_clear()
    try:
        monkeypatch.setattr("qbench.runner.plan.memory_bytes_total", lambda: float(need))
        check_networks_fit(job.config, spaces)
        monkeypatch.setattr("qbench.runner.plan.memory_bytes_total", lambda: float(need - 1))
        with pytest.raises(ConfigError, match="memory and swap"):
            check_networks_fit(job.config, spaces)
    finally:
        memory_bytes_total.cache_clear()
