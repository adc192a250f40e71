"""Run a list of jobs on a backend: skip complete ones, keep every slot busy, record failures and go on.

Jobs that differ only in their seed train together, as a batch, in one worker (``plan.make_batches``); every
outcome, retry and report is still per job.

Two runners may share a results folder: each job is guarded by a lock in its run directory, so a job that is
running elsewhere is put back in the queue and looked at again later; when its lock is free it is either
complete (nothing to do), failed there during this sitting (reported, not retried twice), or abandoned by a
killed runner (run here, resuming from whatever the run directory holds).
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qbench.jobs import Job
from qbench.runner.plan import check_seed_batch, estimated_cost, make_batches, run_path
from qbench.store import SUMMARY, RunDir, read_json_or_empty

BUSY_RETRY_S = 2.0      # how often a job locked by another runner is looked at again
WAIT_TIMEOUT_S = 0.5    # how often the progress display is refreshed while jobs run


@dataclass
class Outcome:
    job: Job
    path: Path
    status: str                         # done (ran now), complete (was already), failed
    summary: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    elsewhere: bool = False             # finished or failed in another runner while this one waited
    batch: int = 1                      # jobs trained together with this one (itself included); wall_s is theirs


class Reporter:
    """Receives the runner's events; the CLI draws them with rich or as plain lines. This one stays silent."""

    def start(self, total_jobs: int, to_run: list[Job], slots: int) -> None: ...
    def update(self, running: int, waiting_elsewhere: int) -> None: ...
    def finished(self, outcome: Outcome) -> None: ...
    def close(self) -> None: ...


def _worker_died(exc: BaseException) -> dict[str, Any]:
    return {"error": "crashed", "type": type(exc).__name__,
            "message": f"the worker process died while running this job: {exc}", "traceback": ""}


def run_jobs(jobs: list[Job], results_dir: Path, suite_name: str, backend, *,
             reporter: Reporter | None = None,
             command: list[str] | None = None,
             seed_batch: int | None = None,
             log: tuple[str, ...] = ()) -> list[Outcome]:
    """Run every job that is not complete; return one Outcome per job, in the order given.

    The jobs are grouped into batches (``plan.make_batches``: the seeds of one variant, task and config, at most
    ``seed_batch`` a batch; by default a whole group, cut so that every slot of the backend has a batch) and a
    batch trains in one worker; outcomes, retries and reports stay per job. log: the loggers every seed's rows
    also stream to (qbench.loggers), in the worker that trains it."""
    check_seed_batch(seed_batch)
    reporter = reporter or Reporter()
    started_at = time.time()
    paths = {job.hash: run_path(results_dir, suite_name, job) for job in jobs}
    outcomes: dict[str, Outcome] = {}
    to_run: list[Job] = []
    for job in jobs:
        path = paths[job.hash]
        if (path / SUMMARY).exists():
            outcomes[job.hash] = Outcome(job, path, "complete", read_json_or_empty(path / SUMMARY))
        else:
            to_run.append(job)
    reporter.start(len(jobs), to_run, backend.slots)
    # The longest batches first, so that no long one starts last while the other workers run dry.
    queue: deque[list[Job]] = deque(sorted(make_batches(to_run, seed_batch, backend.slots), key=estimated_cost,
                                           reverse=True))

    in_flight: dict[Any, list[Job]] = {}
    waiting: list[tuple[float, Job]] = []       # (when to look again, job) for jobs running elsewhere
    pool_deaths: dict[str, int] = {}            # a job in flight when a local pool broke gets one more try

    def finish(outcome: Outcome) -> None:
        outcomes[outcome.job.hash] = outcome
        reporter.finished(outcome)

    def running() -> int:
        return sum(len(batch) for batch in in_flight.values())

    try:
        while queue or in_flight or waiting:
            now = time.monotonic()
            due = [w for w in waiting if w[0] <= now]
            if due:
                waiting[:] = [w for w in waiting if w[0] > now]
                # Jobs that were busy elsewhere are looked at again, batched anew among themselves.
                queue.extend(make_batches([job for _, job in due], seed_batch, 1))
            while queue and len(in_flight) < backend.slots:
                batch = queue.popleft()
                handle = backend.submit(batch, [str(paths[job.hash]) for job in batch], suite_name, command,
                                        started_at, log)
                in_flight[handle] = batch
            reporter.update(running(), len(waiting))
            if not in_flight:
                time.sleep(max(0.0, min(t for t, _ in waiting) - time.monotonic()))
                continue
            for handle, result in backend.wait(list(in_flight), WAIT_TIMEOUT_S):
                batch = in_flight.pop(handle)
                if isinstance(result, BaseException):
                    retry = []
                    for job in batch:
                        path = paths[job.hash]
                        pool_deaths[job.hash] = pool_deaths.get(job.hash, 0) + 1
                        # A dead local pool takes every in-flight job down, guilty or not: retry each once.
                        if pool_deaths[job.hash] < 2 and isinstance(result, BrokenProcessPool):
                            retry.append(job)
                            continue
                        error = _worker_died(result)
                        if not (path / SUMMARY).exists():
                            RunDir(path).write_error(error)
                        finish(Outcome(job, path, "failed", error=error))
                    if retry:
                        queue.append(retry)
                    continue
                for job, job_result in zip(batch, result, strict=True):
                    path = paths[job.hash]
                    status = job_result["status"]
                    if status == "busy":
                        waiting.append((time.monotonic() + BUSY_RETRY_S, job))
                    elif status == "complete":
                        finish(Outcome(job, path, "complete", job_result.get("summary", {}), elsewhere=True))
                    elif status == "done":
                        finish(Outcome(job, path, "done", job_result["summary"], wall_s=job_result["wall_s"],
                                       batch=_ran_together(result)))
                    else:
                        finish(Outcome(job, path, "failed", error=job_result.get("error", {}),
                                       wall_s=job_result.get("wall_s", 0.0),
                                       elsewhere=job_result.get("elsewhere", False)))
            reporter.update(running(), len(waiting))
    except BaseException:
        backend.close(cancel=True)
        reporter.close()
        raise
    backend.close()
    reporter.close()
    return [outcomes[job.hash] for job in jobs]


def _ran_together(results: list[dict[str, Any]]) -> int:
    """How many jobs of a batch's results trained in it (not busy, not complete or failed before it started)."""
    return sum(r["status"] == "done" or (r["status"] == "failed" and not r.get("elsewhere")) for r in results)
