"""The tables of a report, computed from a results folder: the notebook API behind ``qbench report``.

``build_report(path)`` reads every run directory under ``path`` (``qbench.store.load_runs_and_results``: one row
per run directory, whatever its state, and one row per evaluation), scores each run (``final_scores``) and
computes every table as a pandas DataFrame of plain numbers:

- ``runs``: run directories per (task, variant) by state (complete, diverged, crashed, unfinished, damaged) and
  how many enter the statistics; unequal counts are listed in notes;
- ``per_task``: final return per (task, variant): mean, std, IQM with its bootstrap CI, seeds (and how many of
  them diverged), budget, the area under the learning curve, and the published reference of the same algorithm;
- ``references``: every published score for the tasks in the results (``qbench/data/zoo_reference.csv``);
- ``aggregate``: IQM, median, mean and optimality gap of normalised scores per variant, with CIs;
- ``improvement``: P(X > Y) for every ordered pair of variants over the tasks both ran, with CIs;
- ``profiles``: performance profiles (fraction of runs above tau) of normalised scores, with CI bands;
- ``curves``: IQM of the evaluation return over seeds at each evaluation step, with CI bands;
- ``overestimation``: per step (complete runs), the predicted Q(s_0, a_0), the discounted return measured from
  s_0 and their difference, IQM over seeds, the difference with a CI over seeds;
- ``cost``: wall time, env steps per second and peak memory per (task, variant) (complete runs);
- ``finals``: one row per run directory: state, score, where the score comes from, code version, problems.

Which runs count: a complete run at its final evaluation; a diverged run (an outcome of the algorithm) at its
last evaluation before it diverged, or at the task's random score if it diverged before any evaluation (left out,
with a note naming it, when the task has no random score), so that divergence counts against a variant instead of
vanishing from its statistics; crashed, unfinished and damaged runs are left out and named in the notes. A
damaged run (a file it needs cannot be read, or a summary.json beside an evaluations.csv that lost its last line)
is never counted complete. The median is rliable's: the median over tasks of the per-task mean score.

Normalised score = (score - random) / (reference - random), with the random and reference scores of the suite
that ran the task (``suite.json`` written by ``qbench run``, else the shipped suite of that name, else a suite
file given with ``suite=``); Atari games the suite does not score are human-normalised. Tasks without both scores
are left out of the normalised tables, and a note says so. A suite.json that cannot be read is named in a note,
and is not replaced by the shipped suite of that name.

The notes also say when one (task, variant) pools runs from different code versions (git commit, else qbench
version, of each run's latest attempt), and when one run's attempts ran different code.

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


def _read_suite_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A suite.json's record, or (None, why it cannot be used)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    if not (isinstance(record, dict) and isinstance(record.get("tasks", {}), dict)
            and all(isinstance(e, dict) for e in record.get("tasks", {}).values())):
        return None, "not a suite record (no tasks table)"
    for task, entry in record["tasks"].items():
        for key in ("random_score", "reference_score"):
            value = entry.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                return None, f"{task}: {key} {value!r} is not a number"
    return record, None


def load_scoring(run_dirs: list[str], suites: list[str], suite_file: str | None = None,
                 notes: list[str] | None = None) -> dict[str, TaskScoring]:
    """Per task, the scoring of the suite that ran it: ``suite_file`` if given, else the ``suite.json`` a runner
    wrote beside the runs (``<results>/<suite>/suite.json``, two levels above each run directory), else the
    shipped suite files named like the suites in the results.

    A suite.json that cannot be read is said in ``notes`` (by path, with the reason), and its suite is not
    replaced by the shipped suite of that name, whose scores may have changed since: its tasks have no scores
    (they are left out of the normalised tables) unless ``suite_file`` is given."""
    from qbench.config import ConfigError
    from qbench.suites import load_suite

    if suite_file is not None:
        suite = load_suite(suite_file)
        return _scoring_of_record(suite_record(suite), str(suite.path))
    scoring: dict[str, TaskScoring] = {}
    recorded = set()
    records = {Path(d).parents[2] / SUITE_RECORD for d in run_dirs if len(Path(d).parents) > 2}
    for path in sorted(p for p in records if p.exists()):
        record, error = _read_suite_record(path)
        if record is None:
            recorded.add(path.parent.name)
            if notes is not None:
                notes.append(f"{path}: cannot be read ({error}): the random and reference scores of suite "
                             f"'{path.parent.name}' are unknown, so its tasks are left out of the normalised tables "
                             "(pass --suite to score them with a suite file)")
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

STATES = ("complete", "diverged", "crashed", "unfinished", "damaged")
FINAL_COLUMNS = ["task", "variant", "seed", "env_id", "env_steps", "final_return", "status", "complete", "failed",
                 "scored", "score_source", "code_version", "attempt_code_versions", "problems", "run_dir"]


def _failure_kind(run_dir: str) -> str:
    """diverged (NaN or inf loss: an outcome of the algorithm) or crashed (anything else), from error.json."""
    try:
        return "diverged" if json.loads((Path(run_dir) / "error.json").read_text()).get("error") == "diverged" \
            else "crashed"
    except (OSError, ValueError):
        return "crashed"


def runs_of_results(results: pd.DataFrame) -> pd.DataFrame:
    """The per-run table (``qbench.store.load_runs``'s columns) of a ``load_results`` frame, for a report built
    from a DataFrame: runs without any evaluation row are not in such a frame, so pass ``runs=load_runs(path)``
    to ``build_report`` to count them too. Frames without a ``status`` column take it from ``complete``,
    ``failed`` and the run's error.json."""
    from qbench.store import RUN_COLUMNS

    if results.empty:
        return pd.DataFrame(columns=list(RUN_COLUMNS))
    ordered = results.sort_values("env_steps", kind="stable")
    last = ordered.groupby("run_dir", sort=False).tail(1).set_index("run_dir")
    counts = ordered.groupby("run_dir", sort=False).size()
    rows = []
    for run_dir, row in last.iterrows():
        if "status" in row.index and isinstance(row["status"], str) and row["status"]:
            status = row["status"]
        elif bool(row.get("complete", False)):
            status = "complete"
        else:
            status = _failure_kind(run_dir) if bool(row.get("failed", False)) else "unfinished"
        rows.append({"suite": row.get("suite", ""), "task": row["task"], "variant": row["variant"],
                     "seed": row["seed"], "env_id": row.get("env_id", row["task"]), "status": status,
                     "evaluations": int(counts[run_dir]), "env_steps": float(row["env_steps"]),
                     "last_return": float(row["return_mean"]), "attempts": int(row.get("attempts", 1)),
                     "code_version": row.get("code_version", ""), "attempt_code_versions": "",
                     "job_hash": row.get("job_hash", ""), "problems": "", "run_dir": run_dir})
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def final_scores(results: pd.DataFrame, runs: pd.DataFrame | None = None,
                 scoring: dict[str, TaskScoring] | None = None) -> pd.DataFrame:
    """One row per run directory: its state and, for the runs that enter the statistics (``scored``), its score
    ``final_return`` and where that score comes from (``score_source``):

    - a complete run: its final greedy evaluation (as in the sanity suite's pass rule);
    - a diverged run: its last evaluation before it diverged, or the task's random score (from ``scoring``) if it
      diverged before its first evaluation; with no random score known it is left out (``scored`` false);
    - crashed, unfinished and damaged runs are left out.

    ``runs`` is ``qbench.store.load_runs``'s table (default: the runs seen in ``results``). The scores come from
    ``results``, so a filtered frame gives the scores of its rows; a run of ``runs`` with evaluations none of
    which are in ``results`` is left out (filtered away), unless it is damaged (its rows are not to be trusted, and
    it is named whatever the frame holds)."""
    seen = runs_of_results(results)
    if runs is None:
        runs = seen
    else:
        seen = seen.set_index("run_dir")
        runs = runs[runs["run_dir"].isin(seen.index) | (runs["evaluations"] == 0)
                    | (runs["status"] == "damaged")].copy()
        inside = runs["run_dir"].isin(seen.index)
        for column in ("evaluations", "env_steps", "last_return"):
            runs[column] = runs[column].astype(float)
            runs.loc[inside, column] = runs.loc[inside, "run_dir"].map(seen[column]).astype(float)
    scoring = scoring or {}
    rows = []
    for r in runs.itertuples(index=False):
        score, source = math.nan, ""
        if r.status == "complete" and r.evaluations > 0:
            score, source = r.last_return, "final evaluation"
        elif r.status == "diverged" and r.evaluations > 0:
            score, source = r.last_return, "last evaluation before divergence"
        elif r.status == "diverged" and scoring.get(r.task, TaskScoring()).random_score is not None:
            score, source = float(scoring[r.task].random_score), "random score (diverged before any evaluation)"
        rows.append({"task": r.task, "variant": r.variant, "seed": r.seed, "env_id": r.env_id,
                     "env_steps": r.env_steps, "final_return": score, "status": r.status,
                     "complete": r.status == "complete", "failed": r.status in ("diverged", "crashed"),
                     "scored": bool(source), "score_source": source,
                     "code_version": getattr(r, "code_version", ""),
                     "attempt_code_versions": getattr(r, "attempt_code_versions", ""),
                     "problems": getattr(r, "problems", ""), "run_dir": r.run_dir})
    finals = pd.DataFrame(rows, columns=FINAL_COLUMNS)
    text = ["code_version", "attempt_code_versions", "problems"]
    finals[text] = finals[text].fillna("").astype(str)
    return finals.sort_values(["task", "variant", "seed", "run_dir"], na_position="last").reset_index(drop=True)


def runs_table(finals: pd.DataFrame) -> pd.DataFrame:
    """Per (task, variant): how many run directories are in each state, how many enter the statistics
    (``in_statistics``: complete plus scored diverged runs) and their seeds."""
    rows = []
    for (task, variant), group in finals.groupby(["task", "variant"], sort=True):
        scored = group[group["scored"]]
        counts = group["status"].value_counts()
        rows.append({"task": task, "variant": variant, **{s: int(counts.get(s, 0)) for s in STATES},
                     "in_statistics": len(scored),
                     "seeds": ",".join(str(int(s)) for s in sorted(scored["seed"].dropna()))})
    return pd.DataFrame(rows, columns=["task", "variant", *STATES, "in_statistics", "seeds"])


def _reference_for(references: pd.DataFrame, env_id: str, variant: str, env_steps: int) -> pd.Series | None:
    """The published score of the same algorithm on the same environment, closest in budget; None if none."""
    same = references[(references["algo"] == variant)
                      & (references["env_id"].map(base_env) == base_env(env_id))]
    if same.empty:
        return None
    return same.loc[(same["train_steps"] - env_steps).abs().idxmin()]


def _complete(finals: pd.DataFrame) -> pd.DataFrame:
    return finals[finals["complete"]]


def _scored(finals: pd.DataFrame) -> pd.DataFrame:
    """The runs in the statistics: complete runs and diverged runs with a score (see ``final_scores``)."""
    return finals[finals["scored"]]


def _diverged(group: pd.DataFrame) -> int:
    return int((group["status"] == "diverged").sum())


def scored_curves(results: pd.DataFrame, finals: pd.DataFrame) -> dict[str, pd.Series]:
    """Per scored run, its evaluation returns indexed by env steps. A diverged run's curve is held at its score
    from its last evaluation to the last evaluation step of the complete runs of its (task, variant), and a run
    that diverged before its first evaluation is its score (the task's random score) at every one of those steps:
    so its area under the curve and its learning curve count it as it is scored."""
    scored = _scored(finals)
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


def _budget(group: pd.DataFrame) -> float:
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
    diverged): mean, std, IQM with its CI, the budget, the area under the learning curve (``scored_curves``) and
    the published reference."""
    scored = _scored(finals)
    curves = scored_curves(results, finals)
    rows = []
    for (task, variant), group in scored.groupby(["task", "variant"], sort=True):
        scores = group["final_return"].to_numpy(float)
        ci = stats.bootstrap_ci(scores[:, None], stats.iqm, _generator(seed, "per_task", task, variant), reps,
                                confidence)
        env_id = group["env_id"].iloc[0]
        budget = _budget(group)
        aucs = [stats.area_under_curve(curves[d].index.to_numpy(), curves[d].to_numpy()) for d in group["run_dir"]]
        row = {"task": task, "variant": variant, "seeds": len(scores), "diverged": _diverged(group),
               "env_steps": budget, "frames": budget * _frames_per_env_step(results, task), "mean": scores.mean(), "std": scores.std(ddof=1) if len(scores) > 1 else math.nan,
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
    table = pd.DataFrame(rows, columns=["task", "variant", "seeds", "diverged", "env_steps", "frames", "mean", "std", "iqm",
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


def normalised_scores(finals: pd.DataFrame, scoring: dict[str, TaskScoring]) -> dict[str, dict[str, np.ndarray]]:
    """Per variant, per normalisable task, the normalised scores of its runs in the statistics (complete and
    diverged, see ``final_scores``)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for (variant, task), group in _scored(finals).groupby(["variant", "task"], sort=True):
        entry = scoring.get(task)
        if entry is None or not entry.normalisable:
            continue
        out.setdefault(variant, {})[task] = np.asarray(
            stats.normalise(group["final_return"].to_numpy(float), entry.random_score, entry.reference_score),
            dtype=float).reshape(-1)
    return out


def diverged_counts(finals: pd.DataFrame, scoring: dict[str, TaskScoring] | None = None) -> dict[str, int]:
    """Per variant, how many of its runs in the statistics diverged; with ``scoring``, only on normalisable tasks
    (the runs of the normalised tables)."""
    scored = _scored(finals)
    if scoring is not None:
        scored = scored[scored["task"].isin([t for t, entry in scoring.items() if entry.normalisable])]
    return {variant: _diverged(group) for variant, group in scored.groupby("variant", sort=True)}


def aggregate_table(normalised: dict[str, dict[str, np.ndarray]], *, seed: int, reps: int, confidence: float,
                    diverged: dict[str, int] | None = None) -> pd.DataFrame:
    """IQM, median, mean and optimality gap of the normalised scores per variant; ``runs`` counts the runs in
    them, ``diverged`` how many of those diverged (``diverged_counts``)."""
    diverged = diverged or {}
    rows = []
    for variant, by_task in normalised.items():
        for metric, fn in METRICS.items():
            ci = stats.bootstrap_ci(by_task, fn, _generator(seed, "aggregate", variant, metric), reps, confidence)
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
    for (variant, task), group in _scored(finals).groupby(["variant", "task"], sort=True):
        by_variant.setdefault(variant, {})[task] = group["final_return"].to_numpy(float)
        diverged[variant, task] = _diverged(group)
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
        band = stats.performance_profile_ci(by_task, taus, _generator(seed, "profile", variant), reps, confidence)
        frames.append(pd.DataFrame({"variant": variant, "tau": taus, "point": band.point, "lower": band.lower,
                                    "upper": band.upper, "runs": sum(len(v) for v in by_task.values()),
                                    "diverged": diverged.get(variant, 0)}))
    return pd.concat(frames, ignore_index=True)[columns]


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
    """Learning curves of the runs in the statistics (diverged runs held at their score after they diverged, see
    ``scored_curves``): at the evaluation steps all of them share, IQM over seeds with a CI."""
    curves = scored_curves(results, finals)
    frames = []
    for (task, variant), group in _scored(finals).groupby(["task", "variant"], sort=True):
        long = pd.concat([pd.DataFrame({"run_dir": d, "env_steps": curves[d].index, "return_mean": curves[d].values})
                          for d in group["run_dir"]], ignore_index=True)
        wide = long.pivot_table(index="run_dir", columns="env_steps", values="return_mean").dropna(axis=1)
        if wide.empty:
            continue
        point, lower, upper = _bootstrap_iqm_over_seeds(wide.to_numpy(float), _generator(seed, "curve", task,
                                                        variant), reps, confidence)
        frames.append(pd.DataFrame({"task": task, "variant": variant, "env_steps": wide.columns.astype(int),
                                    "iqm": point, "lower": lower, "upper": upper, "seeds": len(wide),
                                    "diverged": _diverged(group[group["run_dir"].isin(set(wide.index))])}))
    if not frames:
        return pd.DataFrame(columns=["task", "variant", "env_steps", "iqm", "lower", "upper", "seeds", "diverged"])
    return pd.concat(frames, ignore_index=True)


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
    columns = ["task", "variant", "env_steps", "statistic", "seeds", "q_start_mean", "discounted_return_mean",
               "overestimation", "overestimation_lower", "overestimation_upper", "overestimation_min",
               "overestimation_max"]
    if not {"q_start_mean", "discounted_return_mean"} <= set(results.columns):
        return pd.DataFrame(columns=columns)
    logged = results[results["run_dir"].isin(set(_complete(finals)["run_dir"]))].dropna(
        subset=["q_start_mean", "discounted_return_mean"])
    frames = []
    for (task, variant), group in logged.groupby(["task", "variant"], sort=True):
        wide = {name: group.pivot_table(index="run_dir", columns="env_steps", values=name).dropna(axis=1)
                for name in ("q_start_mean", "discounted_return_mean")}
        steps = wide["q_start_mean"].columns.intersection(wide["discounted_return_mean"].columns)
        if steps.empty:
            continue
        q = wide["q_start_mean"][steps].to_numpy(float)
        measured = wide["discounted_return_mean"][steps].to_numpy(float)
        over = q - measured
        point, lower, upper = _bootstrap_iqm_over_seeds(over, _generator(seed, "overestimation", task, variant),
                                                        reps, confidence)
        frames.append(pd.DataFrame({
            "task": task, "variant": variant, "env_steps": steps.astype(int), "statistic": OVERESTIMATION_STATISTIC,
            "seeds": len(q), "q_start_mean": scipy_stats.trim_mean(q, 0.25, axis=0),
            "discounted_return_mean": scipy_stats.trim_mean(measured, 0.25, axis=0), "overestimation": point,
            "overestimation_lower": lower, "overestimation_upper": upper,
            "overestimation_min": over.min(axis=0), "overestimation_max": over.max(axis=0)}))
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


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

def _short(version: str) -> str:
    """A git commit as its first 12 characters (keeping '-dirty'); a 'qbench X' version as it is."""
    if re.fullmatch(r"[0-9a-f]{40}(-dirty)?", version):
        return version[:12] + ("-dirty" if version.endswith("-dirty") else "")
    return version


def _notes(runs: pd.DataFrame, finals: pd.DataFrame, scoring: dict[str, TaskScoring],
           overestimation: pd.DataFrame, cost: pd.DataFrame) -> list[str]:
    notes = []
    for r in finals[finals["status"] == "damaged"].itertuples(index=False):
        notes.append(f"{r.run_dir}: damaged, left out of every statistic: "
                     + (r.problems or "its files cannot all be read (qbench.store.load_runs says which)"))
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
        notes.append(f"{task} / {variant}: {len(group)} run(s) diverged (NaN or inf loss); they count against the "
                     "variant in every statistic, each at its last evaluation before it diverged, or at the task's "
                     "random score if it diverged before any: " + "; ".join(described))
    for row in runs[runs["crashed"] > 0].itertuples(index=False):
        notes.append(f"{row.task} / {row.variant}: {row.crashed} run(s) crashed, left out of every statistic "
                     "(a crash is not an outcome of the algorithm; qbench run retries them)")
    for row in runs[runs["unfinished"] > 0].itertuples(index=False):
        notes.append(f"{row.task} / {row.variant}: {row.unfinished} unfinished run(s), left out of every statistic")
    for (task, variant), group in _complete(finals).groupby(["task", "variant"], sort=True):
        budgets = sorted({int(b) for b in group["env_steps"]})
        if len(budgets) > 1:
            notes.append(f"{task} / {variant}: runs with different budgets are pooled ("
                         + ", ".join(f"{b:,}" for b in budgets) + " env steps): report one suite's folder to keep "
                         "them apart")
    for (task, variant), group in _scored(finals).groupby(["task", "variant"], sort=True):
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
    if left_out:
        notes.append("no random and reference score for " + ", ".join(left_out)
                     + ": left out of the normalised aggregate and the performance profiles")
    if overestimation.empty:
        notes.append("no run logged Q(s_0, a_0) and its discounted return: no overestimation plot")
    if not cost.empty and cost["peak_rss_mb_max"].isna().any():
        notes.append("peak memory was not recorded by some runs (written by older qbench versions)")
    return notes


def build_report(results: str | Path | pd.DataFrame, *, suite: str | None = None, seed: int = 0,
                 reps: int = 2000, confidence: float = 0.95, references: pd.DataFrame | None = None,
                 runs: pd.DataFrame | None = None) -> Report:
    """Every table of the report for a results folder (or a ``load_results`` frame, for notebooks; pass
    ``runs=load_runs(path)`` too to count the runs that have no evaluation row)."""
    from qbench.store import load_runs_and_results

    if isinstance(results, pd.DataFrame):
        source, df = "DataFrame", results
        runs = runs_of_results(df) if runs is None else runs
    else:
        source = str(results)
        runs, df = load_runs_and_results(results)
    if runs.empty:
        raise NoResultsError(f"no run with evaluations under '{source}' (a run directory holds config.json and "
                             "evaluations.csv)")
    notes: list[str] = []
    scoring = load_scoring(sorted(set(runs["run_dir"])), sorted(set(runs["suite"])), suite, notes)
    known = runs[runs["env_id"].astype(bool)]
    for task, entry in atari_scoring(dict(zip(known["task"], known["env_id"]))).items():
        if task not in scoring or not scoring[task].normalisable:
            scoring[task] = entry
    references = load_references() if references is None else references
    finals = final_scores(df, runs, scoring)
    boot = {"seed": seed, "reps": reps, "confidence": confidence}
    normalised = normalised_scores(finals, scoring)
    diverged = diverged_counts(finals, scoring)
    tables = {
        "runs": runs_table(finals),
        "per_task": per_task_table(finals, df, references, **boot),
        "references": references_table(finals, references),
        "aggregate": aggregate_table(normalised, **boot, diverged=diverged),
        "improvement": improvement_table(finals, **boot),
        "profiles": profiles_table(normalised, **boot, diverged=diverged),
        "curves": curves_table(df, finals, **boot),
        "overestimation": overestimation_table(df, finals, **boot),
        "cost": cost_table(finals),
        "finals": finals,
    }
    notes += _notes(tables["runs"], finals, scoring, tables["overestimation"], tables["cost"])
    return Report(source, tables, notes, scoring, seed, reps, confidence)
