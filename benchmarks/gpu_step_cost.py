"""Per-step costs of qbench's training loop on a GPU (issue 28), for the first lent device: env steps per second of
training (after the warm-up, gradient steps included) for CartPole-v1 dqn with K = 1, 8 and 32 seeds in one
process, MinAtar Breakout dqn (minatar_cnn) and ALE Pong dqn (nature_cnn, the Atari protocol), each on the chosen
device, written as JSON. benchmarks/gpu_check.sh runs it with the CUDA tests in at most 8 minutes.

    python benchmarks/gpu_step_cost.py [--device cuda] [--out results/benchmarks/gpu_check] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

# (name, variant, task, seeds, env steps, settings): budgets small enough for minutes, past the warm-up by far
CASES = [
    ("cartpole_k1", "dqn", "CartPole-v1", 1, 10_000, {}),
    ("cartpole_k8", "dqn", "CartPole-v1", 8, 10_000, {}),
    ("cartpole_k32", "dqn", "CartPole-v1", 32, 10_000, {}),
    ("minatar_breakout", "dqn", "MinAtar/Breakout-v1", 1, 20_000, {"warmup_env_steps": 5_000}),
    ("pong", "dqn", "ALE/Pong-v5", 1, 10_000, {"warmup_env_steps": 5_000, "buffer_size": 20_000}),
]


def run_case(name, variant, task, seeds, steps, settings, device, folder: Path, quick: bool) -> dict:
    steps = steps // 10 if quick else steps
    settings = {**settings, "device": device, "eval_interval_env_steps": steps, "eval_episodes": 1,
                "log_interval_env_steps": max(steps // 20, 100)}
    if "warmup_env_steps" in settings and quick:
        settings["warmup_env_steps"] //= 10
    argv = [sys.executable, "-m", "qbench", "train", variant, task, "--seeds", f"0-{seeds - 1}", "--steps",
            str(steps), "--out", str(folder / name)]
    for key, value in settings.items():
        argv += ["--set", f"{key}={json.dumps(value)}"]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - started
    record = {"case": name, "variant": variant, "task": task, "seeds": seeds, "env_steps": steps,
              "settings": settings, "returncode": done.returncode, "wall_s": round(wall_s, 2)}
    if done.returncode != 0:
        record["error"] = (done.stderr or done.stdout).strip().splitlines()[-1:]
        return record
    diagnostics = pd.read_csv(folder / name / "seed0" / "diagnostics.csv")
    warm = settings.get("warmup_env_steps", 1000)
    learning = diagnostics[diagnostics["env_steps"] > warm + settings["log_interval_env_steps"]]
    # steps_per_s of a row: env steps of the batch's seeds per second over its interval (every seed steps)
    per_seed = float(learning["steps_per_s"].median()) if len(learning) else float("nan")
    record.update({"env_steps_per_s_per_seed": round(per_seed, 1),
                   "env_steps_per_s_all_seeds": round(per_seed * seeds, 1),
                   "ms_per_env_step_of_batch": round(1000 / per_seed, 4) if math.isfinite(per_seed) else None})
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--out", default="results/benchmarks/gpu_check")
    p.add_argument("--quick", action="store_true", help="a tenth of every budget (to check the script itself)")
    p.add_argument("--cases", default=",".join(c[0] for c in CASES))
    args = p.parse_args(argv)
    import torch

    wanted = set(args.cases.split(","))
    folder = Path(tempfile.mkdtemp(prefix="qbench-gpu-"))
    records = []
    try:
        for case in CASES:
            if case[0] in wanted:
                records.append(run_case(*case, args.device, folder, args.quick))
                print(json.dumps(records[-1]), flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    (out / f"step_cost_{args.device}.json").write_text(json.dumps({
        "device": args.device, "gpu": gpu, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "quick": args.quick, "cases": records}, indent=1) + "\n")
    return 0 if all(r["returncode"] == 0 for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
