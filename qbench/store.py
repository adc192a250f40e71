"""Run directories: every file is written whole to a temporary name and then renamed over the old one."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

CONFIG = "config.json"
METADATA = "metadata.json"
EVALUATIONS = "evaluations.csv"
DIAGNOSTICS = "diagnostics.csv"
SUMMARY = "summary.json"   # written last: its presence marks a complete run
ERROR = "error.json"
CHECKPOINT = "checkpoint.pt"  # engine state at an episode boundary; removed once the run is complete
CHECKPOINT_REPLAY = "checkpoint-replay"  # the replay buffer as chunks, one per checkpoint (listed in CHECKPOINT)
RUNNER = "runner.json"     # written by qbench run: suite, attempts, who ran the last attempt
LOCK = "lock"              # flock()ed by the process running the job; the OS releases it if that process dies


def current_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux: /proc/self/status), so that
    no other thread ever sees a wrong one; elsewhere set and restored at once under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see either the old file or the new one, never a torn one. Its mode is the one
    open() would give (0o666 less the umask), not mkstemp's private 0o600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def append_csv_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row (the header first if the file is empty or missing). The cost of a row does not grow with the
    file. A writer killed mid-line leaves a last line without its newline: readers drop such a line, and a resumed
    run rewrites the file from its checkpoint."""
    text = rows_to_csv([row])
    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        text = text.split("\n", 1)[1]
    with open(path, "a", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()


def git_commit() -> str:
    """The commit of the qbench checkout in use, with '-dirty' if it has uncommitted changes; 'unknown' outside
    a git checkout (an installed wheel)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("qbench", "torch", "gymnasium", "numpy", "pandas", "ale-py", "mujoco", "box2d"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return versions


def run_metadata(command: list[str] | None = None) -> dict[str, Any]:
    return {
        "command": command if command is not None else sys.argv,
        "git_commit": git_commit(),
        "versions": package_versions(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


class RunDir:
    """One job's directory: resolved config, metadata, evaluation rows, diagnostics, summary (the done marker)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def write_config(self, job: dict[str, Any]) -> None:
        atomic_write_json(self.path / CONFIG, job)

    def write_metadata(self, meta: dict[str, Any]) -> None:
        atomic_write_json(self.path / METADATA, meta)

    def write_evaluations(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.path / EVALUATIONS, rows_to_csv(rows))

    def write_diagnostics(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.path / DIAGNOSTICS, rows_to_csv(rows))

    def append_evaluation(self, row: dict[str, Any]) -> None:
        append_csv_row(self.path / EVALUATIONS, row)

    def append_diagnostics(self, row: dict[str, Any]) -> None:
        append_csv_row(self.path / DIAGNOSTICS, row)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY, summary)

    def write_error(self, error: dict[str, Any]) -> None:
        atomic_write_json(self.path / ERROR, error)

    @property
    def complete(self) -> bool:
        return (self.path / SUMMARY).exists()


# --- reading results back (pandas only; never torch)

RESULT_COLUMNS = ("suite", "task", "variant", "seed", "env_steps", "return_mean", "return_std", "return_min",
                  "return_max", "n_episodes", "grad_steps", "wall_s", "complete", "failed", "attempts", "env_id",
                  "job_hash", "run_dir")


def load_results(path: str | Path = "results"):
    """Every evaluation of every run under ``path`` as one tidy pandas DataFrame, one row per evaluation.

    A run is any directory holding ``config.json`` (written by ``qbench run`` or ``qbench train``). Columns:

    - ``suite``: the suite that ran the job (from runner.json; empty for ``qbench train`` runs)
    - ``task``, ``variant``, ``seed``, ``env_id``: the job
    - ``env_steps``: env steps of training at the evaluation
    - ``return_mean``, ``return_std``, ``return_min``, ``return_max``: greedy returns over ``n_episodes`` episodes
    - ``grad_steps``: gradient steps taken by then; ``wall_s``: seconds of training so far, summed over the
      attempts of a resumed run (time between attempts is not counted)
    - ``complete``: the run has its summary.json (finished); ``failed``: it has error.json and no summary
    - ``attempts``: how many times a runner started the job (1 for a run that was never interrupted)
    - ``job_hash``: the hash of the resolved config that names the run directory; ``run_dir``: its path

    Rows of incomplete runs are included (filter on ``complete``); normalised scores are computed at analysis
    time from the suite's random and reference scores, never stored.
    """
    import pandas as pd

    from qbench.config import config_hash

    frames = []
    for config_path in sorted(Path(path).rglob(CONFIG)):
        run_dir = config_path.parent
        evaluations = run_dir / EVALUATIONS
        if not evaluations.exists() or evaluations.stat().st_size == 0:
            continue
        try:
            job = json.loads(config_path.read_text())
            rows = pd.read_csv(evaluations)
        except (OSError, ValueError, pd.errors.EmptyDataError):
            continue   # a directory being written by a live run of an older qbench, or foreign files
        runner = read_json_or_empty(run_dir / RUNNER)
        complete = (run_dir / SUMMARY).exists()
        rows = rows.assign(suite=runner.get("suite", ""), task=job["task"], variant=job["variant"],
                           seed=int(job["seed"]), env_id=job.get("env_id", job["task"]), complete=complete,
                           failed=not complete and (run_dir / ERROR).exists(),
                           attempts=int(runner.get("attempts", 1)), job_hash=config_hash(job),
                           run_dir=str(run_dir))
        frames.append(rows)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RESULT_COLUMNS})
    df = pd.concat(frames, ignore_index=True)
    extra = [c for c in df.columns if c not in RESULT_COLUMNS]
    return df[[*RESULT_COLUMNS, *extra]]


def read_json_or_empty(path: Path) -> dict[str, Any]:
    """A JSON file's object, or {} when it is missing or unreadable (a run directory written by a killed run)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
