"""What a study of the report is: the tables it adds and how it computes them from the scored runs.

A study is one question the report answers (how the variants compare, how far Q overestimates, what n-step
corrections do, ...). ``qbench.analysis.studies.STUDIES`` lists them in the order ``build_report`` computes them and
lists their notes; adding a study is a module under ``qbench/analysis/studies`` that defines one ``Study``, and
one line in that list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from qbench.analysis.scoring import ScoredRuns

Tables = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class Study:
    """``compute(scored, earlier)`` returns this study's tables (named as in ``tables``) and its notes for the
    reader; ``earlier`` holds the tables of the studies before it, of which it reads only those in ``needs``."""

    name: str
    tables: tuple[str, ...]
    compute: Callable[[ScoredRuns, Mapping[str, pd.DataFrame]], tuple[Tables, list[str]]]
    needs: tuple[str, ...] = ()


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
