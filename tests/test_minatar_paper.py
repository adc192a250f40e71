"""MinAtar readable against its paper: the full action set, the paper's centred RMSProp, the training return as the
paper plots it (train_return_last100 in diagnostics.csv and the report's curves), and the minatar_paper suite."""

import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from qbench.analysis.report import build_report
from qbench.analysis.studies import plots_core
from qbench.analysis.synthetic import write_run, write_suite_record
from qbench.config import Config, ConfigError
from qbench.engine import TRAIN_RETURN_WINDOW, Learner, LoopState, build_optimiser, run_job
from qbench.envs.tasks import get_task, make_env, probe_spaces
from qbench.jobs import build_job
from qbench.runner.plan import expand
from qbench.store import CHECKPOINT, DIAGNOSTICS, RunDir
from qbench.suites import SUITES_DIR, load_suite
from tests.test_checkpoint import Interrupt, interrupt_after_checkpoint

pytest.importorskip("minatar")

GAMES = ["Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders"]


class CountingEnv(gym.Env):
    """Two steps an episode; the i-th episode this env completes pays i on its last step, whatever the actions:
    its returns are 1, 2, 3, ..."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.completed = 0
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t < 2:
            return np.array([1.0, 0.0], dtype=np.float32), 0.0, False, False, {}
        self.completed += 1
        return np.zeros(2, dtype=np.float32), float(self.completed), True, False, {}


class DrawnEnv(CountingEnv):
    """Two steps an episode paying a return drawn from the env's own stream at reset (restored on resume)."""

    def reset(self, *, seed=None, options=None):
        out = super().reset(seed=seed, options=options)
        self.pay = float(self.np_random.integers(0, 100))
        return out

    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, (self.pay if terminated else 0.0), terminated, truncated, info


TINY = {"hidden_sizes": [8], "eval_episodes": 1, "log_interval_env_steps": 100, "warmup_env_steps": 100,
        "batch_size": 8, "env_steps_per_update": 4}


# --- the action set ----------------------------------------------------------------------------------------------

def test_the_full_action_set_has_6_actions_and_the_minimal_one_breakouts_3():
    task = get_task("MinAtar/Breakout-v1")
    full = make_env(task, Config(sticky_action_prob=0.1, minatar_action_set="full"))
    minimal = make_env(task, Config(sticky_action_prob=0.1))   # the default: today's v1 behaviour
    assert full.action_space.n == 6 and full.unwrapped.action_set == [0, 1, 2, 3, 4, 5]
    # Breakout's minimal set: no-op, left, right (MinAtar's action_map n, l, u, r, d, f)
    assert minimal.action_space.n == 3 and minimal.unwrapped.action_set == [0, 1, 3]
    assert Config().minatar_action_set == "minimal"
    # and a job's Q head follows it
    for action_set, n in (("full", 6), ("minimal", 3)):
        job = build_job("dqn", "MinAtar/Breakout-v1", 0, {"minatar_action_set": action_set})
        spaces = probe_spaces(job.task, job.config)
        assert spaces.n_actions == n
        learner = Learner(job.config, spaces, [0])
        obs = torch.zeros((1, 1, *spaces.obs_shape))
        assert learner.online.all_actions(obs).shape[-1] == n


@pytest.mark.parametrize("game", GAMES)
def test_every_game_has_all_6_actions_in_the_full_set(game):
    env = make_env(get_task(f"MinAtar/{game}-v1"), Config(sticky_action_prob=0.1, minatar_action_set="full"))
    assert env.action_space.n == 6 == env.unwrapped.game.num_actions()


def test_the_action_set_is_refused_off_minatar_and_its_choices_are_named():
    with pytest.raises(ConfigError) as info:
        build_job("dqn", "CartPole-v1", 0, {"minatar_action_set": "full"})
    message = str(info.value)
    assert "\n" not in message and "minatar_action_set" in message and "MinAtar/..." in message
    with pytest.raises(ConfigError) as info:
        build_job("dqn", "MinAtar/Breakout-v1", 0, {"minatar_action_set": "all"})
    assert "\n" not in str(info.value) and "valid choices: minimal, full" in str(info.value)
    build_job("dqn", "CartPole-v1", 0, {"minatar_action_set": "minimal"})   # the default is no change


# --- RMSProp -----------------------------------------------------------------------------------------------------

PAPER_RMSPROP = {"optimizer": "rmsprop", "rmsprop_centered": True, "rmsprop_alpha": 0.95, "rmsprop_eps": 0.01,
                 "lr": 2.5e-4}


def test_the_rmsprop_settings_reach_the_optimiser_of_every_seed_arena():
    job = build_job("dqn", "MinAtar/Breakout-v1", 0, PAPER_RMSPROP)
    learner = Learner(job.config, probe_spaces(job.task, job.config), [0, 1, 2])
    (group,) = learner.optimiser.param_groups
    assert isinstance(learner.optimiser, torch.optim.RMSprop)
    assert (group["centered"], group["alpha"], group["eps"], group["lr"], group["momentum"]) == (
        True, 0.95, 0.01, 2.5e-4, 0)
    assert group["params"] == [learner.online.arena] and learner.online.arena.shape[0] == 3
    defaults = build_optimiser(Config(optimizer="rmsprop"), [torch.zeros(2, requires_grad=True)], 1e-3)
    assert (defaults.param_groups[0]["centered"], defaults.param_groups[0]["alpha"],
            defaults.param_groups[0]["eps"]) == (False, 0.99, 1e-8)   # torch's defaults


def test_a_centred_rmsprop_step_is_the_papers_formula_by_hand():
    cfg = Config(**PAPER_RMSPROP)
    p = torch.tensor([[0.5, -1.0, 2.0], [0.0, 3.0, -0.25]], dtype=torch.float64, requires_grad=True)  # 2 seeds
    opt = build_optimiser(cfg, [p], cfg.lr)
    grads = [np.array([[0.3, -0.2, 1.5], [0.0, 4.0, -0.1]]), np.array([[-0.1, 0.05, 2.0], [1.0, 0.0, 0.3]])]
    want = p.detach().numpy().copy()
    v, m = np.zeros_like(want), np.zeros_like(want)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
        v = 0.95 * v + 0.05 * g ** 2               # squared gradient momentum
        m = 0.95 * m + 0.05 * g                    # centred: the running mean of the gradient
        want = want - 2.5e-4 * g / (np.sqrt(v - m ** 2) + 0.01)   # min squared gradient after the root
    np.testing.assert_allclose(p.detach().numpy(), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("key,value", [("rmsprop_centered", True), ("rmsprop_alpha", 0.95), ("rmsprop_eps", 0.01)])
def test_rmsprop_settings_are_refused_with_another_optimiser(key, value):
    with pytest.raises(ConfigError) as info:
        build_job("dqn", "CartPole-v1", 0, {key: value})   # optimizer adam
    message = str(info.value)
    assert "\n" not in message and key in message and "optimizer rmsprop" in message
    assert "valid optimizers: adam, rmsprop, sgd" in message
    build_job("dqn", "CartPole-v1", 0, {key: value, "optimizer": "rmsprop"})


@pytest.mark.parametrize("key,value,says", [("rmsprop_alpha", 1.5, "<= 1.0"), ("rmsprop_eps", 0.0, "> 0.0"),
                                            ("rmsprop_centered", 1, "must be bool")])
def test_rmsprop_settings_are_bounded(key, value, says):
    with pytest.raises(ConfigError, match=says):
        build_job("dqn", "CartPole-v1", 0, {"optimizer": "rmsprop", key: value})


# --- the training return as the paper plots it ---------------------------------------------------------------------

def last100(returns, n):
    """The mean of the last 100 of the first n returns, by hand (NaN before any)."""
    window = returns[max(0, n - 100):n]
    return sum(window) / len(window) if window else math.nan


def test_train_return_last100_is_the_mean_of_the_last_100_training_episodes(tmp_path):
    job = build_job("dqn", "tests.test_minatar_paper:CountingEnv", 0, TINY,
                    {"total_env_steps": 500, "eval_interval_env_steps": 500})
    run_job(job, RunDir(tmp_path))
    rows = pd.read_csv(tmp_path / DIAGNOSTICS)
    returns = list(range(1, 251))   # 2-step episodes paying 1, 2, 3, ...: 50 per log row of 100 env steps
    assert rows["env_steps"].tolist() == [100, 200, 300, 400, 500]
    assert rows["episodes"].tolist() == [50, 100, 150, 200, 250]
    assert rows["train_return_last100"].tolist() == [last100(returns, n) for n in (50, 100, 150, 200, 250)]
    assert rows["train_return_last100"].tolist() == [25.5, 50.5, 100.5, 150.5, 200.5]
    # beside the mean of the episodes since the row before
    columns = rows.columns.tolist()
    assert columns.index("train_return_last100") == columns.index("train_return_mean") + 1
    assert rows["train_return_mean"].tolist() == [25.5, 75.5, 125.5, 175.5, 225.5]


def test_the_window_is_nan_before_the_first_episode_and_bounded():
    st = LoopState()
    st.log_row(1, 0, 1e-3, {}, 1.0, 1.0)
    assert math.isnan(st.diagnostics[-1]["train_return_last100"])
    for i in range(1, 1001):
        st.record_step(float(i), True, 0.1)
    assert len(st.last_returns) == TRAIN_RETURN_WINDOW == 100
    st.log_row(2, 0, 1e-3, {}, 1.0, 1.0)
    assert st.diagnostics[-1]["train_return_last100"] == sum(range(901, 1001)) / 100


def test_a_checkpoint_from_before_the_window_loads_and_says_nan_until_100_new_episodes():
    old_row = {"env_steps": 100, "grad_steps": 0, "episodes": 150, "td_loss": 0.5, "lr": 1e-3,
               "explore_level": 0.1, "train_return_mean": 3.0, "steps_per_s": 1.0, "wall_s": 1.0}
    st = LoopState(episodes=150, diagnostics=[dict(old_row)])   # as LoopState(**checkpoint["loop"]) of an old one
    assert list(st.diagnostics[0]) == [*list(old_row)[:7], "train_return_last100", "steps_per_s", "wall_s"]
    assert math.isnan(st.diagnostics[0]["train_return_last100"])
    for i in range(99):
        st.record_step(1.0, True, 0.1)
    st.log_row(200, 0, 1e-3, {"td_loss": 0.4}, 1.0, 1.0)
    assert math.isnan(st.diagnostics[-1]["train_return_last100"])   # one episode of the window is unknown
    st.record_step(7.0, True, 0.1)
    st.log_row(300, 0, 1e-3, {"td_loss": 0.4}, 1.0, 1.0)
    assert st.diagnostics[-1]["train_return_last100"] == pytest.approx((99 * 1.0 + 7.0) / 100)
    assert list(st.diagnostics[-1]) == list(st.diagnostics[0])   # one table
    assert LoopState().last_returns == []   # a fresh run's window is empty, not unknown


RESUMABLE = {"total_env_steps": 600, "eval_interval_env_steps": 300, "checkpoint_interval_env_steps": 150}


def test_the_window_survives_a_checkpoint(tmp_path):
    job = build_job("dqn", "tests.test_minatar_paper:DrawnEnv", 3, TINY, RESUMABLE)
    run_job(job, RunDir(tmp_path / "straight"))
    cut = RunDir(tmp_path / "cut")
    with pytest.raises(Interrupt):
        run_job(job, cut, progress=interrupt_after_checkpoint(2))   # 300 env steps: 150 episodes, a full window
    assert torch.load(cut.path / CHECKPOINT, weights_only=False)["loop"]["last_returns"]
    run_job(job, cut)
    straight = pd.read_csv(tmp_path / "straight" / DIAGNOSTICS)
    resumed = pd.read_csv(cut.path / DIAGNOSTICS)
    assert straight["train_return_last100"].notna().all()
    pd.testing.assert_series_equal(straight["train_return_last100"], resumed["train_return_last100"])


def test_a_run_resumed_from_a_checkpoint_without_the_window_finishes_with_one_table(tmp_path):
    job = build_job("dqn", "tests.test_minatar_paper:DrawnEnv", 3, TINY, RESUMABLE)
    cut = RunDir(tmp_path / "cut")
    with pytest.raises(Interrupt):
        run_job(job, cut, progress=interrupt_after_checkpoint(1))
    state = torch.load(cut.path / CHECKPOINT, weights_only=False)
    del state["loop"]["last_returns"]   # as written before the window existed
    state["loop"]["diagnostics"] = [{k: v for k, v in row.items() if k != "train_return_last100"}
                                    for row in state["loop"]["diagnostics"]]
    torch.save(state, cut.path / CHECKPOINT)
    run_job(job, cut)
    rows = pd.read_csv(cut.path / DIAGNOSTICS)   # a ragged file would not parse into these columns
    assert rows["env_steps"].tolist() == [100, 200, 300, 400, 500, 600]
    # resumed at 150 env steps (75 episodes, returns unknown): until 100 new episodes (at 350) the window holds one
    assert rows["train_return_last100"].iloc[:3].isna().all()
    assert rows["train_return_last100"].iloc[3:].notna().all()


# --- the report ----------------------------------------------------------------------------------------------------

def write_diagnostics(run_dir, steps, values, column="train_return_last100"):
    pd.DataFrame({"env_steps": steps, "episodes": [10 * (i + 1) for i in range(len(steps))],
                  "train_return_mean": values, column: values}).to_csv(run_dir / DIAGNOSTICS, index=False)


def test_the_report_draws_the_training_return_beside_the_evaluation(tmp_path):
    write_suite_record(tmp_path, "toy", {"CartPole-v1": (0.0, 500.0)})
    per_seed = [[1.0, 2.0], [2.0, 4.0], [3.0, 6.0], [100.0, 200.0]]   # IQM of 4: the mean of the middle two
    for seed, values in enumerate(per_seed):
        d = write_run(tmp_path, "toy", "CartPole-v1", "dqn", seed, [1000, 2000], [10.0, 20.0])
        write_diagnostics(d, [1000, 2000], [math.nan, values[1]] if seed == 0 else values)
    older = write_run(tmp_path, "toy", "CartPole-v1", "dqn", 9, [1000, 2000], [10.0, 20.0])
    write_diagnostics(older, [1000, 2000], [0.0, 0.0], column="not_the_window")   # before the column: left out
    report = build_report(tmp_path, reps=50)
    train = report.tables["train_curves"]
    # at 1000 seed 0 has no value yet, so only the steps where every run has one: 2000
    assert train["env_steps"].tolist() == [2000] and train["seeds"].tolist() == [4]
    assert train["iqm"].tolist() == [pytest.approx((4.0 + 6.0) / 2)]
    fig = report.figures()["learning_curves"]
    ax = fig.axes[0]
    thin = [line for line in ax.get_lines() if line.get_linewidth() == plots_core.TRAIN_LINE["lw"]]
    assert len(thin) == 1 and thin[0].get_ydata().tolist() == [5.0]
    fig.canvas.draw()
    labels = [t.get_text() for legend in fig.legends + [a.get_legend() for a in fig.axes if a.get_legend()]
              for t in legend.get_texts()]
    assert "training (last 100 episodes)" in labels
    # without training data the figure is as before
    plain = plots_core.learning_curves(report.tables["curves"])
    assert not [line for line in plain.axes[0].get_lines() if line.get_linewidth() == plots_core.TRAIN_LINE["lw"]]


# --- the suite -----------------------------------------------------------------------------------------------------

def test_the_minatar_paper_suite_resolves_to_the_papers_protocol():
    suite = load_suite(SUITES_DIR / "minatar_paper.toml")
    jobs = expand(suite)
    assert {j.task.name for j in jobs} == {f"MinAtar/{g}-v1" for g in GAMES}
    assert {j.variant for j in jobs} == {"dqn", "double_dqn"} and len(jobs) == 5 * 2 * 5
    paper = {"minatar_action_set": "full", "sticky_action_prob": 0.1, "encoder": "minatar_cnn", "hidden_sizes": [128],
             "buffer_size": 100_000, "batch_size": 32, "warmup_env_steps": 5_000, "env_steps_per_update": 1,
             "grad_steps_per_update": 1, "target_update": "hard", "target_period_grad_steps": 1_000,
             "gamma": 0.99, "reward_clip": 0.0, "loss": "huber", "huber_delta": 1.0, "grad_clip": "off",
             "optimizer": "rmsprop", "rmsprop_centered": True, "rmsprop_alpha": 0.95, "rmsprop_eps": 0.01,
             "lr": 2.5e-4, "lr_schedule": "constant", "exploration": "epsilon_greedy", "epsilon_form": "uniform",
             "eps_start": 1.0, "eps_end": 0.1, "total_env_steps": 5_000_000, "n_step": 1, "reward_scale": 1.0}
    for job in jobs:
        cfg = job.config
        assert {k: getattr(cfg, k) for k in paper} == paper, job.task.name
        assert cfg.eps_decay_fraction * cfg.total_env_steps == pytest.approx(100_000)
        assert cfg.target == ("double" if job.variant == "double_dqn" else "max")
    breakout = next(j for j in jobs if j.task.name == "MinAtar/Breakout-v1")
    assert probe_spaces(breakout.task, breakout.config).n_actions == 6
    for entry in suite.entries:
        assert entry.random_score is not None and entry.reference_score is not None
