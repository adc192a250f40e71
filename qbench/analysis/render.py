"""Write a ``Report`` to files: Markdown (with PNG figures beside it), one self-contained HTML page (figures
embedded), LaTeX tables (booktabs) and CSV tables of plain numbers. Every file is written atomically.

The writers know no study: they walk the report's sections (``Report.sections``: each study's, by place, with the
title, text, display table and figure each declares; ``qbench.analysis.study``), and write every table as CSV.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from qbench.analysis.report import Report
from qbench.config import ConfigError
from qbench.store import atomic_write_bytes, atomic_write_text

FORMATS = ("md", "html", "tex", "csv")


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
    for s in report.sections():
        has_table = s.table is not None and not s.table.empty
        if not has_table and (s.figure is None or s.figure not in figures) and not s.heading:
            continue
        lines += [f"{'#' * s.level} {s.title}", ""]
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
    for s in report.sections():
        has_table = s.table is not None and not s.table.empty
        if not has_table and (s.figure is None or s.figure not in figures) and not s.heading:
            continue
        parts.append(f"<h{s.level}>{html.escape(s.title)}</h{s.level}>")
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
                             ">": r"\textgreater{}", "|": r"\textbar{}", "π": r"$\pi$",
                             "ε": r"$\varepsilon$", "λ": r"$\lambda$", "Δ": r"$\Delta$", "→": r"$\to$"})


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
    out += ["\n" + _latex_table(s.title, s.table) for s in report.sections()
            if s.table is not None and not s.table.empty]
    return "\n".join(out) + "\n"


def _png(fig) -> bytes:
    # Imported here: matplotlib is the optional ``report`` extra, and only figures need it.
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def parse_formats(text: str) -> tuple[str, ...]:
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
