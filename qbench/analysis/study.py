"""What a study of the report is: the tables it adds, how it computes them from the scored runs, and how the report
shows them: its sections and its figures.

A study is one question the report answers (how the variants compare, how far Q overestimates, what n-step
corrections do, ...). ``qbench.analysis.studies.STUDIES`` lists them in the order ``build_report`` computes them and
lists their notes; adding a study is a module under ``qbench/analysis/studies`` that defines one ``Study``, and
one line in that list.

The report's sections are not in that order: each study places its sections (``Study.sections``: place -> the
function that gives the sections there), and the report shows them by place, studies of one place in the order of
``STUDIES``. The places taken:

- 5 your runs against the reference (only in a report with a reference folder: ``qbench.analysis.comparison``);
- 10 outcomes (runs, diverged runs);
- 20 core (final return per task, pass thresholds, learning curves, aggregate scores, profiles, improvement);
- 30 corrections (n-step corrections);
- 40 overestimation;
- 50 theory;
- 60 cost;
- 90 core again (the published references, which close the report).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from qbench.analysis.scoring import ScoredRuns

if TYPE_CHECKING:
    from qbench.analysis.plots import Style
    from qbench.analysis.report import Report

Tables = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class Section:
    """One section of the report: its title, its text, the display table and the figure it shows."""

    title: str
    text: str
    table: pd.DataFrame | None = None
    figure: str | None = None        # a key of Report.figures()
    level: int = 2                   # heading level: 3 under a section of level 2 (Theory's parts)
    # Without a table or figure a section is left out, unless it is a heading with text of its own (Theory).
    heading: bool = False


@dataclass(frozen=True)
class Study:
    """``compute(scored, earlier)`` returns this study's tables (named as in ``tables``) and its notes for the
    reader; ``earlier`` holds the tables of the studies before it, of which it reads only those in ``needs``.
    ``sections``: place in the report -> a function of the report giving the sections shown there, in order
    (the module docstring lists the places taken); ``figures(report, styles)``: the study's figures by name, None
    where there is nothing to draw, each variant drawn in its ``styles`` entry. ``figures`` imports matplotlib
    when called, never at import (the tables do not need it)."""

    name: str
    tables: tuple[str, ...]
    compute: Callable[[ScoredRuns, Mapping[str, pd.DataFrame]], tuple[Tables, list[str]]]
    needs: tuple[str, ...] = ()
    sections: Mapping[int, Callable[[Report], list[Section]]] = field(default_factory=dict)
    figures: Callable[[Report, dict[str, Style]], dict[str, Any]] | None = None


def check_studies(studies: Sequence[Study]) -> None:
    """Raise ValueError unless every table has one study and every study comes after the tables it needs."""
    made: set[str] = set()
    for study in studies:
        missing = [name for name in study.needs if name not in made]
        if missing:
            raise ValueError(f"study '{study.name}' needs {', '.join(missing)}, which no study before it makes")
        twice = made.intersection(study.tables)
        if twice:
            raise ValueError(f"study '{study.name}' makes {', '.join(sorted(twice))}, which another study makes")
        made.update(study.tables)


def run_study(study: Study, scored: ScoredRuns, earlier: Mapping[str, pd.DataFrame]) -> tuple[Tables, list[str]]:
    """The tables and notes of ``study``; raises ValueError when it makes other tables than it declares."""
    tables, notes = study.compute(scored, {name: earlier[name] for name in study.needs})
    if tuple(tables) != study.tables:
        raise ValueError(f"study '{study.name}' made {', '.join(tables)}, not {', '.join(study.tables)}")
    return tables, notes


def report_sections(studies: Sequence[Study], report: Report) -> list[Section]:
    """The sections of ``studies`` by place; studies of one place in their order in ``studies``."""
    placed = sorted(((place, i, sections) for i, study in enumerate(studies)
                     for place, sections in study.sections.items()), key=lambda p: p[:2])
    return [section for _, _, sections in placed for section in sections(report)]
