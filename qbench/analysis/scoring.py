"""Scoring and outcomes: the score of every run, the policy that decides which runs count, and the suite scores
that normalise them. ``score_runs`` turns the runs of a results folder into the ``ScoredRuns`` every study of the
report computes its tables from.

Which runs count: a complete run at its final evaluation; a diverged run (an outcome of the algorithm) at its
last evaluation before it diverged, or at the task's random score if it diverged before any evaluation (left out,
with a note naming it, when the task has no random score), so that divergence counts against a variant instead of
vanishing from its statistics; crashed, unfinished and damaged runs, and runs stopped by an env fault (status env:
the environment misbehaved, which says nothing of the variant, so it is never counted as the variant's divergence
or failure), are left out and named in the notes. A damaged run (a file it needs cannot be used, or a summary.json
beside an evaluations.csv that lost its last line) is never counted complete.

Normalised score = (score - random) / (reference - random), with the random and reference scores of the suite
that ran the task (``suite.json`` written by ``qbench run``, else the shipped suite of that name, else a suite
file given with ``suite=``); Atari games the suite does not score are human-normalised. Tasks without both scores
are left out of the normalised tables, and a note says so. A suite.json that cannot be read is named in a note,
and is not replaced by the shipped suite of that name.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qbench.analysis import stats
from qbench.config import ConfigError
from qbench.loading import FAILED_STATES, RUN_COLUMNS
from qbench.suites import load_suite

SUITE_RECORD = "suite.json"
ANY_SUITE = "*"   # the key of a scoring given for every run (report --suite FILE)


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


FINAL_COLUMNS = ["task", "variant", "seed", "env_id", "env_steps", "final_return", "status", "complete", "failed",
                 "scored", "score_source", "code_version", "attempt_code_versions", "problems", "run_dir", "suite",
                 "divergence_warned", "peak_value_scales", "divergence_warn_factor", "tuned"]


def _failure_kind(run_dir: str) -> str | None:
    """From error.json: diverged (an outcome of the algorithm), env (an env fault: not the run's) or crashed
    (anything else, or an error.json that cannot be read); None without an error.json."""
    try:
        record = json.loads((Path(run_dir) / "error.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "crashed"
    kind = record.get("error") if isinstance(record, dict) else None
    return kind if kind in ("diverged", "env") else "crashed"


def runs_of_results(results: pd.DataFrame) -> pd.DataFrame:
    """The per-run table (``qbench.loading.load_runs``'s columns) of a ``load_results`` frame, for a report built
    from a DataFrame: runs without any evaluation row are not in such a frame, so pass ``runs=load_runs(path)``
    to ``build_report`` to count them too. Frames without a ``status`` column take it from ``complete``,
    ``failed`` and the run's error.json (a run that is neither complete nor failed is env when its error.json
    says so, else unfinished)."""
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
            kind = _failure_kind(run_dir)
            status = (kind or "crashed") if bool(row.get("failed", False)) else "env" if kind == "env" \
                else "unfinished"
        rows.append({"suite": row.get("suite", ""), "task": row["task"], "variant": row["variant"],
                     "seed": row["seed"], "env_id": row.get("env_id", row["task"]), "status": status,
                     "evaluations": int(counts[run_dir]), "env_steps": float(row["env_steps"]),
                     "last_return": float(row["return_mean"]), "attempts": int(row.get("attempts", 1)),
                     "code_version": row.get("code_version", ""), "attempt_code_versions": "",
                     "job_hash": row.get("job_hash", ""), "problems": "", "run_dir": run_dir,
                     "divergence_warned": row.get("divergence_warned", pd.NA),
                     "peak_value_scales": row.get("peak_value_scales", math.nan),
                     "divergence_warn_factor": row.get("divergence_warn_factor", math.nan),
                     "tuned": row.get("tuned", "")})
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def final_scores(results: pd.DataFrame, runs: pd.DataFrame | None = None,
                 scoring: dict[str, TaskScoring] | None = None,
                 suite_scorings: dict[str, dict[str, TaskScoring]] | None = None) -> pd.DataFrame:
    """One row per run directory: its state and, for the runs that enter the statistics (``scored``), its score
    ``final_return`` and where that score comes from (``score_source``):

    - a complete run: its final greedy evaluation (as in the sanity suite's pass rule);
    - a diverged run: its last evaluation before it diverged, or the task's random score (from ``scoring``) if it
      diverged before its first evaluation; with no random score known it is left out (``scored`` false);
    - crashed, env (an env fault), unfinished and damaged runs are left out.

    ``runs`` is ``qbench.loading.load_runs``'s table (default: the runs seen in ``results``). The scores come from
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
                     "complete": r.status == "complete", "failed": r.status in FAILED_STATES,
                     "scored": bool(source), "score_source": source,
                     "code_version": getattr(r, "code_version", ""),
                     "attempt_code_versions": getattr(r, "attempt_code_versions", ""),
                     "problems": getattr(r, "problems", ""), "run_dir": r.run_dir,
                     "divergence_warned": getattr(r, "divergence_warned", pd.NA),
                     "peak_value_scales": getattr(r, "peak_value_scales", math.nan),
                     "divergence_warn_factor": getattr(r, "divergence_warn_factor", math.nan),
                     "tuned": getattr(r, "tuned", "")})
    finals = pd.DataFrame(rows, columns=FINAL_COLUMNS)
    text = ["code_version", "attempt_code_versions", "problems", "suite", "tuned"]
    finals[text] = finals[text].fillna("").astype(str)
    finals["divergence_warned"] = watch_flags(finals["divergence_warned"])
    finals[["peak_value_scales", "divergence_warn_factor"]] = (
        finals[["peak_value_scales", "divergence_warn_factor"]].apply(pd.to_numeric, errors="coerce").astype(float))
    return finals.sort_values(["task", "variant", "seed", "run_dir"], na_position="last").reset_index(drop=True)


def watch_flags(values: pd.Series) -> pd.Series:
    """``divergence_warned`` as a nullable boolean: True, False or <NA> (unknown; anything that is not a bool)."""
    return values.map(lambda v: v if isinstance(v, (bool, np.bool_)) else pd.NA).astype("boolean")


def flagged_runs(group: pd.DataFrame) -> pd.Series:
    """Which runs of ``group`` the divergence watch flagged (unknown counts as not flagged)."""
    if "divergence_warned" not in group.columns:
        return pd.Series(False, index=group.index)
    return watch_flags(group["divergence_warned"]).fillna(False).astype(bool)


def warned_count(group: pd.DataFrame) -> int:
    return int(flagged_runs(group).sum())


def complete_runs(finals: pd.DataFrame) -> pd.DataFrame:
    return finals[finals["complete"]]


def scored_runs(finals: pd.DataFrame) -> pd.DataFrame:
    """The runs in the statistics: complete runs and diverged runs with a score (see ``final_scores``)."""
    return finals[finals["scored"]]


def diverged_count(group: pd.DataFrame) -> int:
    return int((group["status"] == "diverged").sum())


def normalised_scores(finals: pd.DataFrame, scoring: dict[str, TaskScoring],
                      suite_scorings: dict[str, dict[str, TaskScoring]] | None = None
                      ) -> dict[str, dict[str, np.ndarray]]:
    """Per variant, per normalisable task, the normalised scores of its runs in the statistics (complete and
    diverged, see ``final_scores``), each run by its own suite's random and reference scores."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for (variant, task), group in scored_runs(finals).groupby(["variant", "task"], sort=True):
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


def task_set_notes(normalised: dict[str, dict[str, np.ndarray]]) -> list[str]:
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



@dataclass(frozen=True)
class ScoredRuns:
    """The runs of a results folder, scored: what every study of the report computes its tables from."""

    results: pd.DataFrame       # one row per evaluation (``qbench.loading.load_results``'s columns)
    finals: pd.DataFrame        # one row per run directory: its state and score (``final_scores``)
    episodes: pd.DataFrame      # one row per training episode (``qbench.loading.load_episodes``), maybe empty
    scoring: dict[str, TaskScoring]                     # per task, the first suite's (``merged_scoring``)
    suite_scorings: dict[str, dict[str, TaskScoring]]   # per suite, per task
    normalised: dict[str, dict[str, np.ndarray]]        # per variant, per task (``normalised_scores``)
    references: pd.DataFrame | None                     # published scores; None: the shipped ones
    seed: int
    reps: int
    confidence: float

    @property
    def bootstrap(self) -> dict[str, Any]:
        """The keyword arguments of every bootstrapped table: seed, reps, confidence."""
        return {"seed": self.seed, "reps": self.reps, "confidence": self.confidence}


def _add_atari_scoring(runs: pd.DataFrame, scoring: dict[str, TaskScoring],
                       suite_scorings: dict[str, dict[str, TaskScoring]]) -> None:
    """Human-normalise the Atari games that no suite scores, in ``scoring`` and in every suite that names the
    game without scores."""
    known = runs[runs["env_id"].astype(bool)]
    for task, entry in atari_scoring(dict(zip(known["task"], known["env_id"]))).items():
        if task not in scoring or not scoring[task].normalisable:
            scoring[task] = entry
        for tasks in suite_scorings.values():
            if task in tasks and not tasks[task].normalisable:
                tasks[task] = entry


def score_runs(results: pd.DataFrame, runs: pd.DataFrame, episodes: pd.DataFrame, *, suite: str | None,
               seed: int, reps: int, confidence: float, references: pd.DataFrame | None = None,
               scorings: tuple[dict[str, dict[str, TaskScoring]], dict[str, TaskScoring]] | None = None
               ) -> tuple[ScoredRuns, list[str]]:
    """The scored runs of ``runs`` (``qbench.loading.load_runs``'s table) and ``results`` (their evaluations),
    scored by their suites' records or by the suite file ``suite``; and the notes scoring them raised (suite
    records that cannot be read or disagree, variants normalised over different tasks). ``scorings``: the
    per-suite and per-task scorings already made (``suite`` is then not read), as a comparison with a reference
    folder makes them (``qbench.analysis.comparison``: each side by its own suites)."""
    notes: list[str] = []
    if scorings is None:
        suite_scorings = load_suite_scorings(sorted(set(runs["run_dir"])), sorted(set(runs["suite"])), suite, notes)
        scoring = merged_scoring(suite_scorings)
    else:
        suite_scorings, scoring = scorings
    _add_atari_scoring(runs, scoring, suite_scorings)
    finals = final_scores(results, runs, scoring, suite_scorings)
    normalised = normalised_scores(finals, scoring, suite_scorings)
    notes += task_set_notes(normalised)
    return ScoredRuns(results, finals, episodes, scoring, suite_scorings, normalised, references, seed, reps,
                      confidence), notes
