"""The qbench command line: parse, validate, hand off. User mistakes end in one line and exit code 2.

Exit codes: 0 success, 1 a job failed (or a sanity check failed), 2 a user mistake (nothing was written), 130
interrupted (the message says the command that resumes), 141 the reader of the output went away (a closed pipe).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

from qbench.config import COMPONENT_KEYS, SETTINGS, VARIANTS, Config, ConfigError, parse_assignment

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141   # 128 + SIGPIPE, what a shell reports for a program killed by a closed pipe


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


def escape(text: str) -> str:
    """A name or path inside rich markup: its '[' is text, not a tag."""
    from rich.markup import escape as rich_escape
    return rich_escape(text)


def _console():
    from rich.console import Console
    console = Console()
    console.soft_wrap = not console.is_terminal   # in a pipe or a log, a long line stays one line
    return console


def _check_output_dir(path: Path, what: str) -> None:
    """A folder qbench will write into: refused, before anything is written, when it (or a folder above it) is a
    file, or when it cannot be created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} '{path}' is a file, not a folder; give a folder (it is created if missing)")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} '{path}' cannot be created: '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} '{path}' cannot be written: no write permission on '{existing}'")


def cmd_list(args: argparse.Namespace) -> int:
    from qbench.envs.tasks import TASKS
    from qbench.jobs import HEAD_ACTION_KIND
    from qbench.runner.progress import print_table

    console = _console()
    if args.what == "suites":
        return _list_suites(console)
    if args.what == "variants":
        defaults = Config()
        rows = []
        for name, v in VARIANTS.items():
            settings = {**defaults.to_dict(), **v.settings}
            comps = ", ".join(f"{k}={settings[k]}" for k in COMPONENT_KEYS
                              if k in v.settings or k in ("target", "n_step", "loss", "target_update"))
            rows.append([name, HEAD_ACTION_KIND[settings["q_head"]], comps, v.description])
        print_table(console, "variants (settings that differ from the engine defaults; see 'qbench list settings')",
                    ["variant", "actions", "components", "description"], rows)
    elif args.what == "tasks":
        rows = []
        for t in TASKS.values():
            steps = t.settings.get("total_env_steps", Config().total_env_steps)
            # one per line on a terminal; a pipe gets them on one line, comma-separated
            tuned = ",\n".join(f"{k}={v}" for k, v in t.settings.items() if k != "total_env_steps")
            rows.append([t.name, t.env_id, f"{steps:,}", t.extra or "", tuned, t.sources, t.description])
        print_table(console, "known tasks and their tuned settings (any registered Gymnasium id or module:Class "
                    "also works, with the engine defaults; 'qbench train VARIANT TASK --dry-run' shows a job's; "
                    "epsilon in the uniform form, the ecosystem's, unless a row says otherwise)",
                    ["task", "env id", "default env steps", "extra", "tuned settings", "sources", "description"],
                    rows)
    else:
        rows = []
        defaults = Config().to_dict()
        for name, f in SETTINGS.items():
            m = f.metadata
            bounds = ", ".join(m["choices"]) if m["choices"] else " ".join(
                s for s in (f">{'' if m['exclusive_minimum'] else '='} {m['minimum']}" if m["minimum"] is not None
                            else "", f"<= {m['maximum']}" if m["maximum"] is not None else "") if s)
            rows.append([name, str(defaults[name]), bounds, m["doc"]])
        print_table(console, "settings (--set key=value; values are read as TOML)",
                    ["setting", "default", "choices / bounds", "meaning"], rows)
    return 0


def _list_suites(console) -> int:
    from qbench.runner.progress import print_table
    from qbench.suites import USER_SUITES_DIR, find_suite, list_suites, load_suite

    rows = []
    for name in list_suites():
        path = find_suite(name)
        where = "./suites" if path.parent == USER_SUITES_DIR else "shipped"
        try:
            suite = load_suite(path)
        except ConfigError as exc:
            rows.append([name, where, "-", "-", "-", f"invalid: {exc}"])
            continue
        n_jobs = sum(len(e.variants) * (e.seeds or suite.seeds) for e in suite.entries)
        tasks = ", ".join(e.name for e in suite.entries)
        rows.append([name, where, str(suite.seeds), str(n_jobs), tasks, suite.description])
    print_table(console, "suites (qbench run SUITE; your own in ./suites/, found first; the shipped ones in "
                "qbench/data/suites/)", ["suite", "from", "seeds", "jobs", "tasks", "description"], rows)
    return 0


def _default_run_path(job) -> Path:
    task = job.task.name.replace("/", "_")   # ALE/Pong-v5 -> ALE_Pong-v5: one folder per task, as qbench run
    return Path("results") / "runs" / "train" / task / job.variant / f"seed{job.seed}-{job.hash}"


def _train_layers(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """qbench train's override layers, named as --dry-run shows them: --set, then --steps."""
    overrides: dict[str, Any] = {}
    for text in args.set or []:
        key, value = parse_assignment(text)
        overrides[key] = value
    return [("--set", overrides), ("--steps", {"total_env_steps": args.steps} if args.steps is not None else {})]


def _train_dir_state(path: Path, job) -> str:
    """What ``path`` holds for this job: 'new' (nothing, or only what a run killed before it wrote its config
    leaves), 'resume' (this very job, not complete), or 'complete'. Another job, or files that are not a qbench
    run, are refused: nothing already written is touched."""
    from qbench.config import config_hash
    from qbench.store import CONFIG, LOCK, SUMMARY

    if not path.exists():
        return "new"
    entries = [p for p in path.iterdir() if p.name != LOCK and not (p.name.startswith(".") and
                                                                    p.name.endswith(".tmp"))]
    if not entries:
        return "new"
    try:
        held = json.loads((path / CONFIG).read_text())
        held_hash = config_hash(held)
    except (OSError, ValueError, TypeError):
        raise ConfigError(f"run directory '{path}' already holds files that are not a qbench run; choose another "
                          "--out or remove it") from None
    if held_hash != job.hash:
        who = (f"{held.get('variant')} on {held.get('task')}, seed {held.get('seed')}"
               if isinstance(held, dict) else "another job")
        raise ConfigError(f"run directory '{path}' holds another job ({who}, job {held_hash}; this one is "
                          f"{job.hash}); choose another --out or remove it")
    return "complete" if (path / SUMMARY).exists() else "resume"


def _print_dry_run_train(job, path: Path, state: str, args: argparse.Namespace, console) -> None:
    from qbench.config import get_variant, resolve_with_sources
    from qbench.runner.progress import print_table

    _, sources = resolve_with_sources(get_variant(job.variant), job.task.settings, *_train_layers(args))
    values = job.config.to_dict()
    rows = [[name, json.dumps(values[name]) if not isinstance(values[name], str) else values[name],
             sources[name]] for name in values]
    what = {"new": "a new run", "resume": "an interrupted run of this job: it would resume",
            "complete": "this job, complete: nothing to do"}[state]
    print_table(console, f"{job.variant} on {job.task.name}, seed {job.seed}: job {job.hash} -> {path} ({what}; "
                "dry run: nothing is written)", ["setting", "value", "from"], rows)


def cmd_train(args: argparse.Namespace) -> int:
    from qbench.jobs import build_job
    from qbench.runner.plan import check_replay_allocates
    from qbench.runner.worker import clean_temporaries, job_lock
    from qbench.store import ERROR, SUMMARY, RunDir, read_json_or_empty
    from qbench.training.bookkeeping import DivergedError

    if args.seeds is not None:
        return _train_seeds(args)
    layers = _train_layers(args)
    job = build_job(args.variant, args.task, args.seed, *(layer for _, layer in layers))
    check_replay_allocates(job, 1)
    path = Path(args.out) if args.out else _default_run_path(job)
    _check_output_dir(path, "run directory")
    state = _train_dir_state(path, job)
    console = _console()
    if args.dry_run:
        _print_dry_run_train(job, path, state, args, console)
        return 0
    def say_complete() -> int:
        summary = read_json_or_empty(path / SUMMARY)
        console.print(f"{path} already holds this job, complete (remove it to train again): "
                      + _final_line(summary, job.task), highlight=False, markup=False)
        return 0

    if state == "complete":
        return say_complete()
    total = job.config.total_env_steps
    with job_lock(path) as held:
        if not held:
            raise ConfigError(f"another process is training this job in '{path}' (it holds {path / 'lock'})")
        state = _train_dir_state(path, job)   # again under the lock: another process may have just finished it
        if state == "complete":
            return say_complete()
        clean_temporaries(path)
        (path / ERROR).unlink(missing_ok=True)   # a retry: the old failure no longer describes this directory
        how = "resuming the interrupted run in" if state == "resume" else "->"
        console.print(f"[bold]{escape(job.variant)}[/] on [bold]{escape(job.task.name)}[/], seed {job.seed}, "
                      f"{total:,} env steps {how} {escape(str(path))}")
        try:
            summary = _train_with_progress(job, RunDir(path), total, console)
        except DivergedError as exc:
            print(f"qbench: run diverged: {exc} (recorded in {path / 'error.json'})", file=sys.stderr)
            return 1
    console.print(_final_line(summary, job.task), highlight=False, markup=False)
    return 0


def _seed_run_paths(jobs, out: str | None) -> list[Path]:
    """--seeds: DIR/seed<k> under --out DIR, else each job's default run directory."""
    if out is None:
        return [_default_run_path(job) for job in jobs]
    from qbench.store import CONFIG

    folder = Path(out)
    _check_output_dir(folder, "--out folder")
    if (folder / CONFIG).exists():
        raise ConfigError(f"'{folder}' is a run directory; with --seeds, --out names the folder that holds one run "
                          "directory per seed (DIR/seed<k>): choose another --out")
    return [folder / f"seed{job.seed}" for job in jobs]


def _train_seeds(args: argparse.Namespace) -> int:
    """qbench train --seeds: the seeds train together (training.rundir.run_batch), each into its own run directory; complete
    seeds are skipped, interrupted ones resume."""
    import contextlib
    import dataclasses

    from qbench.jobs import build_job
    from qbench.runner.plan import check_replay_allocates, parse_seed_list
    from qbench.runner.worker import clean_temporaries, job_lock
    from qbench.store import ERROR, SUMMARY, RunDir, read_json_or_empty
    from qbench.training.bookkeeping import DivergedError

    seeds = parse_seed_list(args.seeds)
    layers = _train_layers(args)
    first = build_job(args.variant, args.task, seeds[0], *(layer for _, layer in layers))
    check_replay_allocates(first, len(seeds))
    jobs = [dataclasses.replace(first, seed=seed) for seed in seeds]   # the same settings, one seed each
    paths = _seed_run_paths(jobs, args.out)
    for path in paths:
        _check_output_dir(path, "run directory")
    states = [_train_dir_state(path, job) for path, job in zip(paths, jobs, strict=True)]
    console = _console()
    if args.dry_run:
        _print_dry_run_seeds(jobs, paths, states, args, console)
        return 0
    for job, path, state in zip(jobs, paths, states, strict=True):
        if state == "complete":
            summary = read_json_or_empty(path / SUMMARY)
            console.print(f"seed {job.seed}: {path} already holds this job, complete (remove it to train again): "
                          + _final_line(summary), highlight=False, markup=False)
    todo = [i for i, state in enumerate(states) if state != "complete"]
    if not todo:
        return 0
    jobs, paths, states = [jobs[i] for i in todo], [paths[i] for i in todo], [states[i] for i in todo]
    total = first.config.total_env_steps
    with contextlib.ExitStack() as locks:
        for job, path in zip(jobs, paths, strict=True):
            if not locks.enter_context(job_lock(path)):
                raise ConfigError(f"another process is training seed {job.seed} of this job in '{path}' (it holds "
                                  f"{path / 'lock'})")
        # again under the locks: another process may have just finished a seed
        states = [_train_dir_state(path, job) for path, job in zip(paths, jobs, strict=True)]
        for job, path, state in zip(jobs, paths, states, strict=True):
            if state == "complete":
                console.print(f"seed {job.seed}: {path} was completed by another process meanwhile",
                              highlight=False, markup=False)
        todo = [i for i, state in enumerate(states) if state != "complete"]
        if not todo:
            return 0
        jobs, paths, states = [jobs[i] for i in todo], [paths[i] for i in todo], [states[i] for i in todo]
        for path in paths:
            clean_temporaries(path)
            (path / ERROR).unlink(missing_ok=True)   # a retry: the old failure no longer describes this directory
        console.print(f"[bold]{escape(first.variant)}[/] on [bold]{escape(first.task.name)}[/], {_seed_words(jobs)}"
                      f"{' together' if len(jobs) > 1 else ''}, {total:,} env steps each", highlight=False)
        for job, path, state in zip(jobs, paths, states, strict=True):
            how = "resuming the interrupted run in" if state == "resume" else "->"
            console.print(f"  seed {job.seed} {how} {path}", highlight=False, markup=False)
        results = _train_batch_with_progress(jobs, [RunDir(p) for p in paths], total, console)
    diverged = 0
    for job, path, result in zip(jobs, paths, results, strict=True):
        if isinstance(result, DivergedError):
            diverged += 1
            print(f"qbench: seed {job.seed} diverged: {result} (recorded in {path / 'error.json'})", file=sys.stderr,
                  flush=True)
        else:
            console.print(f"seed {job.seed}: " + _final_line(result), highlight=False, markup=False)
    if first.task.description:   # what the numbers mean, once
        console.print(f"({first.task.name}: {first.task.description})", highlight=False, markup=False)
    return 1 if diverged else 0


def _seed_words(jobs) -> str:
    return f"seed {jobs[0].seed}" if len(jobs) == 1 else f"{len(jobs)} seeds ({', '.join(str(j.seed) for j in jobs)})"


def _print_dry_run_seeds(jobs, paths: list[Path], states: list[str], args: argparse.Namespace, console) -> None:
    """One table of the settings (the seeds share them), then one row per seed: its job, directory and state."""
    from qbench.config import get_variant, resolve_with_sources
    from qbench.runner.progress import print_table

    first = jobs[0]
    _, sources = resolve_with_sources(get_variant(first.variant), first.task.settings, *_train_layers(args))
    values = first.config.to_dict()
    rows = [[name, json.dumps(values[name]) if not isinstance(values[name], str) else values[name],
             sources[name]] for name in values]
    print_table(console, f"{first.variant} on {first.task.name}, {_seed_words(jobs)}: the settings every seed "
                "shares (dry run: nothing is written)", ["setting", "value", "from"], rows)
    what = {"new": "new run", "resume": "interrupted: it would resume", "complete": "complete: nothing to do"}
    print_table(console, f"{first.variant} on {first.task.name}: one run directory per seed, trained together",
                ["seed", "job hash", "run directory", "state"],
                [[str(j.seed), j.hash, str(p), what[st]] for j, p, st in zip(jobs, paths, states, strict=True)])


def _final_line(summary: dict[str, Any], task=None) -> str:
    if "final_return_mean" not in summary:
        return "(its summary.json is unreadable)"
    line = (f"final return {summary['final_return_mean']:.1f} +- {summary.get('final_return_std', 0.0):.1f} "
            f"at {summary.get('env_steps', 0):,} env steps")
    if "wall_s" in summary and "steps_per_s" in summary:
        line += f"; {summary['wall_s']:.1f} s, {summary['steps_per_s']:.0f} steps/s"
    if task is not None and task.description:   # what the number means, so that a newcomer can judge it
        line += f" ({task.name}: {task.description})"
    return line


def _train_with_progress(job, run, total: int, console) -> dict[str, Any]:
    from qbench.training.rundir import run_job

    if not console.is_terminal:
        def plain(env_steps: int, info: dict[str, Any]) -> None:
            if "evaluation" in info:
                e = info["evaluation"]
                print(f"env_steps={env_steps} return_mean={e['return_mean']:.2f} return_std={e['return_std']:.2f} "
                      f"wall_s={e['wall_s']:.1f}", flush=True)
            elif "divergence_warning" in info:   # flagged, not stopped: said once, the run goes on
                print(f"env_steps={env_steps} divergence warning: {info['divergence_warning']}", flush=True)
        return run_job(job, run, sys.argv, plain)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} steps"),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        handle = bar.add_task("training", total=total, status="")
        last_eval = ["-"]

        def update(env_steps: int, info: dict[str, Any]) -> None:
            if "divergence_warning" in info:
                bar.console.print(f"divergence warning at env step {env_steps:,} (flagged, not stopped): "
                                  f"{info['divergence_warning']}", highlight=False, markup=False)
            if "evaluation" in info:
                last_eval[0] = f"{info['evaluation']['return_mean']:.1f}"
            status = f"eval {last_eval[0]}"
            if "diagnostics" in info:
                status += f" | {info['diagnostics']['steps_per_s']:.0f} steps/s"
            bar.update(handle, completed=env_steps, status=status)
        return run_job(job, run, sys.argv, update)


def _train_batch_with_progress(jobs, runs, total: int, console) -> list[Any]:
    """training.rundir.run_batch with progress: on a terminal one bar for the batch (env steps of all seeds; the latest
    evaluation of each seed, or their mean beyond 4 seeds), otherwise one plain line per evaluation with seed=k."""
    from qbench.training.rundir import run_batch

    seeds = [job.seed for job in jobs]
    latest: dict[int, float] = {}            # seed -> its latest evaluation's mean return
    steps: dict[int, int] = dict.fromkeys(seeds, 0)
    guess = {"i": 0, "last": 0}

    def seed_of(env_steps: int, info: dict[str, Any]) -> int:
        if "seed" in info:
            return info["seed"]
        # An engine that trains the seeds one after another may not name them: a step count that falls back is
        # the next seed.
        if env_steps < guess["last"] and guess["i"] + 1 < len(seeds):
            guess["i"] += 1
        guess["last"] = env_steps
        return seeds[guess["i"]]

    if not console.is_terminal:
        def plain(env_steps: int, info: dict[str, Any]) -> None:
            if "divergence_warning" in info:   # flagged, not stopped: said once, the run goes on
                print(f"seed={info['seed']} env_steps={env_steps} divergence warning: {info['divergence_warning']}",
                      flush=True)
                return
            if "evaluation" not in info and "diagnostics" not in info and "diverged" not in info:
                return
            seed = seed_of(env_steps, info)
            if "evaluation" in info:
                e = info["evaluation"]
                print(f"seed={seed} env_steps={env_steps} return_mean={e['return_mean']:.2f} "
                      f"return_std={e['return_std']:.2f} wall_s={e['wall_s']:.1f}", flush=True)
            elif "diverged" in info:
                print(f"seed={seed} env_steps={env_steps} diverged: {info['diverged']}", flush=True)
        return run_batch(jobs, runs, sys.argv, plain)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed:,.0f}/{task.total:,} steps each"), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        handle = bar.add_task(f"training {len(jobs)} seeds", total=total, status="")

        def update(env_steps: int, info: dict[str, Any]) -> None:
            if "divergence_warning" in info:
                bar.console.print(f"seed {info['seed']}: divergence warning at env step {env_steps:,} (flagged, not "
                                  "stopped)", highlight=False, markup=False)
                return
            if "evaluation" not in info and "diagnostics" not in info and "diverged" not in info:
                return
            seed = seed_of(env_steps, info)
            steps[seed] = total if "diverged" in info else max(steps.get(seed, 0), env_steps)   # a stopped seed
            if "diverged" in info:
                bar.console.print(f"[red]seed {seed} diverged[/] at env step {env_steps:,}", highlight=False)
            if "evaluation" in info:
                latest[seed] = info["evaluation"]["return_mean"]
            if not latest:
                status = "eval -"
            elif len(seeds) <= 4:
                status = "eval " + " ".join(f"s{s} {latest[s]:.1f}" for s in seeds if s in latest)
            else:
                status = (f"eval mean {sum(latest.values()) / len(latest):.1f} over {len(latest)}/{len(seeds)} "
                          "seeds")
            bar.update(handle, completed=sum(steps.values()) / len(seeds), status=status)
        return run_batch(jobs, runs, sys.argv, update)


def _check_run_options(args: argparse.Namespace) -> None:
    """The options of run and sanity that need no suite: checked first, dry run or not."""
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
                        seed_batch=args.seed_batch)
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


def cmd_report(args: argparse.Namespace) -> int:
    from qbench.analysis.render import parse_formats

    formats = parse_formats(args.formats)
    results = Path(args.results)
    if results.exists() and not results.is_dir():
        raise ConfigError(f"'{results}' is a file, not a results folder; give the folder that holds the runs "
                          "(e.g. results/smoke)")
    if not results.is_dir():
        raise ConfigError(f"results folder '{results}' does not exist")
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
                              confidence=args.confidence)
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

    p_report = sub.add_parser("report", help="tables, figures and statistics of a results folder")
    p_report.add_argument("results", help="a results folder (e.g. results/sanity); every run below it is read")
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


RESUMABLE = ("run", "sanity", "train")


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
