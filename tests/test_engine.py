import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from qbench.engine import run_job, train
from qbench.jobs import build_job
from qbench.store import RunDir

SMALL = {"total_env_steps": 1500, "warmup_env_steps": 500, "eval_interval_env_steps": 500, "eval_episodes": 3,
         "hidden_sizes": [32, 32]}


def evaluation_returns(summary_run):
    return [(r["env_steps"], r["return_mean"], r["return_std"]) for r in summary_run]


@pytest.mark.parametrize("variant,settings", [
    ("dqn", {"exploration": "boltzmann"}),
    ("double_nstep_huber_dqn", {"nstep_correction": "cut", "exploration": "boltzmann"}),
])
def test_same_seed_same_numbers_and_the_global_rng_is_untouched(variant, settings, tmp_path):
    job = build_job(variant, "CartPole-v1", 7, SMALL, settings)
    rng_before = torch.random.get_rng_state().clone()
    runs = []
    for i in range(2):
        run_job(job, RunDir(tmp_path / str(i)))
        runs.append((tmp_path / str(i) / "evaluations.csv").read_text().splitlines())
    assert torch.equal(rng_before, torch.random.get_rng_state())
    strip_wall = [[",".join(line.split(",")[:-1]) for line in rows] for rows in runs]   # wall_s is last
    assert strip_wall[0] == strip_wall[1]
    other = build_job(variant, "CartPole-v1", 8, SMALL, settings)
    run_job(other, RunDir(tmp_path / "other"))
    assert (tmp_path / "other" / "diagnostics.csv").read_text() != (tmp_path / "0" / "diagnostics.csv").read_text()


@pytest.mark.parametrize("variant,settings,expected_grad_steps", [
    # updates at env steps 500, 504, ..., 1500 (251 updates) x 2 gradient steps
    ("dqn", {"env_steps_per_update": 4, "grad_steps_per_update": 2}, 251 * 2),
    # fitted Q: collect 500, then 40 gradient steps, at 500, 1000, 1500
    ("fitted_q", {"env_steps_per_update": 500, "grad_steps_per_update": 40, "target_period_grad_steps": 10}, 120),
    # online: one gradient step on the newest transition at every env step from 500 on
    ("online_q", {}, 1001),
])
def test_rates_decide_how_many_gradient_steps_are_taken(variant, settings, expected_grad_steps):
    job = build_job(variant, "CartPole-v1", 0, SMALL, settings)
    summary = train(job)
    assert summary["grad_steps"] == expected_grad_steps
    assert summary["env_steps"] == 1500


def test_online_q_is_a_preset_of_the_same_engine():
    cfg = build_job("online_q", "CartPole-v1", 0).config
    assert (cfg.buffer_size, cfg.batch_size, cfg.env_steps_per_update, cfg.grad_steps_per_update) == (1, 1, 1, 1)
    assert cfg.target_update == "none"


def test_divergence_is_recorded_and_raised(tmp_path):
    from qbench.engine import DivergedError
    job = build_job("dqn", "CartPole-v1", 0, SMALL, {"lr": 1e30, "optimizer": "rmsprop", "gamma": 1.0})
    with pytest.raises(DivergedError):
        run_job(job, RunDir(tmp_path))
    error = json.loads((tmp_path / "error.json").read_text())
    assert error["error"] == "diverged" and not (tmp_path / "summary.json").exists()


def test_one_hot_task_trains_end_to_end():
    job = build_job("dqn", "FrozenLake-v1", 0, SMALL, {"total_env_steps": 600})
    summary = train(job)
    assert 0.0 <= summary["final_return_mean"] <= 1.0


class ThreeRewards(gym.Env):
    """Three steps of reward 1, 2, 4, then terminated: returns and discounted returns by hand."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(2, self.t / 10, dtype=np.float32), float(2 ** (self.t - 1)), self.t == 3, False, {}


class FixedQ(torch.nn.Module):
    """Q(s, .) = values[k] everywhere for seed k of the batch; by default (2, 5) for every seed, so the greedy
    action is 1 and Q(s_0, a_0) = 5."""

    def __init__(self, values=((2.0, 5.0),)):
        super().__init__()
        self.values = torch.tensor(values)   # (K, n_actions), or one row for every seed

    def all_actions(self, obs):              # obs (K, B, obs_dim) -> (K, B, n_actions)
        return self.values[:, None, :].expand(obs.shape[0], obs.shape[1], -1)

    def q(self, obs, actions):
        return self.all_actions(obs).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def test_evaluation_logs_predicted_q_and_the_discounted_return_from_the_first_state():
    from qbench.engine import evaluate
    from qbench.envs.tasks import spaces_of
    from qbench.parts.maximisers import ExactMaximiser

    env = ThreeRewards()
    [ev] = evaluate(FixedQ(), ExactMaximiser(), [env], spaces_of(env), episodes=2, seeds=[0], gamma=0.5)
    assert ev.returns.tolist() == [7.0, 7.0]
    assert ev.discounted_returns.tolist() == [1 + 0.5 * 2 + 0.25 * 4] * 2
    assert ev.q_start.tolist() == [5.0, 5.0]
    assert ev.capped == 0


class ActionRewards(ThreeRewards):
    """Action 1: rewards 2, 4, 8, then terminated; action 0: rewards 1, 2, then terminated. Counts its resets."""

    def reset(self, *, seed=None, options=None):
        self.resets = getattr(self, "resets", 0) + 1
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.t += 1
        obs = np.full(2, self.t / 10, dtype=np.float32)
        if int(action) == 1:
            return obs, float(2 ** self.t), self.t == 3, False, {}
        return obs, float(2 ** (self.t - 1)), self.t == 2, False, {}


def test_seeds_evaluated_together_each_get_their_own_returns_and_an_inactive_seed_gets_none():
    from qbench.engine import evaluate
    from qbench.envs.tasks import spaces_of
    from qbench.parts.maximisers import ExactMaximiser

    envs = [ActionRewards(), ActionRewards(), ActionRewards()]
    # seed 0 prefers action 1 (Q 5), seed 1 action 0 (Q 3), seed 2 would prefer action 1 but is not active
    q = FixedQ(((2.0, 5.0), (3.0, -1.0), (0.0, 9.0)))
    evs = evaluate(q, ExactMaximiser(), envs, spaces_of(envs[0]), episodes=2, seeds=[0, 1, 2], gamma=0.5,
                   active=[True, True, False])
    assert evs[2] is None and not hasattr(envs[2], "resets")   # never reset, never stepped
    assert [envs[0].resets, envs[1].resets] == [2, 2]
    ev0, ev1 = evs[0], evs[1]
    assert ev0.returns.tolist() == [14.0, 14.0]                       # 2 + 4 + 8, three steps
    assert ev0.discounted_returns.tolist() == [2 + 0.5 * 4 + 0.25 * 8] * 2
    assert ev0.q_start.tolist() == [5.0, 5.0]
    assert ev1.returns.tolist() == [3.0, 3.0]                         # 1 + 2, two steps
    assert ev1.discounted_returns.tolist() == [1 + 0.5 * 2] * 2
    assert ev1.q_start.tolist() == [3.0, 3.0]


def test_evaluation_rows_and_summary_carry_the_overestimation_columns_and_peak_memory(tmp_path):
    job = build_job("dqn", "CartPole-v1", 0, SMALL)
    summary = run_job(job, RunDir(tmp_path))
    header = (tmp_path / "evaluations.csv").read_text().splitlines()[0].split(",")
    assert {"q_start_mean", "discounted_return_mean"} <= set(header) and header[-1] == "wall_s"
    assert summary["peak_rss_mb"] > 50     # a process with torch loaded holds well over 50 MiB


def test_learning_rate_decays_over_its_fraction_of_the_run_then_stays(tmp_path):
    settings = {"lr": 1e-3, "lr_schedule": "linear", "lr_end": 1e-4, "lr_decay_fraction": 0.5,
                "log_interval_env_steps": 500, "env_steps_per_update": 4}
    job = build_job("dqn", "CartPole-v1", 0, SMALL, settings)
    run_job(job, RunDir(tmp_path))
    rows = (tmp_path / "diagnostics.csv").read_text().splitlines()
    header = rows[0].split(",")
    lrs = [float(r.split(",")[header.index("lr")]) for r in rows[1:]]
    # The schedule is read at each update with progress (env_steps - 1) / total: at 500, 1000 and 1500.
    assert lrs[0] == pytest.approx(1e-3 + (499 / 1500 / 0.5) * (1e-4 - 1e-3))
    assert lrs[1:] == pytest.approx([1e-4, 1e-4])
