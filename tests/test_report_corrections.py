"""qbench report's N-step corrections table, by hand on synthetic run directories: one row per n-step (task,
variant) with its correction, the per-task IQM and AUC, the mean trace length its runs logged in diagnostics.csv,
and its IQM minus that of the same task's ignore variant at the same n; absent with a single correction."""

import math
import re

import pandas as pd
import pytest

from qbench.analysis.render import to_html, to_latex, to_markdown, write_report
from qbench.analysis.report import build_report
from qbench.analysis.studies.corrections import mean_trace_length, nstep_corrections_display
from qbench.config import config_hash
from qbench.store import RUNNER, RunDir, atomic_write_json

STEPS = [500, 1000]
NAN = float("nan")
RETRACE = {"n_step": 3, "nstep_correction": "retrace", "is_target_eps": 0.01}
# variant -> the settings config.json records (a 1-step run records none of them, as runs written before n-step
# corrections existed did not: they are the defaults)
SETTINGS = {"dqn": {}, "nstep_dqn": {"n_step": 3}, "nstep_cut_dqn": {"n_step": 3, "nstep_correction": "cut"},
            "retrace_dqn": RETRACE, "retrace5_dqn": {**RETRACE, "n_step": 5, "trace_lambda": 0.9},
            "annealed_nstep_dqn": {"n_step": 3, "n_step_end": 1}}
# (task, variant) -> per seed: (final return, trace_length per diagnostics row; None: no such column, an older run).
# The first row of each is NaN: the engine logs it before the first update.
RUNS = {
    ("Alpha-v1", "dqn"): [(5.0, None), (6.0, None), (7.0, None)],
    ("Alpha-v1", "nstep_dqn"): [(10.0, [NAN, 3.0, 2.5]), (20.0, [NAN, 3.0, 3.0]), (40.0, [NAN, 2.0, 3.0])],
    ("Alpha-v1", "retrace_dqn"): [(30.0, [NAN, 1.5, 2.0]), (35.0, [NAN, 1.0, 1.5]), (50.0, [NAN, 2.0, 2.5])],
    ("Beta-v0", "nstep_dqn"): [(100.0, [NAN, 3.0]), (80.0, [NAN, 3.0]), (90.0, [NAN, 3.0])],
    ("Beta-v0", "nstep_cut_dqn"): [(60.0, [NAN, 1.0]), (70.0, [NAN, 2.0]), (65.0, [NAN, 1.5])],
    ("Beta-v0", "retrace_dqn"): [(95.0, [NAN, 2.0]), (85.0, [NAN, 1.0]), (99.0, None)],
    ("Beta-v0", "retrace5_dqn"): [(50.0, [NAN, 4.0]), (55.0, [NAN, 4.5]), (45.0, [NAN, 5.0])],
}
# the means over runs of each run's mean over its rows after the first, by hand
TRACE_LENGTHS = {
    ("Alpha-v1", "nstep_dqn"): (2.75 + 3.0 + 2.5) / 3,
    ("Alpha-v1", "retrace_dqn"): (1.75 + 1.25 + 2.25) / 3,
    ("Beta-v0", "nstep_dqn"): 3.0,
    ("Beta-v0", "nstep_cut_dqn"): 1.5,
    ("Beta-v0", "retrace_dqn"): 1.5,          # seed 2 predates the column: 2 runs of 3
    ("Beta-v0", "retrace5_dqn"): 4.5,
}
ORDER = [("Alpha-v1", "nstep_dqn"), ("Alpha-v1", "retrace_dqn"),           # ignore before retrace
         ("Beta-v0", "nstep_dqn"), ("Beta-v0", "nstep_cut_dqn"),           # ignore before cut, n = 3 ...
         ("Beta-v0", "retrace_dqn"), ("Beta-v0", "retrace5_dqn")]          # ... before n = 5


def write_nstep_run(results, task, variant, seed, final, trace):
    """A complete run directory as the engine writes it: config.json with the variant's n-step settings,
    evaluations.csv rising to ``final``, and diagnostics.csv with one row per log interval (``trace_length`` in
    each when ``trace`` is given)."""
    job = {"variant": variant, "task": task, "env_id": task, "env_kwargs": {}, "seed": seed,
           "config": {"gamma": 0.99, **SETTINGS[variant]}}
    path = results / "toy" / task / variant / f"seed{seed}-{config_hash(job)}"
    run = RunDir(path)
    run.write_config(job)
    atomic_write_json(path / RUNNER, {"suite": "toy", "attempts": 1})
    returns = [final / 2, final]
    run.write_evaluations([{"env_steps": s, "return_mean": r, "return_std": 0.0, "return_min": r, "return_max": r,
                            "n_episodes": 10, "grad_steps": s // 4, "wall_s": 1.0} for s, r in zip(STEPS, returns)])
    rows = [{"env_steps": 100 * (i + 1), "grad_steps": 25 * i, "td_loss": 0.1, "q_mean": 1.0}
            for i in range(len(trace) if trace is not None else 3)]
    if trace is not None:
        for row, value in zip(rows, trace):
            row["trace_length"] = value
    run.write_diagnostics(rows)
    run.write_summary({"variant": variant, "task": task, "seed": seed, "env_steps": STEPS[-1],
                       "final_return_mean": final, "wall_s": 1.0, "steps_per_s": 1000.0})
    return path


def write_folder(results, runs=RUNS):
    for (task, variant), seeds in runs.items():
        for seed, (final, trace) in enumerate(seeds):
            write_nstep_run(results, task, variant, seed, final, trace)
    return results


def test_nstep_corrections_by_hand(tmp_path):
    report = build_report(write_folder(tmp_path / "results"), reps=200)
    table = report.tables["nstep_corrections"]
    assert list(zip(table["task"], table["variant"])) == ORDER           # the 1-step dqn is not there
    assert table["nstep_correction"].tolist() == ["ignore", "retrace", "ignore", "cut", "retrace", "retrace"]
    assert table["n_step"].tolist() == [3, 3, 3, 3, 3, 5]
    assert table["trace_length_steps_mean"].tolist() == pytest.approx([TRACE_LENGTHS[k] for k in ORDER])
    assert table["trace_length_runs"].tolist() == [3, 3, 3, 3, 2, 3]
    per_task = report.tables["per_task"].set_index(["task", "variant"])
    for r in table.itertuples(index=False):
        # the per-task table's own IQM, CI and AUC, not another bootstrap
        assert (r.iqm, r.iqm_lower, r.iqm_upper, r.auc_mean) == tuple(
            per_task.loc[(r.task, r.variant), ["iqm", "iqm_lower", "iqm_upper", "auc_mean"]])
        assert (r.runs, r.diverged) == (3, 0)
    delta = dict(zip(zip(table["task"], table["variant"]), table["iqm_minus_ignore"]))
    iqm = per_task["iqm"]
    assert delta["Alpha-v1", "retrace_dqn"] == iqm["Alpha-v1", "retrace_dqn"] - iqm["Alpha-v1", "nstep_dqn"]
    assert delta["Alpha-v1", "retrace_dqn"] == pytest.approx(115 / 3 - 70 / 3)      # 3 seeds: the IQM is the mean
    assert delta["Beta-v0", "nstep_cut_dqn"] == iqm["Beta-v0", "nstep_cut_dqn"] - iqm["Beta-v0", "nstep_dqn"]
    assert delta["Beta-v0", "retrace_dqn"] == iqm["Beta-v0", "retrace_dqn"] - iqm["Beta-v0", "nstep_dqn"]
    assert delta["Alpha-v1", "nstep_dqn"] == delta["Beta-v0", "nstep_dqn"] == 0.0
    assert math.isnan(delta["Beta-v0", "retrace5_dqn"])                       # no ignore variant at n = 5

    shown = nstep_corrections_display(report)
    assert shown["correction"].tolist() == ["ignore", "retrace (π ε=0.01)", "ignore", "cut", "retrace (π ε=0.01)",
                                            "retrace (π ε=0.01, λ=0.9)"]
    assert shown["trace length (env steps)"].tolist() == ["2.75 of 3", "1.75 of 3", "3.00 of 3", "1.50 of 3",
                                                          "1.50 of 3 (2 of 3 runs)", "4.50 of 5"]
    assert shown["Δ IQM vs ignore"].iloc[-1] == "–"
    md = to_markdown(report, {})
    assert "## N-step corrections" in md
    section = md[md.index("## N-step corrections"):]
    assert "Trace length: the env steps the target effectively used, out of n" in section
    lines = [line for line in section.split("\n\n")[2].splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(ORDER) and "retrace (π ε=0.01, λ=0.9)" in lines[-1]
    assert "N-step corrections" in to_html(report, {})
    tex = to_latex(report)
    assert "\\caption{N-step corrections}" in tex and "retrace ($\\pi$ $\\varepsilon$=0.01, $\\lambda$=0.9)" in tex
    assert "$\\Delta$ IQM vs ignore" in tex and not re.search("[πελΔ→]", tex)
    write_report(report, tmp_path / "out", ("csv",))
    written = pd.read_csv(tmp_path / "out" / "csv" / "nstep_corrections.csv")
    assert written["variant"].tolist() == [v for _, v in ORDER]


def test_an_annealed_n_is_its_own_n(tmp_path):
    runs = {k: v for k, v in RUNS.items() if k[0] == "Alpha-v1"}
    runs["Alpha-v1", "annealed_nstep_dqn"] = [(12.0, [NAN, 3.0, 1.0]), (14.0, [NAN, 3.0, 1.0]),
                                              (16.0, [NAN, 3.0, 1.0])]
    report = build_report(write_folder(tmp_path / "results", runs), reps=100)
    table = report.tables["nstep_corrections"]
    assert table["variant"].tolist() == ["nstep_dqn", "retrace_dqn", "annealed_nstep_dqn"]
    assert nstep_corrections_display(report)["n"].tolist() == ["3", "3", "3→1"]
    assert table["iqm_minus_ignore"].iloc[-1] == 0.0      # its own baseline: no ignore variant at 3→1 but itself
    assert table["trace_length_steps_mean"].iloc[-1] == pytest.approx(2.0)


def test_the_section_is_absent_with_a_single_correction(tmp_path):
    runs = {k: v for k, v in RUNS.items() if k in (("Alpha-v1", "dqn"), ("Alpha-v1", "nstep_dqn"))}
    report = build_report(write_folder(tmp_path / "results", runs), reps=100)
    assert report.tables["nstep_corrections"].empty
    assert "N-step corrections" not in to_markdown(report, {})
    assert "N-step corrections" not in to_html(report, {}) and "N-step corrections" not in to_latex(report)
    write_report(report, tmp_path / "out", ("csv",))
    assert list(pd.read_csv(tmp_path / "out" / "csv" / "nstep_corrections.csv").columns) == list(
        report.tables["nstep_corrections"].columns)


def test_trace_length_of_a_run_without_the_column_or_without_diagnostics_is_nan(tmp_path):
    old = write_nstep_run(tmp_path, "Alpha-v1", "nstep_dqn", 0, 1.0, None)
    assert math.isnan(mean_trace_length(str(old)))
    (old / "diagnostics.csv").unlink()
    assert math.isnan(mean_trace_length(str(old)))
    new = write_nstep_run(tmp_path, "Alpha-v1", "nstep_dqn", 1, 1.0, [NAN, NAN, 2.0, 3.0])
    assert mean_trace_length(str(new)) == 2.5
