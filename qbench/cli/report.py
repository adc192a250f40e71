"""qbench report: tables, figures and statistics of a results folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from qbench.cli.common import _check_output_dir
from qbench.config import ConfigError


def cmd_report(args: argparse.Namespace) -> int:
    from qbench.analysis.render import parse_formats
    from qbench.loading import results_folder

    formats = parse_formats(args.formats)
    results = results_folder(args.results)   # before anything is written: a mistyped path stops here
    reference = None
    if args.reference is not None:
        try:
            reference = results_folder(args.reference)
        except ConfigError as exc:
            raise ConfigError(f"--reference: {exc}") from None
    out = Path(args.out) if args.out else results / "report"
    for folder in (out, out / "figures", out / "csv"):
        _check_output_dir(folder, "report folder")
    if args.reps < 1:
        raise ConfigError(f"--reps must be a positive number of bootstrap resamples, got {args.reps}")
    if not 0 < args.confidence < 1:
        raise ConfigError(f"--confidence must lie between 0 and 1, got {args.confidence}")
    try:
        import jinja2  # noqa: F401   (pandas' Styler: HTML and LaTeX tables)
        import matplotlib  # noqa: F401
        import seaborn  # noqa: F401
        import tabulate  # noqa: F401  (DataFrame.to_markdown)
    except ImportError:
        raise ConfigError("qbench report draws with seaborn and matplotlib and renders tables with tabulate and "
                          "jinja2: pip install 'qbench[report]'") from None
    from qbench.analysis.render import write_report
    from qbench.analysis.report import NoResultsError, build_report

    try:
        report = build_report(results, suite=args.suite, seed=args.seed, reps=args.reps,
                              confidence=args.confidence, reference=reference)
    except NoResultsError as exc:
        raise ConfigError(str(exc)) from None
    written = write_report(report, out, formats)
    for note in report.notes:
        print(f"note: {note}")
    runs = report.tables["finals"]
    print(f"report of {len(runs)} runs written to {out}: "
          + ", ".join(sorted({p.relative_to(out).parts[0] + ("/" if p.parent != out else "") for p in written})),
          flush=True)
    return 0


