"""Engine acceptance (issues "Core Q-learning engine" and "Continuous-action Q-learning"): final greedy returns per
seed for each (variant, task).

    python benchmarks/engine_acceptance.py --tasks CartPole-v1 --seeds 5 [--variants dqn,double_dqn] [--workers 2]
                                           [--set key=value ...] [--out results/acceptance]

Prints one line per job and a table of per-seed final returns with the count of seeds at or above the threshold.
Runs each job in its own process (one torch thread each); every run directory is kept under --out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

# The issues' acceptance thresholds on the final greedy evaluation; (task, variant) entries override the task's.
THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "MountainCar-v0": -120.0, "Pendulum-v1": -200.0,
              ("Pendulum-v1", "random_q"): -300.0, "MountainCarContinuous-v0": 90.0}
DISCRETE = ["dqn", "double_dqn", "nstep_dqn", "huber_dqn", "double_nstep_huber_dqn", "online_q", "fitted_q"]


def _one(args: tuple) -> dict:
    variant, task, seed, overrides, out = args
    from qbench.config import parse_assignment
    from qbench.engine import DivergedError, run_job
    from qbench.jobs import build_job
    from qbench.store import RunDir

    layer = dict(parse_assignment(s) for s in overrides)
    job = build_job(variant, task, seed, layer)
    path = Path(out) / task / variant / f"seed{seed}-{job.hash}"
    if (path / "summary.json").exists():
        return json.loads((path / "summary.json").read_text())
    try:
        return run_job(job, RunDir(path), ["benchmarks/engine_acceptance.py"])
    except DivergedError as exc:  # a diverged run is a result, not a crash of the benchmark
        return {"variant": variant, "task": task, "seed": seed, "final_return_mean": float("nan"),
                "wall_s": float("nan"), "error": str(exc)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", default="CartPole-v1")
    p.add_argument("--variants", default=",".join(DISCRETE))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--out", default="results/acceptance")
    a = p.parse_args()
    jobs = [(v, t, s, a.set, a.out) for t in a.tasks.split(",") for v in a.variants.split(",")
            for s in range(a.seeds)]
    started = time.perf_counter()
    results = []
    with mp.get_context("spawn").Pool(a.workers) as pool:
        for r in pool.imap_unordered(_one, jobs):
            results.append(r)
            print(f"{r['task']:<15} {r['variant']:<24} seed {r['seed']}: final {r['final_return_mean']:8.1f}"
                  f"  ({r['wall_s']:.0f} s){'  ' + r['error'] if 'error' in r else ''}", flush=True)
    print(f"\nwall {time.perf_counter() - started:.0f} s with {a.workers} workers; overrides: {a.set or 'none'}")
    for t in a.tasks.split(","):
        for v in a.variants.split(","):
            rs = sorted((r for r in results if r["task"] == t and r["variant"] == v), key=lambda r: r["seed"])
            finals = [r["final_return_mean"] for r in rs]
            thr = THRESHOLDS.get((t, v), THRESHOLDS.get(t, float("inf")))
            hits = sum(f >= thr for f in finals)
            print(f"{t:<15} {v:<24} {hits}/{len(finals)} >= {thr:g}: " + " ".join(f"{f:.1f}" for f in finals))


if __name__ == "__main__":
    main()
