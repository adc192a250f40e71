"""qbench train: one (variant, task, seed) job, or several seeds together (--seeds), each into its run
directory; the same command again resumes an interrupted run."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from qbench.cli.common import _check_output_dir, _console, escape
from qbench.config import ConfigError, parse_assignment


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
    from qbench.envs.checks import EnvFault
    from qbench.jobs import build_job
    from qbench.loggers import parse_loggers
    from qbench.runner.claim import claim_run_dirs
    from qbench.runner.plan import check_replay_allocates
    from qbench.store import SUMMARY, RunDir, read_json_or_empty
    from qbench.training.bookkeeping import DivergedError

    args.log = parse_loggers(args.log)   # an unknown logger, or its package missing: one line, nothing written
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
    with claim_run_dirs([path], lambda p: _train_dir_state(p, job) == "complete" or None,
                        holder=lambda p: _lock_text(job)) as claims:
        if claims.busy:
            raise _busy_error(job, path)
        if claims.settled:
            return say_complete()
        state = _train_dir_state(path, job)
        how = "resuming the interrupted run in" if state == "resume" else "->"
        console.print(f"[bold]{escape(job.variant)}[/] on [bold]{escape(job.task.name)}[/], seed {job.seed}, "
                      f"{total:,} env steps {how} {escape(str(path))}")
        try:
            summary = _train_with_progress(job, RunDir(path), total, console, args.log)
        except DivergedError as exc:
            print(f"qbench: run diverged: {exc} (recorded in {path / 'error.json'})", file=sys.stderr)
            return 1
        except EnvFault as exc:
            print(f"qbench: {_ENV_FAULT}: {exc} (recorded in {path / 'error.json'})", file=sys.stderr)
            return 1
        except _NOT_CRASHES:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as qbench run records it, then said in one line
            return _record_crash(exc, [job], [path])
    console.print(_final_line(summary, job.task), highlight=False, markup=False)
    return 0


def _lock_text(job) -> str:
    return f"{job.variant} on {job.task.name}, seed {job.seed}, job {job.hash}"


def _busy_error(job, path: Path) -> ConfigError:
    """The refusal when another process holds the run directory's lock: it names the job that process trains."""
    from qbench.runner.claim import lock_holder

    held = lock_holder(path)
    if held and held != _lock_text(job):
        return ConfigError(f"another job is training in '{path}' ({held}; this one is {_lock_text(job)}): choose "
                           "another --out")
    return ConfigError(f"another process is training this job ({_lock_text(job)}) in '{path}' (it holds "
                       f"{path / 'lock'}); wait for it, or stop it and run again to resume")


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
    import dataclasses

    from qbench.jobs import build_job
    from qbench.runner.claim import claim_run_dirs
    from qbench.runner.plan import check_replay_allocates, parse_seed_list
    from qbench.store import SUMMARY, RunDir, read_json_or_empty
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
    job_at = dict(zip(paths, jobs, strict=True))
    with claim_run_dirs(paths, lambda p: _train_dir_state(p, job_at[p]) == "complete" or None,
                        all_or_none=True, holder=lambda p: _lock_text(job_at[p])) as claims:
        if claims.busy:
            raise _busy_error(jobs[claims.busy[0]], paths[claims.busy[0]])
        for i in claims.settled:
            console.print(f"seed {jobs[i].seed}: {paths[i]} was completed by another process meanwhile",
                          highlight=False, markup=False)
        if not claims.claimed:
            return 0
        todo = claims.claimed
        jobs, paths = [jobs[i] for i in todo], [paths[i] for i in todo]
        states = [_train_dir_state(path, job) for path, job in zip(paths, jobs, strict=True)]
        console.print(f"[bold]{escape(first.variant)}[/] on [bold]{escape(first.task.name)}[/], {_seed_words(jobs)}"
                      f"{' together' if len(jobs) > 1 else ''}, {total:,} env steps each", highlight=False)
        for job, path, state in zip(jobs, paths, states, strict=True):
            how = "resuming the interrupted run in" if state == "resume" else "->"
            console.print(f"  seed {job.seed} {how} {path}", highlight=False, markup=False)
        try:
            results = _train_batch_with_progress(jobs, [RunDir(p) for p in paths], total, console, args.log)
        except _NOT_CRASHES:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as qbench run records it, then said in one line
            return _record_crash(exc, jobs, paths)
    stopped = 0
    for job, path, result in zip(jobs, paths, results, strict=True):
        if isinstance(result, BaseException):
            stopped += 1
            what = "diverged" if isinstance(result, DivergedError) else f"stopped, {_ENV_FAULT}"
            print(f"qbench: seed {job.seed} {what}: {result} (recorded in {path / 'error.json'})", file=sys.stderr,
                  flush=True)
        else:
            console.print(f"seed {job.seed}: " + _final_line(result), highlight=False, markup=False)
    if first.task.description:   # what the numbers mean, once
        console.print(f"({first.task.name}: {first.task.description})", highlight=False, markup=False)
    return 1 if stopped else 0


_ENV_FAULT = "the env broke its contract (its fault, not the variant's)"
# said by qbench.cli.main in their own words: bad input (exit 2), the machine's memory, a reader that went away
_NOT_CRASHES = (ConfigError, MemoryError, BrokenPipeError)


def _record_crash(exc: Exception, jobs, paths: list[Path]) -> int:
    """A crash in training: error.json (kind crashed, with the traceback) in every run directory that has no
    summary, as qbench run writes it, and one line; exit 1."""
    from qbench.runner.worker import error_record
    from qbench.store import ERROR, SUMMARY, RunDir

    recorded = []
    for job, path in zip(jobs, paths, strict=True):
        if not (path / SUMMARY).exists():
            RunDir(path).write_error(error_record(exc, job))
            recorded.append(str(path / ERROR))
    first_line = (str(exc).strip().splitlines() or [""])[0]
    print(f"qbench: training crashed: {type(exc).__name__}: {first_line} (the traceback is recorded in "
          f"{', '.join(recorded) or 'no run directory'})", file=sys.stderr, flush=True)
    return 1


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


def _return_places(mean: float, std: float) -> int:
    """Decimal places of a return and its spread: one, or three significant digits of a mean below 1 in size (a
    task paying fractions, e.g. 0.948, would read '0.9 +- 0.0')."""
    try:
        size = abs(float(mean))
        if size >= 1 or size == 0 or abs(float(std)) >= 1 or not math.isfinite(size):
            return 1
        return min(6, 2 - math.floor(math.log10(size)))
    except (TypeError, ValueError):
        return 1


def _final_line(summary: dict[str, Any], task=None) -> str:
    if "final_return_mean" not in summary:
        return "(its summary.json is unreadable)"
    mean, std = summary["final_return_mean"], summary.get("final_return_std", 0.0)
    places = _return_places(mean, std)
    line = f"final return {mean:.{places}f} +- {std:.{places}f} at {summary.get('env_steps', 0):,} env steps"
    if "wall_s" in summary and "steps_per_s" in summary:
        line += f"; {summary['wall_s']:.1f} s, {summary['steps_per_s']:.0f} steps/s"
    if task is not None and task.description:   # what the number means, so that a newcomer can judge it
        line += f" ({task.name}: {task.description})"
    return line


def _train_with_progress(job, run, total: int, console, log: tuple[str, ...] = ()) -> dict[str, Any]:
    from qbench.training.rundir import run_job

    if not console.is_terminal:
        def plain(env_steps: int, info: dict[str, Any]) -> None:
            if "evaluation" in info:
                e = info["evaluation"]
                print(f"env_steps={env_steps} return_mean={e['return_mean']:.2f} return_std={e['return_std']:.2f} "
                      f"wall_s={e['wall_s']:.1f}", flush=True)
            elif "divergence_warning" in info:   # flagged, not stopped: said once, the run goes on
                print(f"env_steps={env_steps} divergence warning: {info['divergence_warning']}", flush=True)
            elif "notice" in info:
                print(f"note: {info['notice']}", flush=True)
        return run_job(job, run, sys.argv, plain, log)

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
            if "notice" in info:
                bar.console.print(f"note: {info['notice']}", highlight=False, markup=False)
                return
            if "evaluation" in info:
                last_eval[0] = f"{info['evaluation']['return_mean']:.1f}"
            status = f"eval {last_eval[0]}"
            if "diagnostics" in info:
                status += f" | {info['diagnostics']['steps_per_s']:.0f} steps/s"
            bar.update(handle, completed=env_steps, status=status)
        return run_job(job, run, sys.argv, update, log)


_STOPS = {"diverged", "env_fault"}   # the progress events of a seed that stopped before the end


def _train_batch_with_progress(jobs, runs, total: int, console, log: tuple[str, ...] = ()) -> list[Any]:
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
            if "notice" in info:
                print(f"note: {info['notice']}", flush=True)
                return
            if "evaluation" not in info and "diagnostics" not in info and not _STOPS.intersection(info):
                return
            seed = seed_of(env_steps, info)
            if "evaluation" in info:
                e = info["evaluation"]
                print(f"seed={seed} env_steps={env_steps} return_mean={e['return_mean']:.2f} "
                      f"return_std={e['return_std']:.2f} wall_s={e['wall_s']:.1f}", flush=True)
            elif "diverged" in info:
                print(f"seed={seed} env_steps={env_steps} diverged: {info['diverged']}", flush=True)
            elif "env_fault" in info:
                print(f"seed={seed} env_steps={env_steps} env fault: {info['env_fault']}", flush=True)
        return run_batch(jobs, runs, sys.argv, plain, log=log)

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
            if "notice" in info:
                bar.console.print(f"note: {info['notice']}", highlight=False, markup=False)
                return
            if "evaluation" not in info and "diagnostics" not in info and not _STOPS.intersection(info):
                return
            seed = seed_of(env_steps, info)
            stopped = _STOPS.intersection(info)
            steps[seed] = total if stopped else max(steps.get(seed, 0), env_steps)   # a stopped seed
            if "diverged" in info:
                bar.console.print(f"[red]seed {seed} diverged[/] at env step {env_steps:,}", highlight=False)
            elif "env_fault" in info:
                bar.console.print(f"[red]seed {seed} stopped: its env broke its contract[/] at env step "
                                  f"{env_steps:,}", highlight=False)
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
        return run_batch(jobs, runs, sys.argv, update, log=log)


