"""Write the README's headline table from committed results (issue 28): the rows between the markers
<!-- headline:start --> and <!-- headline:end --> are recomputed from RESULTS (default: the committed sanity run)
with the report's own statistics (bootstrap seed 0, 2000 resamples, 95% intervals), so the front page never shows a
number the committed rows do not give. tests/test_headline.py recomputes it and compares cell by cell.

Usage: python benchmarks/headline.py [RESULTS] [--check]   (--check: exit 1 if README's table differs)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DEFAULT_RESULTS = "results/benchmarks/issue25_sanity/sanity"
START, END = "<!-- headline:start -->", "<!-- headline:end -->"


def headline(results: str | Path = DEFAULT_RESULTS) -> str:
    from qbench.analysis.headline import report_headline
    from qbench.analysis.report import build_report

    return report_headline(build_report(REPO / results if not Path(results).is_absolute() else results,
                                        seed=0, reps=2000, confidence=0.95))


def readme_headline(text: str) -> str:
    """The table between the markers of README's text."""
    if START not in text or END not in text:
        raise ValueError(f"README.md has no {START} ... {END} block")
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="?", default=DEFAULT_RESULTS)
    p.add_argument("--check", action="store_true", help="compare with README's table instead of writing it")
    args = p.parse_args(argv)
    table = headline(args.results)
    text = README.read_text()
    if args.check:
        same = readme_headline(text) == table
        print("README's headline table matches the results" if same else "README's headline table differs")
        return 0 if same else 1
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    README.write_text(f"{before}{START}\n{table}{END}{after}")
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
