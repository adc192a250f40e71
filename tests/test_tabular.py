"""Tabular variants through the one engine, per-episode info, the distance to Q*, the divergence watch and the
overestimation measured along visited states."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from qbench.config import ConfigError
from qbench.engine import (
    KnownDynamics,
    Learner,
    evaluate,
    known_dynamics,
    run_batch,
    visited_returns,
)
from qbench.envs.tasks import get_task, make_env, spaces_of
from qbench.jobs import build_job
from qbench.loading import load_episodes
from qbench.parts.losses import td_loss
from qbench.parts.targets import bootstrap_value, td_targets
from qbench.store import RunDir
from qbench.theory.mdp import q_iteration

BIAS = "qbench/MaximisationBias-v0"


def _spaces(task_name: str, cfg):
    """(the task's spaces, its env: the caller closes it)."""
    env = make_env(get_task(task_name), cfg)
    return spaces_of(env), env


def test_a_table_step_is_watkins_update_at_step_size_lr():
    """Q(s, a) += lr (r + gamma max_a' Q(s', a') - Q(s, a)) for the one entry, and nothing else moves."""
    job = build_job("tabular_q", "FrozenLake-v1", 0, {"gamma": 0.9})
    spaces, env = _spaces("FrozenLake-v1", job.config)
    learner = Learner(job.config, spaces, [0])
    table = learner.online.table.weight          # (K, states, actions), zero at the start
    assert torch.count_nonzero(table) == 0
    with torch.no_grad():
        table[0, 5, :] = torch.tensor([0.2, 0.7, -0.1, 0.4])   # the next state's row
        table[0, 4, 2] = 0.3
    obs = torch.zeros(1, 1, 16)
    obs[0, 0, 4] = 1.0
    nxt = torch.zeros(1, 1, 16)
    nxt[0, 0, 5] = 1.0
    action = torch.tensor([[2]])
    with torch.no_grad():
        y = td_targets(torch.tensor([[1.0]]), torch.tensor([[0.9]]),
                       bootstrap_value("max", learner.target_maximiser, learner.online, learner.target, nxt))
    before = table.detach().clone()
    learner.online.arena.grad.zero_()
    td_loss(learner.online.q(obs, action), y, "mse").sum().backward()
    learner.optimiser.step()
    expected = before.clone()
    expected[0, 4, 2] = 0.3 + 0.1 * (1.0 + 0.9 * 0.7 - 0.3)
    torch.testing.assert_close(table.detach(), expected, rtol=0, atol=1e-7)
    env.close()


def test_tabular_double_q_updates_exactly_one_table_evaluated_by_the_other():
    job = build_job("tabular_double_q", BIAS, 0)
    spaces, env = _spaces(BIAS, job.config)
    learner = Learner(job.config, spaces, [0, 2])
    a_table, b_table = learner.online.table.weight, learner.target.table.weight
    with torch.no_grad():   # B's row: table A prefers action 3, table B prefers action 7
        a_table[:, 1, :] = torch.tensor([0, 0, 0, 0.9, 0, 0, 0, 0.2, 0, 0])
        b_table[:, 1, :] = torch.tensor([0, 0, 0, -0.4, 0, 0, 0, 0.8, 0, 0])
    first_a, first_b = a_table.detach().clone(), b_table.detach().clone()
    rngs = [np.random.default_rng(0), np.random.default_rng(2)]
    coins = [np.random.default_rng(0).random() < 0.5, np.random.default_rng(2).random() < 0.5]
    assert coins[0] != coins[1]   # the two seeds' coins differ: one swaps, the other does not
    learner.swap_roles(rngs)
    obs = torch.zeros(2, 1, 2)
    obs[:, 0, 0] = 1.0           # A
    nxt = torch.zeros(2, 1, 2)
    nxt[:, 0, 1] = 1.0           # B
    with torch.no_grad():
        y = td_targets(torch.zeros(2, 1), torch.ones(2, 1),
                       bootstrap_value("double", learner.target_maximiser, learner.online, learner.target, nxt))
    learner.online.arena.grad.zero_()
    td_loss(learner.online.q(obs, torch.zeros(2, 1, dtype=torch.long)), y, "mse").sum().backward()
    learner.optimiser.step()
    for k, swapped in enumerate(coins):
        # the table that stepped is the one now online; it selected by itself and was evaluated by the other
        stepped_first = first_b[k] if swapped else first_a[k]
        other_first = first_a[k] if swapped else first_b[k]
        choice = int(stepped_first[1].argmax())
        expected = stepped_first.clone()
        expected[0, 0] += 0.1 * (other_first[1, choice] - stepped_first[0, 0])
        torch.testing.assert_close(learner.online.table.weight[k].detach(), expected, rtol=0, atol=1e-7)
        torch.testing.assert_close(learner.target.table.weight[k].detach(), other_first, rtol=0, atol=0)
    # no swap: table A selected 3 in B and table B valued it -0.4; swapped: B selected 7 and A valued it 0.2
    np.testing.assert_allclose(y[:, 0].numpy(), [-0.4 if not coins[0] else 0.2, 0.2 if coins[1] else -0.4])
    env.close()


def _independent_maximisation_bias(runs: int, episodes: int, eps: float, double: bool, seed: int) -> np.ndarray:
    """Sutton and Barto's Example 6.7 written out on its own (not the engine): the fraction of runs going left from A
    in each episode, epsilon-greedy as qbench defines it (1 - eps on a greedy action, ties at random)."""
    rng = np.random.default_rng(seed)
    left = np.zeros((runs, episodes))

    def act(q: np.ndarray) -> int:
        greedy = rng.choice(np.flatnonzero(q == q.max()))
        if rng.random() < eps:
            return int(rng.choice([a for a in range(len(q)) if a != greedy]))
        return int(greedy)
    for r in range(runs):
        qa, qb = np.zeros((2, 2)), np.zeros((2, 10))
        for e in range(episodes):
            if act(qa.sum(0) if double else qa[0]) == 1:
                i = rng.integers(2) if double else 0
                qa[i, 1] += 0.1 * (0.0 - qa[i, 1])
                continue
            left[r, e] = 1
            i = rng.integers(2) if double else 0
            value = qb[1 - i, np.argmax(qb[i])] if double else qb[0].max()
            qa[i, 0] += 0.1 * (value - qa[i, 0])
            b = act(qb.sum(0) if double else qb[0])
            i = rng.integers(2) if double else 0
            qb[i, b] += 0.1 * (rng.normal(-0.1, 1.0) - qb[i, b])
    return left.mean(axis=0)


@pytest.mark.parametrize("variant", ["tabular_q", "tabular_double_q"])
def test_the_engine_s_tabular_learners_match_an_independent_simulation(variant, tmp_path):
    """300 runs of each, 100 episodes: the engine's left fraction per block of 20 episodes matches a separate
    implementation of the algorithm to within 4 standard errors (seeded, so it cannot flake)."""
    first = build_job(variant, BIAS, 0, {"total_env_steps": 200, "eval_interval_env_steps": 200,
                                          "eval_episodes": 1})
    jobs = [dataclasses.replace(first, seed=s) for s in range(300)]
    results = run_batch(jobs, [RunDir(tmp_path / str(s)) for s in range(300)])
    assert not any(isinstance(r, BaseException) for r in results)
    episodes = load_episodes(tmp_path)
    curve = episodes[episodes["episode"] <= 100].groupby("episode")["left"].mean().to_numpy()
    assert len(curve) == 100
    other = _independent_maximisation_bias(300, 100, 0.05, variant == "tabular_double_q", seed=7)
    blocks, other_blocks = curve.reshape(5, 20).mean(1), other.reshape(5, 20).mean(1)
    p = (blocks + other_blocks) / 2
    se = np.sqrt(2 * p * (1 - p) / (300 * 20))
    assert np.all(np.abs(blocks - other_blocks) < 4 * se + 0.02), (blocks, other_blocks)
    if variant == "tabular_q":
        assert blocks[1] > 0.6          # the bias: well above the 5% floor in episodes 21-40
    else:
        assert blocks[-1] < 0.2         # Double Q-learning heads for the floor


def test_episode_rows_record_the_info_of_each_episode_s_last_step(tmp_path):
    first = build_job("tabular_q", BIAS, 0, {"total_env_steps": 60, "eval_interval_env_steps": 60,
                                              "eval_episodes": 1})
    jobs = [dataclasses.replace(first, seed=s) for s in (0, 1)]
    run_batch(jobs, [RunDir(tmp_path / str(s)) for s in (0, 1)])
    episodes = load_episodes(tmp_path)
    for _, rows in episodes.groupby("run_dir"):
        assert rows["episode"].tolist() == list(range(1, len(rows) + 1))
        # going left takes two steps (A, then B), right one: the info says which
        assert (rows["length"] == 1 + rows["left"]).all()
        assert (rows["env_steps"] == rows["length"].cumsum()).all()
        assert rows["env_steps"].iloc[-1] <= 60
        assert (rows.loc[rows["left"] == 0, "return"] == 0).all()   # right pays exactly 0


def test_episode_rows_survive_a_kill_and_resume_unchanged(tmp_path):
    from tests.test_seed_axis import Interrupt, interrupt_after_checkpoint

    first = build_job("tabular_q", BIAS, 0, {"total_env_steps": 300, "eval_interval_env_steps": 100,
                                              "eval_episodes": 1, "checkpoint_interval_env_steps": 100,
                                              "log_interval_env_steps": 50})
    jobs = [dataclasses.replace(first, seed=s) for s in (3, 4)]
    run_batch(jobs, [RunDir(tmp_path / "straight" / str(j.seed)) for j in jobs])
    cut = [RunDir(tmp_path / "cut" / str(j.seed)) for j in jobs]
    with pytest.raises(Interrupt):
        run_batch(jobs, cut, progress=interrupt_after_checkpoint(1))
    run_batch(jobs, cut)
    for j in jobs:
        straight = pd.read_csv(tmp_path / "straight" / str(j.seed) / "episodes.csv")
        resumed = pd.read_csv(tmp_path / "cut" / str(j.seed) / "episodes.csv")
        pd.testing.assert_frame_equal(straight, resumed)
        assert len(straight) >= 150


def test_evaluations_on_known_dynamics_report_the_distance_to_q_star(tmp_path):
    job = build_job("tabular_q", "qbench/TwoStateChain-v0", 0, {
        "gamma": 0.9, "total_env_steps": 4000, "eval_interval_env_steps": 1000, "eval_episodes": 2,
        "eps_start": 0.3, "eps_end": 0.3})
    run_batch([job], [RunDir(tmp_path)])
    rows = pd.read_csv(tmp_path / "evaluations.csv")
    env = make_env(job.task, job.config)
    known = known_dynamics(env, spaces_of(env), 0.9)
    q_star = q_iteration(known.mdp, 0.9).q_star
    np.testing.assert_allclose(rows["optimal_value"], q_star[0].max())   # the chain starts in state 0
    # a table learning from zero (max |Q*| = 5.8 away) comes within 10% of it everywhere (a constant step
    # size of 0.1 leaves noise: 0.37 measured)
    assert rows["q_error_max"].iloc[-1] < 0.1 * np.abs(q_star).max()
    assert (rows["q_error_mean"] <= rows["q_error_max"] + 1e-12).all()


def test_the_distance_reads_every_state_through_the_network():
    """A Q function that is Q* plus 0.25 at one entry is 0.25 away at most, 0.125 on average over two states."""
    job = build_job("tabular_q", "qbench/TwoStateChain-v0", 0, {"gamma": 0.9})
    env = make_env(job.task, job.config)
    known = known_dynamics(env, spaces_of(env), 0.9)
    offset = known.q_star.copy()
    offset[1, 0] += 0.25

    class Fixed:
        def all_actions(self, obs):
            return obs.double() @ torch.as_tensor(offset)

    out = known.distance(Fixed(), 3, torch.device("cpu"))
    np.testing.assert_allclose(out["q_error_max"], [0.25] * 3, rtol=1e-12)
    np.testing.assert_allclose(out["q_error_mean"], [0.125] * 3, rtol=1e-12)
    np.testing.assert_allclose(out["greedy_value"], out["optimal_value"])   # the argmax did not change
    assert isinstance(known, KnownDynamics)


def test_the_divergence_watch_stops_a_run_above_its_level_flags_one_above_its_warning(tmp_path):
    """TwoStateChain pays at most 5 at gamma 0.9, so |Q*| <= 50, one value scale: with the default levels (warn
    5 scales = 250, stop 1000 scales = 50,000) a table converging there is neither flagged nor stopped; with a
    stop factor of 0.05 (|Q| 2.5; the table reaches about 5 in these 2000 steps) the same run is stopped, with
    the reason recorded; with a warning factor of 0.05 and no level stop it runs to the end, flagged, and its
    summary says when."""
    settings = {"gamma": 0.9, "total_env_steps": 2000, "eval_interval_env_steps": 1000, "eval_episodes": 1}
    calm = build_job("tabular_q", "qbench/TwoStateChain-v0", 0, settings)
    summary = run_batch([calm], [RunDir(tmp_path / "calm")])[0]
    assert summary["env_steps"] == 2000
    watch = summary["divergence_watch"]
    assert watch["first_warned_env_step"] is None and watch["stopped_env_step"] is None
    assert 4 < watch["peak_q_abs"] <= 50 and watch["peak_value_scales"] == pytest.approx(watch["peak_q_abs"] / 50)

    tight = build_job("tabular_q", "qbench/TwoStateChain-v0", 0,
                      {**settings, "divergence_stop_factor": 0.05, "divergence_warn_factor": 0.05})
    result = run_batch([tight], [RunDir(tmp_path / "tight")])[0]
    assert isinstance(result, BaseException)
    error = json.loads((tmp_path / "tight" / "error.json").read_text())
    assert error["error"] == "diverged"
    assert "above the divergence stop level 0.05 x max(r_max, 1) x 1 / (1 - gamma) = 2.5 (r_max = 5" in error["message"]
    assert error["divergence_watch"]["stopped_env_step"] is not None
    assert not (tmp_path / "tight" / "summary.json").exists()

    flagged = build_job("tabular_q", "qbench/TwoStateChain-v0", 0,
                        {**settings, "divergence_stop_factor": 0.0, "divergence_warn_factor": 0.05})
    summary = run_batch([flagged], [RunDir(tmp_path / "flagged")])[0]
    assert summary["env_steps"] == 2000
    first = summary["divergence_watch"]["first_warned_env_step"]
    assert first is not None and 0 < first < 2000 and summary["divergence_watch"]["stopped_env_step"] is None
    rows = pd.read_csv(tmp_path / "flagged" / "diagnostics.csv")
    assert rows.loc[rows["env_steps"] >= first, "q_abs_max"].iloc[0] > 2.5      # the row holding that round
    assert not (rows.loc[rows["env_steps"] < first, "q_abs_max"] > 2.5).any()


def test_a_stop_level_below_the_warning_is_refused():
    with pytest.raises(ConfigError, match="divergence_stop_factor \\(2\\) is below divergence_warn_factor"):
        build_job("tabular_q", "qbench/TwoStateChain-v0", 0, {"divergence_stop_factor": 2.0})


def test_visited_returns_count_only_states_whose_return_is_known():
    q = [1.0, 2.0, 3.0]
    kept_q, returns = visited_returns(q, [1.0, 1.0, 1.0], 0.5, terminated=True)
    np.testing.assert_allclose(returns, [1.75, 1.5, 1.0])
    np.testing.assert_allclose(kept_q, q)
    # cut by a time limit: gamma^(T - t) <= 0.01 needs T - t >= 7 at gamma 0.5, so of 8 steps only t = 0, 1
    kept_q, returns = visited_returns(list(range(8)), [1.0] * 8, 0.5, terminated=False)
    assert kept_q.tolist() == [0.0, 1.0]
    np.testing.assert_allclose(returns[0], sum(0.5 ** i for i in range(8)))
    assert len(visited_returns(q, [1.0] * 3, 1.0, terminated=False)[0]) == 0


def test_visited_states_are_chosen_by_their_step_alone_not_by_how_the_episode_ended():
    """Episodes last at most 8 steps (horizon); at gamma 0.5 a return is known to 1% when 7 steps fit after it:
    only t = 0 and 1 qualify, in an episode that terminated at step 3 as in one cut at step 8. Dropping cut
    episodes' late states but keeping every state of terminated ones would select by outcome."""
    kept_q, returns = visited_returns([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], 0.5, terminated=True, horizon=8)
    assert kept_q.tolist() == [1.0, 2.0]
    np.testing.assert_allclose(returns, [1.75, 1.5])
    assert visited_returns(list(range(8)), [1.0] * 8, 0.5, terminated=False, horizon=8)[0].tolist() == [0.0, 1.0]
    assert len(visited_returns([1.0], [1.0], 0.5, terminated=True, horizon=6)[0]) == 0   # 6 < 7: never known
    assert len(visited_returns([1.0], [1.0], 1.0, terminated=True, horizon=1000)[0]) == 0
    assert len(visited_returns([1.0], [1.0], 1.0, terminated=True)[0]) == 1               # no horizon at all


class ThreeSteps(gym.Env):
    """Pays `reward` a step and terminates at step 3."""
    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, reward: float = 1.0):
        self.reward = reward

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), self.reward, self.t == 3, False, {}


class ConstantQ:
    """Q = 2 for every state and action."""
    def all_actions(self, obs):
        return torch.full((*obs.shape[:-1], 2), 2.0)

    def q(self, obs, actions):
        return torch.full(obs.shape[:-1], 2.0)


def test_evaluation_measures_q_along_the_visited_states():
    """A constant Q of 2 on an env paying 1 per step for 3 steps (then terminating), gamma 0.5: the visited
    states' mean Q is 2 and their mean discounted return (1.75 + 1.5 + 1) / 3."""
    from qbench.parts.maximisers import ExactMaximiser
    env = ThreeSteps()
    ev = evaluate(ConstantQ(), ExactMaximiser(), [env], spaces_of(env), 2, [0], 0.5)[0]
    assert ev.visited_states == 6
    assert ev.q_visited_sum / 6 == 2.0
    assert ev.return_visited_sum / 6 == pytest.approx((1.75 + 1.5 + 1.0) / 3)


def test_overestimation_from_s0_is_nan_where_the_horizon_hides_the_return_and_uses_the_learners_rewards():
    """A constant Q of 2; an env paying 10 a step, terminating at step 3, under a time limit. gamma 0.5 needs 7
    steps after s_0: with a limit of 5 neither s_0 nor any state is known (NaN, no visited state); with a limit
    of 20, all of it, and with reward_clip 1 the discounted returns sum clipped rewards (1.75, Q's scale) while
    the score stays the game's (30)."""
    from gymnasium.wrappers import TimeLimit

    from qbench.parts.maximisers import ExactMaximiser

    def limited(steps):
        inner = ThreeSteps(reward=10.0)
        inner.spec = gym.envs.registration.EnvSpec("ThreeSteps-v0", max_episode_steps=steps)
        env = TimeLimit(inner, steps)
        assert env.spec.max_episode_steps == steps
        return env

    short = limited(5)
    ev = evaluate(ConstantQ(), ExactMaximiser(), [short], spaces_of(short), 2, [0], 0.5)[0]
    assert np.isnan(ev.q_start).all() and np.isnan(ev.discounted_returns).all() and ev.visited_states == 0
    assert ev.returns.tolist() == [30.0, 30.0]
    long = limited(20)
    ev = evaluate(ConstantQ(), ExactMaximiser(), [long], spaces_of(long), 2, [0], 0.5, reward_clip=1.0)[0]
    assert ev.q_start.tolist() == [2.0, 2.0] and ev.discounted_returns.tolist() == [1.75, 1.75]
    assert ev.returns.tolist() == [30.0, 30.0] and ev.visited_states == 6
    assert ev.return_visited_sum == pytest.approx(2 * (1.75 + 1.5 + 1.0))
    # reward_scale after the clip: 10 -> 1 -> 0.25 a step, 0.25 (1 + 0.5 + 0.25) = 0.4375 from s_0
    ev = evaluate(ConstantQ(), ExactMaximiser(), [long], spaces_of(long), 2, [0], 0.5, reward_clip=1.0,
                  reward_scale=0.25)[0]
    assert ev.discounted_returns.tolist() == [0.4375, 0.4375] and ev.returns.tolist() == [30.0, 30.0]


def test_double_q_s_two_tables_and_coins_survive_a_kill_and_resume(tmp_path):
    from tests.test_seed_axis import kill_and_resume

    first = build_job("tabular_double_q", "qbench/TwoStateChain-v0", 0, {
        "gamma": 0.9, "total_env_steps": 900, "eval_interval_env_steps": 300, "eval_episodes": 2,
        "checkpoint_interval_env_steps": 300, "log_interval_env_steps": 100})
    kill_and_resume([dataclasses.replace(first, seed=s) for s in (0, 1)], tmp_path, 1)
    # the distance to Q* depends on both tables: equal rows mean both came back
    for s in (0, 1):
        a = pd.read_csv(tmp_path / "straight" / str(s) / "evaluations.csv")["q_error_max"]
        b = pd.read_csv(tmp_path / "cut" / str(s) / "evaluations.csv")["q_error_max"]
        pd.testing.assert_series_equal(a, b)
