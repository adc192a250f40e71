"""Issue "Benchmark harness" acceptance figures.

    python benchmarks/harness_acceptance.py kill  [--trials 5] [--seed 0] [--suite smoke] [--out DIR]
    python benchmarks/harness_acceptance.py speed [--suite benchmarks/suites/cpu_bound.toml] [--out DIR]

kill:  runs the suite once uninterrupted (the reference), then, per trial, starts `qbench run`, SIGKILLs
       the runner and its workers at a random moment while jobs run (after k of n jobs completed, k uniform,
       plus a uniform delay up to a median job's length; drawn from a seeded Generator), runs it again to
       completion, and reports: runs complete before the kill, runs interrupted mid-way, runs lost (no longer
       complete) or changed (any file rewritten), duplicate evaluation rows, and whether every evaluation
       equals the reference's.
speed: wall time of the suite with --workers 1 and with --workers 2 (fresh results folders) and their ratio.
       Run it on an otherwise idle machine: the load average is printed before each run.

Every run uses this checkout's qbench (PYTHONPATH), whatever copy is installed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def qbench(*args, **popen_kwargs) -> subprocess.Popen:
    paths = (str(REPO), os.environ.get("PYTHONPATH"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.Popen([sys.executable, "-m", "qbench", *map(str, args)], cwd=REPO, env=env, text=True,
                            **popen_kwargs)


def run_to_end(suite: str, results: Path, workers: int = 2) -> tuple[int, float]:
    started = time.perf_counter()
    proc = qbench("run", suite, "--results", results, "--workers", workers, stdout=subprocess.DEVNULL,
                  stderr=subprocess.PIPE)
    _, err = proc.communicate()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"qbench run failed ({proc.returncode}): {err}")
    return proc.returncode, time.perf_counter() - started


def complete_dirs(results: Path) -> list[Path]:
    return sorted(p.parent for p in results.rglob("summary.json"))


def snapshot(dirs: list[Path]) -> dict[str, tuple[int, bytes]]:
    return {str(f): (f.stat().st_mtime_ns, f.read_bytes())
            for d in dirs for f in sorted(d.iterdir()) if f.is_file()}


def evaluations(results: Path) -> dict[str, list[tuple]]:
    """Every run's evaluation rows without the wall-clock column, keyed by its path under the results."""
    out = {}
    for config in sorted(results.rglob("config.json")):
        with open(config.parent / "evaluations.csv", newline="") as fh:
            rows = [tuple(v for k, v in r.items() if k != "wall_s") for r in csv.DictReader(fh)]
        out[str(config.parent.relative_to(results))] = rows
    return out


def duplicate_rows(results: Path) -> int:
    dupes = 0
    for config in results.rglob("config.json"):
        with open(config.parent / "evaluations.csv", newline="") as fh:
            steps = [r["env_steps"] for r in csv.DictReader(fh)]
        dupes += len(steps) - len(set(steps))
    return dupes


def _wait_until(predicate, proc: subprocess.Popen, timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def kill_trials(suite: str, trials: int, seed: int, out: Path) -> None:
    """Kill moments are drawn so that they land while jobs run (not during interpreter start-up): after k of
    the n jobs completed, k uniform in 0..n-1, plus a delay uniform over the median job's wall time."""
    reference = out / "reference"
    _, ref_wall_s = run_to_end(suite, reference)
    expected = evaluations(reference)
    job_walls = [float(json.loads(p.read_text())["wall_s"]) for p in reference.rglob("summary.json")]
    median_job_s = float(np.median(job_walls))
    n = len(expected)
    print(f"reference: {n} runs of suite '{suite}' in {ref_wall_s:.1f} s (uninterrupted); median job "
          f"{median_job_s:.1f} s")
    rng = np.random.default_rng(seed)
    print(f"{'trial':>5} {'after k done':>12} {'+delay s':>8} {'complete':>8} {'interrupted':>11} "
          f"{'lost':>4} "
          f"{'changed':>7} {'dup rows':>8} {'all complete':>12} {'identical':>9}")
    failures = 0
    for trial in range(trials):
        results = out / f"kill{trial}"
        k = int(rng.integers(0, n))
        delay_s = float(rng.uniform(0.0, median_job_s))
        proc = qbench("run", suite, "--results", results, "--workers", 2, start_new_session=True,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if k == 0:   # the moment the first job has started
            _wait_until(lambda r=results: any(r.rglob("config.json")), proc)
        else:
            _wait_until(lambda r=results, k=k: len(complete_dirs(r)) >= k, proc)
        time.sleep(delay_s)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(0.5)   # let the killed workers go
        before_dirs = complete_dirs(results) if results.exists() else []
        started = len(list(results.rglob("config.json"))) if results.exists() else 0
        before = snapshot(before_dirs)
        run_to_end(suite, results)
        after_dirs = set(complete_dirs(results))
        lost = sum(d not in after_dirs for d in before_dirs)
        after = snapshot(before_dirs)
        changed = sum(before[f] != after.get(f) for f in before)
        dupes = duplicate_rows(results)
        all_complete = len(after_dirs) == n
        identical = evaluations(results) == expected
        failures += bool(lost or changed or dupes or not all_complete or not identical)
        print(f"{trial:>5} {k:>12} {delay_s:>8.2f} {len(before_dirs):>8} {started - len(before_dirs):>11} "
              f"{lost:>4} {changed:>7} {dupes:>8} {all_complete!s:>12} {identical!s:>9}", flush=True)
    print(f"kill test: {trials - failures}/{trials} trials with 0 runs lost or changed, no duplicate rows "
          f"and results identical to the uninterrupted run (generator seed {seed})")


def speed(suite: str, out: Path) -> None:
    walls = {}
    for workers in (1, 2):
        load = os.getloadavg()
        _, walls[workers] = run_to_end(suite, out / f"workers{workers}", workers)
        print(f"--workers {workers}: {walls[workers]:.1f} s (load average before: {load[0]:.2f} "
              f"{load[1]:.2f} "
              f"{load[2]:.2f})", flush=True)
    print(f"speed-up with 2 workers: {walls[1] / walls[2]:.2f}x (acceptance: >= 1.7x on 2 cores; "
          f"{os.cpu_count()} CPUs here)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("kill", "speed"))
    p.add_argument("--suite", default=None, help="suite name or file (kill: smoke; speed: cpu_bound.toml)")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="seed of the generator that draws the kill moments")
    p.add_argument("--out", default=None, help="results folder (default: a temporary one, removed after)")
    a = p.parse_args()
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="qbench-harness-"))
    try:
        if a.what == "kill":
            kill_trials(a.suite or "smoke", a.trials, a.seed, out)
        else:
            speed(a.suite or str(REPO / "benchmarks" / "suites" / "cpu_bound.toml"), out)
    finally:
        if not a.out:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
