"""An env that breaks its contract (Gymnasium's API, its declared spaces, finite numbers) is named as the env's fault:
the seed stops with error.json kind "env" naming the env, the seed, the step and what was wrong; never a divergence
of the variant, never a traceback; the other seeds of its batch go on as if it had not been there."""

import json

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

from qbench import cli
from qbench.envs.checks import ContractChecked, EnvFault
from qbench.jobs import build_job
from qbench.store import ERROR, RunDir
from qbench.training.rundir import run_batch
from qbench.training.seeding import stream_seed
from tests import failing_envs

TINY = {"total_env_steps": 200, "warmup_env_steps": 50, "eval_interval_env_steps": 100, "eval_episodes": 1,
        "hidden_sizes": [8], "env_steps_per_update": 4, "grad_steps_per_update": 1, "batch_size": 8}


def checked(env_class) -> ContractChecked:
    return ContractChecked(env_class())


@pytest.mark.parametrize("env_class,call,message", [
    (failing_envs.NaNRewardEnv, "step", "step returned the reward nan; rewards must be finite"),
    (failing_envs.InfRewardEnv, "step", "step returned the reward inf; rewards must be finite"),
    (failing_envs.NaNObservationEnv, "step", "step returned an observation that is not finite: [ 0. nan]"),
    (failing_envs.WrongShapeStepEnv, "step",
     "step returned an observation of shape (3,); the observation space declares (2,)"),
    (failing_envs.OldGymApiEnv, "step", ("step returned 4 values (the old Gym API: obs, reward, done, info); "
     "Gymnasium's step returns 5: (obs, reward, terminated, truncated, info)")),
    (failing_envs.CrashingEnv, "step", "step raised RuntimeError: CrashingEnv broke on purpose"),
    (failing_envs.WrongShapeResetEnv, "reset",
     "reset returned an observation of shape (3,); the observation space declares (2,)"),
    (failing_envs.RaisingResetEnv, "reset", "reset raised OSError: RaisingResetEnv cannot find its simulator"),
])
def test_each_broken_contract_is_an_env_fault_that_says_what_was_wrong(env_class, call, message):
    env = checked(env_class)
    with pytest.raises(EnvFault) as raised:
        if call == "reset":
            env.reset(seed=0)
        else:
            env.reset(seed=0)
            for _ in range(40):   # CrashingEnv breaks at its 31st step, the others at their 6th
                env.step(0)
    assert str(raised.value) == message


def test_a_discrete_observation_outside_its_space_and_a_float_image_are_env_faults():
    class OutOfRange(gym.Env):
        observation_space, action_space = gym.spaces.Discrete(4), gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return 4, {}

    class FloatPixels(gym.Env):
        observation_space = gym.spaces.Box(0, 255, shape=(2, 2), dtype=np.uint8)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return np.full((2, 2), 0.5), {}

    with pytest.raises(EnvFault, match=r"^reset returned the observation 4; the observation space declares "
                                       r"Discrete\(4\) \(an integer in \[0, 3\]\)$"):
        ContractChecked(OutOfRange()).reset()
    with pytest.raises(EnvFault, match="^reset returned an observation of dtype float64; the observation space "
                                       "declares uint8$"):
        ContractChecked(FloatPixels()).reset()


def test_a_healthy_env_passes_through_unchanged():
    plain, wrapped = gym.make("CartPole-v1"), ContractChecked(gym.make("CartPole-v1"))
    a, b = plain.reset(seed=3), wrapped.reset(seed=3)
    np.testing.assert_array_equal(a[0], b[0])
    for action in [0, 1, 1, 0, 1]:
        x, y = plain.step(action), wrapped.step(action)
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:4] == y[1:4]
    assert wrapped.spec.max_episode_steps == 500   # the evaluation's horizon still reads the time limit


def rows(path, name):
    return pd.read_csv(path / name).drop(columns=["wall_s"], errors="ignore")


def test_seeds_whose_env_breaks_stop_as_env_faults_and_the_others_are_untouched(tmp_path):
    task = "tests.failing_envs:EvenSeedNaNEnv"   # NaN rewards from the 21st step after an even reset seed
    seeds = list(range(6))
    poisoned = [s for s in seeds if stream_seed(s, "env") % 2 == 0]
    assert 0 < len(poisoned) < len(seeds)
    jobs = [build_job("dqn", task, s, TINY) for s in seeds]
    runs = [RunDir(tmp_path / f"seed{s}") for s in seeds]
    results = run_batch(jobs, runs)
    for seed, run, result in zip(seeds, runs, results, strict=True):
        if seed in poisoned:
            assert isinstance(result, EnvFault)
            error = json.loads((run.path / ERROR).read_text())
            assert error["error"] == "env" and error["env_steps"] == 21 and error["seed"] == seed
            assert error["message"] == (f"env {task} (seed {seed}) at env step 21, in a step: step returned the "
                                        "reward nan; rewards must be finite")
            assert not run.complete
        else:
            assert isinstance(result, dict) and run.complete and not (run.path / ERROR).exists()
    survivor = next(s for s in seeds if s not in poisoned)
    alone = run_batch([build_job("dqn", task, survivor, TINY)], [RunDir(tmp_path / "alone")])[0]
    pd.testing.assert_frame_equal(rows(tmp_path / "alone", "evaluations.csv"),
                                  rows(tmp_path / f"seed{survivor}", "evaluations.csv"))
    assert alone["final_return_mean"] == results[seeds.index(survivor)]["final_return_mean"]


def test_an_env_that_breaks_only_in_evaluation_stops_its_seed_there(tmp_path):
    task = "tests.failing_envs:EvaluationOnlyNaNEnv"
    run = RunDir(tmp_path / "run")
    result = run_batch([build_job("dqn", task, 0, TINY)], [run])[0]
    assert isinstance(result, EnvFault)
    error = json.loads((run.path / ERROR).read_text())
    assert error["message"] == (f"env {task} (seed 0) at env step 200, in a greedy evaluation episode: reset "
                                "returned an observation that is not finite: [nan nan]")
    assert list(pd.read_csv(run.path / "evaluations.csv").env_steps) == [100]   # the first evaluation stands


@pytest.mark.parametrize("env_class,step,what", [
    ("WrongShapeResetEnv", 0, ("at its first reset: reset returned an observation of shape (3,); the observation "
                              "space declares (2,)")),
    ("OldGymApiEnv", 6, ("in a step: step returned 4 values (the old Gym API: obs, reward, done, info); "
                        "Gymnasium's step returns 5: (obs, reward, terminated, truncated, info)")),
    ("CrashingEnv", 31, "in a step: step raised RuntimeError: CrashingEnv broke on purpose"),
    ("NaNObservationEnv", 6, "in a step: step returned an observation that is not finite: [ 0. nan]"),
])
def test_qbench_train_records_an_env_fault_and_says_it_in_one_line(env_class, step, what, tmp_path, capsys):
    task = f"tests.failing_envs:{env_class}"
    out = tmp_path / "run"
    code = cli.main(["train", "dqn", task, "--out", str(out), "--steps", "200", "--set", "hidden_sizes=[8]",
                     "--set", "warmup_env_steps=50", "--set", "eval_episodes=1"])
    err = capsys.readouterr().err
    assert code == 1
    message = f"env {task} (seed 0) at env step {step}, {what}"
    assert err == (f"qbench: the env broke its contract (its fault, not the variant's): {message} (recorded in "
                   f"{out / ERROR})\n")
    error = json.loads((out / ERROR).read_text())
    assert error["error"] == "env" and error["message"] == message


def test_qbench_train_records_a_crash_as_qbench_run_does(tmp_path, capsys, monkeypatch):
    """A crash that is not the env's (here a fault planted in the loss) leaves error.json kind crashed, with the
    traceback, and one line; before, qbench train printed a traceback and wrote nothing."""
    from qbench.training import loop

    def broken(*args, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(loop, "td_step_loss", broken)
    out = tmp_path / "run"
    code = cli.main(["train", "dqn", "CartPole-v1", "--out", str(out), "--steps", "200", "--set",
                     "hidden_sizes=[8]", "--set", "warmup_env_steps=50"])
    err = capsys.readouterr().err
    assert code == 1
    assert err == (f"qbench: training crashed: ZeroDivisionError: planted (the traceback is recorded in "
                   f"{out / ERROR})\n")
    error = json.loads((out / ERROR).read_text())
    assert error["error"] == "crashed" and error["type"] == "ZeroDivisionError" and "Traceback" in error["traceback"]
