"""Issue 28: the README's headline table is what the committed rows give, cell by cell (benchmarks/headline.py
writes it with the report's own statistics), and the table's rows are computed as a reader would by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from qbench.analysis.headline import headline_markdown, headline_rows

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("headline", REPO / "benchmarks" / "headline.py")
headline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(headline)


def _cells(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.strip().splitlines()]


def test_the_readme_headline_is_recomputed_from_the_committed_rows_cell_by_cell():
    shown = _cells(headline.readme_headline((REPO / "README.md").read_text()))
    computed = _cells(headline.headline())
    assert len(shown) == len(computed) >= 3
    for shown_row, computed_row in zip(shown, computed, strict=True):
        assert shown_row == computed_row


def test_headline_rows_count_seeds_at_threshold_and_show_the_reference():
    per_task = pd.DataFrame([
        {"task": "T", "variant": "a", "env_steps": 1000, "iqm": 2.0, "iqm_lower": 1.0, "iqm_upper": 3.0,
         "reference_mean": 2.5, "reference_env_steps": 1000, "reference_runs": 1, "reference_source": "zoo"},
        {"task": "T", "variant": "b", "env_steps": 1000, "iqm": -1.25, "iqm_lower": -2.0, "iqm_upper": 0.0,
         "reference_mean": float("nan"), "reference_env_steps": float("nan"), "reference_runs": float("nan"),
         "reference_source": ""}])
    finals = pd.DataFrame({"task": ["T"] * 5, "variant": ["a", "a", "a", "b", "b"],
                           "final_return": [3.0, 2.0, 1.9, 0.0, -2.0], "scored": [True, True, True, True, False]})
    table = headline_rows(per_task, finals, {"T": {"a": 2.0}})
    assert table["seeds at threshold"].tolist() == ["2/3 at ≥ 2", "–"]      # 3.0 and 2.0 reach 2; b has no bar
    assert table["final return IQM [95% CI]"].tolist() == ["2.0 [1.0, 3.0]", "-1.2 [-2.0, 0.0]"]
    assert table["published"].tolist() == ["2.5 at 1,000 steps, 1 run: zoo", "–"]
    assert headline_markdown(table).splitlines()[2] == ("| T | a | 1,000 | 2.0 [1.0, 3.0] | 2.5 at 1,000 steps, 1 run: "
                                                        "zoo | 2/3 at ≥ 2 |")
