"""Cost: ``cost``, the wall time, env steps per second and peak memory per (task, variant) of the complete runs,
from their summary.json. A study of its own, after overestimation, so that its note keeps its place in the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from qbench.analysis.display import num
from qbench.analysis.scoring import ScoredRuns, complete_runs
from qbench.analysis.study import Section, Study, Tables

if TYPE_CHECKING:
    from qbench.analysis.report import Report


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def cost_table(finals: pd.DataFrame) -> pd.DataFrame:
    """Wall time, env steps per second and peak memory of the complete runs, from their summary.json. Seeds trained
    side by side share one process and one wall time (summary's ``wall_s``, ``seeds_in_batch``): a run's share is
    the batch's wall time over its seeds, so that ``wall_s_total`` is the process time all of them took (1,000
    seeds of one 30 s batch are 30 s, not 30,000)."""
    rows = []
    for (task, variant), group in complete_runs(finals).groupby(["task", "variant"], sort=True):
        summaries = []
        for run_dir in group["run_dir"]:
            try:
                summary = json.loads((Path(run_dir) / "summary.json").read_text())
            except (OSError, ValueError):
                continue
            # a hand-edited summary without its timings says nothing of the cost (its scores are checked on loading)
            if isinstance(summary, dict) and all(_number(summary.get(k)) for k in ("wall_s", "steps_per_s")):
                summaries.append(summary)
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

def cost_tables(scored: ScoredRuns, earlier: Mapping[str, pd.DataFrame]) -> tuple[Tables, list[str]]:
    cost = cost_table(scored.finals)
    notes = []
    if not cost.empty and cost["peak_rss_mb_max"].isna().any():
        notes.append("peak memory was not recorded by some runs (written by older qbench versions)")
    return {"cost": cost}, notes


def cost_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "variant": r.variant, "runs": r.runs,
                          "wall s per run": num(r.wall_s_mean), "wall s, all runs": num(r.wall_s_total),
                          "env steps/s": num(r.steps_per_s_mean, 0), "peak memory MiB": num(r.peak_rss_mb_max, 0)}
                         for r in report.tables["cost"].itertuples(index=False)])


def cost_sections(report: Report) -> list[Section]:
    return [Section("Cost", "Wall time and throughput of the complete runs; seeds trained side by side in one process "
                    "share its wall time, so a run's wall time is its batch's divided by the seeds in it, and the "
                    "total is the process time they took; env steps/s are each seed's own; peak memory is the "
                    "largest resident set of the worker process (an upper bound when a worker ran several jobs).",
                    cost_display(report))]


COST = Study("cost", ("cost",), cost_tables, sections={60: cost_sections})
