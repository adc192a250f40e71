"""The report's figures (seaborn on matplotlib's Agg backend), each drawn from one table of a ``Report``.

Every function takes the table it draws and returns a matplotlib Figure, or None when the table is empty, so a
notebook can redraw any figure from ``build_report(...).tables`` or from its own filtered copy.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and the same pixels everywhere

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import EngFormatter, MaxNLocator

PANEL_IN = (4.2, 3.0)   # width, height of one panel in inches


def _palette(variants) -> dict[str, tuple]:
    """One colour per variant, the same in every figure of a report."""
    names = sorted(set(variants))
    return dict(zip(names, sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))))


def _grid(n_panels: int, cols: int = 3):
    cols = min(cols, max(n_panels, 1))
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_IN[0] * cols, PANEL_IN[1] * rows), squeeze=False)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


def _steps_axis(ax) -> None:
    """Env steps as 20k, 1M: full numbers collide at any useful panel width."""
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_major_locator(MaxNLocator(5))


def _per_task_panels(table: pd.DataFrame, draw, ylabel: str, title: str):
    """One panel per task, env steps on x; ``draw(ax, variant, rows, colour)`` draws one variant's lines."""
    sns.set_theme(style="whitegrid", context="paper")
    colours = _palette(table["variant"])
    tasks = sorted(table["task"].unique())
    fig, axes = _grid(len(tasks))
    for ax, task in zip(axes, tasks):
        for variant, rows in table[table["task"] == task].groupby("variant", sort=True):
            draw(ax, variant, rows, colours[variant])
        ax.set(title=task, xlabel="env steps", ylabel=ylabel)
        _steps_axis(ax)
        ax.legend(fontsize="xx-small", loc="best", framealpha=0.6)
    # Wrapped to the figure's width: a one-task figure is narrower than the title.
    fig.suptitle(textwrap.fill(title, width=int(fig.get_figwidth() * 11)))
    fig.tight_layout()
    return fig


def learning_curves(curves: pd.DataFrame, confidence: float = 0.95):
    """Per task: IQM over seeds of the greedy evaluation return against env steps, with its CI band."""
    if curves.empty:
        return None

    def draw(ax, variant, c, colour):
        diverged = int(c["diverged"].iloc[0]) if "diverged" in c else 0
        label = f"{variant} (n={c['seeds'].iloc[0]}" + (f", {diverged} diverged)" if diverged else ")")
        ax.plot(c["env_steps"], c["iqm"], color=colour, label=label)
        ax.fill_between(c["env_steps"], c["lower"], c["upper"], color=colour, alpha=0.2, lw=0)

    return _per_task_panels(curves, draw, "evaluation return (IQM)",
                            f"Learning curves: IQM over seeds, {confidence:.0%} bootstrap CI")


def aggregate_intervals(aggregate: pd.DataFrame, confidence: float = 0.95):
    """Per metric: each variant's normalised point estimate and CI as a horizontal interval (rliable style)."""
    if aggregate.empty:
        return None
    sns.set_theme(style="whitegrid", context="paper")
    colours = _palette(aggregate["variant"])
    metrics = list(dict.fromkeys(aggregate["metric"]))
    variants = sorted(aggregate["variant"].unique())
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 0.45 * len(variants) + 1.4),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        rows = aggregate[aggregate["metric"] == metric].set_index("variant")
        for y, variant in enumerate(variants):
            if variant not in rows.index:
                continue
            r = rows.loc[variant]
            ax.plot([r["lower"], r["upper"]], [y, y], color=colours[variant], lw=6, alpha=0.5,
                    solid_capstyle="butt")
            ax.plot([r["point"]], [y], "|", color="black", ms=12)
        ax.set_yticks(range(len(variants)), variants)
        ax.set(title=metric, xlabel="normalised score")
    fig.suptitle(f"Aggregate normalised scores, {confidence:.0%} stratified bootstrap CI "
                 "(optimality gap: lower is better)")
    fig.tight_layout()
    return fig


def performance_profiles(profiles: pd.DataFrame, confidence: float = 0.95):
    """Fraction of runs whose normalised final score exceeds tau, per variant, with its CI band."""
    if profiles.empty:
        return None
    sns.set_theme(style="whitegrid", context="paper")
    colours = _palette(profiles["variant"])
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for variant, p in profiles.groupby("variant", sort=True):
        diverged = int(p["diverged"].iloc[0]) if "diverged" in p else 0
        ax.plot(p["tau"], p["point"], color=colours[variant],
                label=f"{variant} ({diverged} diverged)" if diverged else variant)
        ax.fill_between(p["tau"], p["lower"], p["upper"], color=colours[variant], alpha=0.15, lw=0)
    ax.set(xlabel=r"normalised score $\tau$", ylabel=r"fraction of runs with score $> \tau$", ylim=(-0.02, 1.02),
           title=f"Performance profiles, {confidence:.0%} bootstrap CI")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    return fig


def improvement_heatmap(improvement: pd.DataFrame):
    """P(row variant beats column variant), over the tasks both ran."""
    if improvement.empty:
        return None
    sns.set_theme(style="white", context="paper")
    matrix = improvement.pivot(index="x", columns="y", values="point")
    names = sorted(set(matrix.index) | set(matrix.columns))
    matrix = matrix.reindex(index=names, columns=names)
    size = 0.55 * len(names) + 2.5
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    sns.heatmap(matrix, vmin=0, vmax=1, center=0.5, cmap="vlag", annot=len(names) <= 12, fmt=".2f", square=True,
                ax=ax, cbar_kws={"label": "P(X > Y)"})
    ax.set(xlabel="Y", ylabel="X", title="Probability of improvement P(X > Y)")
    fig.tight_layout()
    return fig


def overestimation(table: pd.DataFrame):
    """Per task: the predicted Q(s_0, a_0) (solid) against the discounted return measured from s_0 (dashed)."""
    if table.empty:
        return None

    def draw(ax, variant, t, colour):
        ax.plot(t["env_steps"], t["q_start_mean"], color=colour, label=f"{variant}: predicted Q")
        ax.plot(t["env_steps"], t["discounted_return_mean"], color=colour, ls="--", label=f"{variant}: measured")

    return _per_task_panels(table, draw, "discounted return from $s_0$",
                            "Overestimation: predicted Q (solid) against the measured discounted return (dashed), "
                            "mean over seeds")


def all_figures(report) -> dict:
    """Every figure a report has data for, by file stem."""
    t, conf = report.tables, report.confidence
    figures = {
        "learning_curves": learning_curves(t["curves"], conf),
        "aggregate_intervals": aggregate_intervals(t["aggregate"], conf),
        "performance_profiles": performance_profiles(t["profiles"], conf),
        "probability_of_improvement": improvement_heatmap(t["improvement"]),
        "overestimation": overestimation(t["overestimation"]),
    }
    return {name: fig for name, fig in figures.items() if fig is not None}
