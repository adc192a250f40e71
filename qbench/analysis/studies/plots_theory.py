"""The theory study's figures: the maximisation bias, the distance to Q* and the greedy policy's value, the
contraction of Q-value iteration and the divergence counterexamples (the shared styles and panels:
``qbench.analysis.plots``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from qbench.analysis.plots import (
    COLOURS,
    Style,
    figure_legend,
    legend_height,
    panel_grid,
    per_task_panels,
    seeds_text,
    tasks_of,
    theme,
    variant_styles,
)

EPSILON_FLOOR = 0.05   # epsilon 0.1 spread over the two actions of state A: half of it goes left


def maximisation_bias(table: pd.DataFrame, confidence: float = 0.95, styles: dict[str, Style] | None = None):
    """Per task: the fraction of runs that went left in each training episode (every episode drawn), per variant
    with its Wilson band, and the share epsilon-greedy forces with epsilon 0.1 as a dashed line."""
    if table.empty:
        return None
    theme()
    styles = styles or variant_styles(table["variant"], tasks_of([table]))
    tasks = sorted(table["task"].unique())
    fig, axes = panel_grid(len(tasks), extra_width=3.2, min_height=legend_height(table))
    if len(tasks) == 1:   # one panel: a wider one, so that 300 episodes are readable beside the legend
        fig.set_size_inches(fig.get_size_inches()[0] + 4.0, max(fig.get_size_inches()[1], 4.0))
    lines: dict[str, Line2D] = {}
    for ax, task in zip(axes, tasks):
        panel = table[table["task"] == task]
        for variant, rows in panel.groupby("variant", sort=True):
            rows = rows.sort_values("episode")
            style = styles[variant]
            ax.fill_between(rows["episode"], rows["lower"], rows["upper"], color=style.colour, alpha=0.15, lw=0)
            every = max(1, len(rows) // 10)   # every episode drawn, markers on a tenth of them
            ax.plot(rows["episode"], rows["left_fraction"], **style.line(markevery=(0, every), lw=1.2))
            runs = rows["runs"]
            lines[variant] = Line2D([], [], **style.line(
                label=f"{variant} (n={runs.max()})" if runs.min() == runs.max()
                else f"{variant} (n={runs.min()}-{runs.max()})"))
        ax.axhline(EPSILON_FLOOR, color="black", lw=1.0, ls="--")
        ax.set(title=task, xlabel="training episode", ylabel="fraction of runs going left", ylim=(0, 1))
    floor = Line2D([], [], color="black", lw=1.0, ls="--",
                   label="5%: forced by epsilon-greedy\n(eps 0.1 over A's two actions)")
    figure_legend(fig, axes[min(len(axes), 3) - 1], [*sorted(lines.items()), ("", floor)])
    fig.suptitle(f"Maximisation bias: left from A per training episode, {confidence:.0%} Wilson interval")
    return fig


def _log_band(ax, x, lower, upper, colour) -> None:
    """A CI band on a log axis: bounds at or below 0 cannot be drawn there, and are left out."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    keep = (lower > 0) & (upper > 0)
    ax.fill_between(np.asarray(x, float)[keep], lower[keep], upper[keep], color=colour, alpha=0.12, lw=0)


def q_distance_curves(table: pd.DataFrame, confidence: float = 0.95, styles: dict[str, Style] | None = None):
    """Per known-dynamics task: max over states of max_a |Q - Q*| (log scale) against env steps, per variant."""
    if table.empty:
        return None

    def draw(ax, t, style, markevery):
        _log_band(ax, t["env_steps"], t["q_error_max_lower"], t["q_error_max_upper"], style.colour)
        return ax.plot(t["env_steps"], t["q_error_max"], **style.line(markevery=markevery))[0]

    statistic = table["statistic"].iloc[0] if "statistic" in table else "mean over seeds"
    return per_task_panels(table, "q_error_max", draw, r"max$_s$ max$_a$ |Q $-$ Q*|",
                            f"Distance to Q*: {statistic}, {confidence:.0%} bootstrap CI", lambda r: [seeds_text(r)],
                            styles, after=lambda ax, panel: ax.set_yscale("log"))


def greedy_value(table: pd.DataFrame, confidence: float = 0.95, styles: dict[str, Style] | None = None):
    """Per known-dynamics task: the exact value of each variant's greedy policy against V* (dashed)."""
    if table.empty or table["greedy_value"].isna().all():
        return None

    def draw(ax, t, style, markevery):
        ax.fill_between(t["env_steps"], t["greedy_value_lower"], t["greedy_value_upper"], color=style.colour,
                        alpha=0.12, lw=0)
        return ax.plot(t["env_steps"], t["greedy_value"], **style.line(markevery=markevery))[0]

    def optimal(ax, panel):
        v_star = panel.groupby("env_steps")["optimal_value"].mean()
        ax.plot(v_star.index, v_star.to_numpy(), color="black", lw=1.1, ls="--", zorder=4)

    statistic = table["statistic"].iloc[0] if "statistic" in table else "mean over seeds"
    return per_task_panels(table, "greedy_value", draw, "value of the greedy policy",
                            f"Greedy policy value against V* (dashed): {statistic}, {confidence:.0%} bootstrap CI",
                            lambda r: [seeds_text(r)], styles, after=optimal)


def contraction(curves: pd.DataFrame, table: pd.DataFrame):
    """Per task: the sup-norm error of Q-value iteration per sweep (log scale) and the contraction bound
    first_error * gamma^sweep (dashed)."""
    if curves.empty or table.empty:
        return None
    theme()
    tasks = list(table["task"])
    fig, axes = panel_grid(len(tasks))
    for ax, r in zip(axes, table.itertuples(index=False)):
        rows = curves[(curves["task"] == r.task) & (curves["max_error"] > 0)].sort_values("sweep")
        sweeps = curves.loc[curves["task"] == r.task, "sweep"].to_numpy(float)
        ax.plot(rows["sweep"], rows["max_error"], color=COLOURS[0], lw=1.6, label="Q-value iteration")
        if sweeps.size:
            grid = np.linspace(sweeps.min(), sweeps.max(), 200)
            ax.plot(grid, r.first_error * r.gamma ** grid, color="black", lw=1.0, ls="--",
                    label=rf"first error $\times\ \gamma^k$ ($\gamma$ = {r.gamma:g})")
        ax.set_yscale("log")
        ax.set(title=r.task, xlabel="sweep k", ylabel=r"max |Q$_k$ $-$ Q*|")
        ax.legend(loc="upper right", frameon=False, fontsize=9)
    fig.suptitle("Contraction of Q-value iteration")
    return fig


def divergence(curves: pd.DataFrame):
    """Per counterexample: the weight norm per iteration of each method (log scale), analytical dashed."""
    if curves.empty:
        return None
    theme()
    examples = list(dict.fromkeys(curves["example"]))
    styles = variant_styles(curves["method"])
    fig, axes = panel_grid(len(examples), extra_width=3.2)
    entries: dict[str, Line2D] = {}
    for ax, example in zip(axes, examples):
        panel = curves[curves["example"] == example]
        for method, rows in panel.groupby("method", sort=False):
            rows = rows.sort_values("iteration")
            style = styles[method]
            shown = rows[rows["weight_norm"] > 0]
            every = max(1, len(shown) // 10)
            ax.plot(shown["iteration"], shown["weight_norm"], **style.line(markevery=(0, every)))
            analytical = rows[rows["analytical_norm"] > 0]
            if not analytical.empty:
                ax.plot(analytical["iteration"], analytical["analytical_norm"], color=style.colour, lw=1.0,
                        ls="--", zorder=4)
            entries[method] = Line2D([], [], **style.line(label=method))
        ax.set_yscale("log")
        ax.set(title=example, xlabel="iteration", ylabel="weight norm")
    analytical = Line2D([], [], color="black", lw=1.0, ls="--", label="analytical")
    figure_legend(fig, axes[min(len(axes), 3) - 1], [*sorted(entries.items()), ("", analytical)])
    fig.suptitle("Divergence counterexamples: weight norm per iteration")
    return fig


def figures(report, styles: dict[str, Style]) -> dict:
    """The theory study's figures (none for a report built before its tables existed)."""
    t, conf = report.tables, report.confidence
    empty = pd.DataFrame()
    return {
        "maximisation_bias": maximisation_bias(t.get("maximisation_bias", empty), conf, styles),
        "q_distance": q_distance_curves(t.get("q_distance", empty), conf, styles),
        "greedy_value": greedy_value(t.get("q_distance", empty), conf, styles),
        "contraction": contraction(t.get("contraction_curves", empty), t.get("contraction", empty)),
        "divergence": divergence(t.get("divergence", empty)),
    }
