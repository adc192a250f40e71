"""qbench run and qbench sanity: a suite's jobs, run in parallel (locally or on Ray), complete jobs skipped."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qbench.cli.common import _check_output_dir, _console
from qbench.config import ConfigError


def _check_run_options(args: argparse.Namespace) -> None:
    """The options of run and sanity that need no suite: checked first, dry run or not."""
    from qbench.loggers import parse_loggers

    args.log = parse_loggers(args.log)
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {args.workers}")
    args.seed_batch = _positive_int_or_none(args.seed_batch, "--seed-batch")
    if args.ray_address and args.backend != "ray":
        raise ConfigError("--ray-address needs --backend ray (the local backend runs on this machine only)")
    _check_output_dir(Path(args.results), "results folder")


def _positive_int_or_none(text: str | int | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{option} must be a positive integer, got {text}")
    return value


def _plan(suite_arg: str, args: argparse.Namespace):
    """Load, validate and expand a suite: every user mistake surfaces here, before anything is written."""
    from qbench.runner import expand, parse_only, parse_overrides
    from qbench.runner.plan import check_replay_allocates
    from qbench.suites import load_suite

    _check_run_options(args)
    suite = load_suite(suite_arg)
    _check_output_dir(Path(args.results) / suite.name, "results folder")
    overrides = parse_overrides(getattr(args, "set", None))
    jobs = expand(suite, getattr(args, "seeds", None), parse_only(args.only), overrides, args.first_seed)
    if not jobs:
        raise ConfigError(f"no job of suite '{suite.name}' matches --only {' '.join(args.only or [])}")
    _check_run_paths(Path(args.results), suite.name, jobs)
    for job in jobs:
        check_replay_allocates(job, 1)   # a batch holds as many seeds as fit (memory_cap), and at least one
    return suite, jobs


def _check_run_paths(results: Path, suite_name: str, jobs) -> None:
    """Every job's run directory can be a folder: refused when it, or a folder between it and the suite's
    results folder, is a file (a worker would die on it, and the runner with it)."""
    from qbench.runner import run_path

    top = results / suite_name
    for job in jobs:
        path = run_path(results, suite_name, job)
        for place in (path, *path.parents):
            if place == top or top not in place.parents:
                break
            if place.exists() and not place.is_dir():
                raise ConfigError(f"'{place}' is a file where the run directory of {job.task.name} {job.variant} "
                                  f"seed {job.seed} must go: move it away, then run again")


def _print_dry_run(suite, jobs, args: argparse.Namespace, console) -> int:
    from qbench.runner import job_state, run_path
    from qbench.runner.progress import print_table

    rows = [[j.task.name, j.variant, str(j.seed), j.hash, f"{j.config.total_env_steps:,}",
             job_state(run_path(Path(args.results), suite.name, j))] for j in jobs]
    print_table(console, f"{suite.name}: {len(jobs)} jobs (dry run: nothing is written)",
                ["task", "variant", "seed", "job hash", "env steps", "state"], rows)
    return 0


def _run_suite(suite, jobs, args: argparse.Namespace, console):
    """Run the jobs with progress on screen; print the summary; return (outcomes, wall_s)."""
    import time

    from qbench.runner import run_jobs
    from qbench.runner.backends import make_backend
    from qbench.runner.progress import (
        PlainReporter,
        RichReporter,
        error_line,
        job_label,
        print_table,
        summary_rows,
    )

    backend = make_backend(args.backend, args.workers, args.ray_address)
    describe = "Ray" if args.backend == "ray" else "local worker processes"
    title = f"qbench run {suite.name}"
    reporter = (RichReporter(console, title, describe) if console.is_terminal else PlainReporter(title, describe))
    from qbench.analysis.scoring import SUITE_RECORD, suite_record
    from qbench.store import atomic_write_json

    # What a later report needs to normalise and judge these results, kept with them.
    atomic_write_json(Path(args.results) / suite.name / SUITE_RECORD, suite_record(suite))
    started = time.perf_counter()
    outcomes = run_jobs(jobs, Path(args.results), suite.name, backend, reporter=reporter, command=sys.argv,
                        seed_batch=args.seed_batch, log=args.log)
    wall_s = time.perf_counter() - started
    print_table(console, f"{suite.name}: final greedy return over the complete seeds",
                ["task", "variant", "complete", "failed", "final return"], summary_rows(outcomes))
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        print(f"FAILED {job_label(o.job)}: {error_line(o.error)} ({o.path / 'error.json'})", flush=True)
    ran = sum(o.status == "done" for o in outcomes)
    was = sum(o.status == "complete" for o in outcomes)
    print(f"{suite.name}: {len(outcomes)} jobs: {ran} ran now, {was} already complete, {len(failed)} failed; "
          f"wall {wall_s:.1f} s; results in {Path(args.results) / suite.name}"
          + ("; run again to retry the failed jobs" if failed else ""), flush=True)
    return outcomes, wall_s


def cmd_run(args: argparse.Namespace) -> int:
    suite, jobs = _plan(args.suite, args)
    console = _console()
    if args.dry_run:
        return _print_dry_run(suite, jobs, args, console)
    outcomes, _ = _run_suite(suite, jobs, args, console)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def cmd_sanity(args: argparse.Namespace) -> int:
    from qbench.runner.progress import print_table
    from qbench.runner.sanity import judge

    suite, jobs = _plan("sanity", args)
    console = _console()
    if args.dry_run:
        return _print_dry_run(suite, jobs, args, console)
    outcomes, wall_s = _run_suite(suite, jobs, args, console)
    verdicts = judge(suite, outcomes)
    rows = []
    for v in verdicts:
        finals = " ".join(f"{f:.0f}" if f is not None else "failed" for _, f in v.finals)
        rule = f">= {v.threshold:g}" if v.threshold is not None else "-"
        count = f"{v.passing} of {len(v.finals)} (need {v.needed})" if v.threshold is not None else "-"
        rows.append([v.task, v.variant, rule, count, finals, v.verdict.upper()])
    rules = sorted({f"{suite.rule(v.task)[0]} of {suite.rule(v.task)[1]} on {v.task}" for v in verdicts
                    if v.threshold is not None})
    print_table(console, "sanity: a (variant, task) passes when k of its n seeds reach the threshold (final "
                f"greedy return): {'; '.join(rules) or 'no thresholds'}",
                ["task", "variant", "threshold", "seeds passing", "final return per seed", "verdict"], rows)
    failing = [v for v in verdicts if v.verdict == "fail"]
    incomplete = [v for v in verdicts if v.verdict == "incomplete"]
    job_failures = sum(o.status == "failed" for o in outcomes)
    decided = len(verdicts) - len(failing) - len(incomplete)
    print(f"sanity: {decided}/{len(verdicts)} pass or are reported only"
          f"{f', {len(failing)} FAIL' if failing else ''}"
          + (f", {len(incomplete)} incomplete (fewer seeds ran than the rule counts; run them all to judge)"
             if incomplete else "") + f"; wall {wall_s:.0f} s", flush=True)
    return 1 if failing or job_failures else 0


