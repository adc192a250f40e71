import json
import subprocess
import sys

import pytest


def qbench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "qbench", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, check=False)


@pytest.mark.parametrize("args,fragment", [
    (["train", "dqm", "CartPole-v1"], "unknown variant 'dqm'"),
    (["train", "dqn", "CartPol-v1"], "unknown task 'CartPol-v1'"),
    (["train", "dqn", "CartPole-v1", "--set", "lrr=0.1"], "unknown setting 'lrr'"),
    (["train", "dqn", "CartPole-v1", "--set", "loss=l1"], "valid choices: mse, huber"),
    (["train", "dqn", "Pendulum-v1"], "needs a Discrete action space"),
    (["train", "dqn", "CartPole-v1", "--seed", "x"], "invalid int value"),
    (["train", "dqn", "CartPole-v1", "--seed", "-1"], "seed must be a non-negative integer"),
    (["train", "dqn", "CartPole-v1", "--steps", "0"], "total_env_steps' must be >= 1"),
    (["trian"], "invalid choice: 'trian'"),
])
def test_user_mistakes_are_one_line_exit_2_no_traceback(args, fragment, tmp_path):
    r = qbench(*args, "--out", str(tmp_path / "run")) if args[0] == "train" else qbench(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert fragment in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_list_shows_variants_tasks_settings():
    out = qbench("list", "variants").stdout
    assert all(name in out for name in ("dqn", "double_dqn", "nstep_dqn", "online_q", "fitted_q"))
    assert "CartPole-v1" in qbench("list", "tasks").stdout
    assert "huber_delta" in qbench("list", "settings").stdout


def test_train_writes_a_complete_run_directory(tmp_path):
    out = tmp_path / "run"
    r = qbench("train", "double_dqn", "CartPole-v1", "--seed", "3", "--steps", "1200", "--out", str(out),
               "--set", "eval_interval_env_steps=600", "--set", "eval_episodes=2", "--set", "warmup_env_steps=500")
    assert r.returncode == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["variant"] == "double_dqn" and config["seed"] == 3 and config["config"]["target"] == "double"
    meta = json.loads((out / "metadata.json").read_text())
    assert {"git_commit", "versions", "command", "wall_s"} <= set(meta) and "torch" in meta["versions"]
    evals = (out / "evaluations.csv").read_text().splitlines()
    assert evals[0].startswith("env_steps,return_mean,return_std") and len(evals) == 3   # header + 600 + 1200
    assert "td_loss" in (out / "diagnostics.csv").read_text().splitlines()[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] == 1200 and summary["final_return_mean"] == float(evals[-1].split(",")[1])
    assert {"wall_s", "steps_per_s"} <= set(summary)
    # a second run into the same directory is refused and leaves the first untouched
    again = qbench("train", "dqn", "CartPole-v1", "--steps", "100", "--out", str(out))
    assert again.returncode == 2 and "already holds files" in again.stderr
    assert json.loads((out / "summary.json").read_text()) == summary
