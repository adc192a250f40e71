import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qbench import cli
from qbench.cli import run as cli_run
from tests.harness import evaluation_rows, popen_qbench, run_qbench


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
    (["train", "dqn", "CartPole-v1", "--seed", "-1"], "seed must be an integer in 0..9223372036854775807 (2^63 - 1), got -1"),
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
    # another job into the same directory is refused and leaves the first untouched
    again = qbench("train", "dqn", "CartPole-v1", "--steps", "100", "--out", str(out))
    assert again.returncode == 2 and "holds another job (double_dqn on CartPole-v1, seed 3" in again.stderr
    assert json.loads((out / "summary.json").read_text()) == summary


# --- bad paths, names and options: one line naming the problem, exit 2, nothing written and nothing lost

@pytest.fixture
def keep(tmp_path):
    """A regular file that a mistaken command must leave as it was."""
    path = tmp_path / "FILE"
    path.write_text("keep me\n")
    return path


@pytest.mark.parametrize("args,fragment", [
    (["train", "dqn", "CartPole-v1", "--out", "{file}"], "run directory '{file}' is a file, not a folder"),
    (["train", "dqn", "CartPole-v1", "--out", "{file}", "--dry-run"], "run directory '{file}' is a file"),
    (["train", "dqn", "CartPole-v1", "--out", "{file}/run"], "cannot be created: '{file}' is a file"),
    (["report", "{tmp}", "--out", "{file}"], "report folder '{file}' is a file, not a folder"),
    (["run", "smoke", "--results", "{file}"], "results folder '{file}' is a file, not a folder"),
    (["run", "smoke", "--results", "{file}", "--dry-run"], "results folder '{file}' is a file, not a folder"),
    (["sanity", "--results", "{file}", "--dry-run"], "results folder '{file}' is a file, not a folder"),
    (["train", "dqn", "collections:OrderedDict"],
     "'collections:OrderedDict' is a class but not a gymnasium.Env subclass; a module:Class task must name"),
    (["train", "dqn", "os:sep"], "'os:sep' is a str, not a gymnasium Env class"),
    (["train", "dqn", "qbench_no_such_module:Env"], "cannot load environment class 'qbench_no_such_module:Env'"),
    (["train", "dqn", "qbench.config:Config"], "'qbench.config:Config' is a class but not a gymnasium.Env"),
    (["report", "{file}"], "'{file}' is a file, not a results folder"),
    (["report", "{tmp}/nowhere"], "results folder '{tmp}/nowhere' does not exist"),
    (["run", "{file}"], "'{file}' is not a suite file (a suite is a .toml file); valid suites: atari-smoke, atari100k, atari57, classic,"),
    (["run", "notes.txt"], "'notes.txt' is neither a suite name nor a .toml file; valid suites: atari-smoke, atari100k, atari57, classic,"),
    (["run", "{tmp}"], "'{tmp}' is a folder, not a suite"),
    (["run", "smoke", "--ray-address", "10.0.0.5:6379", "--dry-run"], "--ray-address needs --backend ray"),
    (["sanity", "--ray-address", "10.0.0.5:6379"], "--ray-address needs --backend ray"),
    (["sanity", "--workers", "0", "--dry-run"], "--workers must be a positive integer"),
    (["sanity", "--first-seed", "-5", "--dry-run"], "--first-seed must be an integer in 0.."),
    (["train", "dqn", "CartPole-v1", "--seed", str(2 ** 64)],   # results store seeds as 64-bit integers
     "seed must be an integer in 0..9223372036854775807 (2^63 - 1), got 18446744073709551616"),
])
def test_bad_paths_and_options_are_one_line_exit_2_and_lose_nothing(args, fragment, tmp_path, keep, capsys,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    fill = {"file": str(keep), "tmp": str(tmp_path)}
    code = cli.main([a.format(**fill) for a in args])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qbench: error: "), err
    assert fragment.format(**fill) in lines[0]
    assert keep.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"]   # nothing written


@pytest.mark.parametrize("where", ["run directory", "variant folder"])
def test_a_file_where_a_jobs_run_directory_goes_is_one_line_exit_2_before_any_job(where, tmp_path, capsys):
    """A worker that meets a file at its run path dies on it; the runner used to die with it, blaming another
    job. Refused before anything runs, naming the file and the job."""
    results = tmp_path / "results"
    assert cli.main(["run", "smoke", "--results", str(results), "--dry-run"]) == 0
    header, rows = _plain_table(capsys.readouterr().out)
    row = rows[0]
    task, variant, seed, job_hash = (row[header.index(c)] for c in ("task", "variant", "seed", "job hash"))
    folder = results / "smoke" / task / variant
    folder.parent.mkdir(parents=True)
    if where == "run directory":
        folder.mkdir()
        blocker = folder / f"seed{seed}-{job_hash}"
    else:
        blocker = folder
    blocker.write_text("keep me\n")
    before = sorted(results.rglob("*"))
    for extra in ([], ["--dry-run"]):
        assert cli.main(["run", "smoke", "--results", str(results), *extra]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"'{blocker}' is a file where the run directory of {task} {variant}" in lines[0]
    assert blocker.read_text() == "keep me\n" and sorted(results.rglob("*")) == before   # nothing written


@pytest.mark.parametrize("seeds", [[], ["--seeds", "0-1"]])
@pytest.mark.parametrize("name", ["run[abc]", "x[/y]z", "s[bold]"])
def test_paths_with_brackets_are_printed_whole(name, seeds, tmp_path, capsys):
    """rich reads '[...]' as markup: a path holding one was cut short, or the command died on it."""
    out = tmp_path / name
    tiny = ["--set", "total_env_steps=200", "--set", "warmup_env_steps=50", "--set", "eval_episodes=1",
            "--set", "hidden_sizes=[8]"]
    assert cli.main(["train", "dqn", "CartPole-v1", *tiny, *seeds, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    shown = [str(out / f"seed{s}") for s in (0, 1)] if seeds else [str(out)]
    assert all(f"-> {path}\n" in printed for path in shown), printed


def test_a_rich_table_title_and_a_failed_job_line_keep_their_brackets():
    import io

    from rich.console import Console

    from qbench.jobs import build_job
    from qbench.runner.progress import RichReporter, print_table
    from qbench.runner.run import Outcome
    console = Console(file=io.StringIO(), force_terminal=True, width=200, color_system=None)
    print_table(console, "jobs in /r/x[/y]z and /r/s[bold]", ["a"], [["1" * 60]])   # wide: the title on one line
    assert "jobs in /r/x[/y]z and /r/s[bold]" in console.file.getvalue()

    job = build_job("dqn", "CartPole-v1", 0, {})
    reporter = RichReporter(console, "suite [x]", "local processes")
    reporter.start(1, [job], 1)
    reporter.finished(Outcome(job, Path("/r"), "failed", error={
        "error": "crashed", "type": "RuntimeError", "message": "bad action [/cpu] in [bold]step"}))
    reporter.close()
    printed = console.file.getvalue()
    assert "suite [x]: 1 jobs" in printed
    assert "FAILED CartPole-v1 dqn seed 0: crashed: RuntimeError: bad action [/cpu] in [bold]step" in printed


def test_a_module_class_that_is_a_gymnasium_env_still_works_as_a_task(tmp_path, capsys):
    assert cli.main(["train", "ddpg", "tests.bounds_env:BoundsCheckingEnv", "--dry-run", "--out",
                     str(tmp_path / "run")]) == 0
    assert "ddpg on tests.bounds_env:BoundsCheckingEnv" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()


# --- output that other programs read

def _plain_table(text: str) -> tuple[list[str], list[list[str]]]:
    """A listing printed to a pipe: '# title', a tab-separated header line, then tab-separated rows."""
    lines = text.rstrip("\n").splitlines()
    assert lines[0].startswith("# "), text
    header, *rows = [line.split("\t") for line in lines[1:]]
    assert all(len(r) == len(header) for r in rows), text
    return header, rows


@pytest.mark.parametrize("args,column,names", [
    (["list", "variants"], "variant", ["double_nstep_huber_dqn", "dqn", "online_q", "naf", "ddpg"]),
    (["list", "tasks"], "task", ["LunarLanderContinuous-v3", "MountainCarContinuous-v0", "CartPole-v1"]),
    (["list", "settings"], "setting", ["checkpoint_interval_env_steps", "temperature_decay_fraction"]),
    (["list", "suites"], "suite", ["smoke", "sanity", "classic", "continuous", "mujoco", "full"]),
    (["run", "smoke", "--dry-run", "--results", "{tmp}"], "variant", ["dqn", "double_dqn", "ddpg", "naf"]),
])
def test_listings_in_a_pipe_are_full_width_tab_separated_rows(args, column, names, tmp_path):
    r = qbench(*[a.format(tmp=tmp_path / "results") for a in args])
    assert r.returncode == 0, r.stderr
    header, rows = _plain_table(r.stdout)
    values = [row[header.index(column)] for row in rows]
    assert set(names) <= set(values), values
    assert "…" not in r.stdout and not (tmp_path / "results").exists()


def test_list_tasks_shows_each_tasks_tuned_settings(capsys):
    from qbench.envs.tasks import TASKS

    assert cli.main(["list", "tasks"]) == 0
    header, rows = _plain_table(capsys.readouterr().out)
    tuned = {row[0]: row[header.index("tuned settings")] for row in rows}
    assert set(tuned) == set(TASKS)
    assert "lr=0.0023" in tuned["CartPole-v1"] and "hidden_sizes=[256, 256]" in tuned["CartPole-v1"]
    assert "target_period_grad_steps=150" in tuned["MountainCar-v0"]


def test_a_closed_pipe_ends_quietly():
    """qbench run smoke --dry-run | head -3: the reader has gone; no BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)   # the reader is gone before qbench writes a byte
    proc = subprocess.run([sys.executable, "-m", "qbench", "run", "smoke", "--dry-run"], stdout=write_end,
                          stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    os.close(write_end)
    assert proc.returncode in (0, 141) and proc.stderr == "", proc.stderr


# --- qbench train: dry run, resume, complete runs

def _sources(out: str) -> dict[str, tuple[str, str]]:
    header, rows = _plain_table(out)
    assert header == ["setting", "value", "from"]
    return {name: (value, source) for name, value, source in rows}


def test_train_dry_run_shows_every_resolved_setting_and_its_source_and_writes_nothing(tmp_path, capsys):
    from qbench.config import SETTINGS

    out = tmp_path / "run"
    assert cli.main(["train", "double_dqn", "CartPole-v1", "--dry-run", "--set", "lr=1e-3", "--set", "tau=0.01",
                     "--steps", "5000", "--seed", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    settings = _sources(printed)
    assert set(settings) == set(SETTINGS)
    assert settings["lr"] == ("0.001", "--set") and settings["tau"] == ("0.01", "--set")
    assert settings["total_env_steps"] == ("5000", "--steps")
    assert settings["target"] == ("double", "variant")
    assert settings["hidden_sizes"] == ("[256, 256]", "task") and settings["gamma"] == ("0.99", "task")
    assert settings["optimizer"] == ("adam", "default") and settings["eval_episodes"][1] == "default"
    assert "double_dqn on CartPole-v1, seed 2: job" in printed and "a new run" in printed
    assert not out.exists()


def test_resolve_with_sources_matches_resolve():
    from qbench.config import VARIANTS, resolve, resolve_with_sources
    from qbench.envs.tasks import TASKS

    task = TASKS["CartPole-v1"].settings
    cfg, sources = resolve_with_sources(VARIANTS["huber_dqn"], task, ("suite", {"lr": 1e-4}),
                                        ("--set", {"lr": 2e-4, "gamma": 0.9}))
    assert cfg == resolve(VARIANTS["huber_dqn"], task, {"lr": 1e-4}, {"lr": 2e-4, "gamma": 0.9})
    assert sources["lr"] == "--set" and sources["gamma"] == "--set" and sources["loss"] == "variant"
    assert sources["batch_size"] == "task" and sources["tau"] == "default"


TINY = ["train", "dqn", "CartPole-v1", "--steps", "3000", "--set", "checkpoint_interval_env_steps=300",
        "--set", "eval_interval_env_steps=1000", "--set", "eval_episodes=2", "--set", "hidden_sizes=[32,32]",
        "--set", "warmup_env_steps=300"]


def _evaluations(run_dir: Path) -> list[tuple]:
    rows = evaluation_rows(run_dir)
    return [tuple(v for k, v in row.items() if k != "wall_s") for row in rows]


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "run"
    r = run_qbench(*TINY, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def _interrupt_at_first_checkpoint(out: Path, sig: int) -> subprocess.CompletedProcess:
    # Ctrl-C in a terminal reaches a process whose SIGINT is at its default; a job started in the background of a
    # non-interactive shell (a CI script run with `&`) inherits SIGINT ignored, and Python keeps ignoring it.
    proc = popen_qbench(*TINY, "--out", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.01)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert not (out / "summary.json").exists(), "the signal came too late to interrupt the run"
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_train_killed_then_run_again_resumes_and_ends_with_the_uninterrupted_numbers(tiny_reference, tmp_path):
    out = tmp_path / "run"
    killed = _interrupt_at_first_checkpoint(out, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    again = run_qbench(*TINY, "--out", out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming the interrupted run in {out}" in again.stdout
    assert _evaluations(out) == _evaluations(tiny_reference)
    assert json.loads((out / "metadata.json").read_text())["resumed"], "the engine did not resume"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_return_mean"] == json.loads((tiny_reference / "summary.json").read_text())[
        "final_return_mean"]

    # a complete run is not trained again: it says so, with its final return
    files = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    done = run_qbench(*TINY, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "already holds this job, complete" in done.stdout
    assert f"final return {summary['final_return_mean']:.1f}" in done.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == files

    # another job into the same directory is still refused
    other = run_qbench(*TINY, "--seed", "1", "--out", out)
    assert other.returncode == 2 and "holds another job" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


def test_ctrl_c_of_train_says_the_command_that_resumes_and_exits_130(tiny_reference, tmp_path):
    out = tmp_path / "run"
    stopped = _interrupt_at_first_checkpoint(out, signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    (line,) = stopped.stderr.strip().splitlines()
    assert line.startswith("qbench: interrupted; run the same command again to resume: qbench train dqn")
    command = shlex.split(line.split("resume: ", 1)[1])
    assert command == ["qbench", *TINY, "--out", str(out)]
    again = run_qbench(*command[1:])
    assert again.returncode == 0, again.stdout + again.stderr
    assert _evaluations(out) == _evaluations(tiny_reference)


def test_version_names_the_package_version_and_the_git_commit():
    from importlib import metadata

    from qbench.store import git_commit

    r = qbench("--version")
    assert r.returncode == 0, r.stderr
    commit = git_commit()
    assert r.stdout.strip() == f"qbench {metadata.version('qbench')}" + (
        f" (git {commit})" if commit != "unknown" else "")


def test_sanity_dry_run_lists_the_jobs_and_writes_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    assert cli.main(["sanity", "--dry-run", "--results", str(results), "--only", "task=CartPole-v1",
                     "--only", "seed=0"]) == 0
    header, rows = _plain_table(capsys.readouterr().out)
    assert {row[header.index("variant")] for row in rows} >= {"dqn", "double_dqn", "online_q", "fitted_q"}
    assert {row[header.index("state")] for row in rows} == {"new"}
    assert not results.exists()


def test_list_suites_says_which_are_yours_and_which_are_shipped(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "mine.toml").write_text('seeds = 1\nvariants = ["dqn"]\n[tasks."CartPole-v1"]\n')
    (tmp_path / "suites" / "latin1.toml").write_bytes('description = "caf\u00e9"\n'.encode("latin-1"))
    assert cli.main(["list", "suites"]) == 0
    header, rows = _plain_table(capsys.readouterr().out)
    where = {row[0]: row[header.index("from")] for row in rows}
    assert where["mine"] == "./suites" and where["smoke"] == "shipped" and where["sanity"] == "shipped"
    latin1 = next(row for row in rows if row[0] == "latin1")   # listed as invalid; the listing goes on
    assert "not UTF-8 text (byte 0xe9" in latin1[header.index("description")]


@pytest.mark.parametrize("command", ["run", "sanity"])
def test_ctrl_c_of_a_suite_run_says_the_command_that_resumes_and_exits_130(command, tmp_path, monkeypatch,
                                                                          capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_run, "_run_suite", interrupted)
    args = [command, *(["smoke"] if command == "run" else []), "--results", str(tmp_path / "my results"),
            "--only", "seed=0"]
    assert cli.main(args) == 130
    err = capsys.readouterr().err
    assert err == f"qbench: interrupted; run the same command again to resume: {shlex.join(['qbench', *args])}\n"


def test_train_says_when_a_seed_is_flagged_by_the_divergence_watch_and_runs_on(tmp_path):
    """TwoStateChain at gamma 0.9 (one value scale: 50) with the warning at 0.05 scales (|Q| 2.5), which the table
    passes within 2000 env steps (tests/test_tabular.py): one line says so, the run completes, exit 0."""
    r = qbench("train", "tabular_q", "qbench/TwoStateChain-v0", "--steps", "2000", "--out", str(tmp_path / "run"),
               "--set", "gamma=0.9", "--set", "eval_interval_env_steps=1000", "--set", "eval_episodes=1",
               "--set", "divergence_stop_factor=0", "--set", "divergence_warn_factor=0.05")
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stdout.splitlines() if "divergence warning" in line]
    assert len(warned) == 1 and "above the divergence warning level 0.05 x max(r_max, 1)" in warned[0], r.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["divergence_watch"]["first_warned_env_step"] == int(warned[0].split("env_steps=")[1].split()[0])
