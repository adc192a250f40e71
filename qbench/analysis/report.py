"""The tables of a report, computed from a results folder: the notebook API behind ``qbench report``.

``build_report(path)`` reads every run directory under ``path`` (``qbench.store.load_runs_and_results``: one row
per run directory, whatever its state, and one row per evaluation), scores each run (``final_scores``) and
computes every table as a pandas DataFrame of plain numbers:

- ``runs``: run directories per (task, variant) by state (complete, diverged, crashed, unfinished, damaged), how
  many the divergence watch flagged (``warned``) and how many enter the statistics; unequal counts are listed in
  notes;
- ``per_task``: final return per (task, variant): mean, std, IQM with its bootstrap CI, seeds (how many of them
  diverged, and how many were flagged by the divergence watch: ``warned``), budget, the area under the learning
  curve, and the published reference of the same algorithm;
- ``references``: every published score for the tasks in the results (``qbench/data/zoo_reference.csv``);
- ``aggregate``: IQM, median, mean and optimality gap of normalised scores per variant, with CIs;
- ``improvement``: P(X > Y) for every ordered pair of variants over the tasks both ran, with CIs;
- ``profiles``: performance profiles (fraction of runs above tau) of normalised scores, with CI bands;
- ``curves``: IQM of the evaluation return over seeds at each evaluation step, with CI bands;
- ``train_curves``: IQM over complete runs of the training return as the MinAtar paper plots it (diagnostics.csv's
  ``train_return_last100``: the mean of the last 100 training episodes) at each log step;
- ``overestimation``: per step (complete runs), the predicted Q(s_0, a_0), the discounted return measured from
  s_0 and their difference, IQM over seeds, the difference with a CI over seeds;
- ``overestimation_visited``: the same along the states the greedy evaluation policy visited (its mean
  Q(s_t, a_t) against the discounted return collected from each); ``overestimation_final``: per (task, variant)
  at the last evaluation step its complete runs share, both overestimations with CIs (to compare variants on);
- ``diverged_runs``: diverged runs per (task, variant), by cause: NaN or inf loss, or Q beyond the bound;
- ``nstep_corrections``: per n-step (task, variant), its off-policy correction and n, final IQM with its CI and
  AUC (from ``per_task``), the mean trace length its targets used (diagnostics.csv's ``trace_length``) and its IQM
  minus that of the same task's ignore variant at the same n; empty unless the rows hold two corrections or more;
- ``cost``: wall time, env steps per second and peak memory per (task, variant) (complete runs);
- ``finals``: one row per run directory: state, score, where the score comes from, code version, problems.

Theory (each empty when the results hold nothing for it; ``THEORY_TABLES`` non-empty makes a Theory section):

- ``maximisation_bias``: per (task, variant, training episode) the fraction of runs that went left, with a
  Wilson interval (tasks recording ``left`` in episodes.csv); ``maximisation_bias_summary``: its peak and final;
- ``q_distance``: on known-dynamics tasks, max and mean |Q - Q*| and the greedy policy's exact value against
  V*, mean over seeds with CIs, per evaluation step;
- ``contraction``, ``contraction_curves``: exact Q-value iteration on those tasks at their runs' gamma;
- ``divergence``, ``divergence_summary``: the Tsitsiklis-Van Roy and Baird counterexamples (only with a Theory
  section: they do not depend on the results).

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

A run the divergence watch flagged (its |Q| passed ``divergence_warn_factor`` value scales, 5 by default, and it
ran on: ``divergence_watch`` in summary.json) counts like every other run: it is counted in ``warned`` and named
in a note per (task, variant), never removed from a statistic. Runs whose summary.json predates that record count
as not flagged, and a note says how many there are.

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
                           "thresholds": dict(e.thresholds), "seeds": suite.rule(e.name)[1],
                           "min_passing_seeds": suite.rule(e.name)[0]} for e in suite.entries},
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


def merged_scoring(per_suite: dict[str, dict[str, TaskScoring]]) -> dict[str, TaskScoring]:
    """Per task, the scoring of the first suite that scores it: what the tables and figures that show one scoring
    per task (pass thresholds, which tasks are normalisable) use."""
    scoring: dict[str, TaskScoring] = {}
    for tasks in per_suite.values():
        for task, entry in tasks.items():
            scoring.setdefault(task, entry)
    return scoring


def load_suite_scorings(run_dirs: list[str], suites: list[str], suite_file: str | None = None,
                        notes: list[str] | None = None) -> dict[str, dict[str, TaskScoring]]:
    """Per suite, per task, the scoring of that suite: ``suite_file`` if given (for every run, under the key
    ``ANY_SUITE``), else the ``suite.json`` a runner wrote beside the runs (``<results>/<suite>/suite.json``, two
    levels above each run directory), else the shipped suite files named like the suites in the results.

    A suite.json that cannot be read is said in ``notes`` (by path, with the reason), and its suite is not
    replaced by the shipped suite of that name, whose scores may have changed since: its tasks have no scores
    (they are left out of the normalised tables) unless ``suite_file`` is given. Two suites that give one task
    different random or reference scores are said in ``notes``: each run is normalised by its own suite's."""
    from qbench.config import ConfigError
    from qbench.suites import load_suite

    if suite_file is not None:
        suite = load_suite(suite_file)
        return {ANY_SUITE: _scoring_of_record(suite_record(suite), str(suite.path))}
    per_suite: dict[str, dict[str, TaskScoring]] = {}
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
        name = str(record.get("suite") or path.parent.name)
        recorded.add(name)
        for task, entry in _scoring_of_record(record, str(path)).items():
            per_suite.setdefault(name, {}).setdefault(task, entry)
    for name in sorted(set(suites) - recorded - {""}):
        try:
            suite = load_suite(name)
        except ConfigError:
            continue
        per_suite[name] = _scoring_of_record(suite_record(suite), str(suite.path))
    if notes is not None:
        notes.extend(_scoring_conflicts(per_suite))
    return per_suite


ANY_SUITE = "*"   # the key of a scoring given for every run (report --suite FILE)


def _scoring_conflicts(per_suite: dict[str, dict[str, TaskScoring]]) -> list[str]:
    scores: dict[str, dict[tuple, list[str]]] = {}
    for name, tasks in per_suite.items():
        for task, entry in tasks.items():
            scores.setdefault(task, {}).setdefault((entry.random_score, entry.reference_score), []).append(name)
    return [f"{task} is scored differently by its suites ("
            + "; ".join(f"{', '.join(repr(n) for n in names)}: random {_g(r)}, reference {_g(ref)}"
                        for (r, ref), names in sorted(by.items(), key=lambda kv: kv[1]))
            + "): each run is normalised by its own suite's scores, and the pass table uses the first's thresholds"
            for task, by in sorted(scores.items()) if len(by) > 1]


def _g(value) -> str:
    return "none" if value is None else f"{value:g}"


def run_scoring(per_suite: dict[str, dict[str, TaskScoring]] | None, scoring: dict[str, TaskScoring], suite: str,
                task: str) -> TaskScoring | None:
    """The scoring of one run: its own suite's for its task, else the task's in ``scoring``."""
    per_suite = per_suite or {}
    own = per_suite.get(suite, per_suite.get(ANY_SUITE, {})).get(task)
    return own if own is not None else scoring.get(task)


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
                 "scored", "score_source", "code_version", "attempt_code_versions", "problems", "run_dir", "suite",
                 "divergence_warned", "peak_value_scales", "divergence_warn_factor"]


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
                     "job_hash": row.get("job_hash", ""), "problems": "", "run_dir": run_dir,
                     "divergence_warned": row.get("divergence_warned", pd.NA),
                     "peak_value_scales": row.get("peak_value_scales", math.nan),
                     "divergence_warn_factor": row.get("divergence_warn_factor", math.nan)})
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def final_scores(results: pd.DataFrame, runs: pd.DataFrame | None = None,
                 scoring: dict[str, TaskScoring] | None = None,
                 suite_scorings: dict[str, dict[str, TaskScoring]] | None = None) -> pd.DataFrame:
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
        elif r.status == "diverged" and (own := run_scoring(suite_scorings, scoring, getattr(r, "suite", ""),
                                                              r.task)) is not None and own.random_score is not None:
            score, source = float(own.random_score), "random score (diverged before any evaluation)"
        rows.append({"suite": getattr(r, "suite", ""), "task": r.task, "variant": r.variant, "seed": r.seed,
                     "env_id": r.env_id,
                     "env_steps": r.env_steps, "final_return": score, "status": r.status,
                     "complete": r.status == "complete", "failed": r.status in ("diverged", "crashed"),
                     "scored": bool(source), "score_source": source,
                     "code_version": getattr(r, "code_version", ""),
                     "attempt_code_versions": getattr(r, "attempt_code_versions", ""),
                     "problems": getattr(r, "problems", ""), "run_dir": r.run_dir,
                     "divergence_warned": getattr(r, "divergence_warned", pd.NA),
                     "peak_value_scales": getattr(r, "peak_value_scales", math.nan),
                     "divergence_warn_factor": getattr(r, "divergence_warn_factor", math.nan)})
    finals = pd.DataFrame(rows, columns=FINAL_COLUMNS)
    text = ["code_version", "attempt_code_versions", "problems", "suite"]
    finals[text] = finals[text].fillna("").astype(str)
    finals["divergence_warned"] = _flags(finals["divergence_warned"])
    finals[["peak_value_scales", "divergence_warn_factor"]] = (
        finals[["peak_value_scales", "divergence_warn_factor"]].apply(pd.to_numeric, errors="coerce").astype(float))
    return finals.sort_values(["task", "variant", "seed", "run_dir"], na_position="last").reset_index(drop=True)


def _flags(values: pd.Series) -> pd.Series:
    """``divergence_warned`` as a nullable boolean: True, False or <NA> (unknown; anything that is not a bool)."""
    return values.map(lambda v: v if isinstance(v, (bool, np.bool_)) else pd.NA).astype("boolean")


def _flagged(group: pd.DataFrame) -> pd.Series:
    """Which runs of ``group`` the divergence watch flagged (unknown counts as not flagged)."""
    if "divergence_warned" not in group.columns:
        return pd.Series(False, index=group.index)
    return _flags(group["divergence_warned"]).fillna(False).astype(bool)


def _warned(group: pd.DataFrame) -> int:
    return int(_flagged(group).sum())


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
                     "warned": _warned(group), "in_statistics": len(scored),
                     "seeds": ",".join(str(int(s)) for s in sorted(scored["seed"].dropna()))})
    return pd.DataFrame(rows, columns=["task", "variant", *STATES, "warned", "in_statistics", "seeds"])


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
    diverged and ``warned`` were flagged by the divergence watch, counted like the others): mean, std, IQM with
    its CI, the budget, the area under the learning curve (``scored_curves``) and the published reference."""
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
               "warned": _warned(group), "env_steps": budget, "frames": budget * _frames_per_env_step(results, task), "mean": scores.mean(), "std": scores.std(ddof=1) if len(scores) > 1 else math.nan,
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


def normalised_scores(finals: pd.DataFrame, scoring: dict[str, TaskScoring],
                      suite_scorings: dict[str, dict[str, TaskScoring]] | None = None
                      ) -> dict[str, dict[str, np.ndarray]]:
    """Per variant, per normalisable task, the normalised scores of its runs in the statistics (complete and
    diverged, see ``final_scores``), each run by its own suite's random and reference scores."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for (variant, task), group in _scored(finals).groupby(["variant", "task"], sort=True):
        suites = group["suite"] if "suite" in group else pd.Series([""] * len(group), index=group.index)
        entries = [run_scoring(suite_scorings, scoring, suite, task) for suite in suites]
        keep = np.array([e is not None and e.normalisable for e in entries], dtype=bool)
        if not keep.any():
            continue
        kept = [e for e, k in zip(entries, keep, strict=True) if k]
        out.setdefault(variant, {})[task] = np.asarray(
            stats.normalise(group["final_return"].to_numpy(float)[keep], [e.random_score for e in kept],
                            [e.reference_score for e in kept]), dtype=float).reshape(-1)
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


# Bootstrap replicates are drawn in chunks of at most this many resampled values: the maximisation-bias
# experiment has ~1000 seeds a variant, and (2000 reps, 1000 seeds, steps) at once would be gigabytes.
_BOOTSTRAP_CHUNK = 4_000_000


def _bootstrap_over_seeds(curves: np.ndarray, rng: np.random.Generator, reps: int, confidence: float,
                          trim: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``trim``-trimmed mean over seeds (axis 0; 0.25: the IQM, 0: the mean) of a (seeds, steps) array at
    every step, with percentile bootstrap bounds; seeds are resampled whole, so one replicate keeps each seed's
    curve together."""
    point = scipy_stats.trim_mean(curves, trim, axis=0)
    n = curves.shape[0]
    draws = rng.integers(0, n, size=(reps, n))
    # scipy's trim_mean, cutting int(trim * n) from each end, by a sort: on a handful of seeds it is several
    # times faster than scipy's partition on the (reps, seeds, steps) array.
    cut = int(trim * n)
    per_chunk = max(1, _BOOTSTRAP_CHUNK // max(1, n * curves.shape[1]))
    replicates = np.concatenate([
        (np.sort(curves[part], axis=1)[:, cut:n - cut] if cut else curves[part]).mean(axis=1)
        for part in (draws[i:i + per_chunk] for i in range(0, reps, per_chunk))])
    tail = (1.0 - confidence) / 2.0 * 100.0
    lower, upper = np.percentile(replicates, [tail, 100.0 - tail], axis=0)
    return point, lower, upper


def _bootstrap_iqm_over_seeds(curves: np.ndarray, rng: np.random.Generator, reps: int,
                              confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM over seeds (axis 0) of a (seeds, steps) array at every step, with percentile bootstrap bounds; seeds
    are resampled whole, so one replicate keeps each seed's curve together."""
    return _bootstrap_over_seeds(curves, rng, reps, confidence, 0.25)


def _bootstrap_mean_over_seeds(curves: np.ndarray, rng: np.random.Generator, reps: int,
                               confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _bootstrap_over_seeds(curves, rng, reps, confidence, 0.0)


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


TRAIN_CURVE_COLUMNS = ["task", "variant", "env_steps", "iqm", "seeds"]


def train_curves_table(finals: pd.DataFrame) -> pd.DataFrame:
    """The training return as the MinAtar paper plots it: per (task, variant), the IQM over its complete runs of
    diagnostics.csv's ``train_return_last100`` (the mean return of the last 100 training episodes at each log
    row), at the log steps where every one of them has a value. Runs written before the column existed, or
    whose diagnostics.csv cannot be read, are left out; a (task, variant) with none has no rows. Diverged runs
    stop training where they diverged, so only complete runs count."""
    from qbench.store import DIAGNOSTICS, read_csv_rows

    frames = []
    for (task, variant), group in _complete(finals).groupby(["task", "variant"], sort=True):
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
    logged = results[results["run_dir"].isin(set(_complete(finals)["run_dir"]))].dropna(
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
        point, lower, upper = _bootstrap_iqm_over_seeds(over, _generator(seed, name, task, variant), reps,
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
    complete = results[results["run_dir"].isin(set(_complete(finals)["run_dir"]))]
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
            point, lower, upper = _bootstrap_iqm_over_seeds(
                q - measured, _generator(seed, "overestimation_final", measure, task, variant), reps, confidence)
            row.update({f"{measure}_q": float(scipy_stats.trim_mean(q[:, 0], 0.25)),
                        f"{measure}_return": float(scipy_stats.trim_mean(measured[:, 0], 0.25)),
                        f"{measure}_overestimation": float(point[0]), f"{measure}_lower": float(lower[0]),
                        f"{measure}_upper": float(upper[0]), f"{measure}_seeds": len(logged)})
            if measure == "visited" and "visited_states" in logged:
                row["visited_states"] = float(logged["visited_states"].mean())
        if row["start_seeds"] or row["visited_seeds"]:
            rows.append(row)
    return pd.DataFrame(rows, columns=OVERESTIMATION_FINAL_COLUMNS)


def cost_table(finals: pd.DataFrame) -> pd.DataFrame:
    """Wall time, env steps per second and peak memory of the complete runs, from their summary.json. Seeds trained
    side by side share one process and one wall time (summary's ``wall_s``, ``seeds_in_batch``): a run's share is
    the batch's wall time over its seeds, so that ``wall_s_total`` is the process time all of them took (1,000
    seeds of one 30 s batch are 30 s, not 30,000)."""
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
                     "wall_s_mean": float(np.mean([s["wall_s"] / s.get("seeds_in_batch", 1) for s in summaries])),
                     "wall_s_total": float(np.sum([s["wall_s"] / s.get("seeds_in_batch", 1) for s in summaries])),
                     "steps_per_s_mean": float(np.mean([s["steps_per_s"] for s in summaries])),
                     "peak_rss_mb_max": float(max(peaks)) if peaks else math.nan})
    return pd.DataFrame(rows, columns=["task", "variant", "runs", "wall_s_mean", "wall_s_total", "steps_per_s_mean",
                                       "peak_rss_mb_max"])


# The settings of an n-step target, as config.json records them (its "config" table); a run written before one of
# them existed ran with its default, which qbench.config.SETTINGS holds.
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
    from qbench.config import SETTINGS

    config = _read_config(run_dir).get("config")
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
    from qbench.store import DIAGNOSTICS, read_csv_rows

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
    for r in _scored(finals).itertuples(index=False):
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


# --- theory ----------------------------------------------------------------------------------------------------

DIVERGENCE_BOUND_MESSAGE = "Q exceeded the divergence bound"   # how the engine's divergence watch begins error.json


def _divergence_cause(run_dir: str) -> str:
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
        causes = [_divergence_cause(d) for d in group.loc[group["status"] == "diverged", "run_dir"]]
        if causes:
            rows.append({"task": task, "variant": variant, "runs": len(group), "diverged": len(causes),
                         "nan_or_inf": causes.count("nan_or_inf"), "bound": causes.count("bound")})
    return pd.DataFrame(rows, columns=columns)


def wilson_interval(successes, trials, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of a binomial proportion (NaN where ``trials`` is 0): unlike p ± z se it stays
    inside [0, 1] and is not empty at 0 or n successes, which a left fraction near 5% over 1000 runs needs."""
    k, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    z = scipy_stats.norm.ppf(0.5 + confidence / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


MAXIMISATION_BIAS_COLUMNS = ["task", "variant", "episode", "left_fraction", "runs", "lower", "upper"]
FINAL_EPISODES = 100


def _with_left(episodes: pd.DataFrame) -> pd.DataFrame:
    """The episodes of complete runs of the tasks that record ``left``, as for every other statistic."""
    if "left" not in episodes.columns or episodes.empty:
        return episodes.iloc[0:0]
    rows = episodes[episodes["complete"].astype(bool)] if "complete" in episodes.columns else episodes
    rows = rows.assign(left=pd.to_numeric(rows["left"], errors="coerce")).dropna(subset=["left"])
    return rows


def _common_episodes(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the episodes that every run of their task has (the task's shortest run, in episodes)."""
    if rows.empty:
        return rows
    common = rows.groupby(["task", "run_dir"])["episode"].max().groupby(level="task").min()
    return rows[rows["episode"] <= rows["task"].map(common)]


def maximisation_bias_table(episodes: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per (task, variant, training episode), over the complete runs that recorded ``left`` in that episode
    (``runs``): the fraction that went left (``left_fraction``) with its Wilson score interval (``lower``,
    ``upper``); ``episodes`` is ``qbench.store.load_episodes``'s frame.

    Only the episodes that every run of the task has (all variants alike): runs are given env steps, not
    episodes, and a run that goes right more often finishes more (shorter) episodes, so a late episode that
    few runs reach is a biased sample of them (runs that went right a lot)."""
    rows = _common_episodes(_with_left(episodes))
    if rows.empty:
        return pd.DataFrame(columns=MAXIMISATION_BIAS_COLUMNS)
    table = (rows.groupby(["task", "variant", "episode"], sort=True)["left"]
             .agg(left_fraction="mean", runs="size", successes="sum").reset_index())
    table["lower"], table["upper"] = wilson_interval(table["successes"], table["runs"], confidence)
    table["episode"] = table["episode"].astype(int)
    return table[MAXIMISATION_BIAS_COLUMNS]


MAXIMISATION_BIAS_SUMMARY_COLUMNS = ["task", "variant", "runs", "peak_left_fraction", "peak_episode",
                                     "final_left_fraction", "final_first_episode", "final_last_episode"]


def maximisation_bias_summary(episodes: pd.DataFrame, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (task, variant): the largest left fraction over episodes and the first episode it is reached at
    (from ``maximisation_bias_table``), and the left fraction over the last ``FINAL_EPISODES`` episodes that
    every one of its ``runs`` has (``final_first_episode`` to ``final_last_episode``), each run weighing the
    same. How much of it epsilon-greedy exploration forces is not known here (the report does not know
    epsilon)."""
    rows = _common_episodes(_with_left(episodes))
    if rows.empty:
        return pd.DataFrame(columns=MAXIMISATION_BIAS_SUMMARY_COLUMNS)
    table = maximisation_bias_table(episodes) if table is None else table
    out = []
    for (task, variant), group in rows.groupby(["task", "variant"], sort=True):
        per_episode = table[(table["task"] == task) & (table["variant"] == variant)]
        peak = per_episode.loc[per_episode["left_fraction"].idxmax()]
        last = int(group.groupby("run_dir")["episode"].max().min())
        first = max(1, last - FINAL_EPISODES + 1)
        window = group[(group["episode"] >= first) & (group["episode"] <= last)]
        out.append({"task": task, "variant": variant, "runs": int(group["run_dir"].nunique()),
                    "peak_left_fraction": float(peak["left_fraction"]), "peak_episode": int(peak["episode"]),
                    "final_left_fraction": float(window.groupby("run_dir")["left"].mean().mean()),
                    "final_first_episode": first, "final_last_episode": last})
    return pd.DataFrame(out, columns=MAXIMISATION_BIAS_SUMMARY_COLUMNS)


Q_DISTANCE_METRICS = ("q_error_max", "q_error_mean", "greedy_value", "optimal_value")
Q_DISTANCE_STATISTIC = "mean over seeds"


def q_distance_table(results: pd.DataFrame, finals: pd.DataFrame, *, seed: int = 0, reps: int = 2000,
                     confidence: float = 0.95) -> pd.DataFrame:
    """On tasks with known dynamics: per (task, variant, env_steps), over the complete runs that logged
    ``q_error_max`` at the steps all of them share, the mean over seeds (``statistic``) of ``q_error_max`` and
    ``q_error_mean`` (max and mean over the states the agent can be in of max_a |Q - Q*|), ``greedy_value``
    (the exact value of the learned Q's greedy policy from the initial states) and ``optimal_value`` (V*
    there), each with a percentile bootstrap CI over seeds (``<metric>_lower``, ``<metric>_upper``).

    The mean, not the IQM: these are exact distances of each seed's Q, not noisy returns, and a seed far from
    Q* is what the table is there to show."""
    columns = ["task", "variant", "env_steps", "statistic", "seeds"]
    columns += [f"{m}{part}" for m in Q_DISTANCE_METRICS for part in ("", "_lower", "_upper")]
    if "q_error_max" not in results.columns:
        return pd.DataFrame(columns=columns)
    logged = results[results["run_dir"].isin(set(_complete(finals)["run_dir"]))].dropna(subset=["q_error_max"])
    frames = []
    for (task, variant), group in logged.groupby(["task", "variant"], sort=True):
        errors = group.pivot_table(index="run_dir", columns="env_steps", values="q_error_max").dropna(axis=1)
        if errors.empty:
            continue
        frame = pd.DataFrame({"task": task, "variant": variant, "env_steps": errors.columns.astype(int),
                              "statistic": Q_DISTANCE_STATISTIC, "seeds": len(errors)})
        for metric in Q_DISTANCE_METRICS:
            if metric not in group.columns:
                frame[[metric, f"{metric}_lower", f"{metric}_upper"]] = math.nan
                continue
            # The runs and steps of q_error_max; a metric missing in any of them leaves that step NaN.
            wide = (group.drop_duplicates(["run_dir", "env_steps"], keep="last")
                    .pivot(index="run_dir", columns="env_steps", values=metric)
                    .reindex(index=errors.index, columns=errors.columns).to_numpy(float))
            point, lower, upper = _bootstrap_mean_over_seeds(wide, _generator(seed, "q_distance", task, variant,
                                                                              metric), reps, confidence)
            frame[metric], frame[f"{metric}_lower"], frame[f"{metric}_upper"] = point, lower, upper
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def _read_config(run_dir: str) -> dict[str, Any]:
    try:
        job = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return job if isinstance(job, dict) else {}


def known_dynamics_mdps(results: pd.DataFrame, finals: pd.DataFrame,
                        notes: list[str] | None = None) -> dict[str, tuple[Any, float]]:
    """The exact models of the tasks in ``results`` with known dynamics (their complete runs logged
    ``q_error_max``), each with the gamma its runs trained with, as ``qbench.theory.counterexamples``'s
    ``contraction_table`` takes them: task -> (KnownMDP, gamma), or 'task (gamma g)' per gamma where the runs
    of a task disagree. The env is made from config.json's env_id and env_kwargs (qbench's own ids registered
    by importing ``qbench.envs.toy``); a task whose env cannot be made or modelled, or whose runs record no
    gamma, is said in ``notes``."""
    if "q_error_max" not in results.columns:
        return {}
    complete = set(_complete(finals)["run_dir"])
    logged = results[results["run_dir"].isin(complete)].dropna(subset=["q_error_max"])
    if logged.empty:
        return {}
    import gymnasium as gym

    import qbench.envs.toy  # noqa: F401  (registers qbench's own known-dynamics ids)
    from qbench.theory.mdp import known_mdp

    notes = notes if notes is not None else []
    mdps: dict[str, tuple[Any, float]] = {}
    for task, group in logged.groupby("task", sort=True):
        by_gamma: dict[float, dict[str, Any]] = {}
        for run_dir in sorted(set(group["run_dir"])):
            job = _read_config(run_dir)
            gamma = (job.get("config") or {}).get("gamma") if isinstance(job.get("config"), dict) else None
            if isinstance(gamma, (int, float)) and not isinstance(gamma, bool):
                by_gamma.setdefault(float(gamma), job)
        if not by_gamma:
            notes.append(f"{task}: its runs' config.json record no gamma: no contraction table for it")
            continue
        for gamma, job in sorted(by_gamma.items()):
            name = task if len(by_gamma) == 1 else f"{task} (gamma {gamma:g})"
            try:
                env = gym.make(job.get("env_id", task), **(job.get("env_kwargs") or {}))
            except (gym.error.Error, ImportError, TypeError, ValueError) as exc:   # another version, or package
                notes.append(f"{name}: its env cannot be made here ({type(exc).__name__}: {exc}): no contraction "
                             "table for it")
                continue
            try:
                mdp = known_mdp(env)
            finally:
                env.close()
            if mdp is None:
                notes.append(f"{name}: its env exposes no model (P and initial_state_distrib): no contraction "
                             "table for it")
                continue
            mdps[name] = (mdp, gamma)
    return mdps


# The toy text MDPs whose contraction every Theory section shows, whatever the results hold (value iteration on them
# takes well under a second).
REFERENCE_MDPS = ("FrozenLake-v1", "CliffWalking-v1", "Taxi-v4")
REFERENCE_GAMMAS = (0.9, 0.99)


def reference_mdps() -> dict[str, tuple[Any, float]]:
    """Gymnasium's toy text MDPs at gamma 0.9 and 0.99, named 'task (gamma g)'."""
    import gymnasium as gym

    from qbench.theory.mdp import known_mdp

    out: dict[str, tuple[Any, float]] = {}
    for env_id in REFERENCE_MDPS:
        env = gym.make(env_id)
        try:
            mdp = known_mdp(env)
        finally:
            env.close()
        for gamma in REFERENCE_GAMMAS:
            out[f"{env_id} (gamma {gamma:g})"] = (mdp, gamma)
    return out


CONTRACTION_COLUMNS = ["task", "gamma", "states", "actions", "sweeps", "first_error", "max_ratio", "mean_ratio",
                       "bound", "policy_iteration_steps", "policy_iteration_gap"]
CONTRACTION_CURVE_COLUMNS = ["task", "gamma", "sweep", "max_error", "ratio"]


def contraction_tables(mdps: dict[str, tuple[Any, float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``contraction_table`` and ``contraction_curves`` of ``qbench.theory.counterexamples`` for ``mdps``
    (empty without any)."""
    if not mdps:
        return pd.DataFrame(columns=CONTRACTION_COLUMNS), pd.DataFrame(columns=CONTRACTION_CURVE_COLUMNS)
    from qbench.theory import counterexamples

    return counterexamples.contraction_table(mdps), counterexamples.contraction_curves(mdps)


DIVERGENCE_COLUMNS = ["example", "method", "iteration", "weight_norm", "analytical_norm"]
DIVERGENCE_SUMMARY_COLUMNS = ["example", "method", "iterations", "first_norm", "last_norm", "growth_factor",
                              "spectral_radius",
                              "analytical_growth_factor"]


def divergence_table() -> pd.DataFrame:
    """The weight norms of the divergence counterexamples (``qbench.theory.counterexamples``)."""
    from qbench.theory import counterexamples

    return counterexamples.divergence_curves()


def _growth_factor(iterations: np.ndarray, norms: np.ndarray) -> float:
    """The geometric mean factor per iteration over the second half of the iterations: the early ones hold the
    modes that die out (Baird's first hundreds of iterations grow faster than its spectral radius)."""
    keep = np.isfinite(norms) & (norms > 0)
    if keep.sum() < 2:
        return math.nan
    it, nm = iterations[keep], norms[keep]
    middle = int(np.searchsorted(it, it[0] + (it[-1] - it[0]) / 2.0))
    middle = min(middle, len(it) - 2)
    span = it[-1] - it[middle]
    return float((nm[-1] / nm[middle]) ** (1.0 / span)) if span > 0 else math.nan


def divergence_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per (example, method): its iterations, the weight norm at the first and last, and the mean factor it
    grows by per iteration over the second half of them (below 1: it shrinks), measured and analytical (NaN
    where there is none)."""
    from qbench.theory.counterexamples import spectral_radii

    radii = spectral_radii() if not curves.empty else {}
    rows = []
    for (example, method), group in curves.groupby(["example", "method"], sort=False):
        group = group.sort_values("iteration")
        it = group["iteration"].to_numpy(float)
        norms = group["weight_norm"].to_numpy(float)
        rows.append({"example": example, "method": method, "iterations": int(it[-1]) if len(it) else 0,
                     "first_norm": float(norms[0]), "last_norm": float(norms[-1]),
                     "growth_factor": _growth_factor(it, norms),
                     "analytical_growth_factor": _growth_factor(it, group["analytical_norm"].to_numpy(float)),
                     "spectral_radius": radii.get((example, method), math.nan)})
    return pd.DataFrame(rows, columns=DIVERGENCE_SUMMARY_COLUMNS)


# Tables whose rows come from the results: any of them non-empty makes a Theory section, and brings the
# divergence counterexamples (which are the same for every results folder) with it.
THEORY_TABLES = ("maximisation_bias", "maximisation_bias_summary", "q_distance", "contraction",
                 "contraction_curves")


def has_theory(tables: dict[str, pd.DataFrame]) -> bool:
    return any(name in tables and not tables[name].empty for name in THEORY_TABLES)


# --- the report --------------------------------------------------------------------------------------------------

def _short(version: str) -> str:
    """A git commit as its first 12 characters (keeping '-dirty'); a 'qbench X' version as it is."""
    if re.fullmatch(r"[0-9a-f]{40}(-dirty)?", version):
        return version[:12] + ("-dirty" if version.endswith("-dirty") else "")
    return version


def _task_set_notes(normalised: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """A note when the normalised aggregates and profiles of the variants stand on different sets of tasks: an
    easy task one variant ran and another did not moves its aggregate, not its merit."""
    tasks = {variant: frozenset(by_task) for variant, by_task in normalised.items()}
    every = frozenset().union(*tasks.values()) if tasks else frozenset()
    missing = {variant: sorted(every - ts) for variant, ts in sorted(tasks.items()) if every - ts}
    if not missing:
        return []
    return ["the normalised aggregates and profiles are not over the same tasks for every variant: "
            + "; ".join(f"{variant} lacks {', '.join(ts)}" for variant, ts in missing.items())
            + ": compare those variants in the per-task table, where each task stands alone"]


def _scales(x: float) -> str:
    return "unknown" if x is None or math.isnan(x) else f"{x:,.1f}"


def _warned_notes(finals: pd.DataFrame) -> list[str]:
    """A note per (task, variant) with runs the divergence watch flagged, naming their seeds and largest peak,
    and one note when some complete or diverged runs predate the watch's record (counted as not flagged)."""
    notes = []
    flagged = finals[_flagged(finals)]
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
        causes = [_divergence_cause(d) for d in group["run_dir"]]
        cause = ", ".join(f"{n} {what}" for n, what in ((causes.count("nan_or_inf"), "NaN or inf loss"),
                                                         (causes.count("bound"), "Q beyond the divergence bound"))
                          if n)
        notes.append(f"{task} / {variant}: {len(group)} run(s) diverged ({cause}); they count against the "
                     "variant in every statistic, each at its last evaluation before it diverged, or at the task's "
                     "random score if it diverged before any: " + "; ".join(described))
    notes += _warned_notes(finals)
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
    if overestimation.empty:
        notes.append("no run logged Q(s_0, a_0) and its discounted return (runs older than these columns, or "
                     "episodes too short for gamma: a return counts when log(0.01)/log(gamma) steps fit after its "
                     "state, 459 at gamma 0.99): no overestimation plot")
    if not cost.empty and cost["peak_rss_mb_max"].isna().any():
        notes.append("peak memory was not recorded by some runs (written by older qbench versions)")
    return notes


def build_report(results: str | Path | pd.DataFrame, *, suite: str | None = None, seed: int = 0,
                 reps: int = 2000, confidence: float = 0.95, references: pd.DataFrame | None = None,
                 runs: pd.DataFrame | None = None, episodes: pd.DataFrame | None = None) -> Report:
    """Every table of the report for a results folder (or a ``load_results`` frame, for notebooks; pass
    ``runs=load_runs(path)`` too to count the runs that have no evaluation row, and
    ``episodes=load_episodes(path)`` for the maximisation-bias tables)."""
    from qbench.store import load_episodes, load_runs_and_results

    if isinstance(results, pd.DataFrame):
        source, df = "DataFrame", results
        runs = runs_of_results(df) if runs is None else runs
        episodes = pd.DataFrame() if episodes is None else episodes
    else:
        source = str(results)
        runs, df = load_runs_and_results(results)
        episodes = load_episodes(results) if episodes is None else episodes
    if runs.empty:
        raise NoResultsError(f"no run with evaluations under '{source}' (a run directory holds config.json and "
                             "evaluations.csv)")
    notes: list[str] = []
    suite_scorings = load_suite_scorings(sorted(set(runs["run_dir"])), sorted(set(runs["suite"])), suite, notes)
    scoring = merged_scoring(suite_scorings)
    known = runs[runs["env_id"].astype(bool)]
    for task, entry in atari_scoring(dict(zip(known["task"], known["env_id"]))).items():
        if task not in scoring or not scoring[task].normalisable:
            scoring[task] = entry
        for tasks in suite_scorings.values():   # a suite that names the game without scores: human-normalised
            if task in tasks and not tasks[task].normalisable:
                tasks[task] = entry
    references = load_references() if references is None else references
    finals = final_scores(df, runs, scoring, suite_scorings)
    boot = {"seed": seed, "reps": reps, "confidence": confidence}
    normalised = normalised_scores(finals, scoring, suite_scorings)
    notes += _task_set_notes(normalised)
    diverged = diverged_counts(finals, scoring)
    tables = {
        "runs": runs_table(finals),
        "per_task": per_task_table(finals, df, references, **boot),
        "references": references_table(finals, references),
        "aggregate": aggregate_table(normalised, **boot, diverged=diverged),
        "improvement": improvement_table(finals, **boot),
        "profiles": profiles_table(normalised, **boot, diverged=diverged),
        "curves": curves_table(df, finals, **boot),
        "train_curves": train_curves_table(finals),
        "overestimation": overestimation_table(df, finals, **boot),
        "overestimation_visited": overestimation_visited_table(df, finals, **boot),
        "overestimation_final": overestimation_final_table(df, finals, **boot),
        "diverged_runs": diverged_runs_table(finals),
        "cost": cost_table(finals),
        "finals": finals,
    }
    nstep_notes: list[str] = []
    tables["nstep_corrections"] = nstep_corrections_table(tables["per_task"], nstep_runs_table(finals),
                                                          nstep_notes)
    theory_notes: list[str] = []
    tables["maximisation_bias"] = maximisation_bias_table(episodes, confidence)
    tables["maximisation_bias_summary"] = maximisation_bias_summary(episodes, tables["maximisation_bias"])
    tables["q_distance"] = q_distance_table(df, finals, **boot)
    mdps = known_dynamics_mdps(df, finals, theory_notes)
    tables["contraction"], tables["contraction_curves"] = contraction_tables(mdps)
    if has_theory(tables):
        references = {name: (m, g) for name, (m, g) in reference_mdps().items()
                      if not any(name.startswith(task + " ") and g == gamma for task, (_, gamma) in mdps.items())}
        tables["contraction"], tables["contraction_curves"] = contraction_tables({**mdps, **references})
        tables["divergence"] = divergence_table()
    else:
        tables["divergence"] = pd.DataFrame(columns=DIVERGENCE_COLUMNS)
    tables["divergence_summary"] = divergence_summary(tables["divergence"])
    notes += (_notes(tables["runs"], finals, scoring, tables["overestimation"], tables["cost"]) + nstep_notes
              + theory_notes)
    return Report(source, tables, notes, scoring, seed, reps, confidence)
