"""The report's study registry: each table made by one study, a study after the tables it reads, and a study
held to the tables it declares."""

import pandas as pd
import pytest

from qbench.analysis.studies import STUDIES
from qbench.analysis.study import Study, check_studies, run_study


def tables_of(*names):
    return lambda scored, earlier: ({name: pd.DataFrame() for name in names}, [])


def test_the_registry_makes_each_table_once_and_reads_only_tables_made_before():
    check_studies(STUDIES)
    names = [name for study in STUDIES for name in study.tables]
    assert len(names) == len(set(names))
    assert {"runs", "finals", "per_task", "nstep_corrections", "divergence_summary"} <= set(names)


def test_a_study_that_reads_a_later_table_or_makes_another_studys_table_is_refused():
    first = Study("first", ("a",), tables_of("a"))
    reader = Study("reader", ("b",), tables_of("b"), needs=("c",))
    with pytest.raises(ValueError, match="reader.*needs c"):
        check_studies([first, reader, Study("later", ("c",), tables_of("c"))])
    with pytest.raises(ValueError, match="again.*makes a"):
        check_studies([first, Study("again", ("a",), tables_of("a"))])


def test_a_study_gets_only_the_tables_it_needs_and_must_make_those_it_declares():
    seen = {}

    def compute(scored, earlier):
        seen.update(earlier)
        return {"b": pd.DataFrame({"x": [1]})}, ["a note"]

    tables, notes = run_study(Study("s", ("b",), compute, needs=("a",)), None,
                              {"a": pd.DataFrame(), "other": pd.DataFrame()})
    assert list(seen) == ["a"] and list(tables) == ["b"] and notes == ["a note"]
    with pytest.raises(ValueError, match="made c, not b"):
        run_study(Study("wrong", ("b",), tables_of("c")), None, {})
