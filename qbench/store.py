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
EPISODES = "episodes.csv"  # one row per training episode, for tasks that name info keys to record (Task.episode_info)
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
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        if (Path(top) / "qbench").resolve() != here:   # a copy inside someone else's repository (a venv in it)
            return "unknown"
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

    def write_episodes(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.path / EPISODES, rows_to_csv(rows))

    def append_episodes(self, rows: list[dict[str, Any]]) -> None:
        """Many rows in one write: a run of short episodes (the maximisation-bias MDP ends in two steps) would
        otherwise open the file once per episode."""
        if rows:
            path = self.path / EPISODES
            text = rows_to_csv(rows)
            if path.exists() and path.stat().st_size > 0:
                text = text.split("\n", 1)[1]   # the header is already there
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY, summary)

    def write_error(self, error: dict[str, Any]) -> None:
        atomic_write_json(self.path / ERROR, error)

    @property
    def complete(self) -> bool:
        return (self.path / SUMMARY).exists()


def read_json_or_empty(path: Path) -> dict[str, Any]:
    """A JSON file's object, or {} when it is missing or unreadable (a run directory written by a killed run)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's config.json object, or {} when it is missing, unreadable or not an object: what the
    report reads a run's settings (gamma, env id, n-step target) from."""
    try:
        job = json.loads((Path(run_dir) / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return job if isinstance(job, dict) else {}
