"""The job function: the same top-level function runs in a local worker process and in a Ray task.

``run_suite_batch`` takes resolved, picklable ``Job``s of one batch (seeds of one variant, task and config,
validated once, before anything started) and their run directories, and returns one plain dict per job. It never
raises for a failing job: a crash or a divergence is written to ``error.json`` (type, message, traceback) and reported
as ``failed``, so the rest of the suite goes on.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from qbench.jobs import Job
from qbench.runner.claim import claim_run_dirs
from qbench.store import (
    ERROR,
    RUNNER,
    SUMMARY,
    RunDir,
    atomic_write_json,
    git_commit,
    read_json_or_empty,
)


def one_thread() -> None:
    """One torch thread per worker: N workers on N cores then use N cores, not N x N threads fighting."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"   # read when torch/numpy first load in this process
    import torch
    torch.set_num_threads(1)


def error_record(exc: BaseException, job: Job) -> dict[str, Any]:
    """error.json of a failed job: ``diverged`` (the divergence watch stopped it), ``env`` (its env broke its
    contract: qbench.envs.checks) or ``crashed`` (anything else), with the exception, traceback and host."""
    from qbench.envs.checks import EnvFault
    from qbench.training.bookkeeping import DivergedError
    kind = "diverged" if isinstance(exc, DivergedError) else "env" if isinstance(exc, EnvFault) else "crashed"
    return {"error": kind, "type": type(exc).__name__,
            "message": str(exc), "traceback": "".join(traceback.format_exception(exc)), "job_hash": job.hash,
            "failed_at": datetime.now(UTC).isoformat(timespec="seconds"), "host": socket.gethostname()}


def qbench_version() -> str:
    try:
        return importlib_metadata.version("qbench")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _record_attempt(path: Path, suite: str) -> int:
    """runner.json: the suite, the number of attempts, who runs this one and with which code; and every attempt's
    code version, so that a job resumed after a code change says so."""
    previous = read_json_or_empty(path / RUNNER)
    attempts = int(previous.get("attempts", 0)) + 1
    history = previous.get("attempt_history", [])
    history = list(history) if isinstance(history, list) else []
    attempt = {"qbench_version": qbench_version(), "git_commit": git_commit(),
               "started_at": datetime.now(UTC).isoformat(timespec="microseconds"), "host": socket.gethostname()}
    atomic_write_json(path / RUNNER, {
        "suite": suite, "attempts": attempts, "host": attempt["host"], "pid": os.getpid(),
        "attempt_started_at": attempt["started_at"], "qbench_version": attempt["qbench_version"],
        "git_commit": attempt["git_commit"], "attempt_history": [*history, attempt]})
    return attempts


def run_suite_batch(jobs: list[Job], run_paths: list[str], suite: str, command: list[str] | None = None,
                    runner_started_at: float = 0.0, log: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Run the jobs of one batch (seeds of one variant, task and config) together, each into its run directory,
    except those that are complete or being run by another process.

    Returns one {"status": ...} per job, in order: ``done`` (ran here, with its summary), ``complete`` (already
    complete, nothing touched), ``busy`` (another process holds the job's lock: it runs elsewhere), or ``failed``
    (with its error; ``elsewhere`` is true when another runner recorded the failure after this runner started, so
    it is not retried twice in one sitting). The jobs that run hold their locks for the whole batch; their
    ``wall_s`` is the batch's wall time. A seed that diverges fails alone; any other exception fails every job
    that ran in the batch. log: the loggers each seed's rows also stream to (qbench.loggers).
    """
    paths = [Path(p) for p in run_paths]
    results: list[dict[str, Any] | None] = [None] * len(jobs)

    def settled(path: Path) -> dict[str, Any] | None:
        if (path / SUMMARY).exists():
            return {"status": "complete", "summary": read_json_or_empty(path / SUMMARY)}
        if (path / ERROR).exists() and (path / ERROR).stat().st_mtime >= runner_started_at:
            return {"status": "failed", "error": read_json_or_empty(path / ERROR), "elsewhere": True}
        return None

    with claim_run_dirs(paths, settled) as claims:
        for i in claims.busy:
            results[i] = {"status": "busy"}
        for i, outcome in claims.settled.items():
            results[i] = outcome
        if claims.claimed:
            for i in claims.claimed:
                _record_attempt(paths[i], suite)
            for i, result in zip(claims.claimed, _train_together([jobs[i] for i in claims.claimed],
                                                                 [paths[i] for i in claims.claimed], command, log),
                                 strict=True):
                results[i] = result
    return results   # type: ignore[return-value]


def _train_together(jobs: list[Job], paths: list[Path], command: list[str] | None,
                    log: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    one_thread()
    from qbench.training.rundir import run_batch

    started = time.perf_counter()
    try:
        outcomes = run_batch(jobs, [RunDir(p) for p in paths], command, log=log)
    except Exception as exc:  # noqa: BLE001 - a failing batch is a result to record; the suite goes on
        wall_s = time.perf_counter() - started
        results = []
        for job, path in zip(jobs, paths, strict=True):
            if (path / SUMMARY).exists():   # finished before the batch failed: it stands
                results.append({"status": "done", "summary": read_json_or_empty(path / SUMMARY), "wall_s": wall_s})
                continue
            error = error_record(exc, job)
            RunDir(path).write_error(error)
            results.append({"status": "failed", "error": error, "wall_s": wall_s})
        return results
    wall_s = time.perf_counter() - started
    results = []
    for job, path, outcome in zip(jobs, paths, outcomes, strict=True):
        if isinstance(outcome, BaseException):   # a seed stopped (diverged, or its env's fault): the others went on
            # the engine's record (the divergence watch; the env, seed and step) with the type, traceback and host
            error = {**read_json_or_empty(path / ERROR), **error_record(outcome, job)}
            RunDir(path).write_error(error)
            results.append({"status": "failed", "error": error, "wall_s": wall_s})
        else:
            results.append({"status": "done", "summary": outcome, "wall_s": wall_s})
    return results
