"""Numbers as a reader wants them in the report's display tables: the cell formats every study's sections share
(a study's own display tables live in its module under ``qbench/analysis/studies``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from qbench.analysis.report import Report


def num(x: float, digits: int | None = None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if digits is None:
        digits = 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    return f"{x:,.{digits}f}"


def ci(point: float, lower: float, upper: float, digits: int | None = None) -> str:
    return f"{num(point, digits)} [{num(lower, digits)}, {num(upper, digits)}]"


def pm(mean: float, std: float) -> str:
    """mean ± std with the digits the mean needs, for both."""
    if std is None or math.isnan(std):
        return num(mean)
    digits = 1 if abs(mean) >= 10 else 2 if abs(mean) >= 1 else 3
    return f"{num(mean, digits)} ± {num(std, digits)}"


def steps(n: float) -> str:
    return "–" if n is None or (isinstance(n, float) and math.isnan(n)) else f"{int(n):,}"


def steps_and_frames(env_steps: float, frames: float) -> str:
    """'100,000 (400,000 frames)' for ALE tasks, whose env steps are agent steps of several frames; else steps."""
    if math.isfinite(frames) and math.isfinite(env_steps) and frames != env_steps:
        return f"{steps(env_steps)} ({steps(frames)} frames)"
    return steps(env_steps)


def with_diverged(n: int, diverged: int, warned: int = 0) -> str:
    """'4', '4 (1 diverged)' or '4 (1 diverged, 2 flagged)': how many runs, how many of them diverged and how many
    the divergence watch flagged."""
    parts = [f"{int(diverged)} diverged"] if diverged else []
    if warned:
        parts.append(f"{int(warned)} flagged")
    return f"{int(n)} ({', '.join(parts)})" if parts else f"{int(n)}"


def share(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.1%}"


def table_of(report: Report, name: str) -> pd.DataFrame:
    """A table of the report, empty when the report has none of that name (one built by older code, or by
    hand)."""
    return report.tables.get(name, pd.DataFrame())

