"""The tables of a report, computed from a results folder: the notebook API behind ``qbench report``.

``build_report(path)`` reads every run directory under ``path`` (``qbench.loading.load_runs_and_results``: one row
per run directory, whatever its state, and one row per evaluation), scores each run
(``qbench.analysis.scoring``: which runs count and at what score, the suite scores that normalise them) and walks
``qbench.analysis.studies.STUDIES``: each study computes its tables, pandas DataFrames of plain numbers, and the
notes a reader must see. Where each table comes from:

- ``qbench.analysis.outcomes``: ``runs``, ``diverged_runs``, ``finals`` (what became of every run);
- ``qbench.analysis.studies.core``: ``per_task``, ``references``, ``aggregate``, ``improvement``, ``profiles``,
  ``curves``, ``train_curves`` (how the variants compare);
- ``qbench.analysis.studies.overestimation``: ``overestimation``, ``overestimation_visited``,
  ``overestimation_final``;
- ``qbench.analysis.studies.cost``: ``cost``;
- ``qbench.analysis.studies.corrections``: ``nstep_corrections``;
- ``qbench.analysis.comparison`` (only with ``reference=``): ``versus_reference`` (your runs against the
  reference's);
- ``qbench.analysis.studies.theory``: ``maximisation_bias``, ``maximisation_bias_summary``, ``q_distance``,
  ``contraction``, ``contraction_curves``, ``divergence``, ``divergence_summary``.

Every confidence interval is a percentile interval of a stratified bootstrap whose generator is seeded from
``seed`` and the row's own key (``qbench.analysis.bootstrap``), so a row's interval does not change when other
variants or tasks are added. This module imports neither torch nor matplotlib. Each study also says how the report
shows its tables (``qbench.analysis.study``): its sections, which ``qbench.analysis.render`` writes as Markdown,
HTML and LaTeX, and its figures, drawn by ``qbench.analysis.plots.all_figures``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qbench.analysis.comparison import load_comparison, versus_study
from qbench.analysis.scoring import TaskScoring, runs_of_results, score_runs
from qbench.analysis.studies import STUDIES
from qbench.analysis.study import Section, Study, check_studies, report_sections, run_study
from qbench.loading import load_episodes, load_runs_and_results


class NoResultsError(ValueError):
    """The folder holds no run with evaluations."""


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
    studies: tuple[Study, ...] = STUDIES   # the studies that made the tables, and show them

    def sections(self) -> list[Section]:
        """The report's sections, study by study in the order of their places (``qbench.analysis.study``)."""
        return report_sections(self.studies, self)

    def figures(self) -> dict[str, Any]:
        """The report's matplotlib figures by name (needs the ``report`` extra: seaborn, matplotlib)."""
        # Imported here: matplotlib and seaborn are the optional ``report`` extra, which the tables do not need.
        from qbench.analysis import plots

        return plots.all_figures(self)


def build_report(results: str | Path | pd.DataFrame, *, suite: str | None = None, seed: int = 0,
                 reps: int = 2000, confidence: float = 0.95, references: pd.DataFrame | None = None,
                 runs: pd.DataFrame | None = None, episodes: pd.DataFrame | None = None,
                 studies: tuple[Study, ...] = STUDIES, reference: str | Path | None = None) -> Report:
    """Every table of the report for a results folder (or a ``load_results`` frame, for notebooks; pass
    ``runs=load_runs(path)`` too to count the runs that have no evaluation row, and
    ``episodes=load_episodes(path)`` for the maximisation-bias tables). ``references``: published scores
    (default: ``qbench/data/zoo_reference.csv``); ``suite``: a suite name or file to score every run by;
    ``studies``: the studies to compute and show (``check_studies`` holds them to its rules). ``reference``: a
    reference results folder to put beside ``results`` (a folder too): ``qbench.analysis.comparison`` relabels
    the variants of each side (``dqn (theirs)``, ``dqn (reference)``), scores each by its own suites and adds
    the ``versus_reference`` table."""
    scorings, notes = None, []
    if reference is not None:
        if isinstance(results, pd.DataFrame):
            raise TypeError("build_report: a reference is compared with a results folder, not a DataFrame")
        comparison = load_comparison(results, reference, suite=suite)
        source, runs, df, episodes = comparison.source, comparison.runs, comparison.results, comparison.episodes
        scorings, notes = comparison.scorings, list(comparison.notes)
        studies = (*studies, versus_study(comparison.pairs))
    elif isinstance(results, pd.DataFrame):
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
    if (runs["status"] == "damaged").all():   # nothing to score: say which files are wrong instead of an empty report
        named = [f"{row.run_dir} ({row.problems})" for row in runs.head(3).itertuples()]
        more = f" and {len(runs) - 3} more" if len(runs) > 3 else ""
        raise NoResultsError(f"every run under '{source}' is damaged ({len(runs)}), so there is nothing to report: "
                             + "; ".join(named) + more)
    scored, scoring_notes = score_runs(df, runs, episodes, suite=suite, seed=seed, reps=reps,
                                       confidence=confidence, references=references, scorings=scorings)
    notes += scoring_notes
    tables: dict[str, pd.DataFrame] = {}
    check_studies(studies)
    for study in studies:
        study_tables, study_notes = run_study(study, scored, tables)
        tables.update(study_tables)
        notes += study_notes
    return Report(source, tables, notes, scored.scoring, seed, reps, confidence, tuple(studies))
