import json

import pandas as pd
import pytest

from qbench.engine import run_job
from qbench.jobs import build_job
from qbench.store import CHECKPOINT, RunDir

CARTPOLE = {"total_env_steps": 1500, "warmup_env_steps": 300, "eval_interval_env_steps": 500, "eval_episodes": 2,
            "hidden_sizes": [32, 32], "checkpoint_interval_env_steps": 300, "log_interval_env_steps": 250}
PENDULUM = {"total_env_steps": 1000, "warmup_env_steps": 200, "eval_interval_env_steps": 500, "eval_episodes": 1,
            "hidden_sizes": [32, 32], "checkpoint_interval_env_steps": 200, "log_interval_env_steps": 250,
            "batch_size": 32, "cem_population": 16, "cem_elites": 4, "action_noise": "ou"}
WALL_CLOCK = ["wall_s", "steps_per_s"]


class Interrupt(Exception):
    pass


def interrupt_after_checkpoint(n):
    seen = []

    def progress(env_steps, info):
        if "checkpoint" in info:
            seen.append(env_steps)
            if len(seen) == n:
                raise Interrupt(env_steps)
    return progress


def rows(path, name):
    return pd.read_csv(path / name).drop(columns=WALL_CLOCK, errors="ignore")


@pytest.mark.parametrize("variant,task,settings,n", [
    ("dqn", "CartPole-v1", {**CARTPOLE, "n_step": 3, "nstep_correction": "cut"}, 2),
    ("ddpg", "Pendulum-v1", PENDULUM, 2),
    ("cem_q", "Pendulum-v1", PENDULUM, 3),
])
def test_a_resumed_run_equals_an_uninterrupted_one(variant, task, settings, n, tmp_path):
    job = build_job(variant, task, 5, settings)
    straight = run_job(job, RunDir(tmp_path / "straight"))

    interrupted = RunDir(tmp_path / "interrupted")
    with pytest.raises(Interrupt) as info:
        run_job(job, interrupted, progress=interrupt_after_checkpoint(n))
    stopped_at = info.value.args[0]
    assert (interrupted.path / CHECKPOINT).exists() and not interrupted.complete
    resumed = run_job(job, interrupted)

    for name in ("evaluations.csv", "diagnostics.csv"):
        pd.testing.assert_frame_equal(rows(tmp_path / "straight", name), rows(interrupted.path, name))
    for key in ("final_return_mean", "grad_steps", "episodes"):
        assert straight[key] == resumed[key]
    meta = json.loads((interrupted.path / "metadata.json").read_text())
    assert [r["from_env_steps"] for r in meta["resumed"]] == [stopped_at]
    assert not (interrupted.path / CHECKPOINT).exists()     # removed once complete


def test_a_checkpoint_of_another_job_is_ignored(tmp_path):
    job = build_job("dqn", "CartPole-v1", 0, CARTPOLE)
    with pytest.raises(Interrupt):
        run_job(job, RunDir(tmp_path), progress=interrupt_after_checkpoint(1))
    other = build_job("dqn", "CartPole-v1", 1, CARTPOLE)
    summary = run_job(other, RunDir(tmp_path))
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert "resumed" not in meta and summary["seed"] == 1
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 1
