"""Harness test helpers: run this checkout's qbench CLI in a subprocess, read run directories."""

import csv
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def env_with_repo() -> dict[str, str]:
    """PYTHONPATH puts this checkout first, so subprocesses import it even where another copy of qbench is
    installed (in CI, where qbench is installed editable from this checkout, it changes nothing)."""
    paths = (str(REPO), os.environ.get("PYTHONPATH"))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def qbench_argv(*args) -> list[str]:
    return [sys.executable, "-m", "qbench", *map(str, args)]


def run_qbench(*args, cwd=REPO, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(qbench_argv(*args), cwd=cwd, env=env_with_repo(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def popen_qbench(*args, cwd=REPO, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(qbench_argv(*args), cwd=cwd, env=env_with_repo(), text=True, **kwargs)


def run_dirs(results: Path) -> list[Path]:
    return sorted(p.parent for p in Path(results).rglob("config.json"))


def complete_dirs(results: Path) -> list[Path]:
    return sorted(p.parent for p in Path(results).rglob("summary.json"))


def evaluation_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "evaluations.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def results_without_wall_time(results: Path) -> dict[str, list[tuple]]:
    """Every run's evaluation rows (without wall-clock time), keyed by its path below the results folder."""
    out = {}
    for d in run_dirs(results):
        rows = evaluation_rows(d)
        out[str(d.relative_to(results))] = [tuple(v for k, v in r.items() if k != "wall_s") for r in rows]
    return out


def snapshot(dirs: list[Path]) -> dict[str, tuple[int, bytes]]:
    """(mtime, bytes) of every file in the given run directories."""
    return {str(f): (f.stat().st_mtime_ns, f.read_bytes())
            for d in dirs for f in sorted(d.iterdir()) if f.is_file()}
