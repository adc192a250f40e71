"""Training into run directories: config and metadata first, rows as they come, the summary last (the marker that a
run is complete); resuming each seed from its checkpoint."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

from qbench.jobs import Job
from qbench.loggers import SeedLoggers
from qbench.store import CHECKPOINT, CHECKPOINT_REPLAY, METADATA, RunDir, run_metadata
from qbench.training.checkpoint import DamagedCheckpointError, load_checkpoint, set_aside_damaged_checkpoint
from qbench.training.loop import train_batch


def _open_run(job: Job, run: RunDir, command: list[str] | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the checkpoint to resume from or None, the metadata to keep) for one seed's run directory: config and
    metadata are written first. A damaged checkpoint is moved aside (kept), said on stderr and in metadata.json,
    and the seed starts afresh."""
    damaged = None
    try:
        checkpoint = load_checkpoint(run, job)
    except DamagedCheckpointError as exc:
        aside = set_aside_damaged_checkpoint(run)
        damaged = {"at": run_metadata(command)["started_at"], "reason": str(exc), "kept_in": str(aside)}
        print(f"qbench: warning: {exc}; it was moved to {aside} and the job starts afresh", file=sys.stderr,
              flush=True)
        checkpoint = None
    if checkpoint is not None and (run.path / METADATA).exists():
        meta = json.loads((run.path / METADATA).read_text())
        meta.setdefault("resumed", []).append({"at": run_metadata(command)["started_at"],
                                               "from_env_steps": checkpoint["loop"]["env_steps"],
                                               "command": command if command is not None else sys.argv})
    else:
        checkpoint = None
        meta = run_metadata(command)
        run.write_config(job.to_dict())
    if damaged is not None:
        meta.setdefault("damaged_checkpoints", []).append(damaged)
    return checkpoint, meta


def checkpoint_rows(checkpoint: dict[str, Any] | None) -> list[tuple[str, int, dict[str, Any]]]:
    """(kind, env_steps, row) of the rows a checkpoint holds, the rows its seed's CSVs are rewritten to on resume, in
    the order they were written (at one env step the diagnostics row comes before the evaluation)."""
    if checkpoint is None:
        return []
    loop = checkpoint["loop"]
    rows = ([("diagnostics", row["env_steps"], row) for row in loop.get("diagnostics", [])]
            + [("evaluation", row["env_steps"], row) for row in loop.get("evaluations", [])])
    return sorted(rows, key=lambda kind_step_row: kind_step_row[1])   # stable: diagnostics first at one step


def run_batch(jobs: list[Job], runs: list[RunDir], command: list[str] | None = None,
              progress: Callable[[int, dict[str, Any]], None] | None = None,
              log: Sequence[str] = ()) -> list[dict[str, Any] | BaseException]:
    """Train the seeds of one (variant, task, config) together, each into its run directory: config and metadata
    first, rows as they come, summary last (the marker that the run is complete). One result per job, in order:
    its summary, or the DivergedError of a seed that diverged or the EnvFault of a seed whose env broke its contract
    (its error.json written instead of a summary). Any other exception fails the batch.

    Seeds resume from their checkpoints; seeds whose checkpoints stand at different env steps (a batch that was
    split differently before, a damaged checkpoint set aside) train as separate batches, one after another.
    progress(env_steps, info): info carries "seed" for per-seed events (evaluation, diagnostics, diverged) and
    "seeds" for batch events (checkpoint).
    log: the loggers (qbench.loggers: "tensorboard", "wandb") each seed's rows also stream to; they only listen."""
    opened = [_open_run(job, run, command) for job, run in zip(jobs, runs, strict=True)]
    for run, (_, meta) in zip(runs, opened, strict=True):
        meta["seeds_in_batch"] = len(jobs)
        run.write_metadata(meta)
    groups: dict[int, list[int]] = {}
    for i, (checkpoint, _) in enumerate(opened):
        groups.setdefault(checkpoint["loop"]["env_steps"] if checkpoint else 0, []).append(i)
    results: list[dict[str, Any] | BaseException | None] = [None] * len(jobs)
    loggers = SeedLoggers(log, [job.to_dict() for job in jobs], [run.path for run in runs],
                          [checkpoint_rows(checkpoint) for checkpoint, _ in opened])
    try:
        _train_groups(jobs, runs, opened, groups, loggers.listen(progress), results)
    finally:
        loggers.close()
    return results


def _train_groups(jobs: list[Job], runs: list[RunDir], opened, groups: dict[int, list[int]], progress,
                  results: list[dict[str, Any] | BaseException | None]) -> None:
    """Train each group of seeds (their checkpoints at one env step) as a batch; write the summaries as they end."""
    for members in groups.values():
        outcome = train_batch([jobs[i] for i in members], [runs[i] for i in members], progress,
                              [opened[i][0] for i in members])
        for i, result in zip(members, outcome, strict=True):
            results[i] = result
            if isinstance(result, BaseException):   # diverged, or its env's fault: error.json is written
                continue
            meta = opened[i][1]
            meta["wall_s"] = result["wall_s"]
            runs[i].write_metadata(meta)
            runs[i].write_summary({**result, "job_hash": jobs[i].hash})
            (runs[i].path / CHECKPOINT).unlink(missing_ok=True)
            shutil.rmtree(runs[i].path / CHECKPOINT_REPLAY, ignore_errors=True)


def run_job(job: Job, run: RunDir, command: list[str] | None = None,
            progress: Callable[[int, dict[str, Any]], None] | None = None, log: Sequence[str] = ()) -> dict[str, Any]:
    """Train one job into its run directory (a batch of one). A diverged run leaves error.json instead of a
    summary, and re-raises."""
    result = run_batch([job], [run], command, progress, log)[0]
    if isinstance(result, BaseException):
        raise result
    return result
