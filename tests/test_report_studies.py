"""The report's study registry: each table made by one study, a study after the tables it reads, a study held to
the tables it declares, and a new study's section shown at the place it declares."""

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


def test_a_new_study_in_a_copy_of_the_list_shows_its_section_at_its_place(tmp_path):
    from qbench.analysis.render import to_markdown, write_report
    from qbench.analysis.report import build_report
    from qbench.analysis.study import Section
    from qbench.analysis.synthetic import write_run, write_suite_record

    write_suite_record(tmp_path, "toy", {"Alpha-v1": (0.0, 100.0)}, {"Alpha-v1": {"dqn": 25.0}})
    for seed, final in enumerate([10.0, 40.0, 60.0]):
        write_run(tmp_path, "toy", "Alpha-v1", "dqn", seed, [500, 1000], [final / 2, final])

    def compute(scored, earlier):
        seeds = earlier["per_task"][["task", "variant", "seeds"]]
        return {"seed_counts": seeds.assign(doubled=2 * seeds["seeds"])}, ["a note of the new study"]

    def sections(report):
        table = report.tables["seed_counts"].rename(columns={"doubled": "twice the seeds"})
        return [Section("Seed counts", "How many seeds, twice.", table)]

    # Place 15: after the outcomes' sections (10), before the core comparison (20).
    new = Study("seed_counts", ("seed_counts",), compute, needs=("per_task",), sections={15: sections})
    report = build_report(tmp_path, reps=50, studies=(*STUDIES, new))
    md = to_markdown(report, {})
    titles = [line for line in md.splitlines() if line.startswith("## ")]
    assert titles.index("## Seed counts") == titles.index("## Final return per task") - 1
    assert titles.index("## Runs") < titles.index("## Seed counts")
    section = md[md.index("## Seed counts"):md.index("## Final return per task")]
    assert "How many seeds, twice." in section and "twice the seeds" in section
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| Alpha-v1")]
    assert rows == [["Alpha-v1", "dqn", "3", "6"]]
    assert "a note of the new study" in md
    written = write_report(report, tmp_path / "report", ("csv",))
    assert tmp_path / "report" / "csv" / "seed_counts.csv" in written
    assert "seed_counts" not in [s.name for s in STUDIES]      # the registry itself is untouched


def test_sections_go_by_place_then_by_the_order_of_the_studies():
    from qbench.analysis.study import Section, report_sections

    def shows(title):
        return lambda report: [Section(title, "")]

    studies = [Study("a", (), tables_of(), sections={20: shows("a")}),
               Study("b", (), tables_of(), sections={30: shows("b last"), 10: shows("b first")}),
               Study("c", (), tables_of(), sections={20: shows("c")})]
    assert [s.title for s in report_sections(studies, None)] == ["b first", "a", "c", "b last"]
