"""Outcomes: what became of every run, whatever its score. The ``runs`` table counts run directories per
(task, variant) by state (complete, diverged, crashed, env, unfinished, damaged: ``qbench.loading.RUN_STATES``), how
many the divergence watch flagged
(``warned``) and how many enter the statistics; ``diverged_runs`` says what stopped each diverged run (a NaN or inf
loss, or Q beyond the bound); ``finals`` is one row per run directory (``qbench.analysis.scoring.final_scores``).

Their notes name every run left out of the statistics and why (crashed, env and unfinished runs by path, up to
``MAX_NAMED`` per (task, variant) and state, the rest counted; damaged runs each with what is wrong with it), the
diverged runs and where they were scored,
unequal seed counts, pooled budgets and code versions (git commit, else qbench version, of each run's latest
attempt), resumed runs whose attempts ran different code, and the tasks without normalisation scores.

A run the divergence watch flagged (its |Q| passed ``divergence_warn_factor`` value scales, 5 by default, and it
ran on: ``divergence_watch`` in summary.json) counts like every other run: it is counted in ``warned`` and named
in a note per (task, variant), never removed from a statistic. Runs whose summary.json predates that record count
as not flagged, and a note says how many there are.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from qbench.analysis.display import table_of
from qbench.analysis.scoring import (
    ScoredRuns,
    TaskScoring,
    complete_runs,
    flagged_runs,
    scored_runs,
    warned_count,
)
from qbench.analysis.study import Section, Study, Tables
from qbench.loading import RUN_STATES

if TYPE_CHECKING:
    from qbench.analysis.report import Report

STATES = RUN_STATES
MAX_NAMED = 10   # run directories a note names per (task, variant) and state; the rest are counted


def runs_table(finals: pd.DataFrame) -> pd.DataFrame:
    """Per (task, variant): how many run directories are in each state, how many of them the divergence watch
    flagged (``warned``: |Q| passed its warning level; they ran on, and are in the state columns and the
    statistics like any other), how many enter the statistics (``in_statistics``: complete plus scored diverged
    runs) and their seeds."""
    rows = []
    for (task, variant), group in finals.groupby(["task", "variant"], sort=True):
        scored = group[group["scored"]]
        counts = group["status"].value_counts()
        rows.append({"task": task, "variant": variant, **{s: int(counts.get(s, 0)) for s in STATES},
                     "warned": warned_count(group), "in_statistics": len(scored),
                     "seeds": ",".join(str(int(s)) for s in sorted(scored["seed"].dropna()))})
    return pd.DataFrame(rows, columns=["task", "variant", *STATES, "warned", "in_statistics", "seeds"])


DIVERGENCE_BOUND_MESSAGE = "Q exceeded the divergence bound"   # how the engine's divergence watch begins error.json


def divergence_cause(run_dir: str) -> str:
    """bound (the Q divergence watch stopped the run at its level) or nan_or_inf (a non-finite loss, gradient or
    Q), from error.json: its ``divergence_watch`` record (``stopped_non_finite``) where it has one, else its
    message; a diverged run whose error.json cannot be read counts as nan_or_inf, the only cause before the watch
    existed."""
    try:
        record = json.loads((Path(run_dir) / "error.json").read_text())
        message = record.get("message", "")
    except (OSError, ValueError, AttributeError):
        return "nan_or_inf"
    watch = record.get("divergence_watch")
    if isinstance(watch, dict) and isinstance(watch.get("stopped_non_finite"), bool) \
            and watch.get("stopped_env_step") is not None:
        return "nan_or_inf" if watch["stopped_non_finite"] else "bound"
    return "bound" if str(message).startswith(DIVERGENCE_BOUND_MESSAGE) else "nan_or_inf"


def diverged_runs_table(finals: pd.DataFrame) -> pd.DataFrame:
    """Per (task, variant) with a diverged run: of its ``runs`` (every state but damaged), how many ``diverged``,
    of those how many stopped on a NaN or inf loss (``nan_or_inf``) and how many because Q exceeded the divergence
    bound (``bound``)."""
    columns = ["task", "variant", "runs", "diverged", "nan_or_inf", "bound"]
    known = finals[finals["status"] != "damaged"]
    rows = []
    for (task, variant), group in known.groupby(["task", "variant"], sort=True):
        causes = [divergence_cause(d) for d in group.loc[group["status"] == "diverged", "run_dir"]]
        if causes:
            rows.append({"task": task, "variant": variant, "runs": len(group), "diverged": len(causes),
                         "nan_or_inf": causes.count("nan_or_inf"), "bound": causes.count("bound")})
    return pd.DataFrame(rows, columns=columns)

def error_message(run_dir: str) -> str:
    """The first line of error.json's message (after its exception type, for a crash), at most 160 characters; ''
    when error.json cannot be read or has none."""
    try:
        record = json.loads((Path(run_dir) / "error.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(record, dict):
        return ""
    lines = str(record.get("message") or "").strip().splitlines()
    kind = record.get("type") if record.get("error") == "crashed" else None
    line = ": ".join(str(p) for p in (kind, lines[0] if lines else "") if p)
    return line if len(line) <= 160 else line[:159] + "…"


def named_runs(group: pd.DataFrame, with_message: bool = False) -> str:
    """The run directories of ``group`` (rows of ``finals``), '; '-separated in its order, at most ``MAX_NAMED``
    of them and how many more; each followed by its error.json message in brackets when ``with_message``."""
    named = []
    for run_dir in list(group["run_dir"])[:MAX_NAMED]:   # finals' order: by seed
        message = error_message(run_dir) if with_message else ""
        named.append(f"{run_dir} ({message})" if message else run_dir)
    more = len(group) - MAX_NAMED
    return "; ".join(named) + (f"; and {more} more" if more > 0 else "")


def _short(version: str) -> str:
    """A git commit as its first 12 characters (keeping '-dirty'); a 'qbench X' version as it is."""
    if re.fullmatch(r"[0-9a-f]{40}(-dirty)?", version):
        return version[:12] + ("-dirty" if version.endswith("-dirty") else "")
    return version


def _scales(x: float) -> str:
    return "unknown" if x is None or math.isnan(x) else f"{x:,.1f}"


def _warned_notes(finals: pd.DataFrame) -> list[str]:
    """A note per (task, variant) with runs the divergence watch flagged, naming their seeds and largest peak,
    and one note when some complete or diverged runs predate the watch's record (counted as not flagged)."""
    notes = []
    flagged = finals[flagged_runs(finals)]
    for (task, variant), group in flagged.groupby(["task", "variant"], sort=True):
        factors = sorted(set(group["divergence_warn_factor"].dropna()))
        level = " or ".join(f"{f:g}" for f in factors) if factors else "divergence_warn_factor"
        seeds = ", ".join(dict.fromkeys(str(int(s)) if pd.notna(s) else "?" for s in sorted(
            group["seed"], key=lambda s: (pd.isna(s), s if pd.notna(s) else 0))))
        note = (f"{task} / {variant}: {len(group)} run(s) passed the divergence warning level (|Q| above {level} "
                f"value scales; peak {_scales(group['peak_value_scales'].max())} scales, seed(s) {seeds}): "
                "flagged, not stopped; they count like every other run")
        others = group[group["status"] != "complete"]
        if not others.empty:
            note += " (" + "; ".join(f"{n} of them {status}, counted as {status} runs are" for status, n in
                                     others["status"].value_counts().sort_index().items()) + ")"
        notes.append(note)
    known = finals["divergence_warned"].notna() if "divergence_warned" in finals.columns \
        else pd.Series(False, index=finals.index)
    unknown = finals[finals["status"].isin(["complete", "diverged"]) & ~known]
    if not unknown.empty:
        notes.append(f"{len(unknown)} of {int(finals['status'].isin(['complete', 'diverged']).sum())} complete or "
                     "diverged run(s) have no usable divergence watch record (written before summary.json held one, "
                     "stopped by an older watch, or damaged: see their notes): whether their |Q| passed the warning level is unknown, and they "
                     "are counted as not flagged")
    return notes


def _tuned_notes(finals: pd.DataFrame) -> list[str]:
    """Whose settings qbench tune chose, with what budget (finals' ``tuned``, from config.json's tuned_from); and
    the tasks whose variants were tuned unequally (some not at all, or with different budgets)."""
    if "tuned" not in finals.columns:
        return []
    known = finals[finals["status"] != "damaged"]
    tuned = known[~known["tuned"].isin(["", "no"])]
    if tuned.empty:
        return []
    notes = []
    for (task, budget), group in tuned.groupby(["task", "tuned"], sort=True):
        notes.append(f"{task}: settings tuned by qbench tune ({budget}) for "
                     + ", ".join(sorted(set(group["variant"]))) + " (the tuned column of finals says it per run)")
    for task, group in known.groupby("task", sort=True):
        budgets = {v: ", ".join(sorted(set(g["tuned"].replace("", "no")))) for v, g in group.groupby("variant")}
        if len(set(budgets.values())) > 1:
            notes.append(f"{task}: its variants were not tuned with one budget ("
                         + "; ".join(f"{v}: {b}" for v, b in sorted(budgets.items()))
                         + "): the comparison is not one of equal tuning effort")
    return notes


def outcome_notes(runs: pd.DataFrame, finals: pd.DataFrame, scoring: dict[str, TaskScoring]) -> list[str]:
    """What a reader must know about the runs behind the statistics: ``runs`` is ``runs_table(finals)``."""
    notes = []
    for r in finals[finals["status"] == "damaged"].itertuples(index=False):
        notes.append(f"{r.run_dir}: damaged, left out of every statistic: "
                     + (r.problems or "its files cannot all be read (qbench.loading.load_runs says which)"))
    for r in finals[(finals["status"] != "damaged") & finals["problems"].astype(bool)].itertuples(index=False):
        notes.append(f"{r.run_dir} ({r.status}): {r.problems}")
    for task, group in runs.groupby("task", sort=True):
        counts = dict(zip(group["variant"], group["in_statistics"]))
        if len(set(counts.values())) > 1:
            notes.append(f"{task}: unequal numbers of runs in the statistics: "
                         + ", ".join(f"{v} {n}" for v, n in sorted(counts.items()))
                         + " (statistics use the runs there are; each task weighs equally in aggregates)")
    for (task, variant), group in finals[finals["status"] == "diverged"].groupby(["task", "variant"], sort=True):
        described = []
        for r in group.itertuples(index=False):
            if r.score_source.startswith("last"):
                what = f"scored {r.final_return:g}, its evaluation at {int(r.env_steps):,} env steps"
            elif r.scored:
                what = f"before any evaluation: scored at the task's random score {r.final_return:g}"
            else:
                what = f"before any evaluation, and {task} has no random score: left out of every statistic"
            described.append(f"{r.run_dir} ({what})")
        causes = [divergence_cause(d) for d in group["run_dir"]]
        cause = ", ".join(f"{n} {what}" for n, what in ((causes.count("nan_or_inf"), "NaN or inf loss"),
                                                         (causes.count("bound"), "Q beyond the divergence bound"))
                          if n)
        notes.append(f"{task} / {variant}: {len(group)} run(s) diverged ({cause}); they count against the "
                     "variant in every statistic, each at its last evaluation before it diverged, or at the task's "
                     "random score if it diverged before any: " + "; ".join(described))
    notes += _warned_notes(finals)
    notes += _tuned_notes(finals)
    # each named by path, crashed and env runs with their error.json's message
    left_out = {"crashed": ("run(s) crashed, left out of every statistic (a crash is not an outcome of the "
                            "algorithm; qbench run retries them)"),
                "env": ("run(s) stopped by an env fault (the environment misbehaved: not an outcome of the "
                        "variant, never counted as its divergence or failure), left out of every statistic"),
                "unfinished": "unfinished run(s), left out of every statistic"}
    for status, what in left_out.items():
        for (task, variant), group in finals[finals["status"] == status].groupby(["task", "variant"], sort=True):
            notes.append(f"{task} / {variant}: {len(group)} {what}: "
                         + named_runs(group, with_message=status != "unfinished"))
    for (task, variant), group in complete_runs(finals).groupby(["task", "variant"], sort=True):
        budgets = sorted({int(b) for b in group["env_steps"]})
        if len(budgets) > 1:
            notes.append(f"{task} / {variant}: runs with different budgets are pooled ("
                         + ", ".join(f"{b:,}" for b in budgets) + " env steps): report one suite's folder to keep "
                         "them apart")
    for (task, variant), group in scored_runs(finals).groupby(["task", "variant"], sort=True):
        counts = group["seed"].value_counts()
        repeated = sorted(int(s) for s in counts[counts > 1].index)
        if repeated:
            notes.append(f"{task} / {variant}: seed(s) {', '.join(map(str, repeated))} appear in more than one run "
                         "(other suites, or other settings such as runs made before and after a task's defaults "
                         "changed), and each run counts as a seed: report one suite's folder, or move stale runs out")
        versions = group.loc[group["code_version"].astype(bool), "code_version"].value_counts()
        if len(versions) > 1:
            notes.append(f"{task} / {variant}: its runs come from different code versions ("
                         + ", ".join(f"{_short(v)}: {n} run(s)" for v, n in sorted(versions.items()))
                         + "), pooled here: rerun them with one version, or report them apart")
    for r in finals[finals["attempt_code_versions"].str.contains(",", regex=False)].itertuples(index=False):
        notes.append(f"{r.run_dir}: its attempts ran different code ("
                     + ", ".join(_short(v) for v in r.attempt_code_versions.split(", "))
                     + "): a resumed run mixes them")
    known = finals[finals["status"] != "damaged"]
    left_out = sorted(t for t in set(known["task"]) if t not in scoring or not scoring[t].normalisable)
    equal = [t for t in left_out if t in scoring and scoring[t].random_score is not None
             and scoring[t].random_score == scoring[t].reference_score]
    unscored = [t for t in left_out if t not in equal]
    if unscored:
        notes.append("no random and reference score for " + ", ".join(unscored)
                     + ": left out of the normalised aggregate and the performance profiles")
    for t in equal:
        notes.append(f"{t}: its random and reference scores are equal ({scoring[t].random_score:g}), so its "
                     "normalised score is undefined: left out of the normalised aggregate and the performance "
                     "profiles")
    return notes


def outcome_tables(scored: ScoredRuns, earlier: Mapping[str, pd.DataFrame]) -> tuple[Tables, list[str]]:
    runs = runs_table(scored.finals)
    tables = {"runs": runs, "diverged_runs": diverged_runs_table(scored.finals), "finals": scored.finals}
    return tables, outcome_notes(runs, scored.finals, scored.scoring)


def diverged_runs_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "variant": r.variant, "diverged": f"{r.diverged}/{r.runs}",
                          "NaN or inf loss": r.nan_or_inf, "Q beyond the divergence bound": r.bound}
                         for r in table_of(report, "diverged_runs").itertuples(index=False)])


def outcome_sections(report: Report) -> list[Section]:
    return [
        Section("Runs", "Run directories per (task, variant) by state. Complete runs enter the statistics at "
                "their final evaluation and diverged runs at their last evaluation before they diverged (the "
                "task's random score if that came before any evaluation): in_statistics counts both. Crashed, "
                "unfinished and damaged runs, and env runs (stopped by an env fault: the environment misbehaved, "
                "which is not counted against the variant), are left out, and named in the notes. warned: runs the divergence "
                "watch flagged (|Q| passed its warning level, 5 value scales by default) and let run on, "
                "whatever their state; they are counted in their state and in the statistics like every other "
                "run, and named in the notes.", report.tables["runs"]),
        Section("Diverged runs", "Diverged runs per (task, variant) by what stopped them: a NaN or inf loss, or Q "
                "beyond the engine's divergence bound (a multiple of r_max / (1 − gamma)).",
                diverged_runs_display(report)),
    ]


OUTCOMES = Study("outcomes", ("runs", "diverged_runs", "finals"), outcome_tables, sections={10: outcome_sections})
