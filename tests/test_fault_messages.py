"""Issue 27: inputs that used to be read wrong or end in a traceback: episode_info keys reported at any step, output
folders the kernel refuses, a lock held by another job, small returns, run lengths beyond any machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from qbench import cli
from qbench.cli.common import _check_output_dir
from qbench.cli.train import _final_line
from qbench.config import ConfigError
from qbench.envs.tasks import Task
from qbench.envs.toy import MaximisationBiasEnv
from qbench.jobs import build_job
from qbench.runner.claim import job_lock
from qbench.store import RunDir
from qbench.training.rundir import run_batch

TINY = {"hidden_sizes": [8], "warmup_env_steps": 20, "eval_interval_env_steps": 100, "eval_episodes": 1,
        "total_env_steps": 200, "log_interval_env_steps": 50}


class FirstStepInfoBiasEnv(MaximisationBiasEnv):
    """Example 6.7 written the usual way: whether A went left is in the info of A's step (the episode's first),
    and B's step, the last of a left episode, reports nothing."""

    def step(self, action):
        was_b = self._state == 1
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, ({} if was_b else info)


def _bias_task(keys: tuple[str, ...]) -> Task:
    return Task(f"{__name__}:FirstStepInfoBiasEnv", f"{__name__}:FirstStepInfoBiasEnv", "Example 6.7, first-step info",
                {"gamma": 1.0}, episode_info=keys)


def test_an_info_key_reported_at_the_first_step_is_recorded_for_its_episode(tmp_path):
    """Each episode's `left` is the last value the env reported in it, at any step: a left episode lasts two steps
    (A then B), a right one a single step, so left == (length == 2) row by row. Before, only the last step's info
    was read and every left episode's cell was empty."""
    task = _bias_task(("left",))
    job = build_job("tabular_q", task.name, 0, TINY, extra_tasks={task.name: task})
    run = RunDir(tmp_path / "run")
    summary = run_batch([job], [run])[0]
    episodes = pd.read_csv(run.path / "episodes.csv")
    assert len(episodes) == summary["episodes"] > 50
    assert set(episodes["length"]) == {1, 2}
    assert (episodes["left"] == (episodes["length"] == 2).astype(int)).all()
    assert "episode_info_unseen" not in summary


def test_an_info_key_never_reported_is_said_once_and_kept_in_the_summary(tmp_path):
    task = _bias_task(("left", "right"))
    jobs = [build_job("tabular_q", task.name, seed, TINY, extra_tasks={task.name: task}) for seed in (0, 1)]
    notices: list[str] = []
    results = run_batch(jobs, [RunDir(tmp_path / f"seed{s}") for s in (0, 1)], None,
                        lambda steps, info: notices.append(info["notice"]) if "notice" in info else None)
    assert notices == [("the env never reported info key(s) 'right' in 200 env steps (seeds 0, 1): their cells in "
                        "episodes.csv are empty")]
    assert [r["episode_info_unseen"] for r in results] == [["right"], ["right"]]
    summary = json.loads((tmp_path / "seed0" / "summary.json").read_text())
    assert summary["episode_info_unseen"] == ["right"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and /sys are Linux's")
@pytest.mark.parametrize("argv", [
    ["train", "dqn", "CartPole-v1", "--out", "/proc/qbench-test27"],
    ["train", "dqn", "CartPole-v1", "--seeds", "0-1", "--out", "/sys/qbench-test27"],
    ["run", "sanity", "--results", "/proc/qbench-test27", "--dry-run"],
    ["report", "RESULTS", "--out", "/proc/qbench-test27"],
])
def test_folders_the_kernel_refuses_are_one_line_and_exit_2(argv, tmp_path, capsys):
    if argv[0] == "report":   # a real results folder to report on
        assert cli.main(["train", "dqn", "CartPole-v1", "--out", str(tmp_path / "res" / "run"), "--steps", "100",
                         "--set", "hidden_sizes=[8]", "--set", "warmup_env_steps=20",
                         "--set", "eval_interval_env_steps=100", "--set", "eval_episodes=1"]) == 0
        capsys.readouterr()
        argv = [a.replace("RESULTS", str(tmp_path / "res")) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be written" in err and "Traceback" not in err
    assert not Path(argv[-1] if argv[-1] != "--dry-run" else argv[-2]).exists()


def test_the_probe_leaves_nothing_when_it_succeeds_or_fails(tmp_path, monkeypatch):
    _check_output_dir(tmp_path / "a" / "b" / "c", "--out folder")
    assert list(tmp_path.iterdir()) == []

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("qbench.cli.common.tempfile.mkstemp", full)
    with pytest.raises(ConfigError, match=r"'.*/a/b' cannot be written: No space left on device"):
        _check_output_dir(tmp_path / "a" / "b", "--out folder")
    assert list(tmp_path.iterdir()) == []


def test_a_lock_held_by_another_job_names_that_job(tmp_path, capsys):
    out = tmp_path / "run"
    other = build_job("dqn", "CartPole-v1", 0, {"total_env_steps": 100})
    text = f"dqn on CartPole-v1, seed 0, job {other.hash}"
    argv = ["train", "dqn", "CartPole-v1", "--out", str(out), "--steps", "100"]
    with job_lock(out, text) as held:
        assert held and (out / "lock").read_text() == text + "\n"
        assert cli.main([*argv, "--seed", "1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"qbench: error: another job is training in '{out}' ({text}; this one is dqn on "
                              "CartPole-v1, seed 1, job ")
        assert cli.main([*argv, "--seed", "0"]) == 2   # the very job
        assert "another process is training this job (dqn on CartPole-v1, seed 0" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["lock"]


@pytest.mark.parametrize(("mean", "std", "text"), [
    (0.948, 0.012, "0.948 +- 0.012"),       # three significant digits below 1 (was 0.9 +- 0.0)
    (-0.0461, 0.2, "-0.0461 +- 0.2000"),
    (0.5, 2.0, "0.5 +- 2.0"),               # a spread of 1 or more: one decimal
    (500.0, 0.0, "500.0 +- 0.0"),
    (0.0, 0.0, "0.0 +- 0.0"),
])
def test_the_end_of_run_line_keeps_three_significant_digits_below_one(mean, std, text):
    line = _final_line({"final_return_mean": mean, "final_return_std": std, "env_steps": 100})
    assert line == f"final return {text} at 100 env steps"


@pytest.mark.parametrize("argv", [["--steps", "99999999999999999999999"],
                                  ["--set", "total_env_steps=1000000000001"]])
def test_a_run_longer_than_any_machine_is_refused(argv, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "dqn", "CartPole-v1", "--out", str(out), *argv]) == 2
    assert capsys.readouterr().err.startswith("qbench: error: setting 'total_env_steps' must be <= 1000000000000")
    assert not out.exists()


@pytest.fixture(scope="module")
def bias_run(tmp_path_factory):
    """A finished tabular_q run on the first-step-info MDP: evaluations.csv, summary.json and episodes.csv."""
    task = _bias_task(("left",))
    path = tmp_path_factory.mktemp("bias") / "results" / "run"
    run_batch([build_job("tabular_q", task.name, 0, TINY, extra_tasks={task.name: task})], [RunDir(path)])
    return path


def _damaged_copy(bias_run, tmp_path, name, text):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(bias_run.parent, results)
    (results / "run" / name).write_text(text)
    return results


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("summary.json", "{}", "summary.json has no final_return_mean"),
    ("episodes.csv", "episode,env_steps,return,length,left\n1,2,inf,2,1\n", ("line 2 of episodes.csv: return inf "
                                                                             "is not a finite number")),
    ("episodes.csv", "1,2,0.5,2,1\n2,3,0.0,1,0\n", ("episodes.csv has no episode and env_steps and return and "
                                                    "length column")),
    ("episodes.csv", "episode,env_steps,return,length,left\n1,2,0.5\n2,3,0.0,1,0\n",
     "line 2 of episodes.csv has 3 fields, its header 5"),
])
def test_a_damaged_summary_or_episodes_file_damages_its_run(bias_run, tmp_path, name, text, problem):
    from qbench.loading import load_episodes, load_runs

    results = _damaged_copy(bias_run, tmp_path, name, text)
    runs = load_runs(results)
    assert list(runs["status"]) == ["damaged"]
    assert problem in runs["problems"].iloc[0]
    assert (load_episodes(results)["status"] != "complete").all()


def test_the_healthy_run_reads_complete_with_its_episodes(bias_run):
    from qbench.loading import load_episodes, load_runs

    assert list(load_runs(bias_run.parent)["status"]) == ["complete"]
    assert len(load_episodes(bias_run.parent)) > 50


def test_a_report_of_only_damaged_runs_is_refused_naming_them(bias_run, tmp_path, capsys):
    results = _damaged_copy(bias_run, tmp_path, "summary.json", "{}")
    assert cli.main(["report", str(results), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"qbench: error: every run under '{results}' is damaged (1), so there is nothing to "
                          f"report: {results / 'run'} (summary.json has no final_return_mean)")
    assert not (tmp_path / "rep").exists()
