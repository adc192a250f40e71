"""qbench report's tables as pandas renders them: LaTeX (booktabs, escaped), Markdown (a pipe table that parses
back to the cells), HTML (one row per row, escaped). The writers are fed one chosen table by a study that shows it."""

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pandas as pd
import pytest

from qbench.analysis.render import to_html, to_latex, to_markdown
from qbench.analysis.report import Report
from qbench.analysis.studies.core import per_task_display
from qbench.analysis.study import Section, Study

TABLE = pd.DataFrame({
    "variant": ["nstep_dqn", "dqn <b>&</b>", "a|b", "cost $5 #1 {x} ~ ^ \\ end"],
    "IQM [95% CI]": ["0.500 [0.250, 0.750]", "1,234.5 [1,000.0, 2,000.0]", "–", "−3.0 [−4.0, −2.0]"],
    "threshold": [">= 475", "50%", "< 0", "τ ± 1"],
    "seeds": [5, 4, 3, 2],                                   # ints, as in the Runs table
})
ROWS = [["nstep_dqn", "0.500 [0.250, 0.750]", ">= 475", "5"],
        ["dqn <b>&</b>", "1,234.5 [1,000.0, 2,000.0]", "50%", "4"],
        ["a|b", "–", "< 0", "3"],
        ["cost $5 #1 {x} ~ ^ \\ end", "−3.0 [−4.0, −2.0]", "τ ± 1", "2"]]


@pytest.fixture
def one_table():
    shows = Study("one", (), lambda scored, earlier: ({}, []),
                  sections={10: lambda report: [Section("Final return per task", "Some text.", TABLE)]})
    return Report("results/x", {}, [], {}, seed=0, reps=10, confidence=0.95, studies=(shows,))


def test_the_table_cells_are_the_strings_the_display_tables_hold():
    assert TABLE.map(str).values.tolist() == ROWS


def test_latex_is_a_booktabs_table_with_every_special_character_escaped(one_table):
    tex = to_latex(one_table)
    body = tex[tex.index("\\begin{table}"):]
    lines = body.splitlines()
    rules = [lines.index(rule) for rule in ("\\toprule", "\\midrule", "\\bottomrule")]
    assert rules == sorted(rules) and rules[1] == rules[0] + 2 and rules[2] == rules[1] + 1 + len(TABLE)
    assert "\\begin{tabular}{llll}" in body and "\\centering" in body and "\\small" in body
    header, rows = lines[rules[0] + 1], lines[rules[1] + 1:rules[2]]
    assert header == "variant & IQM [95\\% CI] & threshold & seeds \\\\"
    for line in [header, *rows]:                   # exactly three column separators: no '&' of a cell is bare
        assert len(re.findall(r"(?<!\\)&", line)) == 3 and line.endswith(" \\\\"), line
    assert rows[0] == "nstep\\_dqn & 0.500 [0.250, 0.750] & $\\geq$ 475 & 5 \\\\"
    assert rows[1] == "dqn \\textless{}b\\textgreater{}\\&\\textless{}/b\\textgreater{} & " \
                      "1,234.5 [1,000.0, 2,000.0] & 50\\% & 4 \\\\"
    assert rows[2] == "a\\textbar{}b & -- & \\textless{} 0 & 3 \\\\"
    assert rows[3].startswith("cost \\$5 \\#1 \\{x\\} ") and " & -3.0 [-4.0, -2.0] & $\\tau$ $\\pm$ 1 & 2" in rows[3]
    assert "\\textasciitilde" in rows[3] and "\\textasciicircum" in rows[3] and "\\textbackslash" in rows[3]
    assert "\\caption{Final return per task}" in body
    # no bare % (it would comment out the rest of a line) or _ (math mode only), and the braces pair up
    assert not re.search(r"(?<!\\)[%_]", body)
    plain = body.replace("\\{", "").replace("\\}", "")
    assert plain.count("{") == plain.count("}")


def _pipe_cells(line: str) -> list[str]:
    """The cells of one pipe-table line, split at the bars that are not escaped, unescaped and stripped."""
    assert line.startswith("|") and line.endswith("|"), line
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line[1:-1])]


def test_markdown_pipe_table_parses_back_to_the_cells_and_lines_up(one_table):
    md = to_markdown(one_table, {})
    lines = md[md.index("Some text.") + len("Some text."):].strip().splitlines()
    assert _pipe_cells(lines[0]) == list(TABLE.columns)
    assert all(re.fullmatch(r":?-+:?", c) for c in _pipe_cells(lines[1]))
    assert [_pipe_cells(line) for line in lines[2:]] == ROWS
    assert len({len(line) for line in lines}) == 1             # columns line up in the source, as tabulate does


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def test_html_table_has_a_header_and_one_row_per_row_and_escapes_markup(one_table):
    page = to_html(one_table, {})
    table = page[page.index("<table"):page.index("</table>") + len("</table>")]
    assert len(re.findall(r"<tr[\s>]", table)) == 1 + len(TABLE)
    assert len(re.findall(r"<th[\s>]", table)) == TABLE.shape[1]
    assert "<b>" not in page and "&lt;b&gt;&amp;&lt;/b&gt;" in table
    parser = _Cells()
    parser.feed(table)
    assert parser.rows == [list(TABLE.columns), *ROWS]
    assert "<style>" in page and "class=" not in table and "id=" not in table   # the page's own style applies


def test_a_report_folder_renders_the_same_cells_in_every_format(tmp_path):
    from qbench.analysis.report import build_report
    from qbench.analysis.synthetic import write_run, write_suite_record

    write_suite_record(tmp_path, "toy", {"Alpha-v1": (0.0, 100.0)}, {"Alpha-v1": {"nstep_dqn": 25.0}})
    for seed, final in enumerate([10.0, 40.0, 60.0]):
        write_run(tmp_path, "toy", "Alpha-v1", "nstep_dqn", seed, [500, 1000], [final / 2, final])
    report = build_report(tmp_path, reps=50)
    md, page, tex = to_markdown(report, {}), to_html(report, {}), to_latex(report)
    shown = [s for s in report.sections() if s.table is not None and not s.table.empty]
    assert tex.count("\\toprule") == tex.count("\\midrule") == tex.count("\\bottomrule") == len(shown)
    assert page.count("<table") == len(shown) and "nstep_dqn" not in tex and "nstep\\_dqn" in tex
    md_rows = [_pipe_cells(line) for line in md.splitlines() if line.startswith("|")]
    parser = _Cells()
    parser.feed(page)
    for row in per_task_display(report).map(str).values.tolist():
        assert row in md_rows and row in parser.rows, row


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX install (pdflatex)")
def test_the_latex_tables_compile(one_table, tmp_path):
    (tmp_path / "tables.tex").write_text(to_latex(one_table))
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\\usepackage{booktabs}\\begin{document}"
                                      "\\input{tables}\\end{document}\n")
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and "Missing character" not in r.stdout, r.stdout[-3000:]


def test_without_tabulate_the_cli_names_the_extra_in_one_line_and_writes_nothing(tmp_path, monkeypatch):
    from qbench.analysis.synthetic import write_run
    from tests.harness import run_qbench

    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "tabulate.py").write_text("raise ImportError('hidden for a test')\n")
    monkeypatch.setenv("PYTHONPATH", str(hidden))                 # after this checkout, before site-packages
    write_run(tmp_path / "results", "toy", "Alpha-v1", "dqn", 0, [500, 1000], [1.0, 2.0])
    r = run_qbench("report", tmp_path / "results", "--out", tmp_path / "out")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "tabulate" in r.stderr and "pip install 'qbench[report]'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
