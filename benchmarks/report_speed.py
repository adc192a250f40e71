"""Issue "Multi-seed statistics and reports" acceptance figure: a report over 1,000 runs x 50 evaluations.

    python benchmarks/report_speed.py [--tasks 10] [--variants 10] [--seeds 10] [--evaluations 50] [--reps 2000]
                                      [--repeats 3] [--keep DIR]

Writes a synthetic results folder with the exact layout `qbench run` writes (qbench.analysis.synthetic), then
times `qbench report FOLDER` end to end in a fresh process (import, reading every run directory, every table
with 2000 bootstrap resamples, every figure, all four formats), `--repeats` times, and prints each wall time and
the stages of one run measured in-process. The acceptance bar is 30 s on this machine (2 cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--variants", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--evaluations", type=int, default=50)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", default=None, help="write the folder and the report here and keep them")
    args = parser.parse_args()

    from qbench.analysis.synthetic import write_synthetic_results

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="qbench-report-bench-"))
    results = folder / "results"
    started = time.perf_counter()
    runs = write_synthetic_results(results, tasks=args.tasks, variants=args.variants, seeds=args.seeds,
                                   evaluations=args.evaluations, rng=np.random.default_rng(0))
    print(f"wrote {runs} runs x {args.evaluations} evaluations in {time.perf_counter() - started:.1f} s "
          f"({args.tasks} tasks x {args.variants} variants x {args.seeds} seeds)")
    print(f"load average before timing: {os.getloadavg()[0]:.2f}")

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    walls = []
    for i in range(args.repeats):
        started = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "qbench", "report", str(results), "--out", str(folder / "report"),
                            "--reps", str(args.reps)], cwd=REPO, env=env, capture_output=True, text=True,
                           check=False)
        walls.append(time.perf_counter() - started)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            return 1
        print(f"qbench report, run {i + 1}: {walls[-1]:.1f} s wall (whole command, fresh process)")

    # Where the time goes, in-process.
    from qbench.analysis.render import write_report
    from qbench.analysis.report import build_report
    from qbench.loading import load_results

    t0 = time.perf_counter()
    df = load_results(results)
    t1 = time.perf_counter()
    report = build_report(df, reps=args.reps)
    t2 = time.perf_counter()
    write_report(report, folder / "report-stages")
    t3 = time.perf_counter()
    print(f"stages: load_results {t1 - t0:.1f} s ({len(df):,} rows), tables {t2 - t1:.1f} s, "
          f"figures and files {t3 - t2:.1f} s")
    print(f"median wall {float(np.median(walls)):.1f} s over {len(walls)} runs (bar: 30 s)")
    if not args.keep:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
