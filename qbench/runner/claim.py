"""Claiming run directories: the one way ``qbench train`` (one seed or several) and the suite runner take a run
directory to train in.

A claim is: hold the directory's lock; under the lock look again whether the job still needs to run (another
process may have finished it, or recorded its failure, between the caller's first look and the lock); and only then
make the directory ready for a (re)start: remove the half-written temporaries a killed writer left and the old
error.json (a retry: the old failure no longer describes the directory). Nothing is removed from a directory this
process does not hold, so two runners on one folder cannot damage each other's work.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qbench.store import ERROR, LOCK


@dataclass
class Claims:
    """The outcome of claiming a list of run directories, by index into that list."""

    claimed: list[int] = field(default_factory=list)          # locked and ready: these are this process's to run
    busy: list[int] = field(default_factory=list)             # another process holds the lock
    settled: dict[int, Any] = field(default_factory=dict)     # needs no run after all: what `settled` said


@contextlib.contextmanager
def claim_run_dirs(paths: list[Path], settled: Callable[[Path], Any], all_or_none: bool = False,
                   holder: Callable[[Path], str] | None = None) -> Iterator[Claims]:
    """Claim the run directories at ``paths`` for the duration of the block.

    settled(path), asked under the directory's lock, returns None when the job there still needs to run, else
    what to report instead (e.g. "complete"); such directories are released at once and left as they are.
    all_or_none: when any directory is busy, claim none of them (nothing is cleaned; ``claimed`` is empty), for
    callers that refuse to run part of what they were asked.
    holder(path): the job this process trains there, written into the lock it holds, so that a process refused
    the lock can say which job holds it (``lock_holder``).
    """
    with contextlib.ExitStack() as held:
        claims = Claims()
        for i, path in enumerate(paths):
            lock = contextlib.ExitStack()
            if not lock.enter_context(job_lock(path, holder(path) if holder else None)):
                lock.close()
                claims.busy.append(i)
                continue
            outcome = settled(path)
            if outcome is not None:
                lock.close()
                claims.settled[i] = outcome
            else:
                held.enter_context(lock)   # held until the block ends
                claims.claimed.append(i)
        if all_or_none and claims.busy:
            claims.claimed = []
        for i in claims.claimed:
            clean_temporaries(paths[i])
            (paths[i] / ERROR).unlink(missing_ok=True)
        yield claims


def clean_temporaries(path: Path) -> None:
    """Half-written temporaries of a killed writer (atomic writes rename them into place only when whole)."""
    for tmp in path.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def job_lock(path: Path, holder: str | None = None) -> Iterator[bool]:
    """Hold the run directory's lock: yields True while this process holds it, False if another one does.
    holder, when given, replaces the lock file's text while this process holds it (the job it runs).

    The lock lives as long as the open file: leaving the block, or the death of this process, releases it, so a
    SIGKILLed runner leaves no stale lock behind."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / LOCK, "a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        if holder is not None:
            lock_file.truncate(0)
            lock_file.write(holder + "\n")
            lock_file.flush()
        yield True


def lock_holder(path: Path) -> str:
    """The job written into the run directory's lock by the process holding it ('' when it wrote none)."""
    try:
        return (path / LOCK).read_text(errors="replace").strip()
    except OSError:
        return ""
