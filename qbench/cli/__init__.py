"""The qbench command line: parse, validate, hand off. User mistakes end in one line and exit code 2.

Exit codes: 0 success, 1 a job failed (or a sanity check failed), 2 a user mistake (nothing was written), 130
interrupted (the message says the command that resumes), 141 the reader of the output went away (a closed pipe).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import NoReturn

from qbench.cli.listing import cmd_list
from qbench.cli.report import cmd_report
from qbench.cli.run import cmd_run, cmd_sanity
from qbench.cli.train import cmd_train
from qbench.cli.tune import cmd_tune
from qbench.config import ConfigError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141   # 128 + SIGPIPE, what a shell reports for a program killed by a closed pipe


_LOG_HELP = ("also stream every seed's evaluation and diagnostics rows, and its resolved config, to tensorboard "
             "(event files in each run directory's tensorboard/) or wandb (offline unless WANDB_MODE is set, in "
             "its wandb/); both: tensorboard,wandb. Off by default; the CSVs are the same either way")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the problem, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"qbench: error: {message} (see '{self.prog} --help')\n")


def version_line() -> str:
    """qbench's installed version, and the git commit of this checkout when it is one."""
    from qbench.runner.worker import qbench_version
    from qbench.store import git_commit

    commit = git_commit()
    return f"qbench {qbench_version()}" + (f" (git {commit})" if commit != "unknown" else "")


class _VersionAction(argparse.Action):
    """--version, computed only when asked (it runs git)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_line())
        parser.exit(0)



def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=None,
                   help="jobs at once (default: the CPUs available; one torch thread each)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local worker processes (default) or a Ray cluster (pip install 'qbench[ray]')")
    p.add_argument("--ray-address", default=None, help="address of a running Ray cluster (default: start one here)")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    p.add_argument("--only", action="append", metavar="KEY=VALUE",
                   help="run only jobs whose variant, task or seed matches (repeatable; VALUE may be a,b)")
    p.add_argument("--first-seed", type=int, default=0, metavar="S",
                   help="seeds S, S+1, ... instead of 0, 1, ... (the same count): a rerun on seeds never seen")
    p.add_argument("--seed-batch", default=None, metavar="K",
                   help="seeds of one (variant, task, settings) that train together in one worker, at most K a "
                        "batch (default: all of them, split so that every worker has a batch)")
    p.add_argument("--log", default=None, metavar="LOGGER", help=_LOG_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="qbench", description="Benchmark Q-learning variants on Gymnasium tasks.")
    parser.add_argument("--version", action=_VersionAction, help="print qbench's version (and git commit) and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p_list = sub.add_parser("list", help="list variants, tasks or settings")
    p_list.add_argument("what", choices=("variants", "tasks", "settings", "suites"))
    p_list.set_defaults(func=cmd_list)

    p_train = sub.add_parser("train", help="train one (variant, task, seed) job, or several seeds together "
                             "(--seeds), and write its run directory; the same command again resumes an "
                             "interrupted run")
    p_train.add_argument("variant", help="a variant name (qbench list variants)")
    p_train.add_argument("task", help="a task name (qbench list tasks), a Gymnasium id or module:Class")
    which_seeds = p_train.add_mutually_exclusive_group()
    which_seeds.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    which_seeds.add_argument("--seeds", default=None, metavar="LIST",
                             help="train several seeds together in one process, one run directory each "
                                  "(DIR/seed<k> with --out DIR): 3, 0-7, 0,2,5 or 0-3,8")
    p_train.add_argument("--steps", type=int, default=None, help="env steps of training (default: the task's)")
    p_train.add_argument("--out", default=None, metavar="DIR",
                         help="run directory (default results/runs/train/...); with --seeds, the folder that "
                              "holds one run directory per seed, DIR/seed<k>")
    p_train.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="override a setting (repeatable; qbench list settings)")
    p_train.add_argument("--log", default=None, metavar="LOGGER", help=_LOG_HELP)
    p_train.add_argument("--dry-run", action="store_true",
                         help="print every resolved setting and where it came from; write nothing")
    p_train.set_defaults(func=cmd_train)

    p_run = sub.add_parser("run", help="run every (variant, task, seed) job of a suite; complete jobs are skipped")
    p_run.add_argument("suite", help="a suite name (qbench list suites) or a path to a suite .toml file")
    _add_run_options(p_run)
    p_run.add_argument("--seeds", type=int, default=None, help="seeds 0..K-1 instead of the suite's")
    p_run.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a setting for every job (repeatable; applied after the suite file)")
    p_run.add_argument("--dry-run", action="store_true", help="list the jobs and their state; write nothing")
    p_run.set_defaults(func=cmd_run)

    p_sanity = sub.add_parser("sanity", help="run the sanity suite and judge every variant by its thresholds")
    _add_run_options(p_sanity)
    p_sanity.add_argument("--dry-run", action="store_true", help="list the jobs and their state; write nothing")
    p_sanity.set_defaults(func=cmd_sanity)

    p_tune = sub.add_parser("tune", help="tune every (variant, task) of a tuning file with the same budget of "
                            "trials (Optuna, needs pip install 'qbench[tune]'); a killed tune resumes")
    p_tune.add_argument("tunefile", help="a tuning file (.toml): suite or tasks and variants, space, trials, "
                        "tuning seeds, objective, sampler seed, pruning")
    p_tune.add_argument("--results", default="results", help="results folder (default results/); the studies "
                        "go to RESULTS/tune/<suite>/")
    p_tune.add_argument("--workers", type=int, default=None,
                        help="trials at once (default: the CPUs available; 1 runs them in this process)")
    p_tune.add_argument("--log", default=None, metavar="LOGGER", help=_LOG_HELP)
    p_tune.add_argument("--dry-run", action="store_true", help="print the plan (pairs, trials, seeds, space); "
                        "write nothing")
    p_tune.set_defaults(func=cmd_tune)

    p_report = sub.add_parser("report", help="tables, figures and statistics of a results folder "
                              "(--reference REFDIR: beside a reference's runs)")
    p_report.add_argument("results", help="a results folder (e.g. results/sanity); every run below it is read")
    p_report.add_argument("--reference", default=None, metavar="REFDIR",
                          help="a reference results folder (e.g. results/reference) to put beside RESULTS in every "
                               "table and figure, on the tasks RESULTS ran: variants are named 'v (theirs)' and "
                               "'v (reference)', and a table gives P(theirs > reference) per task and variant")
    p_report.add_argument("--out", default=None, help="output folder (default RESULTS/report)")
    p_report.add_argument("--formats", default="md,html,tex,csv",
                          help="comma-separated: md, html, tex, csv (default all)")
    p_report.add_argument("--suite", default=None,
                          help="take random/reference scores and thresholds from this suite (name or .toml) "
                               "instead of the suite.json records in the results")
    p_report.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p_report.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p_report.add_argument("--confidence", type=float, default=0.95, help="interval level (default 0.95)")
    p_report.set_defaults(func=cmd_report)
    return parser


RESUMABLE = ("run", "sanity", "train", "tune")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (qbench list variants | head -3): stop quietly. Python flushes stdout at exit,
        # which would fail again; point stdout at devnull so that it cannot.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError as exc:   # the machine's limit, not a bug: what ran so far is checkpointed
        what = str(exc).splitlines()[0] if str(exc) else "an allocation failed"
        print(f"qbench: out of memory: {what}; a smaller buffer_size, or fewer seeds in one process, may fit",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        again = shlex.join(["qbench", *argv])
        how = (f"; run the same command again to resume: {again}" if args.command in RESUMABLE else "")
        print(f"qbench: interrupted{how}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
