"""N-step corrections: ``nstep_corrections``, per n-step (task, variant), its off-policy correction and n, final
IQM with its CI and AUC (from the core study's ``per_task``), the mean trace length its targets used
(diagnostics.csv's ``trace_length``) and its IQM minus that of the same task's ignore variant at the same n; empty
unless the rows hold two corrections or more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from qbench.analysis.display import ci, num, table_of
from qbench.analysis.scoring import ScoredRuns, scored_runs
from qbench.analysis.study import Section, Study, Tables
from qbench.config import SETTINGS
from qbench.loading import read_csv_rows
from qbench.store import DIAGNOSTICS, read_run_config

if TYPE_CHECKING:
    from qbench.analysis.report import Report

NSTEP_SETTINGS = ("n_step", "n_step_end", "nstep_correction", "is_target_eps", "trace_lambda", "is_clip")
# The corrections in the order the table shows them: from none, through Watkins' cut, to the trace corrections of
# Munos et al. (2016)'s general form.
NSTEP_CORRECTIONS = ("ignore", "cut", "importance_sampling", "retrace", "tree_backup")
NSTEP_RUN_COLUMNS = ["task", "variant", "run_dir", *NSTEP_SETTINGS, "trace_length_steps"]
NSTEP_CORRECTION_COLUMNS = ["task", "n_step", "n_step_end", "nstep_correction", "is_target_eps", "trace_lambda",
                            "is_clip", "variant", "runs", "diverged", "iqm", "iqm_lower", "iqm_upper", "auc_mean",
                            "trace_length_steps_mean", "trace_length_runs", "iqm_minus_ignore"]


def nstep_settings(run_dir: str) -> dict[str, Any]:
    """A run's n-step settings from its config.json; a setting it does not record (or records as something of
    the wrong type, by hand) is its default."""
    config = read_run_config(run_dir).get("config")
    config = config if isinstance(config, dict) else {}
    out: dict[str, Any] = {}
    for key in NSTEP_SETTINGS:
        default = SETTINGS[key].default
        value = config.get(key, default)
        if isinstance(default, str):
            out[key] = value if isinstance(value, str) else default
            continue
        try:
            out[key] = type(default)(value)
        except (TypeError, ValueError):
            out[key] = default
    return out


def mean_trace_length(run_dir: str) -> float:
    """The mean over a run's diagnostics.csv rows of its logged ``trace_length`` (the mean steps its n-step
    targets used over the windows sampled since the row before): the rows before its first update are NaN and do
    not count. NaN for a run written before the column existed, or whose diagnostics.csv cannot be read."""
    rows = read_csv_rows(Path(run_dir) / DIAGNOSTICS, required=("env_steps",)).rows
    if "trace_length" not in rows.columns:
        return math.nan
    values = pd.to_numeric(rows["trace_length"], errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan


def nstep_runs_table(finals: pd.DataFrame) -> pd.DataFrame:
    """One row per run in the statistics: its n-step settings (``nstep_settings``) and, for an n-step run
    (max(n_step, n_step_end) > 1), its ``mean_trace_length`` in env steps (NaN for 1-step runs, whose
    diagnostics are not read: there is no trace to measure)."""
    rows = []
    for r in scored_runs(finals).itertuples(index=False):
        settings = nstep_settings(r.run_dir)
        n_step_run = max(settings["n_step"], settings["n_step_end"]) > 1
        rows.append({"task": r.task, "variant": r.variant, "run_dir": r.run_dir, **settings,
                     "trace_length_steps": mean_trace_length(r.run_dir) if n_step_run else math.nan})
    return pd.DataFrame(rows, columns=NSTEP_RUN_COLUMNS)


def nstep_corrections_table(per_task: pd.DataFrame, nstep_runs: pd.DataFrame,
                            notes: list[str] | None = None) -> pd.DataFrame:
    """Per (task, variant) whose runs are n-step (``nstep_runs_table``; 1-step variants are left out): its n-step
    settings, its ``runs`` and ``diverged`` runs in the statistics, final IQM with its CI and AUC (the rows of
    ``per_task``, the same bootstrap), the mean over its runs of each run's mean trace length in env steps
    (``trace_length_steps_mean``, over the ``trace_length_runs`` runs that logged one; NaN when none did), and
    ``iqm_minus_ignore``: its IQM minus that of the one ignore variant of the same task at the same n (NaN where
    there is none, or several: which one would be the baseline is not known). Sorted by task, n and correction
    in ``NSTEP_CORRECTIONS`` order.

    Empty unless the rows hold at least two corrections: with one the table compares nothing. A (task, variant)
    whose runs used different n-step settings is pooled under the most common one, and said in ``notes``."""
    columns = NSTEP_CORRECTION_COLUMNS
    if per_task.empty or nstep_runs.empty:
        return pd.DataFrame(columns=columns)
    scores = per_task.set_index(["task", "variant"])
    rows = []
    for (task, variant), group in nstep_runs.groupby(["task", "variant"], sort=True):
        if (task, variant) not in scores.index:
            continue
        used = [tuple(s) for s in group[list(NSTEP_SETTINGS)].itertuples(index=False)]
        counts = {s: used.count(s) for s in dict.fromkeys(used)}      # in run order: ties go to the first
        chosen = max(counts, key=counts.get)
        settings = dict(zip(NSTEP_SETTINGS, chosen))
        if len(counts) > 1 and notes is not None:
            notes.append(f"{task} / {variant}: its runs used different n-step settings ("
                         + "; ".join(", ".join(f"{k} {v}" for k, v in zip(NSTEP_SETTINGS, s)) + f": {n} run(s)"
                                     for s, n in counts.items())
                         + "), pooled in the n-step corrections table under the most common")
        if max(settings["n_step"], settings["n_step_end"]) <= 1:
            continue
        score = scores.loc[(task, variant)]
        traces = group["trace_length_steps"].dropna()
        rows.append({"task": task, **settings, "variant": variant, "runs": int(score["seeds"]),
                     "diverged": int(score["diverged"]), "iqm": float(score["iqm"]),
                     "iqm_lower": float(score["iqm_lower"]), "iqm_upper": float(score["iqm_upper"]),
                     "auc_mean": float(score["auc_mean"]),
                     "trace_length_steps_mean": float(traces.mean()) if len(traces) else math.nan,
                     "trace_length_runs": len(traces), "iqm_minus_ignore": math.nan})
    table = pd.DataFrame(rows, columns=columns)
    if table["nstep_correction"].nunique() < 2:
        return pd.DataFrame(columns=columns)
    for (task, n_step, n_step_end), group in table.groupby(["task", "n_step", "n_step_end"], sort=True):
        ignore = group[group["nstep_correction"] == "ignore"]
        if len(ignore) == 1:
            table.loc[group.index, "iqm_minus_ignore"] = group["iqm"] - ignore["iqm"].iloc[0]
        elif len(ignore) > 1 and notes is not None:
            n = f"{n_step}→{n_step_end}" if n_step_end else f"{n_step}"
            notes.append(f"{task}, n = {n}: several ignore variants ({', '.join(ignore['variant'])}): no Δ IQM vs "
                         "ignore in the n-step corrections table (which one is the baseline is not known)")
    order = {c: i for i, c in enumerate(NSTEP_CORRECTIONS)}
    rank = table["nstep_correction"].map(lambda c: order.get(c, len(order)))
    table = (table.assign(_rank=rank)
             .sort_values(["task", "n_step", "n_step_end", "_rank", "variant"], kind="stable")
             .drop(columns="_rank").reset_index(drop=True))
    return table[columns]


def corrections_tables(scored: ScoredRuns, earlier: Mapping[str, pd.DataFrame]) -> tuple[Tables, list[str]]:
    notes: list[str] = []
    table = nstep_corrections_table(earlier["per_task"], nstep_runs_table(scored.finals), notes)
    return {"nstep_corrections": table}, notes


def _n_label(n_step: int, n_step_end: int) -> str:
    """'3', or '3→1' for an n that anneals from n_step to n_step_end."""
    return f"{int(n_step)}→{int(n_step_end)}" if n_step_end else f"{int(n_step)}"


def _correction_label(r) -> str:
    """'retrace (π ε=0.01)': the correction, with its target policy's epsilon when it is not greedy, and lambda
    and the importance-weight clip where they are not the defaults (1 and none)."""
    extra = []
    if r.is_target_eps > 0:
        extra.append(f"π ε={r.is_target_eps:g}")
    if r.trace_lambda != 1.0:
        extra.append(f"λ={r.trace_lambda:g}")
    if r.is_clip > 0:
        extra.append(f"clip={r.is_clip:g}")
    return f"{r.nstep_correction} ({', '.join(extra)})" if extra else r.nstep_correction


def _trace_cell(r) -> str:
    """The mean trace length, and how many of the runs logged it when not all did (older runs did not)."""
    if not r.trace_length_runs:
        return "–"
    logged = f" ({int(r.trace_length_runs)} of {int(r.runs)} runs)" if r.trace_length_runs < r.runs else ""
    return f"{num(r.trace_length_steps_mean, 2)} of {int(max(r.n_step, r.n_step_end))}{logged}"


def nstep_corrections_display(report: Report) -> pd.DataFrame:
    pct = f"{report.confidence:.0%}"
    return pd.DataFrame([{"task": r.task, "n": _n_label(r.n_step, r.n_step_end), "correction": _correction_label(r),
                          "variant": r.variant, "runs": int(r.runs), "diverged": int(r.diverged),
                          f"final return IQM [{pct} CI]": ci(r.iqm, r.iqm_lower, r.iqm_upper),
                          "mean return over training (AUC)": num(r.auc_mean),
                          "trace length (env steps)": _trace_cell(r),
                          "Δ IQM vs ignore": num(r.iqm_minus_ignore)}
                         for r in table_of(report, "nstep_corrections").itertuples(index=False)])


NSTEP_CORRECTIONS_TEXT = (
    "An n-step target sums the rewards of up to n replayed steps, whose later actions came from an older, "
    "exploring behaviour policy μ; each correction weighs later step j by a trace C_j = c_1 ⋯ c_j (C_0 = 1). "
    "ignore: c = 1, the actions as they are; cut (Watkins): c = 1 up to the first later action that is not greedy "
    "under the online Q, 0 from there; importance_sampling: c = π/μ, truncated at clip where one is set; retrace: "
    "c = λ min(1, π/μ); tree_backup: c = λ π. π is the greedy target policy, or the ε-greedy one shown. Trace "
    "length: the env steps the target effectively used, out of n: the window length for ignore and cut (shorter "
    "at an episode's end, and where cut stops), sum_j C_j for the trace corrections; the mean over sampled "
    "windows and over each run's logged updates, then over runs (– for runs written before it was logged). Final "
    "IQM and AUC as in the per-task table; Δ IQM vs ignore: the final IQM minus that of the same task's ignore "
    "variant at the same n.")


def corrections_sections(report: Report) -> list[Section]:
    return [Section("N-step corrections", NSTEP_CORRECTIONS_TEXT, nstep_corrections_display(report))]


CORRECTIONS = Study("corrections", ("nstep_corrections",), corrections_tables, needs=("per_task",),
                    sections={30: corrections_sections})
