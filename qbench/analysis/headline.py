"""The front page's headline table: one row per (task, variant) of a report, with the IQM of the final returns and
its confidence interval, the published reference beside it where one exists, and the seeds that reached the task's
pass threshold. A pure function of a report's tables, so that a test can recompute the README's table from the
committed rows and compare it cell by cell (benchmarks/headline.py writes it)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

HEADLINE_COLUMNS = ("task", "variant", "env steps", "final return IQM [95% CI]", "published", "seeds at threshold")


def _number(value: float) -> str:
    return f"{value:.1f}"


def headline_rows(per_task: pd.DataFrame, finals: pd.DataFrame, thresholds: dict[str, dict[str, float]],
                  confidence: float = 0.95) -> pd.DataFrame:
    """One row per (task, variant) of ``per_task`` (the report's table of that name), in its order.
    ``finals``: the report's per-run final returns (the runs that count: ``scored``); ``thresholds``: per task, per
    variant, the pass bar on the final return (a pair without one shows '–')."""
    rows: list[dict[str, Any]] = []
    ci = f"{round(confidence * 100)}% CI"
    for row in per_task.itertuples(index=False):
        runs = finals[(finals["task"] == row.task) & (finals["variant"] == row.variant) & finals["scored"]]
        bar = thresholds.get(row.task, {}).get(row.variant)
        if bar is None:
            passing = "–"
        else:
            reached = int((runs["final_return"] >= bar).sum())
            passing = f"{reached}/{len(runs)} at ≥ {bar:g}"
        published = "–"
        if not (isinstance(row.reference_mean, float) and math.isnan(row.reference_mean)):
            runs_word = "run" if row.reference_runs == 1 else "runs"
            published = (f"{_number(row.reference_mean)} at {int(row.reference_env_steps):,} steps, "
                         f"{int(row.reference_runs)} {runs_word}: {row.reference_source}")
        rows.append({"task": row.task, "variant": row.variant, "env steps": f"{int(row.env_steps):,}",
                     f"final return IQM [{ci}]": (f"{_number(row.iqm)} [{_number(row.iqm_lower)}, "
                                                  f"{_number(row.iqm_upper)}]"),
                     "published": published, "seeds at threshold": passing})
    return pd.DataFrame(rows)


def headline_markdown(table: pd.DataFrame) -> str:
    """The table as a Markdown pipe table (one line per row; cells as they are)."""
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join(":---" if c in ("task", "variant") else "---:" for c in table.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def report_headline(report) -> str:
    """The headline table of a built report (qbench.analysis.report.build_report)."""
    thresholds = {task: dict(scoring.thresholds) for task, scoring in report.scoring.items()}
    return headline_markdown(headline_rows(report.tables["per_task"], report.tables["finals"], thresholds,
                                           report.confidence))
