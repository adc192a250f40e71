"""What the report's figures share (seaborn on matplotlib's Agg backend): the style of each variant, the panel
grid, the legend, the per-task panels of curves against env steps, the x ticks. Each study draws its own figures
beside it (``qbench/analysis/studies/plots_<study>.py``, called through ``Study.figures``); ``all_figures`` walks
the report's studies.

Every figure function takes the table it draws and returns a matplotlib Figure, or None when the table is empty, so
a notebook can redraw any figure from ``build_report(...).tables`` or from its own filtered copy.

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


def tasks_of(tables) -> dict[str, frozenset]:
    """variant -> the tasks it appears with, over every table that has a task column."""
    out: dict[str, set] = {}
    for table in tables:
        if table is None or table.empty or "variant" not in table:
            continue
        tasks = table["task"] if "task" in table else pd.Series("", index=table.index)
        for variant, task in zip(table["variant"], tasks):
            out.setdefault(variant, set()).add(task)
    return {v: frozenset(t) for v, t in out.items()}


def components(names, pairs) -> list[list[str]]:
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
    return components(names, [(a, b) for i, a in enumerate(names) for b in names[i + 1:] if tasks[a] & tasks[b]])


def group_title(tasks: dict[str, frozenset], group: list[str], width: int = 40) -> str:
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


def theme(style: str = "whitegrid") -> None:
    sns.set_theme(style=style, context="paper", font_scale=1.15, rc={"legend.fontsize": LEGEND_PT})


def panel_grid(n_panels: int, cols: int = 3, extra_width: float = 0.0, min_height: float = 0.0):
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


def figure_legend(fig, ax, entries: list[tuple[str, Line2D]], groups: dict[str, list[str]] | None = None,
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
    tasks = tasks_of([table])
    groups = sorted(variant_groups(tasks), key=lambda g: min(min(tasks[v]) for v in g))
    return {group_title(tasks, g): g for g in groups}


def legend_height(table: pd.DataFrame) -> float:
    groups = _task_groups(table)
    return 0.6 + 0.25 * (table["variant"].nunique() + (len(groups) if len(groups) > 1 else 0))


def per_task_panels(table: pd.DataFrame, value: str, draw, ylabel: str, title: str, label, styles=None,
                     after=None, extra_legend: list[Line2D] | None = None):
    """One panel per task, env steps on x; ``draw(ax, rows, style, markevery)`` draws one variant and returns its
    line; ``label(rows of every task)`` what its legend text says in brackets (besides "= other variant" for
    curves that coincide, ``identical_curves``); ``after(ax, panel)`` finishes a panel; ``extra_legend`` closes
    the legend."""
    theme()
    styles = styles or variant_styles(table["variant"], tasks_of([table]))
    tasks = sorted(table["task"].unique())
    fig, axes = panel_grid(len(tasks), extra_width=3.2, min_height=legend_height(table))
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
    figure_legend(fig, axes[min(len(axes), 3) - 1], entries, _task_groups(table), extra_legend)
    # Wrapped to the figure's width: a one-task figure is narrower than the title.
    fig.suptitle(textwrap.fill(title, width=int(fig.get_figwidth() * 10)))
    return fig


def seeds_text(rows: pd.DataFrame) -> str:
    """'n=5' (seeds per task), 'n=3-5' when the tasks differ."""
    seeds = rows.drop_duplicates("task")["seeds"].astype(int)
    return f"n={seeds.min()}" if seeds.min() == seeds.max() else f"n={seeds.min()}-{seeds.max()}"


def report_tasks(report) -> dict[str, frozenset]:
    """variant -> the tasks it ran, over the report's finals, curves and overestimation tables."""
    t = report.tables
    return tasks_of([t["finals"], t["curves"], t["overestimation"]])


def all_figures(report) -> dict:
    """Every figure a report has data for, by file stem, study by study (``Study.figures``); a variant has the same
    style in all of them."""
    tasks = report_tasks(report)
    styles = variant_styles(set(tasks) | set(report.tables["aggregate"].get("variant", [])), tasks)
    figures: dict = {}
    for study in report.studies:
        if study.figures is None:
            continue
        drawn = study.figures(report, styles)
        twice = sorted(figures.keys() & drawn.keys())
        if twice:
            raise ValueError(f"study '{study.name}' draws {', '.join(twice)}, which another study draws")
        figures.update(drawn)
    return {name: fig for name, fig in figures.items() if fig is not None}
