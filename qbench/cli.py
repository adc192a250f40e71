"""The qbench command line: parse, validate, hand off. User mistakes end in one line and exit code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from qbench.config import COMPONENT_KEYS, SETTINGS, VARIANTS, Config, ConfigError, parse_assignment

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the problem, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"qbench: error: {message} (see '{self.prog} --help')\n")


def _console():
    from rich.console import Console
    return Console()


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from qbench.envs.tasks import TASKS
    from qbench.jobs import HEAD_ACTION_KIND

    console = _console()
    if args.what == "variants":
        defaults = Config()
        table = Table(title="variants (settings that differ from the engine defaults; see 'qbench list settings')")
        for col in ("variant", "actions", "components", "description"):
            table.add_column(col)
        for name, v in VARIANTS.items():
            settings = {**defaults.to_dict(), **v.settings}
            comps = ", ".join(f"{k}={settings[k]}" for k in COMPONENT_KEYS
                              if k in v.settings or k in ("target", "n_step", "loss", "target_update"))
            table.add_row(name, HEAD_ACTION_KIND[settings["q_head"]], comps, v.description)
        console.print(table)
    elif args.what == "tasks":
        table = Table(title="known tasks (any registered Gymnasium id or module:Class also works)")
        for col in ("task", "env id", "default env steps", "extra", "description"):
            table.add_column(col)
        for t in TASKS.values():
            steps = t.settings.get("total_env_steps", Config().total_env_steps)
            table.add_row(t.name, t.env_id, f"{steps:,}", t.extra or "", t.description)
        console.print(table)
    else:
        table = Table(title="settings (--set key=value; values are read as TOML)")
        for col in ("setting", "default", "choices / bounds", "meaning"):
            table.add_column(col)
        defaults = Config().to_dict()
        for name, f in SETTINGS.items():
            m = f.metadata
            bounds = ", ".join(m["choices"]) if m["choices"] else " ".join(
                s for s in (f">{'' if m['exclusive_minimum'] else '='} {m['minimum']}" if m["minimum"] is not None
                            else "", f"<= {m['maximum']}" if m["maximum"] is not None else "") if s)
            table.add_row(name, str(defaults[name]), bounds, m["doc"])
        console.print(table)
    return 0


def _default_run_path(job) -> Path:
    return Path("results") / "runs" / "train" / job.task.name / job.variant / f"seed{job.seed}-{job.hash}"


def cmd_train(args: argparse.Namespace) -> int:
    from qbench.engine import DivergedError
    from qbench.jobs import build_job
    from qbench.store import RunDir

    overrides: dict[str, Any] = {}
    for text in args.set or []:
        key, value = parse_assignment(text)
        overrides[key] = value
    cli_layer = {"total_env_steps": args.steps} if args.steps is not None else {}
    job = build_job(args.variant, args.task, args.seed, overrides, cli_layer)
    path = Path(args.out) if args.out else _default_run_path(job)
    if path.exists() and any(path.iterdir()):
        raise ConfigError(f"run directory '{path}' already holds files; choose another --out or remove it")
    run = RunDir(path)
    console = _console()
    total = job.config.total_env_steps
    console.print(f"[bold]{job.variant}[/] on [bold]{job.task.name}[/], seed {job.seed}, {total:,} env steps "
                  f"-> {path}")
    try:
        summary = _train_with_progress(job, run, total, console)
    except DivergedError as exc:
        print(f"qbench: run diverged: {exc} (recorded in {path / 'error.json'})", file=sys.stderr)
        return 1
    console.print(f"final return {summary['final_return_mean']:.1f} +- {summary['final_return_std']:.1f} "
                  f"at {summary['env_steps']:,} env steps; {summary['wall_s']:.1f} s, "
                  f"{summary['steps_per_s']:.0f} steps/s")
    return 0


def _train_with_progress(job, run, total: int, console) -> dict[str, Any]:
    from qbench.engine import run_job

    if not console.is_terminal:
        def plain(env_steps: int, info: dict[str, Any]) -> None:
            if "evaluation" in info:
                e = info["evaluation"]
                print(f"env_steps={env_steps} return_mean={e['return_mean']:.2f} return_std={e['return_std']:.2f} "
                      f"wall_s={e['wall_s']:.1f}", flush=True)
        return run_job(job, run, sys.argv, plain)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} steps"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        handle = bar.add_task("training", total=total, status="")
        last_eval = ["-"]

        def update(env_steps: int, info: dict[str, Any]) -> None:
            if "evaluation" in info:
                last_eval[0] = f"{info['evaluation']['return_mean']:.1f}"
            status = f"eval {last_eval[0]}"
            if "diagnostics" in info:
                status += f" | {info['diagnostics']['steps_per_s']:.0f} steps/s"
            bar.update(handle, completed=env_steps, status=status)
        return run_job(job, run, sys.argv, update)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="qbench", description="Benchmark Q-learning variants on Gymnasium tasks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p_list = sub.add_parser("list", help="list variants, tasks or settings")
    p_list.add_argument("what", choices=("variants", "tasks", "settings"))
    p_list.set_defaults(func=cmd_list)

    p_train = sub.add_parser("train", help="train one (variant, task, seed) job and write its run directory")
    p_train.add_argument("variant", help="a variant name (qbench list variants)")
    p_train.add_argument("task", help="a task name (qbench list tasks), a Gymnasium id or module:Class")
    p_train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p_train.add_argument("--steps", type=int, default=None, help="env steps of training (default: the task's)")
    p_train.add_argument("--out", default=None, help="run directory (default results/runs/train/...)")
    p_train.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="override a setting (repeatable; qbench list settings)")
    p_train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("qbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
