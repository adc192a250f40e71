"""Overestimation: how far the network's Q lies above the discounted return it then collects, over the complete
runs that logged both (runs written before these columns existed did not):

- ``overestimation``: per evaluation step, the predicted Q(s_0, a_0), the discounted return measured from s_0 and
  their difference, IQM over seeds, the difference with a CI over seeds;
- ``overestimation_visited``: the same along the states the greedy evaluation policy visited (its mean
  Q(s_t, a_t) against the discounted return collected from each);
- ``overestimation_final``: per (task, variant) at the last evaluation step its complete runs share, both
  overestimations with CIs (to compare variants on).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
from scipy import stats as scipy_stats

from qbench.analysis.bootstrap import bootstrap_iqm_over_seeds, row_generator
from qbench.analysis.display import ci, num, steps, table_of
from qbench.analysis.scoring import ScoredRuns, complete_runs
from qbench.analysis.study import Section, Study, Tables

if TYPE_CHECKING:
    from qbench.analysis.plots import Style
    from qbench.analysis.report import Report

OVERESTIMATION_STATISTIC = "IQM over seeds"


def overestimation_table(results: pd.DataFrame, finals: pd.DataFrame, *, seed: int, reps: int,
                         confidence: float) -> pd.DataFrame:
    """The predicted Q(s_0, a_0) against the discounted return measured from s_0, per evaluation step, over the
    complete runs that logged them (runs written before these columns existed did not), at the steps all of them
    share. Each column is the IQM over seeds (``statistic``) of one number per run: ``q_start_mean`` and
    ``discounted_return_mean`` (the run's means over its evaluation episodes, as logged) and ``overestimation``
    = Q - measured return (positive = optimistic Q), with its percentile bootstrap CI over seeds
    (``overestimation_lower``, ``overestimation_upper``; seeds resampled whole, as for the learning curves) and
    the smallest and largest run's (``overestimation_min``, ``overestimation_max``). The IQM of the differences
    is not the difference of the IQMs.

    IQM, not the mean: one seed whose Q runs away (its loss finite, so it is not diverged) moves the IQM by no
    more than the spread of the other seeds, where a mean follows it (one seed at 2e8 among five: 4e7)."""
    return _overestimation(results, finals, "q_start_mean", "discounted_return_mean", "overestimation",
                           seed=seed, reps=reps, confidence=confidence)


def _overestimation(results: pd.DataFrame, finals: pd.DataFrame, q_column: str, measured_column: str, name: str,
                    *, seed: int, reps: int, confidence: float) -> pd.DataFrame:
    """``overestimation_table`` of any pair of logged columns, its difference called ``name`` (also the key of
    its generators)."""
    columns = ["task", "variant", "env_steps", "statistic", "seeds", q_column, measured_column, name,
               f"{name}_lower", f"{name}_upper", f"{name}_min", f"{name}_max"]
    if not {q_column, measured_column} <= set(results.columns):
        return pd.DataFrame(columns=columns)
    logged = results[results["run_dir"].isin(set(complete_runs(finals)["run_dir"]))].dropna(
        subset=[q_column, measured_column])
    frames = []
    for (task, variant), group in logged.groupby(["task", "variant"], sort=True):
        wide = {c: group.pivot_table(index="run_dir", columns="env_steps", values=c).dropna(axis=1)
                for c in (q_column, measured_column)}
        steps = wide[q_column].columns.intersection(wide[measured_column].columns)
        if steps.empty:
            continue
        q = wide[q_column][steps].to_numpy(float)
        measured = wide[measured_column][steps].to_numpy(float)
        over = q - measured
        point, lower, upper = bootstrap_iqm_over_seeds(over, row_generator(seed, name, task, variant), reps,
                                                        confidence)
        frames.append(pd.DataFrame({
            "task": task, "variant": variant, "env_steps": steps.astype(int), "statistic": OVERESTIMATION_STATISTIC,
            "seeds": len(q), q_column: scipy_stats.trim_mean(q, 0.25, axis=0),
            measured_column: scipy_stats.trim_mean(measured, 0.25, axis=0), name: point,
            f"{name}_lower": lower, f"{name}_upper": upper, f"{name}_min": over.min(axis=0),
            f"{name}_max": over.max(axis=0)}))
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def overestimation_visited_table(results: pd.DataFrame, finals: pd.DataFrame, *, seed: int, reps: int,
                                 confidence: float) -> pd.DataFrame:
    """``overestimation_table`` along the states the greedy evaluation policy visited instead of from s_0:
    ``q_visited_mean`` (the network's mean Q(s_t, a_t) over them) against ``discounted_return_visited_mean``
    (the mean discounted return collected from each), and ``overestimation_visited`` = their difference, IQM
    over seeds with its CI. An evaluation where no state qualified logged NaN (``visited_states`` 0): its step
    is not shared by every run, so it is not in the table."""
    return _overestimation(results, finals, "q_visited_mean", "discounted_return_visited_mean",
                           "overestimation_visited", seed=seed, reps=reps, confidence=confidence)


OVERESTIMATION_FINAL_COLUMNS = [
    "task", "variant", "env_steps", "statistic",
    "start_q", "start_return", "start_overestimation", "start_lower", "start_upper", "start_seeds",
    "visited_q", "visited_return", "visited_overestimation", "visited_lower", "visited_upper", "visited_seeds",
    "visited_states"]


def overestimation_final_table(results: pd.DataFrame, finals: pd.DataFrame, *, seed: int, reps: int,
                               confidence: float) -> pd.DataFrame:
    """One row per (task, variant): the overestimation at the last evaluation step that all its complete runs
    share (``env_steps``), from s_0 (``start_*``: q_start_mean - discounted_return_mean) and along the visited
    states (``visited_*``: q_visited_mean - discounted_return_visited_mean): for each, the IQM over seeds of the
    predicted Q, of the measured return and of each seed's difference (``*_overestimation``) with its percentile
    bootstrap CI, and the seeds that logged it at that step (``*_seeds``; 0 and NaN values when none did);
    ``visited_states``: the mean over those seeds of the states the greedy policy visited. The table to compare
    variants on (dqn against double_dqn): every variant at its own budget, the same statistic."""
    measures = {"start": ("q_start_mean", "discounted_return_mean"),
                "visited": ("q_visited_mean", "discounted_return_visited_mean")}
    present = {k: v for k, v in measures.items() if set(v) <= set(results.columns)}
    if not present:
        return pd.DataFrame(columns=OVERESTIMATION_FINAL_COLUMNS)
    complete = results[results["run_dir"].isin(set(complete_runs(finals)["run_dir"]))]
    rows = []
    for (task, variant), group in complete.groupby(["task", "variant"], sort=True):
        shared = set.intersection(*(set(g["env_steps"]) for _, g in group.groupby("run_dir", sort=False)))
        if not shared:
            continue
        step = max(shared)
        at = group[group["env_steps"] == step].drop_duplicates("run_dir", keep="last")
        row: dict[str, Any] = {"task": task, "variant": variant, "env_steps": int(step),
                               "statistic": OVERESTIMATION_STATISTIC}
        for measure in measures:
            row.update({f"{measure}_{k}": math.nan for k in ("q", "return", "overestimation", "lower", "upper")})
            row[f"{measure}_seeds"] = 0
            if measure not in present:
                continue
            q_column, measured_column = present[measure]
            logged = at.dropna(subset=[q_column, measured_column])
            if logged.empty:
                continue
            q = logged[q_column].to_numpy(float)[:, None]
            measured = logged[measured_column].to_numpy(float)[:, None]
            point, lower, upper = bootstrap_iqm_over_seeds(
                q - measured, row_generator(seed, "overestimation_final", measure, task, variant), reps, confidence)
            row.update({f"{measure}_q": float(scipy_stats.trim_mean(q[:, 0], 0.25)),
                        f"{measure}_return": float(scipy_stats.trim_mean(measured[:, 0], 0.25)),
                        f"{measure}_overestimation": float(point[0]), f"{measure}_lower": float(lower[0]),
                        f"{measure}_upper": float(upper[0]), f"{measure}_seeds": len(logged)})
            if measure == "visited" and "visited_states" in logged:
                row["visited_states"] = float(logged["visited_states"].mean())
        if row["start_seeds"] or row["visited_seeds"]:
            rows.append(row)
    return pd.DataFrame(rows, columns=OVERESTIMATION_FINAL_COLUMNS)



def overestimation_tables(scored: ScoredRuns, earlier: Mapping[str, pd.DataFrame]) -> tuple[Tables, list[str]]:
    results, finals, boot = scored.results, scored.finals, scored.bootstrap
    tables = {"overestimation": overestimation_table(results, finals, **boot),
              "overestimation_visited": overestimation_visited_table(results, finals, **boot),
              "overestimation_final": overestimation_final_table(results, finals, **boot)}
    notes = []
    if tables["overestimation"].empty:
        notes.append("no run logged Q(s_0, a_0) and its discounted return (runs older than these columns, or "
                     "episodes too short for gamma: a return counts when log(0.01)/log(gamma) steps fit after its "
                     "state, 459 at gamma 0.99): no overestimation plot")
    return tables, notes



# --- the report's sections and figures ---------------------------------------------------------------------------

def _overestimation_last(table: pd.DataFrame, q_column: str, measured_column: str, name: str,
                         q_label: str) -> pd.DataFrame:
    """The last evaluation step of each (task, variant) of an overestimation table, as display rows."""
    if table.empty:
        return pd.DataFrame()
    last = table.sort_values("env_steps").groupby(["task", "variant"], sort=True).tail(1)
    return pd.DataFrame([{"task": r["task"], "variant": r["variant"], "env steps": steps(r["env_steps"]),
                          q_label: num(r[q_column]), "measured discounted return": num(r[measured_column]),
                          "overestimation (CI)": ci(r[name], r[f"{name}_lower"], r[f"{name}_upper"]),
                          "seeds": r["seeds"]}
                         for _, r in last.sort_values(["task", "variant"]).iterrows()])


def overestimation_display(report: Report) -> pd.DataFrame:
    return _overestimation_last(report.tables["overestimation"], "q_start_mean", "discounted_return_mean",
                                "overestimation", "predicted Q(s0, a0)")


def overestimation_visited_display(report: Report) -> pd.DataFrame:
    return _overestimation_last(table_of(report, "overestimation_visited"), "q_visited_mean",
                                "discounted_return_visited_mean", "overestimation_visited",
                                "predicted Q along visited states")


def overestimation_final_display(report: Report) -> pd.DataFrame:
    pct = f"{report.confidence:.0%}"

    def cell(point, lower, upper, seeds):
        return f"{ci(point, lower, upper)}, {int(seeds)} seeds" if seeds else "–"

    return pd.DataFrame([{"task": r.task, "variant": r.variant, "env steps": steps(r.env_steps),
                          f"from s0: Q − return [{pct} CI]": cell(r.start_overestimation, r.start_lower,
                                                                 r.start_upper, r.start_seeds),
                          f"along visited states: Q − return [{pct} CI]": cell(
                              r.visited_overestimation, r.visited_lower, r.visited_upper, r.visited_seeds),
                          "visited states": num(r.visited_states, 1)}
                         for r in table_of(report, "overestimation_final").itertuples(index=False)])


def overestimation_sections(report: Report) -> list[Section]:
    pct = f"{report.confidence:.0%}"
    return [
        Section("Overestimation",
                "Q(s0, a0) predicted by the network at the first state of each evaluation episode against the "
                "discounted return then collected, at the last evaluation: each an IQM over seeds (robust to "
                "one seed whose Q runs away), the overestimation being the IQM of each seed's own difference, with "
                f"a {pct} bootstrap CI over seeds.",
                overestimation_display(report), "overestimation"),
        Section("Overestimation along visited states",
                "The network's Q(s_t, a_t) averaged over the states the greedy evaluation policy visited, against "
                "the discounted return collected from each of them, at the last evaluation: IQM over seeds, the "
                f"overestimation with a {pct} bootstrap CI over seeds.",
                overestimation_visited_display(report), "overestimation_visited"),
        Section("Overestimation at the last evaluation",
                "Per variant at the last evaluation step all its complete runs share: predicted Q minus the "
                f"measured discounted return, from s0 and along the visited states, IQM over seeds with a {pct} "
                "bootstrap CI over seeds: the row to compare variants on (dqn against double_dqn).",
                overestimation_final_display(report)),
    ]


def overestimation_figures(report: Report, styles: dict[str, Style]) -> dict[str, Any]:
    # Imported here: matplotlib and seaborn are the optional ``report`` extra, which the tables do not need.
    from qbench.analysis.studies import plots_overestimation

    return plots_overestimation.figures(report, styles)


OVERESTIMATION = Study("overestimation", ("overestimation", "overestimation_visited", "overestimation_final"),
                       overestimation_tables, sections={40: overestimation_sections}, figures=overestimation_figures)
