"""The rest of the lecture: residual-gradient Q-learning and n-step annealing (policy iteration is in
test_theory.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from qbench.config import Config, ConfigError, n_step_at
from qbench.engine import Learner, run_batch, td_step_loss
from qbench.envs.tasks import get_task, make_env, spaces_of
from qbench.jobs import build_job
from qbench.parts.networks import layer_parameters
from qbench.replay.buffer import ReplayBuffer, Window
from qbench.store import RunDir
from tests.reference_nstep import returns_of


def _batch(k: int = 2, b: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    obs, nxt = torch.randn(k, b, 4, generator=g), torch.randn(k, b, 4, generator=g)
    actions = torch.randint(0, 2, (k, b), generator=g)
    reward = torch.randn(k, b, generator=g)
    discount = torch.tensor([0.99, 0.0, 0.99, 0.99, 0.99]).expand(k, b)   # one terminal transition
    return obs, actions, reward, discount, nxt


def _window(gamma: float) -> Window:
    """_batch's transitions as 1-step replay windows (gamma 0.99: the discounts _batch states)."""
    assert gamma == 0.99
    obs, actions, reward, discount, nxt = _batch()
    return Window.of_transitions(obs.numpy(), actions.numpy(), reward.numpy(), (discount == 0).numpy(), nxt.numpy())


def _grads_from_engine(variant: str) -> tuple[Learner, list[torch.Tensor]]:
    job = build_job(variant, "CartPole-v1", 0, {"hidden_sizes": [8]})
    env = make_env(get_task("CartPole-v1"))
    learner = Learner(job.config, spaces_of(env), [0, 1])
    env.close()
    learner.online.arena.grad.zero_()
    obs, actions, *_ = _batch()
    loss, _, _ = td_step_loss(job.config, learner, obs, actions, _window(job.config.gamma))
    loss.sum().backward()
    return learner, [p.grad.clone() for p in layer_parameters(learner.online)]


def _independent_grads(learner: Learner, through_target: bool) -> list[torch.Tensor]:
    """0.5 (Q(s, a) - r - d max_a' Q(s', a'))^2, averaged over the batch and summed over seeds, differentiated
    by autograd directly: through both terms, or with the target detached."""
    obs, actions, reward, discount, nxt = _batch()
    net = learner.online
    q = net.all_actions(obs).gather(-1, actions[..., None])[..., 0]
    target = reward + discount * net.all_actions(nxt).max(dim=-1).values
    if not through_target:
        target = target.detach()
    loss = (0.5 * (q - target) ** 2).mean(dim=-1).sum()
    return list(torch.autograd.grad(loss, layer_parameters(net)))


def test_the_residual_gradient_flows_through_both_terms_and_the_semi_gradient_through_one():
    learner, residual = _grads_from_engine("residual_q")
    for got, want in zip(residual, _independent_grads(learner, through_target=True), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    learner, semi = _grads_from_engine("online_q")
    for got, want in zip(semi, _independent_grads(learner, through_target=False), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    # the same network and batch: the two gradients differ (the target's own gradient is not zero)
    assert max(float((a - b).abs().max()) for a, b in zip(residual, semi, strict=True)) > 1e-3


def test_residual_needs_the_target_to_be_the_online_net():
    with pytest.raises(ConfigError, match="target_gradient 'residual' .* target_update 'hard'"):
        build_job("dqn", "CartPole-v1", 0, {"target_gradient": "residual"})
    with pytest.raises(ConfigError, match="maximisers for residual: exact, naf"):
        build_job("ddpg", "Pendulum-v1", 0, {"target_gradient": "residual", "target_update": "none",
                                             "target": "max"})


def test_n_anneals_linearly_and_rounds_to_the_nearest_integer():
    cfg = Config(n_step=3, n_step_end=1, n_step_decay_fraction=0.5)
    # n = 3 - 4 p over the first half: 2.5 at p = 1/8 and 1.5 at p = 3/8 (halves round up)
    assert [n_step_at(cfg, p) for p in (0.0, 0.1, 0.125, 0.2, 0.375, 0.4, 0.5, 0.9)] == [3, 3, 3, 2, 2, 1, 1, 1]
    assert n_step_at(Config(n_step=3), 0.7) == 3                   # n_step_end 0: no schedule
    assert n_step_at(Config(n_step=1, n_step_end=5, n_step_decay_fraction=1.0), 0.5) == 3   # upwards too
    with pytest.raises(ConfigError, match=r"n_step \(5\) exceeds buffer_size \(4\)"):
        build_job("dqn", "CartPole-v1", 0, {"n_step_end": 5, "buffer_size": 4, "batch_size": 4})


def test_one_buffer_serves_every_n_up_to_its_largest():
    buffer = ReplayBuffer(1, 10, (1,), (), np.int64, n_step=3, gamma=0.5)
    rewards = [1.0, 2.0, 4.0, 8.0, 16.0]
    for t, r in enumerate(rewards):
        buffer.add(np.array([[t]], np.float32), np.array([0]), np.array([r]), np.array([[t + 1]], np.float32),
                   np.array([t == 3]), np.array([False]))   # transition 3 terminates
    idx = np.array([[0, 2]])
    by_n = {n: returns_of(buffer.gather(idx, n=n), buffer.gamma) for n in (1, 2, 3)}
    # from 0: 1; 1 + 0.5 * 2; 1 + 0.5 * 2 + 0.25 * 4. From 2: 4; 4 + 0.5 * 8 (8 ends the episode: no bootstrap)
    np.testing.assert_allclose(by_n[1].reward_n, [[1.0, 4.0]])
    np.testing.assert_allclose(by_n[2].reward_n, [[2.0, 8.0]])
    np.testing.assert_allclose(by_n[3].reward_n, [[3.0, 8.0]])
    np.testing.assert_allclose(by_n[1].discount_n, [[0.5, 0.5]])
    np.testing.assert_allclose(by_n[2].discount_n, [[0.25, 0.0]])
    np.testing.assert_allclose(by_n[3].discount_n, [[0.125, 0.0]])
    np.testing.assert_allclose(by_n[3].bootstrap_obs[..., 0], [[3.0, 4.0]])
    with pytest.raises(ValueError, match="outside 1..3"):
        buffer.gather(idx, n=4)


def test_an_annealed_run_logs_the_n_it_used(tmp_path):
    job = build_job("annealed_nstep_dqn", "CartPole-v1", 0, {
        "total_env_steps": 800, "eval_interval_env_steps": 800, "eval_episodes": 1, "warmup_env_steps": 100,
        "log_interval_env_steps": 100, "hidden_sizes": [16]})
    run_batch([job], [RunDir(tmp_path)])
    rows = pd.read_csv(tmp_path / "diagnostics.csv")
    # the n of each row's last env step, (env_steps - 1) / 800 of the way: 3 up to 1/8, 2 up to 3/8, then 1
    assert rows["n_step"].tolist() == [3, 2, 2, 1, 1, 1, 1, 1]
