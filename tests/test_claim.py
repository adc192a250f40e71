"""claim_run_dirs: the one claim of run directories that `qbench train` and the suite runner share."""

import json
import multiprocessing

from qbench.runner.claim import claim_run_dirs, job_lock
from qbench.store import ERROR, SUMMARY


def _dir(root, name, *, summary=False, error=False, temporary=False):
    path = root / name
    path.mkdir()
    if summary:
        (path / SUMMARY).write_text("{}")
    if error:
        (path / ERROR).write_text(json.dumps({"error": "crashed"}))
    if temporary:
        (path / ".evaluations.csv.tmp").write_text("half")
    return path


def _hold_lock(path, ready, release):
    with job_lock(path) as held:
        assert held
        ready.set()
        release.wait(30)


def test_claimed_directories_are_cleaned_settled_ones_left_as_they_are(tmp_path):
    fresh = _dir(tmp_path, "fresh", error=True, temporary=True)
    done = _dir(tmp_path, "done", summary=True, error=True, temporary=True)
    with claim_run_dirs([fresh, done], lambda p: "complete" if (p / SUMMARY).exists() else None) as claims:
        assert (claims.claimed, claims.busy, claims.settled) == ([0], [], {1: "complete"})
        assert not (fresh / ERROR).exists() and not list(fresh.glob(".*.tmp"))
        assert (done / ERROR).exists() and list(done.glob(".*.tmp"))
        with job_lock(fresh) as again:      # flock is per open file: a second open in this process is refused too
            assert not again
    with job_lock(fresh) as after:          # released when the block ends
        assert after


def test_a_busy_directory_is_reported_and_all_or_none_then_touches_nothing(tmp_path):
    busy = _dir(tmp_path, "busy", error=True)
    other = _dir(tmp_path, "other", error=True, temporary=True)
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(busy, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with claim_run_dirs([busy, other], lambda p: None, all_or_none=True) as claims:
            assert (claims.claimed, claims.busy) == ([], [0])
            assert (other / ERROR).exists() and list(other.glob(".*.tmp")) and (busy / ERROR).exists()
        with claim_run_dirs([busy, other], lambda p: None) as claims:   # the runner's way: run what it can
            assert (claims.claimed, claims.busy) == ([1], [0])
            assert not (other / ERROR).exists() and (busy / ERROR).exists()
    finally:
        release.set()
        holder.join(30)
