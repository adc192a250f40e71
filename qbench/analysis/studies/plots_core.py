"""The core study's figures: learning curves, aggregate normalised scores, performance profiles and the
probability of improvement (the shared styles, legend and panels: ``qbench.analysis.plots``)."""

from __future__ import annotations

import textwrap

import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

# pyplot and seaborn through plots, which picks matplotlib's Agg backend before pyplot loads
from qbench.analysis.plots import (
    Style,
    components,
    figure_legend,
    group_title,
    per_task_panels,
    plt,
    report_tasks,
    seeds_text,
    sns,
    tasks_of,
    theme,
    variant_groups,
    variant_styles,
)

TRAIN_LINE = {"lw": 1.0, "alpha": 0.75, "dashes": (1.5, 1.5)}   # the training return beside the evaluation's


def learning_curves(curves: pd.DataFrame, confidence: float = 0.95, styles: dict[str, Style] | None = None,
                    train: pd.DataFrame | None = None):
    """Per task: IQM over seeds of the greedy evaluation return against env steps, with its CI band; beside it,
    where ``train`` (the report's ``train_curves``) has the variant, the training return as the MinAtar paper
    plots it (mean of the last 100 training episodes, IQM over complete runs): same colour, thin, dotted, no
    markers."""
    if curves.empty:
        return None
    if train is not None and not set(zip(train["task"], train["variant"])) & set(zip(curves["task"],
                                                                                      curves["variant"])):
        train = None   # no training curve beside any of these
    styles = styles or variant_styles(curves["variant"], tasks_of([curves]))

    def training(ax, panel):
        task = panel["task"].iloc[0]
        for variant, rows in train[train["task"] == task].groupby("variant", sort=True):
            if variant in set(panel["variant"]):
                ax.plot(rows["env_steps"], rows["iqm"], color=styles[variant].colour, **TRAIN_LINE)

    def draw(ax, c, style, markevery):
        ax.fill_between(c["env_steps"], c["lower"], c["upper"], color=style.colour, alpha=0.12, lw=0)
        return ax.plot(c["env_steps"], c["iqm"], **style.line(markevery=markevery))[0]

    def label(rows):
        first = rows.drop_duplicates("task")
        diverged = int(first["diverged"].sum()) if "diverged" in first else 0
        return [seeds_text(rows)] + ([f"{diverged} diverged"] if diverged else [])

    extra = [Line2D([], [], color="0.4", label="training (last 100 episodes)", **TRAIN_LINE)]
    return per_task_panels(curves, "iqm", draw, "evaluation return (IQM)" if train is None else "return (IQM)",
                            f"Learning curves: IQM over seeds, {confidence:.0%} bootstrap CI", label, styles,
                            after=training if train is not None else None,
                            extra_legend=extra if train is not None else None)


def _groups_of(variants, tasks: dict[str, frozenset] | None) -> list[list[str]]:
    """``variant_groups`` of ``variants`` (one group when the tasks are not known)."""
    variants = sorted(set(variants))
    if not tasks:
        return [variants]
    return variant_groups({v: tasks.get(v, frozenset({""})) for v in variants})


def aggregate_intervals(aggregate: pd.DataFrame, confidence: float = 0.95, styles: dict[str, Style] | None = None,
                        tasks: dict[str, frozenset] | None = None):
    """Per metric: each variant's normalised point estimate and CI as a horizontal interval (rliable style); the
    variants in groups that share tasks (``variant_groups``), apart by a line and headed by their tasks."""
    if aggregate.empty:
        return None
    theme()
    styles = styles or variant_styles(aggregate["variant"], tasks)
    metrics = list(dict.fromkeys(aggregate["metric"]))
    groups = _groups_of(aggregate["variant"], tasks)
    variants = [v for g in groups for v in g]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 0.4 * len(variants) + 1.6),
                             sharey=True, squeeze=False, layout="constrained")
    for ax, metric in zip(axes[0], metrics):
        rows = aggregate[aggregate["metric"] == metric].set_index("variant")
        for y, variant in enumerate(variants):
            if variant not in rows.index:
                continue
            r = rows.loc[variant]
            ax.plot([r["lower"], r["upper"]], [y, y], color=styles[variant].colour, lw=7, alpha=0.6,
                    solid_capstyle="butt")
            ax.plot([r["point"]], [y], "|", color="black", ms=14, mew=1.5)
        ax.set_yticks(range(len(variants)), variants)
        ax.set(title=metric, xlabel="normalised score", ylim=(len(variants) - 0.5, -0.5))   # first name on top
        if len(groups) > 1:
            first = 0
            for g in groups:
                if first:
                    ax.axhline(first - 0.5, color="#404040", lw=1.0)
                if ax is axes[0][-1]:
                    ax.text(1.02, first - 0.45, group_title(tasks, g, 24), transform=ax.get_yaxis_transform(),
                            va="top", ha="left", fontsize=9, fontweight="bold")
                first += len(g)
    fig.suptitle(f"Aggregate normalised scores, {confidence:.0%} stratified bootstrap CI "
                 "(optimality gap: lower is better)")
    return fig


def performance_profiles(profiles: pd.DataFrame, confidence: float = 0.95, styles: dict[str, Style] | None = None,
                         tasks: dict[str, frozenset] | None = None):
    """Fraction of runs whose normalised final score exceeds tau, per variant, with its CI band: one panel per
    group of variants that share tasks (``variant_groups``; profiles of variants run on other tasks do not
    compare), one legend."""
    if profiles.empty:
        return None
    theme()
    styles = styles or variant_styles(profiles["variant"], tasks)
    groups = _groups_of(profiles["variant"], tasks)
    height = max(4.0, 0.6 + 0.25 * (profiles["variant"].nunique() + (len(groups) if len(groups) > 1 else 0)))
    width = 5.2 if len(groups) == 1 else 4.2
    fig, axes = plt.subplots(1, len(groups), figsize=(width * len(groups) + 3.2, height), sharey=True,
                             squeeze=False, layout="constrained")
    entries = []
    for ax, group in zip(axes[0], groups):
        for i, variant in enumerate(group):
            p = profiles[profiles["variant"] == variant]
            diverged = int(p["diverged"].iloc[0]) if "diverged" in p else 0
            step = max(len(p) // 8, 1)
            # markers at points offset per variant, so coinciding profiles stay apart
            line = ax.plot(p["tau"], p["point"], **styles[variant].line(
                markevery=(i * step // len(group) % step, step),
                label=f"{variant} ({diverged} diverged)" if diverged else variant))[0]
            ax.fill_between(p["tau"], p["lower"], p["upper"], color=styles[variant].colour, alpha=0.1, lw=0)
            entries.append((variant, line))
        ax.set(xlabel=r"normalised score $\tau$", ylim=(-0.02, 1.02),
               title=group_title(tasks, group) if len(groups) > 1 else "")
    axes[0][0].set_ylabel(r"fraction of runs with score $> \tau$")
    figure_legend(fig, axes[0][-1], sorted(entries), {group_title(tasks, g): g for g in groups} if len(groups) > 1
            else None)
    fig.suptitle(f"Performance profiles, {confidence:.0%} bootstrap CI")
    return fig


def _improvement_groups(improvement: pd.DataFrame) -> list[list[str]]:
    """``variant_groups`` from the compared pairs alone (a pair is compared when it shares a task)."""
    return components(set(improvement["x"]) | set(improvement["y"]), zip(improvement["x"], improvement["y"]))


def improvement_heatmap(improvement: pd.DataFrame, tasks_of: dict[str, frozenset] | None = None):
    """P(row variant beats column variant), over the tasks both ran: one matrix per group of variants that share
    tasks; pairs that share no task are hatched and marked n/a (never a colour that reads as 0.50)."""
    if improvement.empty:
        return None
    theme("white")
    compared = set(improvement["x"]) | set(improvement["y"])
    groups = _groups_of(compared, tasks_of) if tasks_of else _improvement_groups(improvement)
    sizes = [len(g) for g in groups]
    cell = 0.62                                                  # inches: the same in every matrix
    labels = [0.085 * max(len(n) for n in g) for g in groups]   # the longest name of each, as tick label
    fig, axes = plt.subplots(1, len(groups), squeeze=False, layout="constrained",
                             figsize=(cell * sum(sizes) + sum(labels) + 0.4 * len(groups) + 1.4,
                                      cell * max(sizes) + 0.87 * max(labels) + 1.5),
                             gridspec_kw={"width_ratios": sizes})
    points = improvement.set_index(["x", "y"])
    mappable, any_varying, any_missing = None, False, False
    for ax, names in zip(axes[0], groups):
        matrix = (improvement[improvement["x"].isin(names)].pivot(index="x", columns="y", values="point")
                  .reindex(index=names, columns=names))
        counts = {(x, y): int(points.loc[(x, y), "tasks"]) for x in names for y in names if (x, y) in points.index}
        varying = len(set(counts.values())) > 1       # then each cell says over how many tasks
        any_varying |= varying
        sns.heatmap(matrix, vmin=0, vmax=1, center=0.5, cmap="vlag", square=True, annot=False, cbar=False, ax=ax,
                    linewidths=0.5, linecolor="white")
        mappable = ax.collections[0]
        for i, x in enumerate(names):
            for j, y in enumerate(names):
                if (x, y) in counts:
                    value = matrix.loc[x, y]
                    text = f"{value:.2f}" + (f"\n({counts[x, y]})" if varying else "")
                    ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=9,
                            color="white" if abs(value - 0.5) > 0.3 else "black")
                elif x == y:
                    ax.add_patch(Rectangle((j, i), 1, 1, facecolor="#e6e6e6", edgecolor="white", lw=0.5))
                else:                                   # not compared: never a colour that reads as 0.50
                    any_missing = True
                    ax.add_patch(Rectangle((j, i), 1, 1, facecolor="#f2f2f2", edgecolor="#b0b0b0", hatch="///",
                                           lw=0))
                    ax.text(j + 0.5, i + 0.5, "n/a", ha="center", va="center", fontsize=8.5, color="#606060",
                            bbox={"facecolor": "#f2f2f2", "edgecolor": "none", "pad": 1})
        ax.set_title(group_title(tasks_of or {}, names))
        ax.set(xlabel="Y (column)", ylabel="X (row)" if ax is axes[0][0] else "")
        ax.tick_params(axis="x", labelrotation=60)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
        ax.tick_params(axis="y", labelrotation=0)
    fig.colorbar(mappable, ax=list(axes[0]), label="P(X > Y)", shrink=0.8)
    lines = ["Probability of improvement P(X > Y), over the tasks both ran" + ("; (k): over k tasks" if any_varying
                                                                            else "")]
    if any_missing:
        lines.append("grey hatched, n/a: the pair shares no task (not compared)")
    fig.suptitle("\n".join(textwrap.fill(line, int(fig.get_figwidth() * 9)) for line in lines))
    return fig


def figures(report, styles: dict[str, Style]) -> dict:
    """The core study's figures: learning curves, aggregate intervals, performance profiles, improvement."""
    t, conf = report.tables, report.confidence
    tasks = report_tasks(report)
    scored = {v: frozenset(x for x in ts if x in report.scoring and report.scoring[x].normalisable)
              for v, ts in tasks.items()}   # the tasks in the normalised tables
    return {
        "learning_curves": learning_curves(t["curves"], conf, styles, t.get("train_curves")),
        "aggregate_intervals": aggregate_intervals(t["aggregate"], conf, styles, scored),
        "performance_profiles": performance_profiles(t["profiles"], conf, styles, scored),
        "probability_of_improvement": improvement_heatmap(t["improvement"], tasks),
    }
