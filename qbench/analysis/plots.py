"""The report's figures (seaborn on matplotlib's Agg backend), each drawn from one table of a ``Report``.

Every function takes the table it draws and returns a matplotlib Figure, or None when the table is empty, so a
notebook can redraw any figure from ``build_report(...).tables`` or from its own filtered copy.

What a reader should get at a glance:

- every variant has one style in every figure of a report (``variant_styles``): a colour from seaborn's
  colour-blind palette (distinct among the variants that share a task, up to 10), a dash pattern and a marker, so
  7 to 11 variants in one panel stay apart, also in grey;
- one legend per figure, right of the panels, at 10 pt; when the panels hold different variants, it is grouped
  under the tasks each group of variants ran;
- env steps on x are ticked on the evaluation grid when it has few points, else on round numbers (k, M);
- curves that coincide in a panel (two variants that ran the same numbers) say so in the legend ("= dqn"), and
  the one drawn first has larger markers (at offset points on long curves), so both show;
- overestimation is Q - measured return, the IQM over seeds with its bootstrap band, on an axis fitted to the IQM
  curves: a seed whose Q runs away is drawn as a triangle at the axis edge and named under the panel, instead of
  flattening it;
- the probability-of-improvement matrix is one matrix per group of variants that share tasks, with the pairs not
  compared hatched and marked n/a.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, and the same pixels everywhere

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import EngFormatter, FixedLocator, MaxNLocator

PANEL_IN = (4.2, 3.0)   # width, height of one panel in inches
LEGEND_PT = 10.0        # legend text; ticks and labels are about the same (font_scale below)
FEW_EVALUATIONS = 6     # up to this many evaluation steps in a panel, x is ticked at each of them
# Seaborn's colour-blind palette, the two palest colours (pale pink, yellow) last.
COLOURS = [sns.color_palette("colorblind")[i] for i in (0, 1, 2, 3, 4, 5, 9, 7, 6, 8)]
DASHES = [(), (5, 1.5), (1.2, 1.2), (6, 1.5, 1.2, 1.5), (3, 1.5), (6, 1.5, 1.2, 1.5, 1.2, 1.5)]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h"]


@dataclass(frozen=True)
class Style:
    """How one variant is drawn in every figure of a report."""

    colour: tuple
    dashes: tuple   # matplotlib dash pattern; () = solid
    marker: str

    def line(self, **extra) -> dict:
        return {"color": self.colour, "dashes": self.dashes or (None, None), "marker": self.marker,
                "markersize": 4.5, "markeredgewidth": 0.6, "markeredgecolor": "white", "lw": 1.6, **extra}


def _tasks_of(tables) -> dict[str, frozenset]:
    """variant -> the tasks it appears with, over every table that has a task column."""
    out: dict[str, set] = {}
    for table in tables:
        if table is None or table.empty or "variant" not in table:
            continue
        tasks = table["task"] if "task" in table else pd.Series("", index=table.index)
        for variant, task in zip(table["variant"], tasks):
            out.setdefault(variant, set()).add(task)
    return {v: frozenset(t) for v, t in out.items()}


def _components(names, pairs) -> list[list[str]]:
    """The connected components of the graph with ``pairs`` as edges, largest first, names sorted."""
    parent = {n: n for n in names}

    def root(n):
        while parent[n] != n:
            n = parent[n]
        return n

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for n in sorted(parent):
        groups.setdefault(root(n), []).append(n)
    return sorted(groups.values(), key=lambda g: (-len(g), g))


def variant_groups(tasks: dict[str, frozenset]) -> list[list[str]]:
    """The variants in groups connected by shared tasks (two variants are in one group when they ran a task in
    common, directly or through others), largest group first, names sorted: discrete and continuous variants
    fall apart, and figures that pool tasks (profiles, improvement) draw one panel per group."""
    names = sorted(tasks)
    return _components(names, [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if tasks[a] & tasks[b]])


def _group_title(tasks: dict[str, frozenset], group: list[str], width: int = 40) -> str:
    names = sorted(set().union(*(tasks.get(v, frozenset()) for v in group)) - {""})
    return textwrap.fill(", ".join(names), width) if names else f"{len(group)} variants"


def variant_styles(variants, tasks: dict[str, frozenset] | None = None) -> dict[str, Style]:
    """A style per variant. Within a group of variants that share tasks (``variant_groups``) every variant has
    its own colour (up to 10), starting from the most distinct; dash pattern and marker follow the variant's place
    in the report, so no two variants share colour, dashes and marker (up to 11)."""
    tasks = {v: (tasks or {}).get(v, frozenset({""})) for v in set(variants)}
    styles = {}
    k = 0
    for group in variant_groups(tasks):
        for i, name in enumerate(group):
            styles[name] = Style(COLOURS[i % len(COLOURS)], DASHES[k % len(DASHES)], MARKERS[k % len(MARKERS)])
            k += 1
    return styles


def _theme(style: str = "whitegrid") -> None:
    sns.set_theme(style=style, context="paper", font_scale=1.15, rc={"legend.fontsize": LEGEND_PT})


def _grid(n_panels: int, cols: int = 3, extra_width: float = 0.0, min_height: float = 0.0):
    cols = min(cols, max(n_panels, 1))
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, layout="constrained",
                             figsize=(PANEL_IN[0] * cols + extra_width, max(PANEL_IN[1] * rows + 0.5, min_height)))
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


def steps_label(task: str, rows) -> str:
    """x-axis words: ALE tasks count agent steps, each frame_skip emulator frames; say so, never leave it to guess."""
    if not str(task).startswith("ALE/") or "frames" not in rows or not len(rows):
        return "env steps"
    ratio = float((rows["frames"] / rows["env_steps"].where(rows["env_steps"] > 0)).median())
    return f"agent steps ({ratio:g} frames each)" if math.isfinite(ratio) else "agent steps"


def step_ticks(ax, steps) -> None:
    """Env steps on x: at each evaluation step when there are few (300 and 600, not 320, 400, ...), else on round
    numbers (1, 2, 2.5 or 5 times a power of ten); labelled 20k, 1M (full numbers collide at any panel width)."""
    grid = np.unique(np.asarray(steps, dtype=float))
    if 0 < len(grid) <= FEW_EVALUATIONS:
        ax.xaxis.set_major_locator(FixedLocator(grid))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10], min_n_ticks=3))
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def identical_curves(panel: pd.DataFrame, value: str, tolerance: float = 0.005) -> dict[str, dict[str, str]]:
    """variant -> {other variant of ``panel`` (one task): "=" when its ``value`` is the same at every step, "≈"
    when it is within ``tolerance`` of the panel's range (drawn on one another at any figure size)}."""
    curves = {v: rows.sort_values("env_steps")[["env_steps", value]].to_numpy(float)
              for v, rows in panel.groupby("variant", sort=True)}
    values = panel[value].to_numpy(float)
    values = values[np.isfinite(values)]
    span = float(np.ptp(values)) if values.size else 0.0
    span = span or float(np.abs(values).max(initial=0.0)) or 1.0
    out: dict[str, dict[str, str]] = {}
    for v, a in curves.items():
        for o, b in curves.items():
            if o == v or a.shape != b.shape or not np.array_equal(a[:, 0], b[:, 0]):
                continue
            if np.allclose(a[:, 1], b[:, 1], rtol=1e-12, atol=0.0, equal_nan=True):
                out.setdefault(v, {})[o] = "="
            elif np.allclose(a[:, 1], b[:, 1], rtol=0.0, atol=tolerance * span, equal_nan=True):
                out.setdefault(v, {})[o] = "≈"
    return out


def _same_as_text(same: dict[str, dict[str, dict[str, str]]], variant: str, variant_tasks: list[str]) -> str:
    """'= dqn' ('≈ dqn' when nearly), with ' on CartPole-v1' when the curves coincide on some of the variant's
    tasks only."""
    by_other: dict[str, list[tuple[str, str]]] = {}
    for task, found in same.items():
        for other, sign in found.get(variant, {}).items():
            by_other.setdefault(other, []).append((task, sign))
    parts = []
    for other, hits in sorted(by_other.items()):
        sign = "=" if all(h[1] == "=" for h in hits) else "≈"
        where = "" if len(hits) == len(variant_tasks) else " on " + ", ".join(h[0] for h in hits)
        parts.append(f"{sign} {other}{where}")
    return ", ".join(parts)


def _legend(fig, ax, entries: list[tuple[str, Line2D]], groups: dict[str, list[str]] | None = None,
            extra: list[Line2D] | None = None) -> None:
    """One legend for the figure, right of ``ax`` (the top-right panel; constrained layout makes room for it).
    ``groups``: heading -> variants (headings shown when there is more than one group), ``entries`` in variant
    order; ``extra``: lines that are no variant's, last (what a line style means)."""
    handles, labels, headings = [], [], []
    by_variant = dict(entries)
    if groups and len(groups) > 1:
        for heading, variants in groups.items():
            handles.append(Line2D([], [], ls="none"))
            labels.append(heading)
            headings.append(len(labels) - 1)
            for v in variants:
                if v in by_variant:
                    handles.append(by_variant[v])
                    labels.append(by_variant[v].get_label())
    else:
        handles = [h for _, h in entries]
        labels = [h.get_label() for h in handles]
    handles += extra or []
    labels += [h.get_label() for h in extra or []]
    rows_fit = max(int((fig.get_figheight() - 0.4) / 0.25), 4)
    legend = ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.03, 1.0), borderaxespad=0,
                       fontsize=LEGEND_PT, frameon=False, handlelength=3.2, ncols=math.ceil(len(handles) / rows_fit))
    for i in headings:
        legend.get_texts()[i].set_fontweight("bold")


def _task_groups(table: pd.DataFrame) -> dict[str, list[str]]:
    """Legend headings: the variants of ``table`` in ``variant_groups``, each headed by its tasks."""
    tasks = _tasks_of([table])
    groups = sorted(variant_groups(tasks), key=lambda g: min(min(tasks[v]) for v in g))
    return {_group_title(tasks, g): g for g in groups}


def _legend_height(table: pd.DataFrame) -> float:
    groups = _task_groups(table)
    return 0.6 + 0.25 * (table["variant"].nunique() + (len(groups) if len(groups) > 1 else 0))


def _per_task_panels(table: pd.DataFrame, value: str, draw, ylabel: str, title: str, label, styles=None,
                     after=None, extra_legend: list[Line2D] | None = None):
    """One panel per task, env steps on x; ``draw(ax, rows, style, markevery)`` draws one variant and returns its
    line; ``label(rows of every task)`` what its legend text says in brackets (besides "= other variant" for
    curves that coincide, ``identical_curves``); ``after(ax, panel)`` finishes a panel; ``extra_legend`` closes
    the legend."""
    _theme()
    styles = styles or variant_styles(table["variant"], _tasks_of([table]))
    tasks = sorted(table["task"].unique())
    fig, axes = _grid(len(tasks), extra_width=3.2, min_height=_legend_height(table))
    same: dict[str, dict[str, dict[str, str]]] = {}
    lines: dict[str, Line2D] = {}
    for ax, task in zip(axes, tasks):
        panel = table[table["task"] == task]
        same[task] = identical_curves(panel, value)
        for variant, rows in panel.groupby("variant", sort=True):
            n = rows["env_steps"].nunique()
            step = 1 if n <= 12 else math.ceil(n / 10)
            # Coinciding curves: each one's markers start one point later, so both stay visible.
            tied = sorted([variant, *same[task].get(variant, {})])
            offset = tied.index(variant) % step if step > 1 else 0
            line = draw(ax, rows.sort_values("env_steps"), styles[variant], (offset, step))
            if len(tied) > 1:   # and the ones drawn first have larger markers, seen around the later ones
                line.set_markersize(line.get_markersize() + 2.5 * (len(tied) - 1 - tied.index(variant)))
            lines[variant] = line
        ax.set(title=task, xlabel=steps_label(task, panel), ylabel=ylabel)
        step_ticks(ax, panel["env_steps"])
        if after is not None:
            after(ax, panel)
    entries = []
    for variant in sorted(lines):
        rows = table[table["variant"] == variant]
        details = [_same_as_text(same, variant, sorted(rows["task"].unique())), *label(rows)]
        text = f"{variant} ({'; '.join(d for d in details if d)})" if any(details) else variant
        line = Line2D([], [], **styles[variant].line(label=text))
        entries.append((variant, line))
    _legend(fig, axes[min(len(axes), 3) - 1], entries, _task_groups(table), extra_legend)
    # Wrapped to the figure's width: a one-task figure is narrower than the title.
    fig.suptitle(textwrap.fill(title, width=int(fig.get_figwidth() * 10)))
    return fig


def _seeds_text(rows: pd.DataFrame) -> str:
    """'n=5' (seeds per task), 'n=3-5' when the tasks differ."""
    seeds = rows.drop_duplicates("task")["seeds"].astype(int)
    return f"n={seeds.min()}" if seeds.min() == seeds.max() else f"n={seeds.min()}-{seeds.max()}"


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
    styles = styles or variant_styles(curves["variant"], _tasks_of([curves]))

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
        return [_seeds_text(rows)] + ([f"{diverged} diverged"] if diverged else [])

    extra = [Line2D([], [], color="0.4", label="training (last 100 episodes)", **TRAIN_LINE)]
    return _per_task_panels(curves, "iqm", draw, "evaluation return (IQM)" if train is None else "return (IQM)",
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
    _theme()
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
                    ax.text(1.02, first - 0.45, _group_title(tasks, g, 24), transform=ax.get_yaxis_transform(),
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
    _theme()
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
               title=_group_title(tasks, group) if len(groups) > 1 else "")
    axes[0][0].set_ylabel(r"fraction of runs with score $> \tau$")
    _legend(fig, axes[0][-1], sorted(entries), {_group_title(tasks, g): g for g in groups} if len(groups) > 1
            else None)
    fig.suptitle(f"Performance profiles, {confidence:.0%} bootstrap CI")
    return fig


def _improvement_groups(improvement: pd.DataFrame) -> list[list[str]]:
    """``variant_groups`` from the compared pairs alone (a pair is compared when it shares a task)."""
    return _components(set(improvement["x"]) | set(improvement["y"]), zip(improvement["x"], improvement["y"]))


def improvement_heatmap(improvement: pd.DataFrame, tasks_of: dict[str, frozenset] | None = None):
    """P(row variant beats column variant), over the tasks both ran: one matrix per group of variants that share
    tasks; pairs that share no task are hatched and marked n/a (never a colour that reads as 0.50)."""
    if improvement.empty:
        return None
    _theme("white")
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
        ax.set_title(_group_title(tasks_of or {}, names))
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
    styles = styles or variant_styles(table["variant"], _tasks_of([table]))

    def draw(ax, t, style, markevery):
        if {"overestimation_lower", "overestimation_upper"} <= set(t.columns):
            ax.fill_between(t["env_steps"], t["overestimation_lower"], t["overestimation_upper"], color=style.colour,
                            alpha=0.12, lw=0)
        return ax.plot(t["env_steps"], t["overestimation"], **style.line(markevery=markevery))[0]

    def label(rows):
        return [_seeds_text(rows)]

    statistic = table["statistic"].iloc[0] if "statistic" in table else "IQM over seeds"
    if where == "visited":
        ylabel, what = r"predicted Q $-$ measured return", "along visited states, mean Q(s_t, a_t)"
    else:
        ylabel, what = r"predicted Q($s_0$) $-$ measured return", "predicted Q(s0, a0)"
    return _per_task_panels(table, "overestimation", draw, ylabel,
                            f"Overestimation, {what} − measured discounted return (> 0: optimistic): "
                            f"{statistic}, {confidence:.0%} bootstrap CI", label, styles,
                            after=lambda ax, panel: _clipped_seeds(ax, panel, styles))


def overestimation_visited(table: pd.DataFrame, confidence: float = 0.95, styles: dict[str, Style] | None = None):
    """``overestimation`` of the report's ``overestimation_visited`` table."""
    if table.empty:
        return None
    renamed = table.rename(columns=lambda c: c.replace("overestimation_visited", "overestimation"))
    return overestimation(renamed, confidence, styles, where="visited")


EPSILON_FLOOR = 0.05   # epsilon 0.1 spread over the two actions of state A: half of it goes left


def maximisation_bias(table: pd.DataFrame, confidence: float = 0.95, styles: dict[str, Style] | None = None):
    """Per task: the fraction of runs that went left in each training episode (every episode drawn), per variant
    with its Wilson band, and the share epsilon-greedy forces with epsilon 0.1 as a dashed line."""
    if table.empty:
        return None
    _theme()
    styles = styles or variant_styles(table["variant"], _tasks_of([table]))
    tasks = sorted(table["task"].unique())
    fig, axes = _grid(len(tasks), extra_width=3.2, min_height=_legend_height(table))
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
    _legend(fig, axes[min(len(axes), 3) - 1], [*sorted(lines.items()), ("", floor)])
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
    return _per_task_panels(table, "q_error_max", draw, r"max$_s$ max$_a$ |Q $-$ Q*|",
                            f"Distance to Q*: {statistic}, {confidence:.0%} bootstrap CI", lambda r: [_seeds_text(r)],
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
    return _per_task_panels(table, "greedy_value", draw, "value of the greedy policy",
                            f"Greedy policy value against V* (dashed): {statistic}, {confidence:.0%} bootstrap CI",
                            lambda r: [_seeds_text(r)], styles, after=optimal)


def contraction(curves: pd.DataFrame, table: pd.DataFrame):
    """Per task: the sup-norm error of Q-value iteration per sweep (log scale) and the contraction bound
    first_error * gamma^sweep (dashed)."""
    if curves.empty or table.empty:
        return None
    _theme()
    tasks = list(table["task"])
    fig, axes = _grid(len(tasks))
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
    _theme()
    examples = list(dict.fromkeys(curves["example"]))
    styles = variant_styles(curves["method"])
    fig, axes = _grid(len(examples), extra_width=3.2)
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
    _legend(fig, axes[min(len(axes), 3) - 1], [*sorted(entries.items()), ("", analytical)])
    fig.suptitle("Divergence counterexamples: weight norm per iteration")
    return fig


def all_figures(report) -> dict:
    """Every figure a report has data for, by file stem; a variant has the same style in all of them."""
    t, conf = report.tables, report.confidence
    tasks = _tasks_of([t["finals"], t["curves"], t["overestimation"]])
    styles = variant_styles(set(tasks) | set(t["aggregate"].get("variant", [])), tasks)
    scored = {v: frozenset(x for x in ts if x in report.scoring and report.scoring[x].normalisable)
              for v, ts in tasks.items()}   # the tasks in the normalised tables
    figures = {
        "learning_curves": learning_curves(t["curves"], conf, styles, t.get("train_curves")),
        "aggregate_intervals": aggregate_intervals(t["aggregate"], conf, styles, scored),
        "performance_profiles": performance_profiles(t["profiles"], conf, styles, scored),
        "probability_of_improvement": improvement_heatmap(t["improvement"], tasks),
        "overestimation": overestimation(t["overestimation"], conf, styles),
    }
    empty = pd.DataFrame()
    # Theory and the newer overestimation tables: absent from reports built before they existed.
    figures.update({
        "overestimation_visited": overestimation_visited(t.get("overestimation_visited", empty), conf, styles),
        "maximisation_bias": maximisation_bias(t.get("maximisation_bias", empty), conf, styles),
        "q_distance": q_distance_curves(t.get("q_distance", empty), conf, styles),
        "greedy_value": greedy_value(t.get("q_distance", empty), conf, styles),
        "contraction": contraction(t.get("contraction_curves", empty), t.get("contraction", empty)),
        "divergence": divergence(t.get("divergence", empty)),
    })
    return {name: fig for name, fig in figures.items() if fig is not None}
