"""Issue 12 acceptance: one Atari job at its full budget through `qbench run`, SIGKILLed once mid-run and resumed.

    python benchmarks/atari_acceptance.py [--suite benchmarks/suites/pong100k.toml] [--kill-at 50000] [--out DIR]

Starts `qbench run SUITE --workers 1`, waits until the job's checkpoint stands at or past --kill-at env steps,
SIGKILLs the runner's whole process group, then runs the suite again to completion. Prints (and writes as JSON
beside the results) the wall time of each part, agent steps/s over the whole job, the peak resident memory and
the replay bytes per transition from the summary, and the final evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def start(suite: str, results: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.Popen([sys.executable, "-m", "qbench", "run", suite, "--results", str(results), "--workers",
                             "1"], cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def checkpoint_env_steps(results: Path) -> int:
    steps = 0
    for path in results.rglob("checkpoint.pt"):
        try:
            steps = max(steps, torch.load(path, weights_only=False)["loop"]["env_steps"])
        except Exception:   # noqa: BLE001, S112 - being written right now: look again at the next poll
            continue
    return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", default="benchmarks/suites/pong100k.toml")
    parser.add_argument("--kill-at", type=int, default=50_000)
    parser.add_argument("--out", default="results/issue12_pong100k")
    args = parser.parse_args()
    results = REPO / args.out
    t0 = time.perf_counter()
    proc = start(args.suite, results)
    while proc.poll() is None and checkpoint_env_steps(results) < args.kill_at:
        time.sleep(5)
    killed_at = checkpoint_env_steps(results)
    first_s = time.perf_counter() - t0
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    t1 = time.perf_counter()
    rerun = start(args.suite, results)
    _, err = rerun.communicate()
    second_s = time.perf_counter() - t1
    summaries = [json.loads(p.read_text()) for p in results.rglob("summary.json")]
    metas = [json.loads(p.read_text()) for p in results.rglob("metadata.json")]
    report = {"suite": args.suite, "killed_with_checkpoint_at_env_steps": killed_at, "first_part_wall_s": first_s,
              "resumed_part_wall_s": second_s, "rerun_exit": rerun.returncode, "stderr_tail": err[-2000:],
              "resumed": [m.get("resumed") for m in metas], "summaries": summaries}
    (results / "acceptance.json").write_text(json.dumps(report, indent=2))
    for s in summaries:
        print(f"{s['task']} {s['variant']} seed {s['seed']}: final return {s['final_return_mean']:.1f} "
              f"(+- {s['final_return_std']:.1f}), {s['env_steps']} agent steps = {s.get('frames')} frames; "
              f"wall {first_s:.0f} s before the kill at checkpoint {killed_at} + {second_s:.0f} s resumed; "
              f"{s['env_steps'] / (first_s + second_s):.1f} agent steps/s overall (the resumed part replays "
              f"from the checkpoint); peak RSS {s['peak_rss_mb']:.0f} MiB; replay "
              f"{s['replay_bytes_per_transition']:.1f} bytes per transition")


if __name__ == "__main__":
    main()
