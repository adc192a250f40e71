"""The overestimation study's figures: predicted Q minus the measured discounted return, from s0 and along the
visited states, on an axis fitted to the IQM curves (the shared styles and panels: ``qbench.analysis.plots``)."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from qbench.analysis.plots import Style, per_task_panels, seeds_text, tasks_of, variant_styles


def overestimation_limits(table: pd.DataFrame, reach: float = 0.25) -> tuple[float, float]:
    """The y range of one overestimation panel: the IQM curves and 0 (no bias), then their CI bands and the
    seeds' extremes as far as ``reach`` times that range beyond it, with a 5% margin. A seed whose Q runs away
    moves neither the IQM (by more than the spread of the other seeds) nor, so, the axis; what lies beyond is
    clipped, and marked (``overestimation``)."""
    point = table["overestimation"].to_numpy(float)
    lo, hi = min(np.nanmin(point), 0.0), max(np.nanmax(point), 0.0)
    span = hi - lo or max(abs(hi), 1.0)
    wide = [c for c in ("overestimation_lower", "overestimation_upper", "overestimation_min", "overestimation_max")
            if c in table]
    values = table[wide].to_numpy(float) if wide else np.empty(0)
    lo = max(min(lo, np.nanmin(values, initial=lo)), lo - reach * span)
    hi = min(max(hi, np.nanmax(values, initial=hi)), hi + reach * span)
    margin = 0.05 * (hi - lo)
    return lo - margin, hi + margin


def _clipped_seeds(ax, panel: pd.DataFrame, styles: dict[str, Style]) -> None:
    """Fits the axis (``overestimation_limits``); where a seed lies beyond it, a triangle at the edge in the
    variant's colour, and the variant with its most extreme seed under the panel."""
    lo, hi = overestimation_limits(panel)
    ax.set_ylim(lo, hi)
    ax.axhline(0.0, color="black", lw=0.8, zorder=1)
    said = []
    for column, edge, marker, sign, where in (("overestimation_max", hi, "^", "▲", "above"),
                                              ("overestimation_min", lo, "v", "▼", "below")):
        if column not in panel:
            continue
        named = []
        for variant, rows in panel.groupby("variant", sort=True):
            out = rows[rows[column] > hi] if marker == "^" else rows[rows[column] < lo]
            if out.empty:
                continue
            ax.plot(out["env_steps"], np.full(len(out), edge), ls="none", marker=marker, ms=7, clip_on=False,
                    color=styles[variant].colour, markeredgecolor="black", markeredgewidth=0.5, zorder=5)
            extreme = out[column].max() if marker == "^" else out[column].min()
            named.append(f"{variant} ({extreme:.3g})")
        if named:
            said.append(f"{sign} a seed {where} the axis: " + ", ".join(named))
    if said:
        ax.set_xlabel("env steps\n" + textwrap.fill("; ".join(said), 60), fontsize=9.5)


def overestimation(table: pd.DataFrame, confidence: float = 0.95, styles: dict[str, Style] | None = None,
                   where: str = "s0"):
    """Per task: the overestimation Q(s_0, a_0) - the discounted return measured from s_0, IQM over seeds with its
    bootstrap band; the axis fits the IQM curves (``overestimation_limits``), and seeds beyond it are marked.
    ``where="visited"``: the same along the states the greedy policy visited (``overestimation_visited``)."""
    if table.empty:
        return None
    styles = styles or variant_styles(table["variant"], tasks_of([table]))

    def draw(ax, t, style, markevery):
        if {"overestimation_lower", "overestimation_upper"} <= set(t.columns):
            ax.fill_between(t["env_steps"], t["overestimation_lower"], t["overestimation_upper"], color=style.colour,
                            alpha=0.12, lw=0)
        return ax.plot(t["env_steps"], t["overestimation"], **style.line(markevery=markevery))[0]

    def label(rows):
        return [seeds_text(rows)]

    statistic = table["statistic"].iloc[0] if "statistic" in table else "IQM over seeds"
    if where == "visited":
        ylabel, what = r"predicted Q $-$ measured return", "along visited states, mean Q(s_t, a_t)"
    else:
        ylabel, what = r"predicted Q($s_0$) $-$ measured return", "predicted Q(s0, a0)"
    return per_task_panels(table, "overestimation", draw, ylabel,
                            f"Overestimation, {what} − measured discounted return (> 0: optimistic): "
                            f"{statistic}, {confidence:.0%} bootstrap CI", label, styles,
                            after=lambda ax, panel: _clipped_seeds(ax, panel, styles))


def overestimation_visited(table: pd.DataFrame, confidence: float = 0.95, styles: dict[str, Style] | None = None):
    """``overestimation`` of the report's ``overestimation_visited`` table."""
    if table.empty:
        return None
    renamed = table.rename(columns=lambda c: c.replace("overestimation_visited", "overestimation"))
    return overestimation(renamed, confidence, styles, where="visited")


def figures(report, styles: dict[str, Style]) -> dict:
    """The overestimation study's figures, from s0 and along the visited states."""
    t, conf = report.tables, report.confidence
    # overestimation_visited: absent from reports built before it existed.
    return {"overestimation": overestimation(t["overestimation"], conf, styles),
            "overestimation_visited": overestimation_visited(t.get("overestimation_visited", pd.DataFrame()), conf,
                                                             styles)}
