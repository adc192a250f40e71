"""Honest statistics: diverged runs count, runs without evaluations are seen, damaged files are named and never
counted complete, mixed code versions are flagged, and the median is rliable's."""

import math

import numpy as np
import pandas as pd
import pytest

from qbench.analysis.report import build_report
from qbench.analysis.scoring import runs_of_results
from qbench.analysis.synthetic import write_run, write_suite_record
from qbench.config import ConfigError
from qbench.loading import load_episodes, load_results, load_runs, read_csv_rows
from tests.harness import run_qbench
from tests.test_report import row

STEPS = [1000, 2000]
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


def notes_about(report, path):
    return [n for n in report.notes if str(path) in n]


def cut_last_line(run_dir, keep=-7):
    """A writer killed mid-line: the last line loses its end and its newline."""
    path = run_dir / "evaluations.csv"
    path.write_bytes(path.read_bytes()[:keep])


# --- 1. diverged runs count ---------------------------------------------------------------------------------

def test_a_diverged_run_counts_at_its_last_evaluation_or_the_random_score(tmp_path):
    write_suite_record(tmp_path, "toy", {"Alpha-v1": (10.0, 110.0)})
    for seed, final in enumerate([60.0, 90.0]):
        write_run(tmp_path, "toy", "Alpha-v1", "dqn", seed, STEPS, [final / 2, final])
    write_run(tmp_path, "toy", "Alpha-v1", "dqn", 2, STEPS[:1], [30.0], state="diverged")
    write_run(tmp_path, "toy", "Alpha-v1", "dqn", 3, [], [], state="diverged")     # before any evaluation
    report = build_report(tmp_path, reps=200)
    finals = report.tables["finals"].set_index("seed")
    assert finals.loc[2, "final_return"] == 30.0 and finals.loc[3, "final_return"] == 10.0
    assert finals.loc[3, "score_source"].startswith("random score")
    per_task = row(report.tables["per_task"], task="Alpha-v1", variant="dqn")
    assert (per_task["seeds"], per_task["diverged"], per_task["mean"]) == (4, 2, (60 + 90 + 30 + 10) / 4)
    # held at its score after it diverged: AUC 30 and 10; the complete runs' AUC is 3/4 of their final
    assert per_task["auc_mean"] == pytest.approx((0.75 * 60 + 0.75 * 90 + 30 + 10) / 4)
    mean = row(report.tables["aggregate"], variant="dqn", metric="mean")
    assert mean["point"] == pytest.approx((0.5 + 0.8 + 0.2 + 0.0) / 4) and (mean["runs"], mean["diverged"]) == (4, 2)
    curve = row(report.tables["curves"], task="Alpha-v1", variant="dqn", env_steps=2000)
    assert (curve["seeds"], curve["diverged"]) == (4, 2)
    assert curve["iqm"] == pytest.approx((30 + 60) / 2)                    # middle two of 10, 30, 60, 90
    runs = row(report.tables["runs"], task="Alpha-v1", variant="dqn")
    assert (runs["complete"], runs["diverged"], runs["in_statistics"], runs["seeds"]) == (2, 2, 4, "0,1,2,3")
    assert any("Alpha-v1 / dqn: 2 run(s) diverged" in n and "random score 10" in n for n in report.notes)
    assert any("scored 30, its evaluation at 1,000 env steps" in n for n in report.notes)


def test_a_run_that_diverged_before_any_evaluation_without_a_random_score_is_named_and_left_out(tmp_path):
    write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0])
    lost = write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 1, [], [], state="diverged")
    report = build_report(tmp_path, reps=100)
    assert row(report.tables["per_task"], task="Gamma-v0", variant="dqn")["seeds"] == 1
    assert row(report.tables["runs"], task="Gamma-v0", variant="dqn")["diverged"] == 1
    assert any("no random score: left out of every statistic" in n for n in notes_about(report, lost))


def test_probability_of_improvement_and_profiles_count_diverged_runs(tmp_path):
    write_suite_record(tmp_path, "toy", {"Alpha-v1": (0.0, 100.0)})
    for seed, final in enumerate([60.0, 90.0]):
        write_run(tmp_path, "toy", "Alpha-v1", "dqn", seed, STEPS, [final, final])
    write_run(tmp_path, "toy", "Alpha-v1", "dqn", 2, STEPS[:1], [5.0], state="diverged")
    write_run(tmp_path, "toy", "Alpha-v1", "dqn", 3, [], [], state="diverged")
    for seed in range(4):
        write_run(tmp_path, "toy", "Alpha-v1", "ddqn", seed, STEPS, [40.0, 40.0])
    report = build_report(tmp_path, reps=100)
    poi = row(report.tables["improvement"], x="dqn", y="ddqn")
    assert poi["point"] == pytest.approx(0.5) and poi["x_diverged"] == 2    # 1.0 if the diverged were left out
    profile = report.tables["profiles"]
    at = profile[(profile["variant"] == "dqn") & np.isclose(profile["tau"], 0.1)].iloc[0]
    assert at["point"] == pytest.approx(0.5) and (at["runs"], at["diverged"]) == (4, 2)


# --- 2. the median ---------------------------------------------------------------------------------------------

def test_the_aggregate_median_is_the_median_of_task_means(tmp_path):
    finals = {"A-v0": [0.0, 0.1, 0.2], "B-v0": [0.3, 0.3, 0.6], "C-v0": [1.0, 1.0, 1.0]}
    write_suite_record(tmp_path, "toy", {task: (0.0, 1.0) for task in finals})
    for task, scores in finals.items():
        for seed, score in enumerate(scores):
            write_run(tmp_path, "toy", task, "dqn", seed, STEPS, [score, score])
    median = row(build_report(tmp_path, reps=100).tables["aggregate"], variant="dqn", metric="median")
    # task means 0.1, 0.4, 1.0 -> 0.4; the pooled median of the nine runs would be 0.3
    assert median["point"] == pytest.approx(0.4)


# --- 3. every run directory counts ---------------------------------------------------------------------------

def test_runs_without_any_evaluation_are_in_load_runs_and_the_runs_table(tmp_path):
    write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0])
    crashed = write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 1, [], [], state="crashed")
    started = write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 2, [], [], state="unfinished")
    (started / "lock").touch()
    lock_only = tmp_path / "adhoc" / "Gamma-v0" / "dqn" / "seed3-0123456789"   # died before its config
    lock_only.mkdir()
    (lock_only / "lock").touch()
    runs = load_runs(tmp_path).set_index("seed")
    assert list(runs.index) == [0, 1, 2, 3]
    assert runs["status"].tolist() == ["complete", "crashed", "unfinished", "unfinished"]
    assert runs.loc[1, "evaluations"] == 0 and np.isnan(runs.loc[1, "env_steps"])
    assert runs.loc[1, "run_dir"] == str(crashed)
    df = load_results(tmp_path)
    assert len(df) == 2 and set(df["seed"]) == {0}                 # still one row per evaluation
    report = build_report(tmp_path, reps=100)
    gamma = row(report.tables["runs"], task="Gamma-v0", variant="dqn")
    assert (gamma["complete"], gamma["crashed"], gamma["unfinished"], gamma["in_statistics"]) == (1, 1, 2, 1)
    assert len(report.tables["finals"]) == 4


# --- 4. broken files ---------------------------------------------------------------------------------------------

def test_read_csv_rows_drops_a_half_written_last_line_and_refuses_garbage(tmp_path):
    path = tmp_path / "evaluations.csv"
    path.write_text("env_steps,return_mean,wall_s\n1000,1.5,2.0\n2000,2.5,4.0\n")
    whole = read_csv_rows(path)
    assert whole.rows["return_mean"].tolist() == [1.5, 2.5] and whole.dropped is None and whole.error is None
    path.write_text("env_steps,return_mean,wall_s\n1000,1.5,2.0\n2000,2.5,4")          # no newline
    cut = read_csv_rows(path)
    assert cut.rows["env_steps"].tolist() == [1000] and "no newline" in cut.dropped and cut.error is None
    path.write_text("env_steps,return_mean,wall_s\n1000,1.5,2.0\n2000,2.5\n")          # a short last line
    assert "2 of 3 fields" in read_csv_rows(path).dropped
    for text, reason in [("env_steps,return_mean\n1,2\n3\n4,5\n", "line 3 of evaluations.csv has 1 fields"),
                         ("hello world\n", "no env_steps and return_mean column"),
                         ("env_steps,return_mean\n1000,abc\n", "return_mean is not a number")]:
        path.write_text(text)
        assert reason in read_csv_rows(path).error and read_csv_rows(path).rows.empty
    path.write_bytes(b"\x89PNG\r\n\x00\xff\xfe")
    assert "not UTF-8" in read_csv_rows(path).error


def test_a_half_written_run_is_never_complete_and_its_cut_line_is_dropped(tmp_path):
    killed = write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0], state="unfinished")
    cut_last_line(killed)
    with_summary = write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 1, STEPS, [1.0, 3.0])
    cut_last_line(with_summary)
    runs = load_runs(tmp_path).set_index("seed")
    assert runs.loc[0, "status"] == "unfinished" and runs.loc[0, "evaluations"] == 1
    assert runs.loc[1, "status"] == "damaged"                      # summary.json, yet its last row is cut
    df = load_results(tmp_path)
    assert len(df) == 2 and not df["complete"].any() and (df["env_steps"] == 1000).all()
    report = build_report(tmp_path, reps=100)
    assert report.tables["per_task"].empty and not report.tables["finals"]["complete"].any()
    assert any("no newline" in n for n in notes_about(report, killed))
    assert any("damaged" in n and "never counted complete" in n for n in notes_about(report, with_summary))


def test_corrupt_config_and_evaluations_are_named_with_the_reason_and_left_out(tmp_path):
    write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0])
    bad_csv = write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 1, STEPS, [1.0, 3.0])
    (bad_csv / "evaluations.csv").write_bytes(b"\x00\x00garbage\xff\n")
    bad_config = write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 2, STEPS, [1.0, 4.0])
    (bad_config / "config.json").write_text('{"variant": "dqn", "ta')
    runs = load_runs(tmp_path).set_index("seed")
    assert runs["status"].tolist() == ["complete", "damaged", "damaged"]
    assert (runs.loc[2, "task"], runs.loc[2, "variant"]) == ("Gamma-v0", "dqn")     # from its path
    assert set(load_results(tmp_path)["seed"]) == {0}                  # no row of the damaged ones
    report = build_report(tmp_path, reps=100)
    assert row(report.tables["per_task"], task="Gamma-v0", variant="dqn")["seeds"] == 1
    assert row(report.tables["runs"], task="Gamma-v0", variant="dqn")["damaged"] == 2
    assert any("evaluations.csv is not UTF-8" in n for n in notes_about(report, bad_csv))
    assert any("config.json cannot be read" in n for n in notes_about(report, bad_config))


def test_a_corrupt_suite_record_is_named_and_not_replaced_by_the_shipped_suite(tmp_path):
    # The shipped smoke suite scores CartPole-v1 (23.7, 475): a broken record must not silently fall back to it.
    write_run(tmp_path, "smoke", "CartPole-v1", "dqn", 0, STEPS, [100.0, 200.0])
    (tmp_path / "smoke" / "suite.json").write_text('{"suite": "smoke", "tasks": {')
    report = build_report(tmp_path, reps=100)
    assert report.tables["aggregate"].empty
    record = tmp_path / "smoke" / "suite.json"
    assert any("cannot be read" in n and "suite 'smoke'" in n for n in notes_about(report, record))


# --- 5. code versions ------------------------------------------------------------------------------------------

def test_runs_from_different_code_are_flagged(tmp_path):
    write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0], runner={"git_commit": COMMIT_A})
    write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 1, STEPS, [1.0, 2.0], runner={"git_commit": COMMIT_B})
    # older runs: no versions in runner.json, metadata.json's commit instead
    write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 2, STEPS, [1.0, 2.0],
              metadata={"git_commit": COMMIT_A, "versions": {"qbench": "0.1.0"}})
    write_run(tmp_path, "adhoc", "Gamma-v0", "ddqn", 0, STEPS, [1.0, 2.0], runner={"git_commit": COMMIT_A})
    resumed = write_run(tmp_path, "adhoc", "Gamma-v0", "ddqn", 1, STEPS, [1.0, 2.0], runner={
        "git_commit": COMMIT_B, "qbench_version": "0.1.0", "attempt_history": [
            {"qbench_version": "0.1.0", "git_commit": COMMIT_A, "started_at": "2026-01-01T00:00:00+00:00"},
            {"qbench_version": "0.1.0", "git_commit": COMMIT_B, "started_at": "2026-01-02T00:00:00+00:00"}]})
    df = load_results(tmp_path)
    assert set(df["code_version"]) == {COMMIT_A, COMMIT_B}
    runs = load_runs(tmp_path).set_index(["variant", "seed"])
    assert runs.loc[("dqn", 2), "code_version"] == COMMIT_A
    assert runs.loc[("ddqn", 1), "attempt_code_versions"] == f"{COMMIT_A}, {COMMIT_B}"
    notes = build_report(tmp_path, reps=100).notes
    mixed = [n for n in notes if "different code versions" in n]
    assert len(mixed) == 2
    assert any(n.startswith("Gamma-v0 / dqn:") and f"{COMMIT_A[:12]}: 2 run(s)" in n
               and f"{COMMIT_B[:12]}: 1 run(s)" in n for n in mixed)
    assert any(str(resumed) in n and "attempts ran different code" in n for n in notes)


def test_runs_of_one_code_version_get_no_version_note(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", seed, STEPS, [1.0, 2.0], runner={"git_commit": COMMIT_A})
    assert not any("code" in n for n in build_report(tmp_path, reps=100).notes)


# --- 6. the acceptance scenario ----------------------------------------------------------------------------

def write_acceptance_folder(results):
    """Normal runs, one corrupt evaluations.csv, one corrupt config.json, one half-written run, one run that
    diverged before any evaluation and one that diverged later; returns the paths of the odd ones."""
    write_suite_record(results, "accept", {"Alpha-v1": (10.0, 110.0), "Beta-v0": (0.0, 200.0)})
    for seed, final in enumerate([60.0, 90.0]):
        write_run(results, "accept", "Alpha-v1", "dqn", seed, STEPS, [final / 2, final])
    odd = {"diverged_later": write_run(results, "accept", "Alpha-v1", "dqn", 2, STEPS[:1], [30.0],
                                       state="diverged"),
           "diverged_early": write_run(results, "accept", "Alpha-v1", "dqn", 3, [], [], state="diverged")}
    for seed, final in enumerate([100.0, 120.0, 150.0, 200.0]):
        write_run(results, "accept", "Beta-v0", "dqn", seed, STEPS, [final / 2, final])
    odd["corrupt_csv"] = write_run(results, "accept", "Beta-v0", "dqn", 4, STEPS, [0.0, 1000.0])
    (odd["corrupt_csv"] / "evaluations.csv").write_bytes(b"\x1f\x8b\x08garbage\xff\xfe\n")
    odd["corrupt_config"] = write_run(results, "accept", "Beta-v0", "dqn", 5, STEPS, [0.0, 1000.0])
    (odd["corrupt_config"] / "config.json").write_text("{not json")
    odd["half_written"] = write_run(results, "accept", "Beta-v0", "dqn", 6, STEPS, [0.0, 1000.0])
    cut_last_line(odd["half_written"])
    return odd


# Normalised: Alpha (x - 10) / 100: 0.5, 0.8, diverged later 0.2, diverged before any evaluation 0.0 (random);
# Beta x / 200: 0.5, 0.6, 0.75, 1.0. Pooled and sorted: 0, 0.2, 0.5, 0.5 | 0.6, 0.75, 0.8, 1.0: the IQM keeps
# the middle four, 0.5, 0.5, 0.6, 0.75. The mean is the mean of the task means (0.375 and 0.7125).
ACCEPT_IQM = (0.5 + 0.5 + 0.6 + 0.75) / 4
ACCEPT_MEAN = ((0.5 + 0.8 + 0.2 + 0.0) / 4 + (0.5 + 0.6 + 0.75 + 1.0) / 4) / 2


def test_acceptance_a_damaged_folder_reports_and_counts_the_diverged_runs(tmp_path):
    results = tmp_path / "results"
    odd = write_acceptance_folder(results)
    report = build_report(results, reps=200)
    aggregate = report.tables["aggregate"]
    assert row(aggregate, variant="dqn", metric="IQM")["point"] == pytest.approx(ACCEPT_IQM)
    assert row(aggregate, variant="dqn", metric="mean")["point"] == pytest.approx(ACCEPT_MEAN)
    assert row(aggregate, variant="dqn", metric="median")["point"] == pytest.approx(ACCEPT_MEAN)   # two tasks
    assert row(aggregate, variant="dqn", metric="IQM")[["runs", "diverged"]].tolist() == [8, 2]
    runs = report.tables["runs"]
    assert row(runs, task="Alpha-v1", variant="dqn")[["complete", "diverged", "in_statistics"]].tolist() == [2, 2, 4]
    assert row(runs, task="Beta-v0", variant="dqn")[["complete", "damaged", "in_statistics"]].tolist() == [4, 3, 4]
    finals = report.tables["finals"].set_index("run_dir")
    for name in ("corrupt_csv", "corrupt_config", "half_written"):
        assert finals.loc[str(odd[name]), "status"] == "damaged" and not finals.loc[str(odd[name]), "complete"]
        assert any("damaged, left out of every statistic" in n for n in notes_about(report, odd[name])), name

    r = run_qbench("report", results, "--out", tmp_path / "report", "--formats", "md,csv", "--reps", "200")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    lines = r.stdout.splitlines()
    for name, reason in [("corrupt_csv", "evaluations.csv is not UTF-8 text"),
                         ("corrupt_config", "config.json cannot be read"),
                         ("half_written", "has no newline"),
                         ("diverged_early", "before any evaluation: scored at the task's random score 10"),
                         ("diverged_later", "scored 30, its evaluation at 1,000 env steps")]:
        assert any(line.startswith("note: ") and str(odd[name]) in line and reason in line for line in lines), (
            name, r.stdout)
    aggregate_csv = pd.read_csv(tmp_path / "report" / "csv" / "aggregate.csv")
    iqm = row(aggregate_csv, variant="dqn", metric="IQM")
    assert iqm["point"] == pytest.approx(ACCEPT_IQM) and (iqm["runs"], iqm["diverged"]) == (8, 2)
    md = (tmp_path / "report" / "report.md").read_text()
    assert str(odd["corrupt_csv"]) in md and "8 (2 diverged)" in md


def test_a_suite_json_and_runner_json_that_are_garbage_do_not_stop_the_cli(tmp_path):
    results = tmp_path / "results"
    write_acceptance_folder(results)
    (results / "accept" / "suite.json").write_bytes(b"\xff\xfe")
    runner = next(results.rglob("runner.json"))
    runner.write_text("[1, 2")
    r = run_qbench("report", results, "--out", tmp_path / "report", "--formats", "csv", "--reps", "50")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert f"note: {results / 'accept' / 'suite.json'}: cannot be read" in r.stdout
    assert any(str(runner.parent) in line and "runner.json cannot be read" in line for line in r.stdout.splitlines())


def test_a_filtered_frame_with_the_runs_table_scores_its_rows_and_keeps_runs_without_rows(tmp_path):
    write_suite_record(tmp_path, "toy", {"Alpha-v1": (0.0, 100.0)})
    for seed in range(2):
        write_run(tmp_path, "toy", "Alpha-v1", "dqn", seed, STEPS, [20.0, 80.0])
    write_run(tmp_path, "toy", "Alpha-v1", "dqn", 2, [], [], state="diverged")
    df = load_results(tmp_path)
    report = build_report(df[df["env_steps"] <= 1000], runs=load_runs(tmp_path), reps=100)
    per_task = row(report.tables["per_task"], task="Alpha-v1", variant="dqn")
    assert (per_task["seeds"], per_task["diverged"], per_task["mean"]) == (3, 1, (20 + 20 + 0) / 3)
    only_seed_0 = build_report(df[df["seed"] == 0], runs=load_runs(tmp_path), reps=100)
    assert set(only_seed_0.tables["finals"]["seed"]) == {0, 2}


def test_a_config_or_metadata_of_the_wrong_types_damages_that_run_only(tmp_path):
    """Valid JSON of the wrong shape (a hand edit: seed null or 2^64, versions a list) marks its run damaged or
    loses only what it says; the other runs load."""
    import json

    for seed in range(4):
        write_run(tmp_path, "s", "Alpha-v0", "dqn", seed, [1000], [5.0 + seed])
    runs = sorted((tmp_path / "s" / "Alpha-v0" / "dqn").iterdir())
    for run, seed in zip(runs[:2], [None, 2 ** 64], strict=True):
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "seed": seed}))
    (runs[2] / "metadata.json").write_text(json.dumps({"versions": ["x"]}))
    table = load_runs(tmp_path).sort_values("run_dir").reset_index(drop=True)
    assert list(table["status"]) == ["damaged", "damaged", "complete", "complete"]
    assert all("seed an integer in 0..9223372036854775807" in p for p in table["problems"][:2])
    assert len(load_results(tmp_path)) == 2


# --- 7. every fault named where it belongs ----------------------------------------------------------------------

def swap_header(run_dir, a, b):
    """Swap two names in the header line of evaluations.csv, leaving the values in their old order."""
    path = run_dir / "evaluations.csv"
    header, rest = path.read_text().split("\n", 1)
    names = header.split(",")
    i, j = names.index(a), names.index(b)
    names[i], names[j] = names[j], names[i]
    path.write_text(",".join(names) + "\n" + rest)


def test_an_evaluations_csv_whose_header_names_are_swapped_is_damaged_not_complete(tmp_path):
    write_run(tmp_path, "s", "CartPole-v1", "dqn", 0, [300, 600], [20.0, 500.0])
    steps_swapped = write_run(tmp_path, "s", "CartPole-v1", "dqn", 1, [300, 600], [20.0, 500.0])
    swap_header(steps_swapped, "env_steps", "return_mean")
    # a swap that leaves env_steps alone: return_mean holds the gradient steps (75, 150), outside min..max (20)
    grads_swapped = write_run(tmp_path, "s", "CartPole-v1", "dqn", 2, [300, 600], [20.0, 500.0])
    swap_header(grads_swapped, "return_mean", "grad_steps")
    runs = load_runs(tmp_path).set_index("seed")
    assert runs["status"].tolist() == ["complete", "damaged", "damaged"]
    assert runs.loc[1, "problems"] == ("line 2 of evaluations.csv: env_steps '20.0' is not a whole number of env "
                                       "steps (a header whose names do not match its columns?)")
    assert runs.loc[2, "problems"] == ("line 2 of evaluations.csv: return_mean 75.0 is not between return_min 20.0 "
                                       "and return_max 20.0 (a header whose names do not match its columns?)")
    assert set(load_results(tmp_path)["seed"]) == {0}
    report = build_report(tmp_path, reps=50)
    per_task = row(report.tables["per_task"], task="CartPole-v1", variant="dqn")
    assert (per_task["seeds"], per_task["mean"]) == (1, 500.0)     # not (500 + 600 + 150) / 3
    assert any(n.startswith(f"{steps_swapped}: damaged, left out of every statistic: line 2") for n in report.notes)


def test_read_csv_rows_reads_env_steps_as_rising_whole_numbers_and_returns_as_finite(tmp_path):
    path = tmp_path / "evaluations.csv"
    rising = "line 3 of evaluations.csv: env_steps 1000 does not rise (line 2 has 1000): env steps rise strictly"
    for text, reason in [
            ("env_steps,return_mean\n1000,1.5\n1000,2.5\n", rising),
            ("env_steps,return_mean\n-5,1.5\n", "line 2 of evaluations.csv: env_steps '-5' is not a whole number"),
            ("env_steps,return_mean\n1000,1.5\n2000,inf\n",
             "line 3 of evaluations.csv: return_mean inf is not a finite number"),
            ("env_steps,return_mean,env_steps\n1000,1.5,3\n",
             "the header line of evaluations.csv names env_steps more than once")]:
        path.write_text(text)
        assert reason in read_csv_rows(path).error and read_csv_rows(path).rows.empty, text
    # other files keep their own rules: diagnostics.csv's values need only be numbers
    path.write_text("env_steps,loss\n1000,inf\n1000,2.0\n")
    assert read_csv_rows(path, required=("env_steps", "loss")).rows["loss"].tolist() == [math.inf, 2.0]


def test_json_files_that_are_not_objects_damage_their_run_and_the_report_renders(tmp_path):
    write_run(tmp_path, "s", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0])
    odd = {name: write_run(tmp_path, "s", "Gamma-v0", "dqn", seed, STEPS, [1.0, 2.0],
                           state="crashed" if name == "error.json" else "complete")
           for seed, name in enumerate(["summary.json", "error.json", "config.json"], start=1)}
    for name, run_dir in odd.items():
        (run_dir / name).write_text("[]")
    runs = load_runs(tmp_path).set_index("seed")
    assert runs["status"].tolist() == ["complete", "damaged", "damaged", "damaged"]
    problems = {"summary.json": "summary.json is not a JSON object (it holds a list)",
                "error.json": "error.json is not a JSON object (it holds a list): whether it diverged, crashed or "
                              "met an env fault is unknown",
                "config.json": "config.json is not a JSON object (it holds a list)"}
    assert runs.loc[[1, 2, 3], "problems"].tolist() == list(problems.values())
    report = build_report(tmp_path, reps=50)
    for name, run_dir in odd.items():
        assert f"{run_dir}: damaged, left out of every statistic: {problems[name]}" in report.notes
    assert row(report.tables["per_task"], task="Gamma-v0", variant="dqn")["seeds"] == 1


def test_non_finite_or_contradicted_final_returns_damage_their_run_and_the_cli_reports_them(tmp_path):
    import json

    results = tmp_path / "results"
    write_run(results, "s", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0])
    odd = {}
    for seed, final in [(1, math.inf), (2, math.nan), (3, 600.0)]:
        odd[seed] = write_run(results, "s", "Gamma-v0", "dqn", seed, STEPS, [1.0, 500.0])
        summary = odd[seed] / "summary.json"
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "final_return_mean": final}))
    odd[4] = write_run(results, "s", "Gamma-v0", "dqn", 4, STEPS, [1.0, math.inf])   # inf in evaluations.csv
    problems = {1: "summary.json: final_return_mean inf is not a finite number",
                2: "summary.json: final_return_mean nan is not a finite number",
                3: "summary.json: final_return_mean 600.0 is not the return_mean of the last row of evaluations.csv "
                   "(500.0)",
                4: "line 3 of evaluations.csv: return_mean inf is not a finite number"}
    runs = load_runs(results).set_index("seed")
    assert runs["status"].tolist() == ["complete"] + ["damaged"] * 4
    assert runs.loc[[1, 2, 3, 4], "problems"].tolist() == list(problems.values())
    r = run_qbench("report", results, "--out", tmp_path / "report", "--formats", "csv", "--reps", "50")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    for seed, run_dir in odd.items():
        assert f"note: {run_dir}: damaged, left out of every statistic: {problems[seed]}" in r.stdout.splitlines()


@pytest.mark.parametrize("reader", [load_results, load_runs, load_episodes])
def test_a_missing_folder_or_a_file_raises_the_line_qbench_report_prints(tmp_path, reader):
    missing, file = tmp_path / "nowhere", tmp_path / "runs.csv"
    file.write_text("env_steps,return_mean\n")
    is_a_file = f"'{file}' is a file, not a results folder; give the folder that holds the runs (e.g. results/smoke)"
    for path, message in [(missing, f"results folder '{missing}' does not exist"), (file, is_a_file)]:
        with pytest.raises(ConfigError) as raised:
            reader(path)
        assert str(raised.value) == message


def test_qbench_report_prints_the_readers_error_as_one_line(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as raised:
        load_runs(missing)
    r = run_qbench("report", missing)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"qbench: error: {raised.value}\n")


def test_crashed_unfinished_and_env_runs_are_named_by_path_in_the_notes(tmp_path):
    write_run(tmp_path, "s", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0])
    crashed = [write_run(tmp_path, "s", "Gamma-v0", "dqn", seed, STEPS[:1], [1.0], state="crashed",
                         message=f"boom {seed}\nsecond line") for seed in range(1, 13)]
    unfinished = write_run(tmp_path, "s", "Gamma-v0", "dqn", 13, STEPS[:1], [1.0], state="unfinished")
    env = write_run(tmp_path, "s", "Gamma-v0", "dqn", 14, STEPS[:1], [1.0], state="env",
                    message="env Gamma-v0 (seed 14) at env step 1500: reward nan")
    notes = build_report(tmp_path, reps=50).notes
    first_ten = "; ".join(f"{d} (boom {seed})" for seed, d in enumerate(crashed[:10], start=1))
    assert ("Gamma-v0 / dqn: 12 run(s) crashed, left out of every statistic (a crash is not an outcome of the "
            f"algorithm; qbench run retries them): {first_ten}; and 2 more") in notes
    assert f"Gamma-v0 / dqn: 1 unfinished run(s), left out of every statistic: {unfinished}" in notes
    assert ("Gamma-v0 / dqn: 1 run(s) stopped by an env fault (the environment misbehaved: not an outcome of the "
            "variant, never counted as its divergence or failure), left out of every statistic: "
            f"{env} (env Gamma-v0 (seed 14) at env step 1500: reward nan)") in notes


def test_an_env_fault_is_status_env_and_never_the_variants_divergence_or_failure(tmp_path):
    write_suite_record(tmp_path, "toy", {"Alpha-v1": (0.0, 100.0)})
    for seed, final in enumerate([60.0, 80.0]):
        write_run(tmp_path, "toy", "Alpha-v1", "dqn", seed, STEPS, [final / 2, final])
    write_run(tmp_path, "toy", "Alpha-v1", "dqn", 2, STEPS[:1], [5.0], state="env")
    write_run(tmp_path, "toy", "Alpha-v1", "dqn", 3, [], [], state="env")   # a diverged one would score 0 here
    assert load_runs(tmp_path)["status"].tolist() == ["complete", "complete", "env", "env"]
    df = load_results(tmp_path)
    assert df.loc[df["seed"] == 2, ["status", "complete", "failed"]].values.tolist() == [["env", False, False]]
    # a frame without its status column takes it from error.json
    from_frame = runs_of_results(df.drop(columns="status")).set_index("seed").sort_index()
    assert from_frame["status"].tolist() == ["complete", "complete", "env"]
    report = build_report(tmp_path, reps=100)
    runs = row(report.tables["runs"], task="Alpha-v1", variant="dqn")
    assert runs[["complete", "diverged", "crashed", "env", "in_statistics", "seeds"]].tolist() == [2, 0, 0, 2, 2,
                                                                                                   "0,1"]
    per_task = row(report.tables["per_task"], task="Alpha-v1", variant="dqn")
    assert (per_task["seeds"], per_task["diverged"], per_task["mean"]) == (2, 0, 70.0)
    assert row(report.tables["aggregate"], variant="dqn", metric="mean")[["runs", "diverged"]].tolist() == [2, 0]
    assert report.tables["diverged_runs"].empty
    assert not any("run(s) diverged" in n for n in report.notes)
