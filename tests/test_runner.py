"""qbench run end to end: layout, skipping complete jobs, failures, SIGKILL and rerun, two runners, Ray."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import qbench
from qbench.config import ConfigError
from qbench.runner import Outcome
from qbench.runner.sanity import judge
from qbench.runner.worker import qbench_version
from qbench.suites import SUITES_DIR, load_suite
from tests.harness import (
    REPO,
    complete_dirs,
    env_with_repo,
    evaluation_rows,
    popen_qbench,
    results_without_wall_time,
    run_dirs,
    run_qbench,
    snapshot,
)

SMOKE_JOBS = 8


@pytest.fixture(scope="module")
def smoke_reference(tmp_path_factory):
    """One uninterrupted run of the smoke suite: the numbers every other run must reproduce."""
    results = tmp_path_factory.mktemp("reference")
    r = run_qbench("run", "smoke", "--results", results, "--workers", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    return results, r


def test_smoke_run_writes_the_layout_and_a_summary(smoke_reference):
    results, r = smoke_reference
    dirs = run_dirs(results)
    assert len(dirs) == SMOKE_JOBS and complete_dirs(results) == dirs
    for d in dirs:
        suite, task, variant, leaf = d.relative_to(results).parts
        config = json.loads((d / "config.json").read_text())
        assert (suite, task, variant) == ("smoke", config["task"], config["variant"])
        assert leaf.startswith(f"seed{config['seed']}-")
        assert {"config.json", "metadata.json", "evaluations.csv", "diagnostics.csv", "summary.json",
                "runner.json"} <= {f.name for f in d.iterdir()}
        runner = json.loads((d / "runner.json").read_text())
        assert runner["attempts"] == 1 and len(runner["attempt_history"]) == 1
        assert runner["qbench_version"] == qbench_version() and runner["git_commit"]
        assert not list(d.glob(".*.tmp"))
    assert "8 jobs: 8 ran now, 0 already complete, 0 failed" in r.stdout
    assert re.search(r"CartPole-v1\s+dqn\s+2/2\s+0", r.stdout)   # the end-of-run table


def test_rerun_skips_complete_jobs_and_touches_nothing(smoke_reference):
    results, _ = smoke_reference
    before = snapshot(run_dirs(results))
    r = run_qbench("run", "smoke", "--results", results, "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "8 already complete, 0 to run" in r.stdout
    assert snapshot(run_dirs(results)) == before


def test_load_results_one_row_per_evaluation_with_the_documented_columns(smoke_reference):
    results, _ = smoke_reference
    df = qbench.load_results(results)
    assert list(df.columns)[:15] == ["suite", "task", "variant", "seed", "env_steps", "return_mean",
                                     "return_std",
                                     "return_min", "return_max", "n_episodes", "grad_steps", "wall_s",
                                     "complete",
                                     "failed", "attempts"]
    assert {"job_hash", "run_dir", "env_id"} <= set(df.columns)
    assert len(df) == SMOKE_JOBS * 2 and df["complete"].all() and (df["suite"] == "smoke").all()
    assert sorted(df[df.task == "CartPole-v1"].env_steps.unique()) == [300, 600]
    for run_dir, group in df.groupby("run_dir"):
        assert run_dir.endswith(group.job_hash.iloc[0])
    with pytest.raises(ConfigError, match=r"^results folder '.*nothing-here' does not exist$"):   # as the CLI says
        qbench.load_results(results / "nothing-here")


def test_report_of_real_runs_uses_the_suite_record_and_logs_overestimation(smoke_reference, tmp_path):
    results, _ = smoke_reference
    record = json.loads((results / "smoke" / "suite.json").read_text())
    assert record["tasks"]["Pendulum-v1"]["random_score"] == -1207.6
    r = run_qbench("report", results, "--out", tmp_path / "report", "--formats", "md,csv", "--reps", "200")
    assert r.returncode == 0, r.stderr
    aggregate = (tmp_path / "report" / "csv" / "aggregate.csv").read_text()
    for variant in ("dqn", "double_dqn", "ddpg", "naf"):
        assert f"\n{variant},IQM,1,2," in aggregate     # normalised with the suite's scores: 1 task, 2 runs
    over = (tmp_path / "report" / "csv" / "overestimation.csv").read_text().splitlines()
    # CartPole's 2 variants x 2 evaluations; Pendulum's 200-step episodes are shorter than the 228 steps gamma 0.98
    # needs for a known return, so its runs log none (NaN) and have no row
    assert len(over) == 1 + 2 * 2 and all(line.startswith("CartPole-v1,") for line in over[1:])
    assert "## Overestimation" in (tmp_path / "report" / "report.md").read_text()


def test_import_qbench_and_load_results_never_import_torch(smoke_reference):
    results, _ = smoke_reference
    code = ("import sys, qbench; assert 'torch' not in sys.modules and 'pandas' not in sys.modules; "
            f"df = qbench.load_results({str(results)!r}); assert len(df) == 16; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env_with_repo(), capture_output=True,
                       text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr


FAILING_SUITE = """
    seeds = 2
    [budget]
    total_env_steps = 200
    eval_interval_env_steps = 100
    eval_episodes = 1
    [settings]
    hidden_sizes = [16]
    warmup_env_steps = 50
    env_steps_per_update = 4
    [tasks."CartPole-v1"]
    variants = ["dqn"]
    [tasks.crashing]
    env_id = "tests.failing_envs:CrashingEnv"
    variants = ["dqn"]
    [tasks.nan_reward]
    env_id = "tests.failing_envs:NaNRewardEnv"
    variants = ["dqn"]
    [tasks.huge_reward]
    env_id = "tests.failing_envs:HugeRewardEnv"
    variants = ["dqn"]
"""


def test_an_env_fault_or_diverged_job_is_recorded_and_the_others_complete(tmp_path):
    suite = tmp_path / "failing.toml"
    suite.write_text(textwrap.dedent(FAILING_SUITE))
    results = tmp_path / "results"
    r = run_qbench("run", suite, "--results", results, "--workers", "2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "8 jobs: 2 ran now, 0 already complete, 6 failed" in r.stdout
    root = results / "failing"
    assert len(complete_dirs(root / "CartPole-v1")) == 2
    for d in run_dirs(root / "crashing"):   # an env that raises in step: the env's fault, named with its step
        error = json.loads((d / "error.json").read_text())
        seed = json.loads((d / "config.json").read_text())["seed"]
        assert error["error"] == "env" and error["type"] == "EnvFault" and error["env_steps"] == 31
        assert error["message"] == (f"env crashing (tests.failing_envs:CrashingEnv) (seed {seed}) at env step "
                                    "31, in a step: step raised RuntimeError: CrashingEnv broke on purpose")
        assert "raise RuntimeError(\"CrashingEnv broke on purpose\")" in error["traceback"]   # the env's own line
        assert not (d / "summary.json").exists()
    for d in run_dirs(root / "nan_reward"):   # NaN rewards: the env's fault, not a divergence of dqn
        error = json.loads((d / "error.json").read_text())
        assert error["error"] == "env" and error["message"].endswith(
            "at env step 1, in a step: step returned the reward nan; rewards must be finite")
    for d in run_dirs(root / "huge_reward"):   # finite rewards of 1e30: the TD loss overflows, dqn diverges
        error = json.loads((d / "error.json").read_text())
        assert error["error"] == "diverged" and error["type"] == "DivergedError"
        assert error["message"].startswith("TD loss became inf") and "divergence_watch" in error
    failed_line = (r"^FAILED crashing dqn seed \d: env fault \(the env's, not the variant's\): EnvFault: env crashing "
                   r"\(tests.failing_envs:CrashingEnv\) \(seed \d\) at env step 31, in a step: step raised "
                   r"RuntimeError: CrashingEnv broke")
    assert len(re.findall(failed_line, r.stdout, re.MULTILINE)) == 2, r.stdout   # the end-of-run list, one per job
    assert "run again to retry the failed jobs" in r.stdout
    df = qbench.load_results(results)
    assert set(df[df.complete].task) == {"CartPole-v1"}

    # Running again retries the failed jobs (a second attempt) and leaves the complete ones alone.
    before = snapshot(complete_dirs(root))
    again = run_qbench("run", suite, "--results", results, "--workers", "2")
    assert again.returncode == 1 and "2 already complete" in again.stdout and "6 failed" in again.stdout
    assert snapshot(complete_dirs(root)) == before
    for d in run_dirs(root / "crashing"):
        assert json.loads((d / "runner.json").read_text())["attempts"] == 2


def test_a_worker_process_that_dies_is_a_failed_job_and_the_pool_goes_on(tmp_path):
    suite = tmp_path / "hard.toml"
    suite.write_text(textwrap.dedent(FAILING_SUITE.split("[tasks.crashing]")[0] + """
        [tasks.hard_crash]
        env_id = "tests.failing_envs:HardCrashEnv"
        variants = ["dqn"]
    """))
    results = tmp_path / "results"
    # One worker, so the job that killed the pool is known; it is tried once more, then recorded as failed.
    r = run_qbench("run", suite, "--results", results, "--workers", "1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "4 jobs: 2 ran now, 0 already complete, 2 failed" in r.stdout
    assert len(complete_dirs(results / "hard" / "CartPole-v1")) == 2
    for d in run_dirs(results / "hard" / "hard_crash"):
        error = json.loads((d / "error.json").read_text())
        assert error["error"] == "crashed" and "worker process died" in error["message"]
        assert json.loads((d / "runner.json").read_text())["attempts"] == 2


def test_runner_json_records_the_code_version_of_every_attempt(tmp_path, monkeypatch):
    from importlib import metadata

    from qbench.runner import worker

    monkeypatch.setattr(worker, "git_commit", lambda: "aaaa111")
    worker._record_attempt(tmp_path, "smoke")
    monkeypatch.setattr(worker, "git_commit", lambda: "bbbb222-dirty")
    assert worker._record_attempt(tmp_path, "smoke") == 2
    runner = json.loads((tmp_path / "runner.json").read_text())
    assert runner["suite"] == "smoke" and runner["attempts"] == 2
    assert runner["qbench_version"] == metadata.version("qbench") and runner["git_commit"] == "bbbb222-dirty"
    history = runner["attempt_history"]
    assert [a["git_commit"] for a in history] == ["aaaa111", "bbbb222-dirty"]
    for a in history:
        assert set(a) == {"qbench_version", "git_commit", "started_at", "host"}
        assert a["qbench_version"] == metadata.version("qbench") and a["host"]
    assert history[0]["started_at"] < history[1]["started_at"]
    assert runner["attempt_started_at"] == history[1]["started_at"]


def test_a_failed_job_is_retried_and_its_old_error_removed(tmp_path):
    from qbench.runner import expand, run_path

    job = expand(load_suite(SUITES_DIR / "smoke.toml"))[0]
    path = run_path(tmp_path, "smoke", job)
    path.mkdir(parents=True)
    (path / "error.json").write_text('{"error": "crashed", "message": "an earlier failure"}')
    (path / ".evaluations.csv.x1.tmp").write_text("half-writ")   # left by a killed writer
    r = run_qbench("run", "smoke", "--results", tmp_path, "--only", "task=CartPole-v1",
                   "--only", "variant=dqn",
                   "--only", "seed=0", "--workers", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (path / "summary.json").exists() and not (path / "error.json").exists()
    assert not list(path.glob(".*.tmp"))


def _wait_for(predicate, timeout_s: float, proc=None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"runner exited early with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def kill_after_completions(results, n_complete: int) -> None:
    """Start the smoke suite and SIGKILL the runner and its workers once n_complete jobs have finished."""
    proc = popen_qbench("run", "smoke", "--results", results, "--workers", "2", start_new_session=True,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: len(complete_dirs(results)) >= n_complete, 240, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the whole group: the runner and its pool workers
        proc.wait()
    _wait_for(lambda: not _group_alive(proc.pid), 30)


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (zombies left unreaped by a container's init count as dead)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def test_sigkill_then_rerun_loses_nothing_rewrites_nothing_and_matches_an_uninterrupted_run(tmp_path,
                                                                                          smoke_reference):
    reference, _ = smoke_reference
    results = tmp_path / "results"
    kill_after_completions(results, 2)
    finished = complete_dirs(results)
    assert 2 <= len(finished) < SMOKE_JOBS, "the kill came too late to interrupt anything"
    before = snapshot(finished)

    r = run_qbench("run", "smoke", "--results", results, "--workers", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(finished)} already complete" in r.stdout
    assert len(complete_dirs(results)) == SMOKE_JOBS
    after = snapshot(finished)
    assert after == before, "a run that was complete before the kill was rewritten"
    for d in run_dirs(results):
        steps = [row["env_steps"] for row in evaluation_rows(d)]
        assert len(steps) == len(set(steps)), f"duplicate evaluation rows in {d}"
        assert not list(d.glob(".*.tmp"))
    assert results_without_wall_time(results) == results_without_wall_time(reference)


def test_two_runners_on_one_folder_run_each_job_exactly_once(tmp_path, smoke_reference):
    reference, _ = smoke_reference
    results = tmp_path / "results"
    procs = [popen_qbench("run", "smoke", "--results", results, "--workers", "2", stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out + err
    ran = [set(re.findall(r"\] done (\S+ \S+ seed \d+)", out)) for out, _ in outputs]
    assert not ran[0] & ran[1], f"jobs run by both runners: {ran[0] & ran[1]}"
    assert len(ran[0] | ran[1]) == SMOKE_JOBS
    for d in run_dirs(results):
        assert json.loads((d / "runner.json").read_text())["attempts"] == 1
    assert len(complete_dirs(results)) == SMOKE_JOBS
    assert results_without_wall_time(results) == results_without_wall_time(reference)


def test_ray_backend_runs_the_smoke_suite_like_the_local_one(tmp_path, smoke_reference):
    pytest.importorskip("ray", reason="the Ray backend needs the ray extra: pip install 'qbench[ray]'")
    reference, _ = smoke_reference
    results = tmp_path / "results"
    # --workers 2 with no address: the runner calls ray.init(num_cpus=2) on this machine.
    r = run_qbench("run", "smoke", "--backend", "ray", "--workers", "2", "--results", results, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "on Ray (2 at a time)" in r.stdout
    assert len(complete_dirs(results)) == SMOKE_JOBS
    assert results_without_wall_time(results) == results_without_wall_time(reference)


# --- sanity: the pass rule and the command

def _outcome(job, final):
    if final is None:
        return Outcome(job, REPO, "failed", error={"error": "crashed"})
    return Outcome(job, REPO, "done", {"final_return_mean": final})


def test_sanity_rule_needs_min_passing_seeds_at_or_above_the_threshold():
    from qbench.runner import expand

    suite = load_suite(SUITES_DIR / "sanity.toml")   # CartPole-v1: 3 of 6 seeds
    jobs = [j for j in expand(suite) if j.task.name == "CartPole-v1" and j.variant in ("dqn", "online_q")]
    finals = {("dqn", 0): 500, ("dqn", 1): 475, ("dqn", 2): 474.9, ("dqn", 3): None, ("dqn", 4): 100}
    outcomes = [_outcome(j, finals.get((j.variant, j.seed), 10.0)) for j in jobs]
    verdicts = {v.variant: v for v in judge(suite, outcomes)}
    assert verdicts["dqn"].passing == 2 and verdicts["dqn"].needed == 3 and verdicts["dqn"].verdict == "fail"
    assert verdicts["online_q"].verdict == "reported"
    finals[("dqn", 5)] = 480
    outcomes = [_outcome(j, finals.get((j.variant, j.seed), 10.0)) for j in jobs]
    assert {v.variant: v for v in judge(suite, outcomes)}["dqn"].verdict == "pass"


@pytest.mark.parametrize("finals,verdict", [
    ({0: 500}, "incomplete"),                      # 1 passes; the 5 seeds not run could bring it to 3 of 6
    ({0: 500, 1: 10, 2: 500, 3: 500}, "pass"),     # 3 of 6 already
    ({0: 10, 1: 10, 2: 10}, "incomplete"),         # none passes, 3 not run: 3 of 6 still possible
    ({0: 500, 1: 10, 2: 10, 3: 10, 4: 10}, "fail"),   # 1 passes, 1 not run: at most 2 of 6
])
def test_a_sanity_check_of_some_seeds_is_judged_only_where_the_others_cannot_change_it(finals, verdict):
    from qbench.runner import expand

    suite = load_suite(SUITES_DIR / "sanity.toml")   # CartPole-v1: 6 seeds, 3 needed
    jobs = [j for j in expand(suite) if j.task.name == "CartPole-v1" and j.variant == "dqn" and j.seed in finals]
    [v] = judge(suite, [_outcome(j, finals[j.seed]) for j in jobs])
    assert v.verdict == verdict


def test_a_seed_stopped_by_an_env_fault_counts_as_not_run_never_as_failing():
    from qbench.runner import expand

    suite = load_suite(SUITES_DIR / "sanity.toml")   # CartPole-v1: 6 seeds, 3 needed
    jobs = [j for j in expand(suite) if j.task.name == "CartPole-v1" and j.variant == "dqn"]
    finals = {0: 500, 1: 500, 2: None, 3: 10, 4: 10, 5: 10}
    env_fault = {"error": "env", "type": "EnvFault", "message": "env CartPole-v1 (seed 2) at env step 120: reward nan"}
    outcomes = [Outcome(j, REPO, "failed", error=env_fault) if finals[j.seed] is None else _outcome(j, finals[j.seed])
                for j in jobs]
    [v] = judge(suite, outcomes)
    # 2 pass and the env-fault seed could still make 3 of 6: incomplete; as a crash it would be a fail
    assert (v.passing, len(v.finals), v.verdict) == (2, 5, "incomplete")
    [crashed] = judge(suite, [_outcome(j, finals[j.seed]) for j in jobs])
    assert crashed.verdict == "fail"


def test_sanity_command_prints_a_table_and_exits_1_when_a_variant_fails(tmp_path):
    # qbench sanity reads suites/sanity.toml, looking in ./suites first: a tiny one here.
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "sanity.toml").write_text(textwrap.dedent("""
        seeds = 2
        min_passing_seeds = 2
        [budget]
        total_env_steps = 100
        eval_interval_env_steps = 100
        eval_episodes = 1
        [tasks."CartPole-v1"]
        variants = ["dqn", "double_dqn", "online_q"]
        settings = { hidden_sizes = [16], warmup_env_steps = 50 }
        thresholds = { dqn = 1.0, double_dqn = 1000.0 }
    """))
    r = run_qbench("sanity", "--workers", "2", "--results", tmp_path / "results", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"CartPole-v1\s+dqn\s+>= 1\s+2 of 2 \(need 2\)\s+.*PASS", r.stdout), r.stdout
    assert re.search(r"CartPole-v1\s+double_dqn\s+>= 1000\s+0 of 2 \(need 2\)\s+.*FAIL", r.stdout), r.stdout
    assert re.search(r"CartPole-v1\s+online_q\s+-\s+-\s+.*REPORTED", r.stdout), r.stdout
    assert re.search(r"sanity: 2/3 pass or are reported only, 1 FAIL; wall \d+ s", r.stdout), r.stdout


def test_eta_prices_each_remaining_job_by_its_own_kind_first():
    from qbench.runner import expand
    from qbench.runner.progress import Tally

    jobs = expand(load_suite(SUITES_DIR / "smoke.toml"))   # 2 x 600-step CartPole pairs, 2 x 400-step Pendulum
    tally = Tally(len(jobs), jobs, slots=2)
    assert tally.eta_s() == float("inf")
    tally.add(Outcome(jobs[0], REPO, "done", {}, wall_s=10.0))              # CartPole dqn: 10 s for 600 steps
    tally.add(Outcome(jobs[4], REPO, "done", {}, wall_s=40.0))              # Pendulum ddpg: 40 s for 400 steps
    # left: dqn seed 1 (10 s, its kind), 2 double_dqn and 1 ddpg and 2 naf priced per step: 50 s / 1000 steps
    expected_s = (10.0 + 2 * 600 * 0.05 + 40.0 + 2 * 400 * 0.05) / 2
    assert tally.eta_s() == pytest.approx(expected_s)
    assert jobs[4].variant == "ddpg" and tally.line() == "2/8 done, 0 running, 0 failed"
