"""qbench tune's engine: one Optuna study per (variant, task), each given exactly ``trials`` COMPLETE or PRUNED
trials, in a SQLite file inside the results folder, so that a killed ``qbench tune`` resumes.

Layout under ``<results>/tune/<name>/`` (name: the suite's, else the tuning file's):

- ``tune.sqlite3``: Optuna's RDB storage, one study per (task, variant) named ``<task>/<variant>``;
- ``trials/<task>/<variant>/trial<NNNN>/``: ``trial.json`` (settings, state, value) and one ordinary run directory
  per tuning seed (``seed<k>-<hash>``: config.json, metadata.json, runner.json, evaluations.csv, ...), which
  ``qbench report`` reads like any other. A pruned trial's runs stay unfinished (no summary.json) with a
  ``pruned.json`` saying when and why, and their checkpoints deleted: they are never resumed;
- ``tuned/<task>/<variant>.toml``: the best trial's settings and how they were found (a suite's ``tuned`` key);
- ``summary.md`` and ``summary.csv``: one row per (task, variant).

A trial is one batch (``qbench.training.rundir.run_batch``: the tuning seeds side by side) with the trial's
settings as the last override layer. After each evaluation that every seed has reached, the mean over seeds of
that evaluation's return is reported to the trial (``trial.report(value, step=env_steps)``) and the pruner asked.
A trial in which a seed diverges is stopped and recorded PRUNED (its settings caused it; it counts toward the
budget); a crash or an env fault makes it FAIL, which does not count: another trial is drawn.

Resuming: trials that a killed ``qbench tune`` left RUNNING are marked FAIL (user attribute ``interrupted``) and
their parameters enqueued again, so they are retried as new trials (``retry_of``); complete and pruned trials are
kept as they are. Each trial's sampler is TPE seeded from (sampler_seed, trial number), so the draws do not depend
on how many processes ran before.

With ``workers`` 1 the trials run in this process; with more, in spawned worker processes that report to the same
SQLite storage. Ray is not used for trials (yet).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import fcntl
import io
import json
import multiprocessing as mp
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbench.config import ConfigError
from qbench.store import (
    CHECKPOINT,
    CHECKPOINT_REPLAY,
    RUNNER,
    SUMMARY,
    RunDir,
    atomic_write_json,
    atomic_write_text,
    read_json_or_empty,
)
from qbench.tuning import (
    OBJECTIVES,
    TUNED_DIR,
    TuneSpec,
    component,
    objective_value,
    seeds_text,
    trial_jobs,
    tuned_path,
    tuned_text,
)

STORAGE = "tune.sqlite3"
TRIALS_DIR = "trials"
TRIAL_RECORD = "trial.json"
PRUNED_RECORD = "pruned.json"
LOCK_FILE = "lock"
SPEC_ATTR = "qbench_tune_spec"


def tune_folder(results: Path, name: str) -> Path:
    return Path(results) / "tune" / component(name)


def study_name(task: str, variant: str) -> str:
    return f"{task}/{variant}"


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("qbench tune needs Optuna: pip install 'qbench[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_url(folder: Path) -> str:
    return f"sqlite:///{(Path(folder) / STORAGE).resolve()}"


def make_storage(url: str):
    optuna = require_optuna()
    # A generous busy timeout: worker processes write intermediate values into the same SQLite file.
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})


def make_pruner(pruning: str, startup_trials: int):
    optuna = require_optuna()
    if pruning == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials)
    if pruning == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def make_sampler(spec: TuneSpec, number: int):
    """TPE seeded from (sampler_seed, the trial's number): a resumed study draws as an uninterrupted one would."""
    import numpy as np

    optuna = require_optuna()
    seed = int(np.random.SeedSequence([spec.sampler_seed, number]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials, constant_liar=True)


def _encode(value: Any) -> Any:
    """A choice as Optuna stores it: lists (hidden_sizes) as their JSON text, everything else as it is."""
    return json.dumps(value) if isinstance(value, list) else value


def distributions(spec: TuneSpec) -> dict[str, Any]:
    optuna = require_optuna()
    out = {}
    for d in spec.space:
        if d.kind == "float":
            out[d.name] = optuna.distributions.FloatDistribution(d.low, d.high, log=d.log)
        elif d.kind == "int":
            out[d.name] = optuna.distributions.IntDistribution(d.low, d.high, log=d.log)
        else:
            out[d.name] = optuna.distributions.CategoricalDistribution([_encode(c) for c in d.choices])
    return out


def settings_of(spec: TuneSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as settings (lists decoded), in the space's order."""
    from qbench.config import coerce_setting

    out = {}
    for d in spec.space:
        value = params[d.name]
        if d.kind == "choice" and any(isinstance(c, list) for c in d.choices):
            value = json.loads(value)
        out[d.name] = coerce_setting(d.name, value)
    return out


# --- one trial, in this process or a worker

class _Stop(Exception):
    def __init__(self, kind: str, step: int, reason: str):
        super().__init__(reason)
        self.kind, self.step, self.reason = kind, step, reason


def run_trial(jobs, run_paths: list[str], name: str, url: str, study: str, trial_id: int, pruning: str,
              startup_trials: int, objective: str, command: list[str] | None = None,
              log: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train one trial's tuning seeds as one batch, reporting each evaluation's mean over seeds to the trial and
    stopping when the pruner says so. Returns {"state": complete|pruned|fail, "value", "reason", "step"}; never
    tells the study (the caller does)."""
    optuna = require_optuna()
    from qbench.runner.worker import _record_attempt, error_record
    from qbench.training.rundir import run_batch

    loaded = optuna.load_study(study_name=study, storage=make_storage(url), pruner=make_pruner(pruning, startup_trials),
                               sampler=optuna.samplers.RandomSampler())
    trial = optuna.trial.Trial(loaded, trial_id)
    paths = [Path(p) for p in run_paths]
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        _record_attempt(path, name)
        runner = read_json_or_empty(path / RUNNER)
        atomic_write_json(path / RUNNER, {**runner, "tune_trial": {"study": study, "trial": trial.number}})
    seeds = [job.seed for job in jobs]
    rows: dict[int, list[dict[str, Any]]] = {s: [] for s in seeds}
    by_step: dict[int, dict[int, float]] = {}

    def progress(env_steps: int, info: dict[str, Any]) -> None:
        seed = info.get("seed")
        if "diverged" in info:
            raise _Stop("diverged", env_steps, f"seed {seed} diverged at env step {env_steps}: {info['diverged']}")
        if "env_fault" in info:
            raise _Stop("env_fault", env_steps, f"seed {seed}: env fault at env step {env_steps}: {info['env_fault']}")
        if "evaluation" in info:
            row = info["evaluation"]
            rows[seed].append(row)
            step = int(row["env_steps"])
            got = by_step.setdefault(step, {})
            got[seed] = float(row["return_mean"])
            if len(got) == len(seeds):
                value = sum(got.values()) / len(got)
                trial.report(value, step)
                if trial.should_prune():
                    raise _Stop("pruned", step, f"pruned at env step {step:,} (mean evaluation return {value:g})")

    try:
        results = run_batch(jobs, [RunDir(p) for p in paths], command, progress=progress, log=log)
    except _Stop as stop:
        _mark_stopped(paths, stop)
        return {"state": "fail" if stop.kind == "env_fault" else "pruned", "reason": stop.reason, "step": stop.step,
                "kind": stop.kind}
    except Exception as exc:  # noqa: BLE001 - a crashing trial is a FAIL to record; the tuning goes on
        for job, path in zip(jobs, paths, strict=True):
            if not (path / SUMMARY).exists():
                RunDir(path).write_error(error_record(exc, job))
        first = (str(exc).strip().splitlines() or [""])[0]
        return {"state": "fail", "reason": f"{type(exc).__name__}: {first}", "kind": "crashed"}
    failed = [(job.seed, r) for job, r in zip(jobs, results, strict=True) if isinstance(r, BaseException)]
    if failed:   # a stop the progress events did not announce: the same rules
        seed, exc = failed[0]
        from qbench.training.bookkeeping import DivergedError
        kind = "diverged" if isinstance(exc, DivergedError) else "env_fault"
        return {"state": "pruned" if kind == "diverged" else "fail", "reason": f"seed {seed}: {exc}", "kind": kind}
    return {"state": "complete", "value": objective_value(objective, rows)}


def _mark_stopped(paths: list[Path], stop: _Stop) -> None:
    """A stopped trial's runs: never resumed, so their checkpoints go; pruned.json says when and why."""
    for path in paths:
        if (path / SUMMARY).exists():
            continue
        (path / CHECKPOINT).unlink(missing_ok=True)
        shutil.rmtree(path / CHECKPOINT_REPLAY, ignore_errors=True)
        if stop.kind != "env_fault":
            atomic_write_json(path / PRUNED_RECORD, {"reason": stop.kind, "env_steps": stop.step,
                                                     "message": stop.reason})


def _pool_worker_init() -> None:
    from qbench.runner.worker import one_thread
    one_thread()


# --- the studies

@dataclass
class _Pair:
    task: str
    variant: str
    study: Any
    trials: int                              # the budget
    counted: int = 0                         # COMPLETE + PRUNED in the storage
    failed_now: int = 0                      # FAIL trials of this sitting
    in_flight: int = 0
    given_up: str = ""

    @property
    def needed(self) -> int:
        return 0 if self.given_up else self.trials - self.counted - self.in_flight


def _counted(study) -> int:
    from optuna.trial import TrialState
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


@contextlib.contextmanager
def tune_lock(folder: Path):
    """One qbench tune at a time per tuning folder: its trials left RUNNING are taken for interrupted ones."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another qbench tune is running on {folder}; wait for it, or give another "
                              "--results folder") from None
        yield


def check_storage(spec: TuneSpec, folder: Path) -> None:
    """Before anything is written: a storage left by an earlier qbench tune must come from the same tuning file
    (space, seeds, objective, sampler, pruning) and hold no more counted trials than the budget."""
    if not (folder / STORAGE).exists():
        return
    optuna = require_optuna()
    storage = make_storage(storage_url(folder))
    names = set(optuna.study.get_all_study_names(storage))
    for task, variant in spec.pairs:
        name = study_name(task, variant)
        if name not in names:
            continue
        study = optuna.load_study(study_name=name, storage=storage)
        recorded = study.user_attrs.get(SPEC_ATTR)
        if recorded is not None and recorded != json.loads(json.dumps(spec.fingerprint())):
            raise ConfigError(f"{folder / STORAGE}: study {name} was started by a different tuning file (its space, "
                              "seeds, objective, sampler or pruning differ); give another --results folder, or "
                              "delete that folder to start afresh")
        counted = _counted(study)
        if counted > spec.trials:
            raise ConfigError(f"{folder / STORAGE}: study {name} already holds {counted} complete or pruned trials, "
                              f"more than trials = {spec.trials}: every variant must get the same budget; raise "
                              f"trials to at least {counted}")


def _open_studies(spec: TuneSpec, url: str) -> list[_Pair]:
    """Create or load each (task, variant)'s study; trials left RUNNING by a killed run are marked FAIL and their
    parameters enqueued again (retried as new trials)."""
    optuna = require_optuna()
    from optuna.trial import TrialState

    storage = make_storage(url)
    pairs = []
    for task, variant in spec.pairs:
        study = optuna.create_study(study_name=study_name(task, variant), storage=storage, direction="maximize",
                                    sampler=make_sampler(spec, 0),
                                    pruner=make_pruner(spec.pruning, spec.startup_trials), load_if_exists=True)
        if SPEC_ATTR not in study.user_attrs:
            study.set_user_attr(SPEC_ATTR, spec.fingerprint())
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            storage.set_trial_user_attr(stale._trial_id, "interrupted", True)
            study.tell(stale.number, state=TrialState.FAIL)
            study.enqueue_trial(stale.params, user_attrs={"retry_of": stale.number})
            record = Path(stale.user_attrs.get("trial_dir", ""))
            if stale.user_attrs.get("trial_dir") and (record / TRIAL_RECORD).exists():
                atomic_write_json(record / TRIAL_RECORD, {**read_json_or_empty(record / TRIAL_RECORD),
                                                          "state": "FAIL", "reason": "interrupted: retried as a "
                                                          "new trial with the same settings"})
        pairs.append(_Pair(task, variant, study, spec.trials, counted=_counted(study)))
    return pairs


def trial_dir(folder: Path, task: str, variant: str, number: int) -> Path:
    return folder / TRIALS_DIR / component(task) / component(variant) / f"trial{number:04d}"


@dataclass
class TuneOutcome:
    pairs: list[_Pair]
    rows: list[dict[str, Any]]
    folder: Path
    problems: list[str]


def run_tuning(spec: TuneSpec, results: Path, workers: int = 1, command: list[str] | None = None,
               log: tuple[str, ...] = (), say=print) -> TuneOutcome:
    """Run every study to exactly ``spec.trials`` COMPLETE + PRUNED trials, then write the tuned-settings files
    and the summary. ``say``: where progress lines go."""
    folder = tune_folder(results, spec.name)
    check_storage(spec, folder)
    with tune_lock(folder):
        url = storage_url(folder)
        pairs = _open_studies(spec, url)
        dists = distributions(spec)
        pool = (cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_pool_worker_init)
                if workers > 1 else None)
        in_flight: dict[Any, tuple[_Pair, Any]] = {}
        try:
            while True:
                while len(in_flight) < workers:
                    ready = [p for p in pairs if p.needed > 0]
                    if not ready:
                        break
                    pair = min(ready, key=lambda p: (p.counted + p.in_flight, pairs.index(p)))
                    trial, args = _start_trial(spec, folder, url, pair, dists, command, log)
                    pair.in_flight += 1
                    if pool is None:
                        _finish_trial(spec, pair, trial, run_trial(*args), say)
                    else:
                        in_flight[pool.submit(run_trial, *args)] = (pair, trial)
                if not in_flight:
                    if not any(p.needed > 0 for p in pairs):
                        break
                    continue
                done, _ = cf.wait(list(in_flight), timeout=1.0, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    pair, trial = in_flight.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # noqa: BLE001 - the worker died: a FAIL, drawn again
                        result = {"state": "fail", "reason": f"the worker process died: {exc}", "kind": "crashed"}
                    _finish_trial(spec, pair, trial, result, say)
        except BaseException:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        if pool is not None:
            pool.shutdown()
        rows, problems = write_outputs(spec, folder, pairs)
    return TuneOutcome(pairs, rows, folder, problems)


def _start_trial(spec: TuneSpec, folder: Path, url: str, pair: _Pair, dists, command, log):
    study = pair.study
    study.sampler = make_sampler(spec, len(study.get_trials(deepcopy=False)))
    trial = study.ask(dists)
    settings = settings_of(spec, trial.params)
    where = trial_dir(folder, pair.task, pair.variant, trial.number)
    trial.set_user_attr("settings", settings)
    trial.set_user_attr("trial_dir", str(where))
    atomic_write_json(where / TRIAL_RECORD, {"study": study.study_name, "trial": trial.number, "settings": settings,
                                             "tuning_seeds": list(spec.tuning_seeds), "state": "RUNNING"})
    jobs = trial_jobs(spec, pair.task, pair.variant, settings)
    paths = [str(where / f"seed{job.seed}-{job.hash}") for job in jobs]
    args = (jobs, paths, spec.name, url, study.study_name, trial._trial_id, spec.pruning, spec.startup_trials,
            spec.objective, command, log)
    return trial, args


def _finish_trial(spec: TuneSpec, pair: _Pair, trial, result: dict[str, Any], say) -> None:
    from optuna.trial import TrialState

    pair.in_flight -= 1
    state = result["state"]
    if result.get("reason"):
        trial.set_user_attr("reason", result["reason"])
    if result.get("kind"):
        trial.set_user_attr("stopped_by", result["kind"])
    if state == "complete":
        frozen = pair.study.tell(trial, result["value"])
    elif state == "pruned":
        frozen = pair.study.tell(trial, state=TrialState.PRUNED)
    else:
        frozen = pair.study.tell(trial, state=TrialState.FAIL)
    where = Path(trial.user_attrs["trial_dir"]) if "trial_dir" in trial.user_attrs else None
    if where is not None:
        atomic_write_json(where / TRIAL_RECORD, {**read_json_or_empty(where / TRIAL_RECORD),
                                                 "state": frozen.state.name, "value": frozen.value,
                                                 "reason": result.get("reason", "")})
    if state == "fail":
        pair.failed_now += 1
        if pair.failed_now > spec.trials:
            pair.given_up = (f"{pair.failed_now} trials failed in this run, more than the budget of {spec.trials}; "
                             f"the last: {result.get('reason', '')}")
    else:
        pair.counted += 1
    value = f" value {result['value']:.6g}" if state == "complete" else ""
    say(f"tune {pair.task} {pair.variant}: trial {trial.number} {state}{value}"
        + (f" ({result['reason']})" if state != "complete" and result.get("reason") else "")
        + f"; {pair.counted}/{spec.trials} done", flush=True)


# --- what the tuning leaves behind

def study_counts(study) -> dict[str, int]:
    from optuna.trial import TrialState
    trials = study.get_trials(deepcopy=False)
    return {name: sum(t.state == state for t in trials)
            for name, state in (("complete", TrialState.COMPLETE), ("pruned", TrialState.PRUNED),
                                ("failed", TrialState.FAIL))}


def write_outputs(spec: TuneSpec, folder: Path, pairs: list[_Pair]) -> tuple[list[dict[str, Any]], list[str]]:
    """The tuned-settings file of every (task, variant) with a complete trial, and summary.md / summary.csv."""
    from optuna.trial import TrialState

    rows, problems = [], []
    for pair in pairs:
        counts = study_counts(pair.study)
        complete = [t for t in pair.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        row = {"task": pair.task, "variant": pair.variant, "trials": spec.trials, **counts,
               "best_trial": "", "best_value": "", **{d.name: "" for d in spec.space}, "tuned_file": ""}
        if pair.given_up:
            problems.append(f"{pair.task} {pair.variant}: gave up: {pair.given_up}")
        elif counts["complete"] + counts["pruned"] < spec.trials:
            problems.append(f"{pair.task} {pair.variant}: {counts['complete'] + counts['pruned']} of "
                            f"{spec.trials} trials")
        if not complete:
            if not pair.given_up:
                problems.append(f"{pair.task} {pair.variant}: no trial completed (every one was pruned or failed); "
                                "no tuned settings written")
            rows.append(row)
            continue
        best = max(complete, key=lambda t: (t.value, -t.number))
        settings = settings_of(spec, best.params)
        path = tuned_path(folder / TUNED_DIR, pair.task, pair.variant)
        record = {"task": pair.task, "variant": pair.variant, "objective": spec.objective,
                  "best_value": float(best.value), "best_trial": best.number, "trials": spec.trials,
                  "tuning_seeds": list(spec.tuning_seeds), "sampler": "tpe", "sampler_seed": spec.sampler_seed,
                  "startup_trials": spec.startup_trials, "pruning": spec.pruning, "suite": spec.name,
                  "tune_file": str(spec.path)}
        header = (f"Tuned by qbench tune: the best of {spec.trials} trials ({spec.objective}: "
                  f"{OBJECTIVES[spec.objective]}) on tuning seeds {seeds_text(spec.tuning_seeds)}.\n"
                  "A suite applies these settings with: tuned = \"<the tuned/ folder>\"")
        atomic_write_text(path, tuned_text(record, {
            "settings": settings, "space": {d.name: d.to_data() for d in spec.space},
            "study": {"name": pair.study.study_name, "storage": f"../../{STORAGE}", **counts}}, header))
        row.update({"best_trial": best.number, "best_value": float(best.value), **settings,
                    "tuned_file": str(path.relative_to(folder))})
        rows.append(row)
    columns = list(rows[0]) if rows else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    atomic_write_text(folder / "summary.csv", buffer.getvalue())
    atomic_write_text(folder / "summary.md", summary_markdown(spec, rows))
    return rows, problems


def summary_markdown(spec: TuneSpec, rows: list[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.6g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, list) else str(v)

    columns = ["task", "variant", "complete", "pruned", "failed", "best_trial", "best_value",
               *[d.name for d in spec.space]]
    lines = [f"# qbench tune: {spec.name}", "",
             (f"Equal budget: {spec.trials} trials per (variant, task) (complete + pruned); tuning seeds "
             f"{seeds_text(spec.tuning_seeds)}; objective {spec.objective} ({OBJECTIVES[spec.objective]}); TPE "
             f"sampler, seed {spec.sampler_seed}, {spec.startup_trials} startup trials; pruning {spec.pruning}."), "",
             "Search space: " + "; ".join(f"{d.name}: {d.describe()}" for d in spec.space) + ".", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def print_plan(spec: TuneSpec, results: Path, workers: int, out=sys.stdout) -> None:
    """--dry-run: what would run, and where it would go; nothing is written."""
    folder = tune_folder(results, spec.name)
    exists = (folder / STORAGE).exists()
    print(f"qbench tune {spec.path} (dry run: nothing is written)", file=out)
    print(f"  pairs: {len(spec.pairs)} (task, variant), {spec.trials} trials each (complete + pruned), "
          f"{len(spec.pairs) * spec.trials} trials in all, {workers} at a time", file=out)
    for task, variant in spec.pairs:
        print(f"    {task} {variant}", file=out)
    print(f"  tuning seeds: {seeds_text(spec.tuning_seeds)} (reporting seeds: "
          + "; ".join(f"{t} {seeds_text(s)}" for t, s in spec.reporting_seeds.items()) + ")", file=out)
    print(f"  objective: {spec.objective} ({OBJECTIVES[spec.objective]})", file=out)
    print(f"  sampler: TPE, seed {spec.sampler_seed}, {spec.startup_trials} startup trials; pruning: {spec.pruning}",
          file=out)
    print("  space:", file=out)
    for d in spec.space:
        print(f"    {d.name}: {d.describe()}", file=out)
    print(f"  study storage: {folder / STORAGE}" + (" (exists: the studies resume)" if exists else ""), file=out)
    print(f"  trials: {folder / TRIALS_DIR}/<task>/<variant>/trial<NNNN>/; tuned settings: "
          f"{folder / TUNED_DIR}/<task>/<variant>.toml; summary: {folder / 'summary.md'}", file=out)

