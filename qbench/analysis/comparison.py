"""Your runs beside the reference's: ``qbench report RESULTS --reference REFDIR`` (``build_report(results,
reference=...)``).

Both folders are read, and every run is marked with its side by its variant's name: variant ``v`` of RESULTS
becomes ``v (theirs)`` and variant ``v`` of the reference ``v (reference)`` (``side_label``); a run's suite is
renamed the same way, so that each side's runs are scored by that side's own suites (random and reference scores,
and pass thresholds, which are per task and variant: mapped to the renamed variants). The report of the combined
runs is then the ordinary one, in which the two sides are just variants: every table and figure shows them side
by side, and the probability of improvement compares every pair, a custom variant of RESULTS against every
variant of the reference included.

Which runs: every task of RESULTS; of the reference, the runs of those tasks only (all its variants of them, so
a variant of RESULTS stands beside each of the reference's). A task of RESULTS the reference lacks is shown alone,
and a note names it; the reference's other tasks are left out, and a note names them. Two folders that share no
task, or one inside the other (the inner one's runs would be read twice), are refused with one line
(``ConfigError``).

The ``versus_reference`` table (``versus_study``) puts each (task, variant) that both sides ran beside itself:
IQM of each side (from ``per_task``) and P(theirs > reference) with its CI, computed by
``qbench.analysis.studies.core.improvement_table`` on the runs of that task, with the improvement table's row key
(so a task that stands alone gives the improvement table's number).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from qbench.analysis.display import ci, with_diverged
from qbench.analysis.scoring import ANY_SUITE, ScoredRuns, TaskScoring, load_suite_scorings, merged_scoring
from qbench.analysis.study import Section, Study, Tables
from qbench.config import ConfigError
from qbench.loading import UNKNOWN, load_episodes, load_runs_and_results, results_folder

if TYPE_CHECKING:
    from qbench.analysis.report import Report

THEIRS, REFERENCE = "theirs", "reference"


def side_label(name: str, side: str) -> str:
    """A variant's (or suite's) name in a comparison: ``dqn (theirs)``, ``dqn (reference)``."""
    return f"{name} ({side})"


def relabel(frame: pd.DataFrame, side: str) -> pd.DataFrame:
    """``frame`` (runs, evaluations or episodes) with its variants and suites named for ``side``; a run without a
    suite (``qbench train``) keeps its empty one."""
    out = frame.copy()
    if out.empty:
        return out
    out["variant"] = [side_label(str(v), side) for v in out["variant"]]
    out["suite"] = [side_label(str(s), side) if isinstance(s, str) and s else s for s in out["suite"]]
    return out


def _relabelled_entry(entry: TaskScoring, side: str) -> TaskScoring:
    return replace(entry, thresholds={side_label(v, side): t for v, t in entry.thresholds.items()})


def side_scorings(runs: pd.DataFrame, side: str, suite: str | None, notes: list[str]
                  ) -> tuple[dict[str, dict[str, TaskScoring]], dict[str, TaskScoring]]:
    """The scorings of one side's runs (``runs``: its ``load_runs`` table, names not yet relabelled), per suite
    and per task, with suites and thresholds named for ``side``."""
    per_suite = load_suite_scorings(sorted(set(runs["run_dir"])), sorted(set(runs["suite"])), suite, notes)
    merged = merged_scoring(per_suite)
    return ({(name if name == ANY_SUITE else side_label(name, side)):
             {task: _relabelled_entry(entry, side) for task, entry in tasks.items()}
             for name, tasks in per_suite.items()},
            {task: _relabelled_entry(entry, side) for task, entry in merged.items()})


def _union_thresholds(first: TaskScoring, second: TaskScoring) -> TaskScoring:
    return replace(first, thresholds={**second.thresholds, **first.thresholds})


def combined_scorings(sides: list[tuple[dict[str, dict[str, TaskScoring]], dict[str, TaskScoring]]]
                      ) -> tuple[dict[str, dict[str, TaskScoring]], dict[str, TaskScoring]]:
    """The sides' scorings in one: per suite (the renamed suites are the sides' own; ``ANY_SUITE``, the one
    suite file given for both, holds both sides' thresholds) and per task (the first side's scores, where it has
    them, and both sides' thresholds, each under its side's variant names)."""
    per_suite: dict[str, dict[str, TaskScoring]] = {}
    per_task: dict[str, TaskScoring] = {}
    for suites, tasks in sides:
        for name, entries in suites.items():
            into = per_suite.setdefault(name, {})
            for task, entry in entries.items():
                into[task] = _union_thresholds(into[task], entry) if task in into else entry
        for task, entry in tasks.items():
            per_task[task] = _union_thresholds(per_task[task], entry) if task in per_task else entry
    return per_suite, per_task


@dataclass(frozen=True)
class Comparison:
    """The runs of RESULTS and of the reference, relabelled and combined (``load_comparison``)."""

    source: str
    runs: pd.DataFrame
    results: pd.DataFrame
    episodes: pd.DataFrame
    scorings: tuple[dict[str, dict[str, TaskScoring]], dict[str, TaskScoring]]
    pairs: tuple[tuple[str, str], ...]   # (task, variant) that both sides ran, variant by its own name
    notes: list[str]


def _tasks(runs: pd.DataFrame) -> set[str]:
    return {str(t) for t in runs["task"] if t != UNKNOWN}


def _listed(names) -> str:
    return ", ".join(sorted(names)) or "no task"


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    kept = [f for f in frames if not f.empty]
    return pd.concat(kept, ignore_index=True) if kept else frames[0]


def load_comparison(results: str | Path, reference: str | Path, *, suite: str | None = None) -> Comparison:
    """RESULTS and the reference folder read, relabelled (``relabel``) and combined, the reference's runs
    restricted to the tasks of RESULTS, with each side's scorings (``side_scorings``) and the notes on tasks one
    side lacks. ``ConfigError`` (one line): a folder that does not exist or is a file, folders that overlap, no
    shared task."""
    mine, theirs_ref = results_folder(results), results_folder(reference)
    a, b = mine.resolve(), theirs_ref.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise ConfigError(f"results folder '{mine}' and reference folder '{theirs_ref}' overlap (one holds the "
                          "other, so its runs would count on both sides): give two separate folders")
    user_runs, user_results = load_runs_and_results(mine)
    ref_runs, ref_results = load_runs_and_results(theirs_ref)
    user_tasks, ref_tasks = _tasks(user_runs), _tasks(ref_runs)
    shared = user_tasks & ref_tasks
    if user_tasks and not shared:
        raise ConfigError(f"results folder '{mine}' and reference folder '{theirs_ref}' share no task: "
                          f"'{mine}' has {_listed(user_tasks)}; '{theirs_ref}' has {_listed(ref_tasks)}")
    notes: list[str] = []
    if user_tasks - ref_tasks:
        notes.append(f"the reference '{theirs_ref}' has no run of {_listed(user_tasks - ref_tasks)}: your runs of "
                     "it stand alone")
    if ref_tasks - user_tasks:
        notes.append(f"tasks of the reference that '{mine}' did not run are left out: "
                     f"{_listed(ref_tasks - user_tasks)}")
    ref_runs = ref_runs[ref_runs["task"].isin(user_tasks)]
    ref_results = ref_results[ref_results["task"].isin(user_tasks)] if not ref_results.empty else ref_results
    user_episodes, ref_episodes = load_episodes(mine), load_episodes(theirs_ref)
    if not ref_episodes.empty:
        ref_episodes = ref_episodes[ref_episodes["task"].isin(user_tasks)]
    sides = [side_scorings(user_runs, THEIRS, suite, notes), side_scorings(ref_runs, REFERENCE, suite, notes)]
    for task in sorted(shared):
        own, other = sides[0][1].get(task), sides[1][1].get(task)
        if own is not None and other is not None and own.normalisable and other.normalisable and \
                (own.random_score, own.reference_score) != (other.random_score, other.reference_score):
            notes.append(f"{task}: your suite and the reference's score it differently (theirs: random "
                         f"{own.random_score:g}, reference {own.reference_score:g}; reference: random "
                         f"{other.random_score:g}, reference {other.reference_score:g}): each side's runs are "
                         "normalised by its own suite's scores")
    variants = {side: {(str(t), str(v)) for t, v in zip(runs["task"], runs["variant"]) if t != UNKNOWN}
                for side, runs in ((THEIRS, user_runs), (REFERENCE, ref_runs))}
    pairs = tuple(sorted(variants[THEIRS] & variants[REFERENCE]))
    runs = _concat([relabel(user_runs, THEIRS), relabel(ref_runs, REFERENCE)])
    for column, dtype in (("seed", "Int64"), ("divergence_warned", "boolean")):
        runs[column] = runs[column].astype(dtype)
    return Comparison(f"{mine} beside the reference {theirs_ref}", runs.reset_index(drop=True),
                      _concat([relabel(user_results, THEIRS), relabel(ref_results, REFERENCE)]),
                      _concat([relabel(user_episodes, THEIRS), relabel(ref_episodes, REFERENCE)]),
                      combined_scorings(sides), pairs, notes)


# --- the versus_reference table ---------------------------------------------------------------------------------

VERSUS_COLUMNS = ["task", "variant", "theirs_seeds", "theirs_diverged", "theirs_iqm", "theirs_iqm_lower",
                  "theirs_iqm_upper", "reference_seeds", "reference_diverged", "reference_iqm",
                  "reference_iqm_lower", "reference_iqm_upper", "p_theirs_better", "p_lower", "p_upper"]


def versus_table(pairs: tuple[tuple[str, str], ...], scored: ScoredRuns, per_task: pd.DataFrame
                 ) -> tuple[pd.DataFrame, list[str]]:
    """Per (task, variant) of ``pairs`` with runs in the statistics on both sides: each side's IQM (``per_task``'s
    row) and P(theirs > reference) on that task with its CI (``improvement_table`` on that task's runs)."""
    from qbench.analysis.studies.core import improvement_table

    by_key = per_task.set_index(["task", "variant"])
    rows, notes = [], []
    for task, variant in pairs:
        theirs, ref = side_label(variant, THEIRS), side_label(variant, REFERENCE)
        lacking = [side for side, name in ((THEIRS, theirs), (REFERENCE, ref)) if (task, name) not in by_key.index]
        if lacking:
            notes.append(f"{task} / {variant}: no run of {' or '.join(lacking)} in the statistics, so the two "
                         "sides are not compared")
            continue
        finals = scored.finals
        improvement = improvement_table(finals[(finals["task"] == task) & finals["variant"].isin([theirs, ref])],
                                        **scored.bootstrap)
        p = improvement[(improvement["x"] == theirs) & (improvement["y"] == ref)].iloc[0]
        t, r = by_key.loc[(task, theirs)], by_key.loc[(task, ref)]
        rows.append({"task": task, "variant": variant,
                     "theirs_seeds": int(t["seeds"]), "theirs_diverged": int(t["diverged"]),
                     "theirs_iqm": t["iqm"], "theirs_iqm_lower": t["iqm_lower"], "theirs_iqm_upper": t["iqm_upper"],
                     "reference_seeds": int(r["seeds"]), "reference_diverged": int(r["diverged"]),
                     "reference_iqm": r["iqm"], "reference_iqm_lower": r["iqm_lower"],
                     "reference_iqm_upper": r["iqm_upper"],
                     "p_theirs_better": p["point"], "p_lower": p["lower"], "p_upper": p["upper"]})
    return pd.DataFrame(rows, columns=VERSUS_COLUMNS), notes


def versus_display(report: Report) -> pd.DataFrame:
    pct = f"{report.confidence:.0%}"
    return pd.DataFrame([{
        "task": r.task, "variant": r.variant,
        f"theirs: IQM [{pct} CI]": ci(r.theirs_iqm, r.theirs_iqm_lower, r.theirs_iqm_upper),
        "theirs: seeds": with_diverged(r.theirs_seeds, r.theirs_diverged),
        f"reference: IQM [{pct} CI]": ci(r.reference_iqm, r.reference_iqm_lower, r.reference_iqm_upper),
        "reference: seeds": with_diverged(r.reference_seeds, r.reference_diverged),
        f"P(theirs > reference) [{pct} CI]": ci(r.p_theirs_better, r.p_lower, r.p_upper, 2),
    } for r in report.tables["versus_reference"].itertuples(index=False)])


def versus_sections(report: Report) -> list[Section]:
    return [Section("Your runs against the reference",
                    "Each variant that both your results and the reference ran, per task: the IQM of the final "
                    "return over each side's seeds, and P(theirs > reference), the chance that one of your runs "
                    "beats one of the reference's on the task (as in Probability of improvement, there over the "
                    "tasks both ran). Everywhere else in this report your variants are named 'v (theirs)' and the "
                    "reference's 'v (reference)'; a variant only one side ran is compared with the others in "
                    "Probability of improvement.", versus_display(report))]


def versus_study(pairs: tuple[tuple[str, str], ...]) -> Study:
    """The study that adds ``versus_reference`` to a comparison's report, shown first (place 5)."""

    def compute(scored: ScoredRuns, earlier: Mapping[str, pd.DataFrame]) -> tuple[Tables, list[str]]:
        table, notes = versus_table(pairs, scored, earlier["per_task"])
        return {"versus_reference": table}, notes

    return Study("versus_reference", ("versus_reference",), compute, needs=("per_task",),
                 sections={5: versus_sections})
