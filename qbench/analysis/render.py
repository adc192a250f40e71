"""Write a ``Report`` to files: Markdown (with PNG figures beside it), one self-contained HTML page (figures
embedded), LaTeX tables (booktabs) and CSV tables of plain numbers. Every file is written atomically."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from qbench.analysis.report import Report
from qbench.store import atomic_write_bytes, atomic_write_text

FORMATS = ("md", "html", "tex", "csv")


@dataclass(frozen=True)
class Section:
    title: str
    text: str
    table: pd.DataFrame | None = None
    figure: str | None = None        # a key of Report.figures()


# --- numbers as a reader wants them --------------------------------------------------------------------------

def _num(x: float, digits: int | None = None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if digits is None:
        digits = 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    return f"{x:,.{digits}f}"


def _ci(point: float, lower: float, upper: float, digits: int | None = None) -> str:
    return f"{_num(point, digits)} [{_num(lower, digits)}, {_num(upper, digits)}]"


def _pm(mean: float, std: float) -> str:
    """mean ± std with the digits the mean needs, for both."""
    if std is None or math.isnan(std):
        return _num(mean)
    digits = 1 if abs(mean) >= 10 else 2 if abs(mean) >= 1 else 3
    return f"{_num(mean, digits)} ± {_num(std, digits)}"


def _steps(n: float) -> str:
    return "–" if n is None or (isinstance(n, float) and math.isnan(n)) else f"{int(n):,}"


def _steps_and_frames(env_steps: float, frames: float) -> str:
    """'100,000 (400,000 frames)' for ALE tasks, whose env steps are agent steps of several frames; else steps."""
    if math.isfinite(frames) and math.isfinite(env_steps) and frames != env_steps:
        return f"{_steps(env_steps)} ({_steps(frames)} frames)"
    return _steps(env_steps)


def _with_diverged(n: int, diverged: int) -> str:
    """'4' or '4 (1 diverged)': how many runs, and how many of them diverged."""
    return f"{int(n)} ({int(diverged)} diverged)" if diverged else f"{int(n)}"


def per_task_display(report: Report) -> pd.DataFrame:
    pct = f"{report.confidence:.0%}"
    rows = []
    for r in report.tables["per_task"].itertuples(index=False):
        reference = "–"
        if r.reference_source:
            reference = (f"{_pm(r.reference_mean, r.reference_std)} at {_steps(r.reference_env_steps)} steps, "
                         f"{int(r.reference_runs)} run(s): {r.reference_source}")
        rows.append({"task": r.task, "variant": r.variant, "seeds": _with_diverged(r.seeds, r.diverged),
                     "env steps": _steps_and_frames(r.env_steps, r.frames),
                     "final return mean ± std": _pm(r.mean, r.std),
                     f"IQM [{pct} CI]": _ci(r.iqm, r.iqm_lower, r.iqm_upper),
                     "mean return over training (AUC)": _num(r.auc_mean), "published reference": reference})
    return pd.DataFrame(rows)


def thresholds_display(report: Report) -> pd.DataFrame:
    rows = []
    finals = report.tables["finals"]
    for task, scoring in sorted(report.scoring.items()):
        for variant, threshold in sorted(scoring.thresholds.items()):
            runs = finals[(finals["task"] == task) & (finals["variant"] == variant) & finals["scored"]]
            if runs.empty:
                continue
            passing = int((runs["final_return"] >= threshold).sum())
            diverged = int((runs["status"] == "diverged").sum())
            rows.append({"task": task, "variant": variant, "threshold": f">= {threshold:g}",
                         "seeds at or above": f"{passing}/{len(runs)}"
                                              + (f" ({diverged} diverged)" if diverged else ""),
                         "final return per seed": " ".join(_num(v) for v in runs["final_return"])})
    return pd.DataFrame(rows)


def aggregate_display(report: Report) -> pd.DataFrame:
    table = report.tables["aggregate"]
    rows = []
    for variant, group in table.groupby("variant", sort=True):
        row = {"variant": variant, "tasks": int(group["tasks"].iloc[0]),
               "runs": _with_diverged(group["runs"].iloc[0], group["diverged"].iloc[0])}
        for r in group.itertuples(index=False):
            row[r.metric] = _ci(r.point, r.lower, r.upper, 3)
        rows.append(row)
    return pd.DataFrame(rows)


def improvement_display(report: Report) -> pd.DataFrame:
    table = report.tables["improvement"]
    if table.empty:
        return pd.DataFrame()
    names = sorted(set(table["x"]) | set(table["y"]))
    cells = {(r.x, r.y): f"{_ci(r.point, r.lower, r.upper, 2)} ({r.tasks})" for r in table.itertuples(index=False)}
    diverged = report.tables["finals"]
    diverged = diverged[diverged["scored"] & (diverged["status"] == "diverged")]["variant"].value_counts()

    def label(x: str) -> str:
        return f"{x} ({diverged[x]} diverged)" if diverged.get(x, 0) else x

    return pd.DataFrame([{"X \\ Y": label(x), **{y: cells.get((x, y), "–") for y in names}} for x in names])


def overestimation_display(report: Report) -> pd.DataFrame:
    table = report.tables["overestimation"]
    if table.empty:
        return pd.DataFrame()
    last = table.sort_values("env_steps").groupby(["task", "variant"], sort=True).tail(1)
    return pd.DataFrame([{"task": r.task, "variant": r.variant, "env steps": _steps(r.env_steps),
                          "predicted Q(s0, a0)": _num(r.q_start_mean),
                          "measured discounted return": _num(r.discounted_return_mean),
                          "overestimation (CI)": _ci(r.overestimation, r.overestimation_lower,
                                                     r.overestimation_upper),
                          "seeds": r.seeds}
                         for r in last.sort_values(["task", "variant"]).itertuples(index=False)])


def cost_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "variant": r.variant, "runs": r.runs,
                          "wall s per run": _num(r.wall_s_mean), "wall s, all runs": _num(r.wall_s_total),
                          "env steps/s": _num(r.steps_per_s_mean, 0), "peak memory MiB": _num(r.peak_rss_mb_max, 0)}
                         for r in report.tables["cost"].itertuples(index=False)])


def references_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "algorithm": r.algo, "env id": r.env_id, "return": _pm(r.mean, r.std),
                          "env steps": _steps(r.env_steps), "runs": r.runs, "source": r.source, "notes": r.notes}
                         for r in report.tables["references"].itertuples(index=False)])


def _diverged_text(aggregate: pd.DataFrame) -> str:
    """'; diverged runs included: dqn 1 of 8' for the variants that have any, else ''."""
    per_variant = aggregate.drop_duplicates("variant")
    parts = [f"{r.variant} {r.diverged} of {r.runs}" for r in per_variant.itertuples(index=False) if r.diverged]
    return "; diverged runs included: " + ", ".join(parts) if parts else ""


def sections(report: Report) -> list[Section]:
    pct = f"{report.confidence:.0%}"
    out = [
        Section("Runs", "Run directories per (task, variant) by state. Complete runs enter the statistics at "
                "their final evaluation and diverged runs at their last evaluation before they diverged (the "
                "task's random score if that came before any evaluation): in_statistics counts both. Crashed, "
                "unfinished and damaged runs are left out, and named in the notes.", report.tables["runs"]),
        Section("Final return per task",
                f"Final greedy evaluation return per run (a diverged run: its last evaluation before it "
                f"diverged, counted in seeds); IQM over seeds with a {pct} percentile bootstrap CI "
                f"({report.reps} resamples); AUC = mean evaluation return over training. The published reference "
                "is the same algorithm on the same environment where one exists.", per_task_display(report)),
    ]
    thresholds = thresholds_display(report)
    if not thresholds.empty:
        out.append(Section("Pass thresholds", "The suite's thresholds on the final evaluation return.", thresholds))
    out += [
        Section("Learning curves", "IQM over seeds of the evaluation return at each evaluation step; a diverged "
                "run is held at its last evaluation from the step it diverged.", figure="learning_curves"),
        Section("Aggregate normalised scores",
                "Normalised score = (score − random) / (reference − random), with the suite's scores; "
                f"stratified bootstrap {pct} CIs (runs resampled within each task). Median: the median over "
                "tasks of the per-task mean score (rliable). Optimality gap: mean shortfall below 1, lower is "
                "better. Diverged runs count at their score.", aggregate_display(report), "aggregate_intervals"),
        Section("Performance profiles", "Fraction of runs whose normalised score exceeds τ"
                + _diverged_text(report.tables["aggregate"]) + ".",
                figure="performance_profiles"),
        Section("Probability of improvement",
                f"P(X > Y): the chance that a run of the row variant beats a run of the column variant on a task "
                f"(Mann-Whitney U / nm), averaged over the tasks both ran (in brackets), with a {pct} CI.",
                improvement_display(report), "probability_of_improvement"),
        Section("Overestimation",
                "Q(s0, a0) predicted by the network at the first state of each evaluation episode against the "
                "discounted return then collected, at the last evaluation: each an IQM over seeds (robust to "
                "one seed whose Q runs away), the overestimation being the IQM of each seed's own difference, with "
                f"a {pct} bootstrap CI over seeds.",
                overestimation_display(report), "overestimation"),
        Section("Cost", "Wall time and throughput of the complete runs; peak memory is the largest resident set "
                "of the worker process (an upper bound when a worker ran several jobs).", cost_display(report)),
        Section("Published references", "From qbench/data/zoo_reference.csv; the budgets and protocols differ "
                "between sources (see notes).", references_display(report)),
    ]
    return out


# --- writers -----------------------------------------------------------------------------------------------------

def _markdown_table(table: pd.DataFrame) -> str:
    """A pipe table; ``|`` and line breaks inside cells would end a cell or a row, so they are escaped."""
    escape = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    cells = table.rename(columns=escape).map(escape)
    return cells.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)    # keep our number formats


def _header_lines(report: Report) -> list[str]:
    return [f"Results: {report.source}",
            (f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; bootstrap seed {report.seed}, {report.reps} "
             f"resamples, {report.confidence:.0%} intervals.")]


def to_markdown(report: Report, figures: dict[str, str]) -> str:
    """``figures``: figure key -> relative path of its PNG."""
    lines = ["# qbench report", "", *(f"{line}  " for line in _header_lines(report)), ""]
    if report.notes:
        lines += ["**Notes**", "", *(f"- {n}" for n in report.notes), ""]
    for s in sections(report):
        has_table = s.table is not None and not s.table.empty
        if not has_table and (s.figure is None or s.figure not in figures):
            continue
        lines += [f"## {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        if has_table:
            lines += [_markdown_table(s.table), ""]
        if s.figure in figures:
            lines += [f"![{s.title}]({figures[s.figure]})", ""]
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td { white-space: nowrap; }                    /* an interval or a task id on one line, */
td:last-child { white-space: normal; min-width: 12em; }   /* long text last (references) */
.wide { overflow-x: auto; }                    /* a table wider than the page scrolls */
th { background: #f0f3f7; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; }
.notes { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 1em; }
"""


def _html_table(table: pd.DataFrame) -> str:
    return (table.map(str).style.hide(axis="index").format(escape="html")
            .format_index(escape="html", axis=1).to_html(exclude_styles=True))


def to_html(report: Report, figures: dict[str, bytes]) -> str:
    """``figures``: figure key -> PNG bytes, embedded so that the page is one self-contained file."""
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'><title>qbench report</title>",
             f"<style>{STYLE}</style></head><body>", "<h1>qbench report</h1>",
             *(f"<p>{html.escape(line)}</p>" for line in _header_lines(report))]
    if report.notes:
        parts.append("<div class='notes'><strong>Notes</strong><ul>"
                     + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul></div>")
    for s in sections(report):
        has_table = s.table is not None and not s.table.empty
        if not has_table and (s.figure is None or s.figure not in figures):
            continue
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        if has_table:
            parts.append(f"<div class='wide'>{_html_table(s.table)}</div>")
        if s.figure in figures:
            data = base64.b64encode(figures[s.figure]).decode()
            parts.append(f"<img alt='{html.escape(s.title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


# After pandas' escape="latex" (& % $ # _ { } ~ ^ \\): characters that pdflatex cannot set from UTF-8 input, or
# that its default OT1 font encoding sets as other glyphs (< > | print as ¡ ¿ —).
_LATEX_TEXT = str.maketrans({"±": r"$\pm$", "–": "--", "−": "-", "τ": r"$\tau$", "<": r"\textless{}",
                             ">": r"\textgreater{}", "|": r"\textbar{}"})


def _latex_text(escaped: str) -> str:
    return escaped.replace(">=", r"$\geq$").translate(_LATEX_TEXT)


def _latex_table(title: str, table: pd.DataFrame) -> str:
    """A booktabs table (\\toprule, \\midrule, \\bottomrule), left-aligned columns, in a small font."""
    styler = (table.map(str).style.hide(axis="index").format(_latex_text, escape="latex")
              .format_index(_latex_text, escape="latex", axis=1))
    latex = styler.to_latex(hrules=True, position="ht", position_float="centering",   # text columns: "l"
                            caption=_latex_text(title))     # titles are our own plain words: nothing to escape
    return latex.replace("\\centering\n", "\\centering\n\\small\n", 1).rstrip("\n")


def to_latex(report: Report) -> str:
    """One booktabs table per section (needs \\usepackage{booktabs})."""
    out = ["% qbench report tables; needs \\usepackage{booktabs}", *(f"% {line}" for line in _header_lines(report))]
    out += ["\n" + _latex_table(s.title, s.table) for s in sections(report)
            if s.table is not None and not s.table.empty]
    return "\n".join(out) + "\n"


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def parse_formats(text: str) -> tuple[str, ...]:
    from qbench.config import ConfigError

    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise ConfigError(f"unknown report format '{','.join(bad) or text}'; valid formats: {', '.join(FORMATS)} "
                          "(comma-separated)")
    return chosen


def write_report(report: Report, out: str | Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write the chosen formats under ``out``; return the paths written."""
    out = Path(out)
    written: list[Path] = []
    pngs: dict[str, bytes] = {}
    if "md" in formats or "html" in formats:
        pngs = {name: _png(fig) for name, fig in report.figures().items()}
    if "md" in formats:
        rel = {}
        for name, data in pngs.items():
            path = out / "figures" / f"{name}.png"
            atomic_write_bytes(path, data)
            written.append(path)
            rel[name] = f"figures/{name}.png"
        atomic_write_text(out / "report.md", to_markdown(report, rel))
        written.append(out / "report.md")
    if "html" in formats:
        atomic_write_text(out / "report.html", to_html(report, pngs))
        written.append(out / "report.html")
    if "tex" in formats:
        atomic_write_text(out / "tables.tex", to_latex(report))
        written.append(out / "tables.tex")
    if "csv" in formats:
        for name, table in report.tables.items():
            path = out / "csv" / f"{name}.csv"
            atomic_write_text(path, table.to_csv(index=False))
            written.append(path)
    return written
