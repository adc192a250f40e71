"""The tables of a report, computed from a results folder: the notebook API behind ``qbench report``.

``build_report(path)`` loads every run under ``path`` (``qbench.load_results``), takes the last evaluation of
each complete run as its final score, and computes every table as a pandas DataFrame of plain numbers:

- ``runs``: seeds complete, failed and unfinished per (task, variant); unequal seed counts are listed in notes;
- ``per_task``: final return per (task, variant): mean, std, IQM with its bootstrap CI, seeds, budget, the
  area under the learning curve, and the published reference of the same algorithm where one exists;
- ``references``: every published score for the tasks in the results (``qbench/data/zoo_reference.csv``);
- ``aggregate``: IQM, median, mean and optimality gap of normalised scores per variant, with CIs;
- ``improvement``: P(X > Y) for every ordered pair of variants over the tasks both ran, with CIs;
- ``profiles``: performance profiles (fraction of runs above tau) of normalised scores, with CI bands;
- ``curves``: IQM of the evaluation return over seeds at each evaluation step, with CI bands;
- ``overestimation``: mean predicted Q(s_0, a_0) and the discounted return measured from s_0, per step;
- ``cost``: wall time, env steps per second and peak memory per (task, variant).

Normalised score = (score - random) / (reference - random), with the random and reference scores of the suite
that ran the task (``suite.json`` written by ``qbench run``, else the shipped suite of that name, else a suite
file given with ``suite=``); Atari games the suite does not score are human-normalised. Tasks without both scores are left out of the normalised tables, and a note says so.

Every confidence interval is a percentile interval of a stratified bootstrap whose generator is seeded from
``seed`` and the row's own key, so a row's interval does not change when other variants or tasks are added.
This module imports neither torch nor matplotlib; figures are drawn by ``qbench.analysis.plots``.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from qbench.analysis import stats

SUITE_RECORD = "suite.json"
METRICS = {"IQM": stats.iqm, "median": stats.median, "mean": stats.mean, "optimality gap": stats.optimality_gap}


class NoResultsError(ValueError):
    """The folder holds no run with evaluations."""


@dataclass(frozen=True)
class TaskScoring:
    """What a suite says about one task: normalisation scores and pass thresholds."""

    random_score: float | None = None
    reference_score: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    source: str = ""

    @property
    def normalisable(self) -> bool:
        return (self.random_score is not None and self.reference_score is not None
                and self.random_score != self.reference_score)


@dataclass
class Report:
    """Every table of a report, plus the notes a reader must see (unequal seeds, tasks left out, ...)."""

    source: str
    tables: dict[str, pd.DataFrame]
    notes: list[str]
    scoring: dict[str, TaskScoring]
    seed: int
    reps: int
    confidence: float

    def figures(self) -> dict[str, Any]:
        """The report's matplotlib figures by name (needs the ``report`` extra: seaborn, matplotlib)."""
        from qbench.analysis import plots

        return plots.all_figures(self)


# --- inputs ----------------------------------------------------------------------------------------------------

def suite_record(suite) -> dict[str, Any]:
    """What a report needs to know about a suite, as written to ``<results>/<suite>/suite.json`` by a runner."""
    return {
        "suite": suite.name, "description": suite.description, "seeds": suite.seeds,
        "min_passing_seeds": suite.min_passing_seeds,
        "tasks": {e.name: {"random_score": e.random_score, "reference_score": e.reference_score,
                           "thresholds": dict(e.thresholds)} for e in suite.entries},
    }


def _scoring_of_record(record: dict[str, Any], source: str) -> dict[str, TaskScoring]:
    return {task: TaskScoring(entry.get("random_score"), entry.get("reference_score"),
                              dict(entry.get("thresholds") or {}), source)
            for task, entry in record.get("tasks", {}).items()}


def load_scoring(run_dirs: list[str], suites: list[str], suite_file: str | None = None) -> dict[str, TaskScoring]:
    """Per task, the scoring of the suite that ran it: ``suite_file`` if given, else the ``suite.json`` a runner
    wrote beside the runs (``<results>/<suite>/suite.json``, two levels above each run directory), else the
    shipped suite files named like the suites in the results."""
    from qbench.config import ConfigError
    from qbench.suites import load_suite

    if suite_file is not None:
        suite = load_suite(suite_file)
        return _scoring_of_record(suite_record(suite), str(suite.path))
    scoring: dict[str, TaskScoring] = {}
    recorded = set()
    records = {Path(d).parents[2] / SUITE_RECORD for d in run_dirs if len(Path(d).parents) > 2}
    for path in sorted(records):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        recorded.add(record.get("suite"))
        for task, entry in _scoring_of_record(record, str(path)).items():
            scoring.setdefault(task, entry)
    for name in sorted(set(suites) - recorded - {""}):
        try:
            suite = load_suite(name)
        except ConfigError:
            continue
        for task, entry in _scoring_of_record(suite_record(suite), str(suite.path)).items():
            scoring.setdefault(task, entry)
    return scoring


def atari_scoring(env_ids: dict[str, str]) -> dict[str, TaskScoring]:
    """Human-normalisation for the Atari tasks among ``env_ids`` (task -> env id): random and human scores from
    ``qbench/data/atari_human_random.csv``; games without a human score are not included."""
    atari = {task: env_id for task, env_id in env_ids.items()
             if env_id.startswith("ALE/") or re.search(r"(NoFrameskip|Deterministic)-v\d+$", env_id)}
    if not atari:
        return {}
    with resources.as_file(resources.files("qbench.data").joinpath("atari_human_random.csv")) as path:
        table = stats.load_atari_reference(path)
    out = {}
    for task, env_id in atari.items():
        key = stats.game_key(env_id)
        if key in table.human:
            out[task] = TaskScoring(table.random[key], table.human[key], {}, "atari_human_random.csv (human)")
    return out


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


def _generator(seed: int, *key: Any) -> np.random.Generator:
    """A generator for one row: the same seed and key give the same interval, whatever else is in the report."""
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


# --- tables ----------------------------------------------------------------------------------------------------

def final_scores(results: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its last evaluation (``final_return``), budget and state. Runs are told apart by
    ``run_dir``; the score of a run is its final greedy evaluation, as in the sanity suite's pass rule."""
    if results.empty:
        return pd.DataFrame(columns=["task", "variant", "seed", "env_id", "env_steps", "final_return", "complete",
                                     "failed", "run_dir"])
    last = results.sort_values("env_steps").groupby("run_dir", sort=False).tail(1)
    finals = last[["task", "variant", "seed", "env_id", "env_steps", "return_mean", "complete", "failed",
                   "run_dir"]].rename(columns={"return_mean": "final_return"})
    return finals.sort_values(["task", "variant", "seed"]).reset_index(drop=True)


def _failure_kind(run_dir: str) -> str:
    """diverged (NaN or inf loss: an outcome of the algorithm) or crashed (anything else), from error.json."""
    try:
        return "diverged" if json.loads((Path(run_dir) / "error.json").read_text()).get("error") == "diverged" \
            else "crashed"
    except (OSError, ValueError):
        return "crashed"


def runs_table(finals: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (task, variant), group in finals.groupby(["task", "variant"], sort=True):
        complete = group[group["complete"]]
        kinds = [_failure_kind(d) for d in group.loc[group["failed"], "run_dir"]]
        rows.append({"task": task, "variant": variant, "complete": len(complete),
                     "diverged": kinds.count("diverged"), "crashed": kinds.count("crashed"),
                     "unfinished": int((~group["complete"] & ~group["failed"]).sum()),
                     "seeds": ",".join(str(s) for s in sorted(complete["seed"]))})
    return pd.DataFrame(rows, columns=["task", "variant", "complete", "diverged", "crashed", "unfinished", "seeds"])


def _reference_for(references: pd.DataFrame, env_id: str, variant: str, env_steps: int) -> pd.Series | None:
    """The published score of the same algorithm on the same environment, closest in budget; None if none."""
    same = references[(references["algo"] == variant)
                      & (references["env_id"].map(base_env) == base_env(env_id))]
    if same.empty:
        return None
    return same.loc[(same["train_steps"] - env_steps).abs().idxmin()]


def _complete(finals: pd.DataFrame) -> pd.DataFrame:
    return finals[finals["complete"]]


def per_task_table(finals: pd.DataFrame, results: pd.DataFrame, references: pd.DataFrame, *, seed: int,
                   reps: int, confidence: float) -> pd.DataFrame:
    complete = _complete(finals)
    auc = {run_dir: stats.area_under_curve(run["env_steps"].to_numpy(), run["return_mean"].to_numpy())
           for run_dir, run in results[results["run_dir"].isin(set(complete["run_dir"]))].groupby("run_dir")}
    rows = []
    for (task, variant), group in complete.groupby(["task", "variant"], sort=True):
        scores = group["final_return"].to_numpy(float)
        ci = stats.bootstrap_ci(scores[:, None], stats.iqm, _generator(seed, "per_task", task, variant), reps,
                                confidence)
        env_id = group["env_id"].iloc[0]
        budget = int(group["env_steps"].max())
        aucs = [auc[d] for d in group["run_dir"]]
        row = {"task": task, "variant": variant, "seeds": len(scores), "env_steps": budget,
               "mean": scores.mean(), "std": scores.std(ddof=1) if len(scores) > 1 else math.nan,
               "iqm": ci.point, "iqm_lower": ci.lower, "iqm_upper": ci.upper,
               "auc_mean": float(np.mean(aucs)),
               "reference_mean": math.nan, "reference_std": math.nan, "reference_env_steps": math.nan,
               "reference_runs": math.nan, "reference_source": ""}
        ref = _reference_for(references, env_id, variant, budget)
        if ref is not None:
            row.update(reference_mean=float(ref["mean_return"]), reference_std=float(ref["std_return"]),
                       reference_env_steps=int(ref["train_steps"]), reference_runs=int(ref["n_runs"]),
                       reference_source=f"{ref['source']} ({ref['env_id']})")
        rows.append(row)
    return pd.DataFrame(rows, columns=["task", "variant", "seeds", "env_steps", "mean", "std", "iqm", "iqm_lower",
                                       "iqm_upper", "auc_mean", "reference_mean", "reference_std",
                                       "reference_env_steps", "reference_runs", "reference_source"])


def references_table(finals: pd.DataFrame, references: pd.DataFrame) -> pd.DataFrame:
    tasks = finals.drop_duplicates("task")[["task", "env_id"]]
    rows = []
    for task, env_id in tasks.itertuples(index=False):
        for ref in references[references["env_id"].map(base_env) == base_env(env_id)].itertuples(index=False):
            rows.append({"task": task, "algo": ref.algo, "env_id": ref.env_id, "mean": ref.mean_return,
                         "std": ref.std_return, "env_steps": ref.train_steps, "runs": ref.n_runs,
                         "source": ref.source, "notes": "" if pd.isna(ref.notes) else ref.notes})
    return pd.DataFrame(rows, columns=["task", "algo", "env_id", "mean", "std", "env_steps", "runs", "source",
                                       "notes"])


def normalised_scores(finals: pd.DataFrame, scoring: dict[str, TaskScoring]) -> dict[str, dict[str, np.ndarray]]:
    """Per variant, per normalisable task, the normalised final scores of its complete runs."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for (variant, task), group in _complete(finals).groupby(["variant", "task"], sort=True):
        entry = scoring.get(task)
        if entry is None or not entry.normalisable:
            continue
        out.setdefault(variant, {})[task] = np.asarray(
            stats.normalise(group["final_return"].to_numpy(float), entry.random_score, entry.reference_score),
            dtype=float).reshape(-1)
    return out


def aggregate_table(normalised: dict[str, dict[str, np.ndarray]], *, seed: int, reps: int,
                    confidence: float) -> pd.DataFrame:
    rows = []
    for variant, by_task in normalised.items():
        for metric, fn in METRICS.items():
            ci = stats.bootstrap_ci(by_task, fn, _generator(seed, "aggregate", variant, metric), reps, confidence)
            rows.append({"variant": variant, "metric": metric, "tasks": len(by_task),
                         "runs": sum(len(v) for v in by_task.values()), "point": ci.point, "lower": ci.lower,
                         "upper": ci.upper})
    return pd.DataFrame(rows, columns=["variant", "metric", "tasks", "runs", "point", "lower", "upper"])


def improvement_table(finals: pd.DataFrame, *, seed: int, reps: int, confidence: float) -> pd.DataFrame:
    """P(X > Y) on raw final returns over the tasks both variants ran (the probability is unchanged by any
    per-task increasing normalisation, so it needs no random or reference score)."""
    by_variant: dict[str, dict[str, np.ndarray]] = {}
    for (variant, task), group in _complete(finals).groupby(["variant", "task"], sort=True):
        by_variant.setdefault(variant, {})[task] = group["final_return"].to_numpy(float)
    rows = []
    for x, x_tasks in by_variant.items():
        for y, y_tasks in by_variant.items():
            shared = sorted(set(x_tasks) & set(y_tasks))
            if x == y or not shared:
                continue
            xs, ys = {t: x_tasks[t] for t in shared}, {t: y_tasks[t] for t in shared}
            ci = stats.probability_of_improvement_ci(xs, ys, _generator(seed, "improvement", x, y), reps,
                                                     confidence)
            rows.append({"x": x, "y": y, "tasks": len(shared), "point": ci.point, "lower": ci.lower,
                         "upper": ci.upper})
    return pd.DataFrame(rows, columns=["x", "y", "tasks", "point", "lower", "upper"])


def profiles_table(normalised: dict[str, dict[str, np.ndarray]], *, seed: int, reps: int, confidence: float,
                   points: int = 101) -> pd.DataFrame:
    all_scores = [s for by_task in normalised.values() for v in by_task.values() for s in v]
    if not all_scores:
        return pd.DataFrame(columns=["variant", "tau", "point", "lower", "upper"])
    taus = np.linspace(min(0.0, min(all_scores)), max(1.0, max(all_scores)), points)
    frames = []
    for variant, by_task in normalised.items():
        band = stats.performance_profile_ci(by_task, taus, _generator(seed, "profile", variant), reps, confidence)
        frames.append(pd.DataFrame({"variant": variant, "tau": taus, "point": band.point, "lower": band.lower,
                                    "upper": band.upper}))
    return pd.concat(frames, ignore_index=True)


def _bootstrap_iqm_over_seeds(curves: np.ndarray, rng: np.random.Generator, reps: int,
                              confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM over seeds (axis 0) of a (seeds, steps) array at every step, with percentile bootstrap bounds; seeds
    are resampled whole, so one replicate keeps each seed's curve together."""
    point = scipy_stats.trim_mean(curves, 0.25, axis=0)
    n = curves.shape[0]
    draws = rng.integers(0, n, size=(reps, n))
    # scipy's trim_mean, cutting int(n / 4) from each end, by a sort: on a handful of seeds it is several times
    # faster than scipy's partition on the (reps, seeds, steps) array.
    cut = int(0.25 * n)
    replicates = np.sort(curves[draws], axis=1)[:, cut:n - cut].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lower, upper = np.percentile(replicates, [tail, 100.0 - tail], axis=0)
    return point, lower, upper


def curves_table(results: pd.DataFrame, finals: pd.DataFrame, *, seed: int, reps: int,
                 confidence: float) -> pd.DataFrame:
    """Learning curves of complete runs: at the evaluation steps all seeds share, IQM over seeds with a CI."""
    complete_dirs = set(_complete(finals)["run_dir"])
    frames = []
    for (task, variant), group in results[results["run_dir"].isin(complete_dirs)].groupby(["task", "variant"],
                                                                                        sort=True):
        wide = group.pivot_table(index="run_dir", columns="env_steps", values="return_mean").dropna(axis=1)
        if wide.empty:
            continue
        point, lower, upper = _bootstrap_iqm_over_seeds(wide.to_numpy(float), _generator(seed, "curve", task,
                                                        variant), reps, confidence)
        frames.append(pd.DataFrame({"task": task, "variant": variant, "env_steps": wide.columns.astype(int),
                                    "iqm": point, "lower": lower, "upper": upper, "seeds": len(wide)}))
    if not frames:
        return pd.DataFrame(columns=["task", "variant", "env_steps", "iqm", "lower", "upper", "seeds"])
    return pd.concat(frames, ignore_index=True)


def overestimation_table(results: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of the predicted Q(s_0, a_0) and of the discounted return measured from s_0, per step, for
    the runs that logged them (runs written before these columns existed did not); positive ``overestimation``
    = optimistic Q."""
    columns = ["task", "variant", "env_steps", "q_start_mean", "discounted_return_mean", "overestimation",
               "seeds"]
    if not {"q_start_mean", "discounted_return_mean"} <= set(results.columns):
        return pd.DataFrame(columns=columns)
    logged = results[results["run_dir"].isin(set(_complete(finals)["run_dir"]))].dropna(
        subset=["q_start_mean", "discounted_return_mean"])
    if logged.empty:
        return pd.DataFrame(columns=columns)
    table = (logged.groupby(["task", "variant", "env_steps"], sort=True)
             .agg(q_start_mean=("q_start_mean", "mean"), discounted_return_mean=("discounted_return_mean", "mean"),
                  seeds=("run_dir", "nunique")).reset_index())
    table["overestimation"] = table["q_start_mean"] - table["discounted_return_mean"]
    return table[columns]


def cost_table(finals: pd.DataFrame) -> pd.DataFrame:
    """Wall time, env steps per second and peak memory of the complete runs, from their summary.json."""
    rows = []
    for (task, variant), group in _complete(finals).groupby(["task", "variant"], sort=True):
        summaries = []
        for run_dir in group["run_dir"]:
            try:
                summaries.append(json.loads((Path(run_dir) / "summary.json").read_text()))
            except (OSError, ValueError):
                continue
        if not summaries:
            continue
        peaks = [s["peak_rss_mb"] for s in summaries if "peak_rss_mb" in s]
        rows.append({"task": task, "variant": variant, "runs": len(summaries),
                     "wall_s_mean": float(np.mean([s["wall_s"] for s in summaries])),
                     "wall_s_total": float(np.sum([s["wall_s"] for s in summaries])),
                     "steps_per_s_mean": float(np.mean([s["steps_per_s"] for s in summaries])),
                     "peak_rss_mb_max": float(max(peaks)) if peaks else math.nan})
    return pd.DataFrame(rows, columns=["task", "variant", "runs", "wall_s_mean", "wall_s_total", "steps_per_s_mean",
                                       "peak_rss_mb_max"])


# --- the report --------------------------------------------------------------------------------------------------

def _notes(runs: pd.DataFrame, finals: pd.DataFrame, scoring: dict[str, TaskScoring],
           overestimation: pd.DataFrame, cost: pd.DataFrame) -> list[str]:
    notes = []
    for task, group in runs.groupby("task", sort=True):
        counts = dict(zip(group["variant"], group["complete"]))
        if len(set(counts.values())) > 1:
            notes.append(f"{task}: unequal numbers of complete seeds: "
                         + ", ".join(f"{v} {n}" for v, n in sorted(counts.items()))
                         + " (statistics use the runs there are; each task weighs equally in aggregates)")
    for row in runs[runs["diverged"] > 0].itertuples(index=False):
        notes.append(f"{row.task} / {row.variant}: {row.diverged} run(s) diverged (NaN or inf loss) and are left out "
                     "of every statistic: count them against the variant")
    for row in runs[runs["crashed"] > 0].itertuples(index=False):
        notes.append(f"{row.task} / {row.variant}: {row.crashed} run(s) crashed, left out of every statistic "
                     "(qbench run retries them)")
    unfinished = runs[runs["unfinished"] > 0]
    for row in unfinished.itertuples(index=False):
        notes.append(f"{row.task} / {row.variant}: {row.unfinished} unfinished run(s), left out of every statistic")
    for (task, variant), group in finals[finals["complete"]].groupby(["task", "variant"], sort=True):
        budgets = sorted(set(group["env_steps"]))
        if len(budgets) > 1:
            notes.append(f"{task} / {variant}: runs with different budgets are pooled ("
                         + ", ".join(f"{b:,}" for b in budgets) + " env steps): report one suite's folder to keep "
                         "them apart")
        counts = group["seed"].value_counts()
        repeated = sorted(int(s) for s in counts[counts > 1].index)
        if repeated:
            notes.append(f"{task} / {variant}: seed(s) {', '.join(map(str, repeated))} appear in more than one run "
                         "(other suites, or other settings such as runs made before and after a task's defaults "
                         "changed), and each run counts as a seed: report one suite's folder, or move stale runs out")
    left_out = sorted(t for t in set(finals["task"]) if t not in scoring or not scoring[t].normalisable)
    if left_out:
        notes.append("no random and reference score for " + ", ".join(left_out)
                     + ": left out of the normalised aggregate and the performance profiles")
    if overestimation.empty:
        notes.append("no run logged Q(s_0, a_0) and its discounted return: no overestimation plot")
    if not cost.empty and cost["peak_rss_mb_max"].isna().any():
        notes.append("peak memory was not recorded by some runs (written by older qbench versions)")
    return notes


def build_report(results: str | Path | pd.DataFrame, *, suite: str | None = None, seed: int = 0,
                 reps: int = 2000, confidence: float = 0.95, references: pd.DataFrame | None = None) -> Report:
    """Every table of the report for a results folder (or a ``load_results`` frame, for notebooks)."""
    from qbench.store import load_results

    source = "DataFrame" if isinstance(results, pd.DataFrame) else str(results)
    df = results if isinstance(results, pd.DataFrame) else load_results(results)
    if df.empty:
        raise NoResultsError(f"no run with evaluations under '{source}' (a run directory holds config.json and "
                             "evaluations.csv)")
    scoring = load_scoring(sorted(set(df["run_dir"])), sorted(set(df["suite"])), suite)
    env_ids = dict(zip(df["task"], df["env_id"]))
    for task, entry in atari_scoring(env_ids).items():
        if task not in scoring or not scoring[task].normalisable:
            scoring[task] = entry
    references = load_references() if references is None else references
    finals = final_scores(df)
    boot = {"seed": seed, "reps": reps, "confidence": confidence}
    normalised = normalised_scores(finals, scoring)
    tables = {
        "runs": runs_table(finals),
        "per_task": per_task_table(finals, df, references, **boot),
        "references": references_table(finals, references),
        "aggregate": aggregate_table(normalised, **boot),
        "improvement": improvement_table(finals, **boot),
        "profiles": profiles_table(normalised, **boot),
        "curves": curves_table(df, finals, **boot),
        "overestimation": overestimation_table(df, finals),
        "cost": cost_table(finals),
        "finals": finals,
    }
    notes = _notes(tables["runs"], finals, scoring, tables["overestimation"], tables["cost"])
    return Report(source, tables, notes, scoring, seed, reps, confidence)
