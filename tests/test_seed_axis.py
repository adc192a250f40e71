"""Issue 11: seeds as a tensor axis. A seed's numbers do not depend on its batch, one seed's trouble stays its own,
and a killed batch resumes to the uninterrupted numbers."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from qbench.engine import DivergedError, build_optimiser, run_batch, stream_seed, train, train_batch
from qbench.jobs import build_job
from qbench.parts.losses import td_loss
from qbench.parts.networks import DiscreteQ, flatten_parameters
from qbench.store import CHECKPOINT, ERROR, RunDir

from .test_checkpoint import Interrupt, interrupt_after_checkpoint, rows

CARTPOLE = {"total_env_steps": 1500, "warmup_env_steps": 300, "eval_interval_env_steps": 500, "eval_episodes": 2,
            "hidden_sizes": [32, 32], "env_steps_per_update": 16, "grad_steps_per_update": 8}
# gamma 0.9: the 200-step episodes then hold the 44 steps a known return needs, so that Q(s_0, a_0) is logged and
# compared (at the task's 0.98 it would need 228 and be NaN)
PENDULUM = {"total_env_steps": 700, "warmup_env_steps": 200, "eval_interval_env_steps": 350, "eval_episodes": 1,
            "hidden_sizes": [32, 32], "batch_size": 32, "cem_population": 16, "cem_elites": 4,
            "random_samples_target": 16, "gamma": 0.9}


def evaluations_by_seed(variant, task, seeds, settings):
    found = {seed: [] for seed in seeds}

    def progress(env_steps, info):
        if "evaluation" in info:
            e = info["evaluation"]
            found[info["seed"]].append((env_steps, e["return_mean"], e["q_start_mean"], e["grad_steps"]))
    results = train_batch([build_job(variant, task, seed, settings) for seed in seeds], None, progress)
    return found, results


@pytest.mark.parametrize("variant,task,settings", [
    ("dqn", "CartPole-v1", CARTPOLE),
    ("nstep_dqn", "CartPole-v1", {**CARTPOLE, "nstep_correction": "cut"}),
    ("huber_dqn", "CartPole-v1", {**CARTPOLE, "max_grad_norm": 0.5, "exploration": "boltzmann"}),
    ("ddpg", "Pendulum-v1", {**PENDULUM, "action_noise": "ou"}),
    ("cem_q", "Pendulum-v1", PENDULUM),
    ("random_q", "Pendulum-v1", PENDULUM),
    ("naf", "Pendulum-v1", PENDULUM),
])
def test_a_seed_trained_in_a_batch_equals_the_same_seed_alone_bit_for_bit(variant, task, settings):
    alone, _ = evaluations_by_seed(variant, task, [3], settings)
    together, _ = evaluations_by_seed(variant, task, [0, 3, 7], settings)
    assert together[3] == alone[3] and not np.isnan(np.array(alone[3], dtype=float)).any()
    assert together[0] != together[3] and together[7] != together[3]   # the neighbours really are other seeds


def test_a_step_on_one_seeds_loss_leaves_the_other_seeds_parameters_and_optimiser_state_untouched():
    generators = [torch.Generator().manual_seed(s) for s in range(3)]
    q = flatten_parameters(DiscreteQ(generators, 4, 2, [16, 16]))
    from qbench.config import Config
    optimiser = build_optimiser(Config(), [q.arena], 1e-2)   # as the engine builds it
    before = q.arena.detach().clone()
    obs = torch.randn(3, 8, 4)
    loss = td_loss(q.q(obs, torch.zeros(3, 8, dtype=torch.long)), torch.full((3, 8), 5.0), "mse")
    loss[1].backward()
    optimiser.step()
    after = q.arena.detach()
    assert torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])
    assert not torch.equal(after[1], before[1])
    state = optimiser.state[q.arena]
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.count_nonzero(state[key][[0, 2]]) == 0 and torch.count_nonzero(state[key][1]) > 0


def test_one_seed_alone_reproduces_the_single_seed_engine_before_the_seed_axis():
    """The same seed and settings as the engine at 2a22d3b (one seed per process): the same greedy returns, and
    Q(s_0, a_0) equal to float32 rounding (batched kernels round a few products differently). That engine read
    epsilon in the non-greedy form (issue 25 made the uniform form the default), so these runs name it."""
    reference = json.loads((Path(__file__).parent / "data" / "single_seed_engine_2a22d3b.json").read_text())
    for key, run in reference["runs"].items():
        variant, task, seed = key.split("/")
        found, _ = evaluations_by_seed(variant, task, [int(seed)], {**run["settings"], "epsilon_form": "non_greedy"})
        checked = run["evaluations"][:2]   # later ones compound the rounding through more updates
        assert [f[1] for f in found[int(seed)][:len(checked)]] == [r[0] for r in checked], key
        np.testing.assert_allclose([f[2] for f in found[int(seed)][:len(checked)]], [r[1] for r in checked],
                                   rtol=1e-5, err_msg=key)


def poisoned_seeds(seeds):
    """Which seeds' EvenSeedHugeRewardEnv gets an even reset seed (rewards of 1e30 from its 21st step on, so that
    its TD loss overflows): predicted from the env streams, not the engine."""
    return [s for s in seeds if stream_seed(s, "env") % 2 == 0]


def test_a_diverging_seed_is_masked_and_recorded_while_the_others_complete(tmp_path):
    seeds = list(range(6))
    poisoned = poisoned_seeds(seeds)
    assert 0 < len(poisoned) < len(seeds)
    settings = {"total_env_steps": 400, "warmup_env_steps": 50, "eval_interval_env_steps": 200, "eval_episodes": 1,
                "hidden_sizes": [8], "env_steps_per_update": 4, "grad_steps_per_update": 2, "batch_size": 8}
    task = "tests.failing_envs:EvenSeedHugeRewardEnv"
    jobs = [build_job("dqn", task, s, settings) for s in seeds]
    runs = [RunDir(tmp_path / f"seed{s}") for s in seeds]
    results = run_batch(jobs, runs)
    for seed, run, result in zip(seeds, runs, results, strict=True):
        if seed in poisoned:
            assert isinstance(result, DivergedError)
            assert json.loads((run.path / ERROR).read_text())["error"] == "diverged"
            assert not run.complete
        else:
            assert isinstance(result, dict) and run.complete and not (run.path / ERROR).exists()
    # The survivors' numbers are those they get with no diverging neighbour at all.
    survivor = next(s for s in seeds if s not in poisoned)
    alone = run_batch([build_job("dqn", task, survivor, settings)], [RunDir(tmp_path / "alone")])[0]
    pd.testing.assert_frame_equal(rows(tmp_path / "alone", "evaluations.csv"),
                                  rows(tmp_path / f"seed{survivor}", "evaluations.csv"))
    assert alone["final_return_mean"] == results[seeds.index(survivor)]["final_return_mean"]
    with pytest.raises(DivergedError):
        train(build_job("dqn", task, poisoned[0], settings))


@pytest.mark.parametrize("variant,task,settings,n", [
    ("dqn", "CartPole-v1", {**CARTPOLE, "n_step": 3, "nstep_correction": "cut",
                            "checkpoint_interval_env_steps": 290, "log_interval_env_steps": 250}, 2),
    ("ddpg", "Pendulum-v1", {**PENDULUM, "action_noise": "ou", "checkpoint_interval_env_steps": 230,
                             "log_interval_env_steps": 100}, 2),
])
def test_a_killed_batch_resumes_to_the_uninterrupted_numbers(variant, task, settings, n, tmp_path):
    """Checkpoints fall mid-episode (the interval is no multiple of any episode length): each env is restored by
    replaying its episode's actions, and the batch goes on as if never stopped."""
    kill_and_resume([build_job(variant, task, s, settings) for s in (1, 4, 6)], tmp_path, n)


MAXIMISATION_BIAS = {"total_env_steps": 600, "eval_interval_env_steps": 200, "eval_episodes": 3,
                     "checkpoint_interval_env_steps": 150, "log_interval_env_steps": 100}


@pytest.mark.parametrize("variant,seeds", [("tabular_q", (5,)), ("dqn", (0, 1, 2))])
def test_a_task_with_valid_actions_resumes_alone_and_in_batches_of_more_seeds_than_states(variant, seeds, tmp_path):
    """The maximisation-bias MDP offers each of its 2 states its own actions (an (S, A) table that belongs to no
    seed): a checkpoint keeps it whole, so one seed resumes and 3 seeds checkpoint and resume."""
    settings = {**MAXIMISATION_BIAS, **({"warmup_env_steps": 50} if variant == "dqn" else {})}
    kill_and_resume([build_job(variant, "qbench/MaximisationBias-v0", s, settings) for s in seeds], tmp_path, 2)


def kill_and_resume(jobs, tmp_path, n: int) -> tuple[list, list]:
    """Run the batch straight, and again interrupted after its n-th checkpoint and resumed; assert that every row
    and summary figure of the resumed run equals the straight one's; return both lists of summaries."""
    seeds = [job.seed for job in jobs]
    straight = run_batch(jobs, [RunDir(tmp_path / "straight" / str(s)) for s in seeds])
    cut = [RunDir(tmp_path / "cut" / str(s)) for s in seeds]
    with pytest.raises(Interrupt):
        run_batch(jobs, cut, progress=interrupt_after_checkpoint(n))
    assert all((run.path / CHECKPOINT).exists() and not run.complete for run in cut)
    resumed = run_batch(jobs, cut)
    for s, a, b in zip(seeds, straight, resumed, strict=True):
        for name in ("evaluations.csv", "diagnostics.csv"):
            pd.testing.assert_frame_equal(rows(tmp_path / "straight" / str(s), name),
                                          rows(tmp_path / "cut" / str(s), name))
        assert (a["final_return_mean"], a["episodes"]) == (b["final_return_mean"], b["episodes"])
    return straight, resumed


def test_seeds_whose_checkpoints_differ_resume_as_separate_batches(tmp_path):
    """Seed 2 was interrupted alone, seed 5 never started: one call finishes both, each as if uninterrupted."""
    settings = {**CARTPOLE, "checkpoint_interval_env_steps": 400}
    jobs = [build_job("dqn", "CartPole-v1", s, settings) for s in (2, 5)]
    straight = run_batch(jobs, [RunDir(tmp_path / "straight" / str(j.seed)) for j in jobs])
    runs = [RunDir(tmp_path / "mixed" / str(j.seed)) for j in jobs]
    with pytest.raises(Interrupt):
        run_batch(jobs[:1], runs[:1], progress=interrupt_after_checkpoint(1))
    resumed = run_batch(jobs, runs)
    assert [r["final_return_mean"] for r in resumed] == [r["final_return_mean"] for r in straight]
    for j in jobs:
        pd.testing.assert_frame_equal(rows(tmp_path / "straight" / str(j.seed), "evaluations.csv"),
                                      rows(tmp_path / "mixed" / str(j.seed), "evaluations.csv"))


def test_a_batch_refuses_jobs_that_differ_in_more_than_the_seed():
    a = build_job("dqn", "CartPole-v1", 0, CARTPOLE)
    b = build_job("dqn", "CartPole-v1", 1, {**CARTPOLE, "lr": 1e-2})
    with pytest.raises(ValueError, match="differ only in seed"):
        train_batch([a, b])

