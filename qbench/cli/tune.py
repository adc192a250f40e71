"""qbench tune: equal tuning budgets per variant (issue 29). The tuning file is validated whole before anything
is written; the studies, trials, tuned settings and summary go under <results>/tune/<name>/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qbench.cli.common import _check_output_dir
from qbench.config import ConfigError


def cmd_tune(args: argparse.Namespace) -> int:
    from qbench.loggers import parse_loggers
    from qbench.runner.backends import default_workers
    from qbench.runner.tune import print_plan, require_optuna, run_tuning, tune_folder
    from qbench.tuning import load_tune_file

    log = parse_loggers(args.log)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {args.workers}")
    workers = args.workers or default_workers()
    results = Path(args.results)
    spec = load_tune_file(args.tunefile)
    require_optuna()
    if args.dry_run:
        print_plan(spec, results, workers)
        return 0
    folder = tune_folder(results, spec.name)
    _check_output_dir(folder, "results folder")
    outcome = run_tuning(spec, results, workers, command=sys.argv, log=log)
    for row in outcome.rows:
        best = f"best {row['best_value']:.6g} (trial {row['best_trial']})" if row["tuned_file"] else "no tuned file"
        print(f"{row['task']} {row['variant']}: {row['complete']} complete, {row['pruned']} pruned, "
              f"{row['failed']} failed; {best}", flush=True)
    for problem in outcome.problems:
        print(f"qbench tune: {problem}", file=sys.stderr, flush=True)
    print(f"tuned settings in {folder / 'tuned'}; summary in {folder / 'summary.md'}", flush=True)
    return 1 if outcome.problems else 0
