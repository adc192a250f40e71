"""Where batches run: local worker processes (default) or a Ray cluster. Both run ``worker.run_suite_batch``.

A backend has three methods: ``submit(*args) -> handle`` (run_suite_batch's arguments: the jobs of one batch,
their run paths, ...), ``wait(handles, timeout_s) -> [(handle, result)]`` (a result is run_suite_batch's list of
dicts, one per job, or an exception if the worker itself died) and ``close()``; plus ``slots``, the number of
batches it runs at once (one process, or one Ray task of one CPU, a batch).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
from typing import Any

from qbench.config import ConfigError
from qbench.runner.worker import one_thread, run_suite_batch


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class LocalBackend:
    """A pool of spawned processes (no fork: torch and fork do not mix), one torch thread each."""

    def __init__(self, workers: int):
        self.slots = workers
        self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.slots, mp_context=mp.get_context("spawn"), initializer=one_thread)

    def submit(self, *args: Any) -> cf.Future:
        try:
            return self._pool.submit(run_suite_batch, *args)
        except cf.BrokenExecutor:   # a worker died hard earlier: start a fresh pool for the jobs that remain
            self._pool = self._new_pool()
            return self._pool.submit(run_suite_batch, *args)

    def wait(self, handles: list[cf.Future], timeout_s: float) -> list[tuple[cf.Future, Any]]:
        done, _ = cf.wait(handles, timeout=timeout_s, return_when=cf.FIRST_COMPLETED)
        out = []
        for future in done:
            try:
                out.append((future, future.result()))
            except Exception as exc:  # noqa: BLE001 - BrokenProcessPool: the worker died (killed, OOM, crash)
                out.append((future, exc))
        return out

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)


class RayBackend:
    """Ray tasks of one CPU each, one a batch. Needs the results folder on a filesystem every node sees (the job
    locks and run directories live there). Joins a running Ray if one is initialised in this process, else starts
    or joins one (``address``)."""

    def __init__(self, workers: int | None, address: str | None):
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray backend needs Ray: pip install 'qbench[ray]'") from None
        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            kwargs: dict[str, Any] = ({"address": address} if address
                                      else {"num_cpus": workers or default_workers()})
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        self.slots = min(workers, cluster_cpus) if workers else cluster_cpus
        # One task of one CPU a batch. No automatic retries: a task whose worker dies is recorded as failed, like a
        # local one.
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run_suite_batch)

    def submit(self, *args: Any):
        return self._remote.remote(*args)

    def wait(self, handles: list, timeout_s: float) -> list[tuple[Any, Any]]:
        ready, _ = self._ray.wait(handles, num_returns=1, timeout=timeout_s)
        out = []
        for ref in ready:
            try:
                out.append((ref, self._ray.get(ref)))
            except Exception as exc:  # noqa: BLE001 - the worker died (WorkerCrashedError) or the task failed
                out.append((ref, exc))
        return out

    def close(self, cancel: bool = False) -> None:
        if self._owns_ray:
            self._ray.shutdown()


def make_backend(kind: str, workers: int | None, address: str | None = None):
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be a positive integer, got {workers}")
    if kind == "local":
        if address:
            raise ConfigError("--ray-address needs --backend ray")
        return LocalBackend(workers or default_workers())
    if kind == "ray":
        return RayBackend(workers, address)
    raise ConfigError(f"unknown backend '{kind}'; valid backends: local, ray")
