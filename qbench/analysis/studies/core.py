"""The core comparison of the variants, over the runs in the statistics (``qbench.analysis.scoring``):

- ``per_task``: final return per (task, variant): mean, std, IQM with its bootstrap CI, seeds (how many of them
  diverged, and how many were flagged by the divergence watch: ``warned``), budget, the area under the learning
  curve, and the published reference of the same algorithm;
- ``references``: every published score for the tasks in the results (``qbench/data/zoo_reference.csv``);
- ``aggregate``: IQM, median, mean and optimality gap of normalised scores per variant, with CIs (the median is
  rliable's: the median over tasks of the per-task mean score);
- ``improvement``: P(X > Y) for every ordered pair of variants over the tasks both ran, with CIs;
- ``profiles``: performance profiles (fraction of runs above tau) of normalised scores, with CI bands;
- ``curves``: IQM of the evaluation return over seeds at each evaluation step, with CI bands;
- ``train_curves``: IQM over complete runs of the training return as the MinAtar paper plots it (diagnostics.csv's
  ``train_return_last100``: the mean of the last 100 training episodes) at each log step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from qbench.analysis import stats
from qbench.analysis.bootstrap import bootstrap_iqm_over_seeds, row_generator
from qbench.analysis.display import ci, num, pm, steps, steps_and_frames, with_diverged
from qbench.analysis.scoring import (
    ScoredRuns,
    TaskScoring,
    complete_runs,
    diverged_count,
    scored_runs,
    warned_count,
)
from qbench.analysis.study import Section, Study, Tables
from qbench.loading import read_csv_rows
from qbench.store import DIAGNOSTICS

if TYPE_CHECKING:
    from qbench.analysis.plots import Style
    from qbench.analysis.report import Report

METRICS = {"IQM": stats.iqm, "median": stats.median, "mean": stats.mean, "optimality gap": stats.optimality_gap}


def load_references(path: str | Path | None = None) -> pd.DataFrame:
    """Published scores: the CSV shipped in ``qbench/data`` (source, algo, env_id, mean_return, std_return,
    train_steps, n_runs, notes) unless another path is given."""
    if path is None:
        with resources.files("qbench.data").joinpath("zoo_reference.csv").open() as handle:
            return pd.read_csv(handle)
    return pd.read_csv(path)


def base_env(env_id: str) -> str:
    """The environment without its version, so LunarLander-v2 references sit beside LunarLander-v3 runs."""
    return re.sub(r"-v\d+$", "", env_id.split("/")[-1])


def _reference_for(references: pd.DataFrame, env_id: str, variant: str, env_steps: int) -> pd.Series | None:
    """The published score of the same algorithm on the same environment, closest in budget; None if none."""
    same = references[(references["algo"] == variant)
                      & (references["env_id"].map(base_env) == base_env(env_id))]
    if same.empty:
        return None
    return same.loc[(same["train_steps"] - env_steps).abs().idxmin()]


def scored_curves(results: pd.DataFrame, finals: pd.DataFrame) -> dict[str, pd.Series]:
    """Per scored run, its evaluation returns indexed by env steps. A diverged run's curve is held at its score
    from its last evaluation to the last evaluation step of the complete runs of its (task, variant), and a run
    that diverged before its first evaluation is its score (the task's random score) at every one of those steps:
    so its area under the curve and its learning curve count it as it is scored."""
    scored = scored_runs(finals)
    rows = results[results["run_dir"].isin(set(scored["run_dir"]))]
    by_run = {d: pd.Series(g["return_mean"].to_numpy(float), index=g["env_steps"].to_numpy(float))
              for d, g in rows.sort_values("env_steps", kind="stable").groupby("run_dir", sort=False)}
    out: dict[str, pd.Series] = {}
    for _, group in scored.groupby(["task", "variant"], sort=True):
        complete = [by_run[d] for d in group.loc[group["complete"], "run_dir"] if d in by_run]
        grid = sorted(set().union(*(set(c.index) for c in complete))
                      or set().union(*(set(by_run[d].index) for d in group["run_dir"] if d in by_run)))
        for r in group.itertuples(index=False):
            curve = by_run.get(r.run_dir)
            if curve is None:
                curve = pd.Series(r.final_return, index=np.asarray(grid or [0.0], dtype=float))
            elif r.status == "diverged":
                later = [step for step in grid if step > curve.index.max()]
                if later:
                    curve = pd.concat([curve, pd.Series(r.final_return, index=np.asarray(later, dtype=float))])
            out[r.run_dir] = curve
    return out


def _group_budget(group: pd.DataFrame) -> float:
    """The budget of a (task, variant): the last evaluation step of its complete runs, else of any scored run."""
    steps = group.loc[group["complete"], "env_steps"].dropna()
    if steps.empty:
        steps = group["env_steps"].dropna()
    return float(steps.max()) if not steps.empty else math.nan


def _frames_per_env_step(results: pd.DataFrame, task: str) -> float:
    """Emulator frames per env step of a task's runs (ALE: the frame skip; 1 elsewhere, and for results read
    without a frames column)."""
    if "frames" not in results.columns:
        return 1.0
    rows = results[(results["task"] == task) & (results["env_steps"] > 0)]
    return float((rows["frames"] / rows["env_steps"]).median()) if len(rows) else 1.0


def per_task_table(finals: pd.DataFrame, results: pd.DataFrame, references: pd.DataFrame, *, seed: int,
                   reps: int, confidence: float) -> pd.DataFrame:
    """Final return per (task, variant) over the runs in the statistics (``seeds``, of which ``diverged``
    diverged and ``warned`` were flagged by the divergence watch, counted like the others): mean, std, IQM with
    its CI, the budget, the area under the learning curve (``scored_curves``) and the published reference."""
    scored = scored_runs(finals)
    curves = scored_curves(results, finals)
    rows = []
    for (task, variant), group in scored.groupby(["task", "variant"], sort=True):
        scores = group["final_return"].to_numpy(float)
        ci = stats.bootstrap_ci(scores[:, None], stats.iqm, row_generator(seed, "per_task", task, variant), reps,
                                confidence)
        env_id = group["env_id"].iloc[0]
        budget = _group_budget(group)
        aucs = [stats.area_under_curve(curves[d].index.to_numpy(), curves[d].to_numpy()) for d in group["run_dir"]]
        row = {"task": task, "variant": variant, "seeds": len(scores), "diverged": diverged_count(group),
               "warned": warned_count(group), "env_steps": budget,
               "frames": budget * _frames_per_env_step(results, task), "mean": scores.mean(),
               "std": scores.std(ddof=1) if len(scores) > 1 else math.nan,
               "iqm": ci.point, "iqm_lower": ci.lower, "iqm_upper": ci.upper,
               "auc_mean": float(np.mean(aucs)),
               "reference_mean": math.nan, "reference_std": math.nan, "reference_env_steps": math.nan,
               "reference_runs": math.nan, "reference_source": ""}
        ref = None if math.isnan(budget) else _reference_for(references, env_id, variant, budget)
        if ref is not None:
            row.update(reference_mean=float(ref["mean_return"]), reference_std=float(ref["std_return"]),
                       reference_env_steps=int(ref["train_steps"]), reference_runs=int(ref["n_runs"]),
                       reference_source=f"{ref['source']} ({ref['env_id']})")
        rows.append(row)
    table = pd.DataFrame(rows, columns=["task", "variant", "seeds", "diverged", "warned", "env_steps", "frames",
                                        "mean", "std", "iqm",
                                        "iqm_lower", "iqm_upper", "auc_mean", "reference_mean", "reference_std",
                                        "reference_env_steps", "reference_runs", "reference_source"])
    if not table.empty and table["env_steps"].notna().all():
        table["env_steps"] = table["env_steps"].astype(int)
    return table


def references_table(finals: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    known = finals[finals["env_id"].astype(bool) & finals["status"].ne("damaged")]
    tasks = known.drop_duplicates("task")[["task", "env_id"]]
    rows = []
    for task, env_id in tasks.itertuples(index=False):
        for ref in references[references["env_id"].map(base_env) == base_env(env_id)].itertuples(index=False):
            rows.append({"task": task, "algo": ref.algo, "env_id": ref.env_id, "mean": ref.mean_return,
                         "std": ref.std_return, "env_steps": ref.train_steps, "runs": ref.n_runs,
                         "source": ref.source, "notes": "" if pd.isna(ref.notes) else ref.notes})
    return pd.DataFrame(rows, columns=["task", "algo", "env_id", "mean", "std", "env_steps", "runs", "source",
                                       "notes"])

def diverged_counts(finals: pd.DataFrame, scoring: dict[str, TaskScoring] | None = None) -> dict[str, int]:
    """Per variant, how many of its runs in the statistics diverged; with ``scoring``, only on normalisable tasks
    (the runs of the normalised tables)."""
    scored = scored_runs(finals)
    if scoring is not None:
        scored = scored[scored["task"].isin([t for t, entry in scoring.items() if entry.normalisable])]
    return {variant: diverged_count(group) for variant, group in scored.groupby("variant", sort=True)}


def aggregate_table(normalised: dict[str, dict[str, np.ndarray]], *, seed: int, reps: int, confidence: float,
                    diverged: dict[str, int] | None = None) -> pd.DataFrame:
    """IQM, median, mean and optimality gap of the normalised scores per variant; ``runs`` counts the runs in
    them, ``diverged`` how many of those diverged (``diverged_counts``)."""
    diverged = diverged or {}
    rows = []
    for variant, by_task in normalised.items():
        for metric, fn in METRICS.items():
            ci = stats.bootstrap_ci(by_task, fn, row_generator(seed, "aggregate", variant, metric), reps, confidence)
            rows.append({"variant": variant, "metric": metric, "tasks": len(by_task),
                         "runs": sum(len(v) for v in by_task.values()), "diverged": diverged.get(variant, 0),
                         "point": ci.point, "lower": ci.lower, "upper": ci.upper})
    return pd.DataFrame(rows, columns=["variant", "metric", "tasks", "runs", "diverged", "point", "lower", "upper"])


def improvement_table(finals: pd.DataFrame, *, seed: int, reps: int, confidence: float) -> pd.DataFrame:
    """P(X > Y) on raw final scores over the tasks both variants ran (the probability is unchanged by any
    per-task increasing normalisation, so it needs no random or reference score); diverged runs count at their
    score. ``x_diverged`` and ``y_diverged``: the diverged runs of each on those tasks."""
    by_variant: dict[str, dict[str, np.ndarray]] = {}
    diverged: dict[tuple[str, str], int] = {}
    for (variant, task), group in scored_runs(finals).groupby(["variant", "task"], sort=True):
        by_variant.setdefault(variant, {})[task] = group["final_return"].to_numpy(float)
        diverged[variant, task] = diverged_count(group)
    rows = []
    for x, x_tasks in by_variant.items():
        for y, y_tasks in by_variant.items():
            shared = sorted(set(x_tasks) & set(y_tasks))
            if x == y or not shared:
                continue
            xs, ys = {t: x_tasks[t] for t in shared}, {t: y_tasks[t] for t in shared}
            ci = stats.probability_of_improvement_ci(xs, ys, row_generator(seed, "improvement", x, y), reps,
                                                     confidence)
            rows.append({"x": x, "y": y, "tasks": len(shared), "point": ci.point, "lower": ci.lower,
                         "upper": ci.upper, "x_diverged": sum(diverged[x, t] for t in shared),
                         "y_diverged": sum(diverged[y, t] for t in shared)})
    return pd.DataFrame(rows, columns=["x", "y", "tasks", "point", "lower", "upper", "x_diverged", "y_diverged"])


def profiles_table(normalised: dict[str, dict[str, np.ndarray]], *, seed: int, reps: int, confidence: float,
                   points: int = 101, diverged: dict[str, int] | None = None) -> pd.DataFrame:
    diverged = diverged or {}
    columns = ["variant", "tau", "point", "lower", "upper", "runs", "diverged"]
    all_scores = [s for by_task in normalised.values() for v in by_task.values() for s in v]
    if not all_scores:
        return pd.DataFrame(columns=columns)
    taus = np.linspace(min(0.0, min(all_scores)), max(1.0, max(all_scores)), points)
    frames = []
    for variant, by_task in normalised.items():
        band = stats.performance_profile_ci(by_task, taus, row_generator(seed, "profile", variant), reps, confidence)
        frames.append(pd.DataFrame({"variant": variant, "tau": taus, "point": band.point, "lower": band.lower,
                                    "upper": band.upper, "runs": sum(len(v) for v in by_task.values()),
                                    "diverged": diverged.get(variant, 0)}))
    return pd.concat(frames, ignore_index=True)[columns]


def curves_table(results: pd.DataFrame, finals: pd.DataFrame, *, seed: int, reps: int,
                 confidence: float) -> pd.DataFrame:
    """Learning curves of the runs in the statistics (diverged runs held at their score after they diverged, see
    ``scored_curves``): at the evaluation steps all of them share, IQM over seeds with a CI."""
    curves = scored_curves(results, finals)
    frames = []
    for (task, variant), group in scored_runs(finals).groupby(["task", "variant"], sort=True):
        long = pd.concat([pd.DataFrame({"run_dir": d, "env_steps": curves[d].index, "return_mean": curves[d].values})
                          for d in group["run_dir"]], ignore_index=True)
        wide = long.pivot_table(index="run_dir", columns="env_steps", values="return_mean").dropna(axis=1)
        if wide.empty:
            continue
        point, lower, upper = bootstrap_iqm_over_seeds(wide.to_numpy(float), row_generator(seed, "curve", task,
                                                        variant), reps, confidence)
        frames.append(pd.DataFrame({"task": task, "variant": variant, "env_steps": wide.columns.astype(int),
                                    "iqm": point, "lower": lower, "upper": upper, "seeds": len(wide),
                                    "diverged": diverged_count(group[group["run_dir"].isin(set(wide.index))])}))
    if not frames:
        return pd.DataFrame(columns=["task", "variant", "env_steps", "iqm", "lower", "upper", "seeds", "diverged"])
    return pd.concat(frames, ignore_index=True)


TRAIN_CURVE_COLUMNS = ["task", "variant", "env_steps", "iqm", "seeds"]


def train_curves_table(finals: pd.DataFrame) -> pd.DataFrame:
    """The training return as the MinAtar paper plots it: per (task, variant), the IQM over its complete runs of
    diagnostics.csv's ``train_return_last100`` (the mean return of the last 100 training episodes at each log
    row), at the log steps where every one of them has a value. Runs written before the column existed, or
    whose diagnostics.csv cannot be read, are left out; a (task, variant) with none has no rows. Diverged runs
    stop training where they diverged, so only complete runs count."""

    frames = []
    for (task, variant), group in complete_runs(finals).groupby(["task", "variant"], sort=True):
        runs = {}
        for d in group["run_dir"]:
            rows = read_csv_rows(Path(d) / DIAGNOSTICS, required=("env_steps",)).rows
            if "train_return_last100" in rows.columns:
                runs[d] = pd.Series(pd.to_numeric(rows["train_return_last100"], errors="coerce").to_numpy(float),
                                    index=pd.to_numeric(rows["env_steps"]).to_numpy(int))
        if not runs:
            continue
        wide = pd.DataFrame(runs).dropna(axis=0)   # rows: env steps, columns: runs
        if wide.empty:
            continue
        frames.append(pd.DataFrame({"task": task, "variant": variant, "env_steps": wide.index.astype(int),
                                    "iqm": scipy_stats.trim_mean(wide.to_numpy(float), 0.25, axis=1),
                                    "seeds": wide.shape[1]}))
    if not frames:
        return pd.DataFrame(columns=TRAIN_CURVE_COLUMNS)
    return pd.concat(frames, ignore_index=True)



def core_tables(scored: ScoredRuns, earlier: Mapping[str, pd.DataFrame]) -> tuple[Tables, list[str]]:
    finals, results, boot = scored.finals, scored.results, scored.bootstrap
    references = load_references() if scored.references is None else scored.references
    diverged = diverged_counts(finals, scored.scoring)
    return {
        "per_task": per_task_table(finals, results, references, **boot),
        "references": references_table(finals, references),
        "aggregate": aggregate_table(scored.normalised, **boot, diverged=diverged),
        "improvement": improvement_table(finals, **boot),
        "profiles": profiles_table(scored.normalised, **boot, diverged=diverged),
        "curves": curves_table(results, finals, **boot),
        "train_curves": train_curves_table(finals),
    }, []



# --- the report's sections and figures ---------------------------------------------------------------------------

def per_task_display(report: Report) -> pd.DataFrame:
    pct = f"{report.confidence:.0%}"
    rows = []
    for r in report.tables["per_task"].itertuples(index=False):
        reference = "–"
        if r.reference_source:
            reference = (f"{pm(r.reference_mean, r.reference_std)} at {steps(r.reference_env_steps)} steps, "
                         f"{int(r.reference_runs)} run(s): {r.reference_source}")
        rows.append({"task": r.task, "variant": r.variant,
                     "seeds": with_diverged(r.seeds, r.diverged, getattr(r, "warned", 0)),
                     "env steps": steps_and_frames(r.env_steps, r.frames),
                     "final return mean ± std": pm(r.mean, r.std),
                     f"IQM [{pct} CI]": ci(r.iqm, r.iqm_lower, r.iqm_upper),
                     "mean return over training (AUC)": num(r.auc_mean), "published reference": reference})
    return pd.DataFrame(rows)


def thresholds_display(report: Report) -> pd.DataFrame:
    rows = []
    finals = report.tables["finals"]
    for task, scoring in sorted(report.scoring.items()):
        for variant, threshold in sorted(scoring.thresholds.items()):
            runs = finals[(finals["task"] == task) & (finals["variant"] == variant) & finals["scored"]]
            if runs.empty:
                continue
            passing = int((runs["final_return"] >= threshold).sum())
            diverged = int((runs["status"] == "diverged").sum())
            rows.append({"task": task, "variant": variant, "threshold": f">= {threshold:g}",
                         "seeds at or above": f"{passing}/{len(runs)}"
                                              + (f" ({diverged} diverged)" if diverged else ""),
                         "final return per seed": " ".join(num(v) for v in runs["final_return"])})
    return pd.DataFrame(rows)


def aggregate_display(report: Report) -> pd.DataFrame:
    table = report.tables["aggregate"]
    rows = []
    for variant, group in table.groupby("variant", sort=True):
        row = {"variant": variant, "tasks": int(group["tasks"].iloc[0]),
               "runs": with_diverged(group["runs"].iloc[0], group["diverged"].iloc[0])}
        for r in group.itertuples(index=False):
            row[r.metric] = ci(r.point, r.lower, r.upper, 3)
        rows.append(row)
    return pd.DataFrame(rows)


def improvement_display(report: Report) -> pd.DataFrame:
    table = report.tables["improvement"]
    if table.empty:
        return pd.DataFrame()
    names = sorted(set(table["x"]) | set(table["y"]))
    cells = {(r.x, r.y): f"{ci(r.point, r.lower, r.upper, 2)} ({r.tasks})" for r in table.itertuples(index=False)}
    diverged = report.tables["finals"]
    diverged = diverged[diverged["scored"] & (diverged["status"] == "diverged")]["variant"].value_counts()

    def label(x: str) -> str:
        return f"{x} ({diverged[x]} diverged)" if diverged.get(x, 0) else x

    return pd.DataFrame([{"X \\ Y": label(x), **{y: cells.get((x, y), "–") for y in names}} for x in names])


def references_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "algorithm": r.algo, "env id": r.env_id, "return": pm(r.mean, r.std),
                          "env steps": steps(r.env_steps), "runs": r.runs, "source": r.source, "notes": r.notes}
                         for r in report.tables["references"].itertuples(index=False)])


def _diverged_text(aggregate: pd.DataFrame) -> str:
    """'; diverged runs included: dqn 1 of 8' for the variants that have any, else ''."""
    per_variant = aggregate.drop_duplicates("variant")
    parts = [f"{r.variant} {r.diverged} of {r.runs}" for r in per_variant.itertuples(index=False) if r.diverged]
    return "; diverged runs included: " + ", ".join(parts) if parts else ""


def core_sections(report: Report) -> list[Section]:
    pct = f"{report.confidence:.0%}"
    out = [
        Section("Final return per task",
                f"Final greedy evaluation return per run (a diverged run: its last evaluation before it "
                f"diverged, counted in seeds; flagged: runs among the seeds whose |Q| passed the divergence "
                f"warning level, counted like the others); IQM over seeds with a {pct} percentile bootstrap CI "
                f"({report.reps} resamples); AUC = mean evaluation return over training. The published reference "
                "is the same algorithm on the same environment where one exists.", per_task_display(report)),
    ]
    thresholds = thresholds_display(report)
    if not thresholds.empty:
        out.append(Section("Pass thresholds", "The suite's thresholds on the final evaluation return.", thresholds))
    out += [
        Section("Learning curves", "IQM over seeds of the evaluation return at each evaluation step; a diverged "
                "run is held at its last evaluation from the step it diverged. Thin dotted lines of the same "
                "colour, where the runs logged it: the training return as the MinAtar paper plots it, the mean of "
                "the last 100 training episodes (IQM over complete runs).", figure="learning_curves"),
        Section("Aggregate normalised scores",
                "Normalised score = (score − random) / (reference − random), with the suite's scores; "
                f"stratified bootstrap {pct} CIs (runs resampled within each task). Median: the median over "
                "tasks of the per-task mean score (rliable). Optimality gap: mean shortfall below 1, lower is "
                "better. Diverged runs count at their score.", aggregate_display(report), "aggregate_intervals"),
        Section("Performance profiles", "Fraction of runs whose normalised score exceeds τ"
                + _diverged_text(report.tables["aggregate"]) + ".",
                figure="performance_profiles"),
        Section("Probability of improvement",
                f"P(X > Y): the chance that a run of the row variant beats a run of the column variant on a task "
                f"(Mann-Whitney U / nm), averaged over the tasks both ran (in brackets), with a {pct} CI.",
                improvement_display(report), "probability_of_improvement"),
    ]
    return out


def reference_sections(report: Report) -> list[Section]:
    return [Section("Published references", "From qbench/data/zoo_reference.csv; the budgets and protocols differ "
                    "between sources (see notes).", references_display(report))]


def core_figures(report: Report, styles: dict[str, Style]) -> dict[str, Any]:
    # Imported here: matplotlib and seaborn are the optional ``report`` extra, which the tables do not need.
    from qbench.analysis.studies import plots_core

    return plots_core.figures(report, styles)


# The published references close the report, after every other study's sections.
CORE = Study("core", ("per_task", "references", "aggregate", "improvement", "profiles", "curves", "train_curves"),
             core_tables, sections={20: core_sections, 90: reference_sections}, figures=core_figures)
