#!/usr/bin/env bash
# Issue 28: the reference results. Every variant of `classic` (CartPole-v1, Acrobot-v1, MountainCar-v0,
# LunarLander-v3 x 13 discrete variants) and `continuous` (Pendulum-v1, MountainCarContinuous-v0,
# LunarLanderContinuous-v3 x 4 continuous variants), 5 seeds (0-4) each at the tasks' tuned budgets, into
# results/reference/<suite>/ (committed: run directories without checkpoints). Resumable: run it again and complete
# jobs are skipped, interrupted ones resume from their checkpoints (which stay on this machine only).
# Usage: bash benchmarks/reference.sh [TASK ...]   (default: every task, in the order below; one worker at nice 19)
# Commit each task's run directories as it completes (small files), so that a session's end loses nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/reference
workers=${QBENCH_REFERENCE_WORKERS:-1}
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(CartPole-v1 Pendulum-v1 Acrobot-v1 MountainCar-v0 LunarLander-v3
                                  MountainCarContinuous-v0 LunarLanderContinuous-v3)
mkdir -p "$out"
{
  echo "commit: $(git rev-parse HEAD)"
  echo "machine: $(uname -srm), $(nproc) cores, $(python -c 'import platform; print(platform.processor() or "cpu")')"
  python -c 'import importlib.metadata as m; print("packages: " + ", ".join(f"{p} {m.version(p)}" for p in ("qbench", "torch", "gymnasium", "numpy", "pandas")))'
} > "$out/ENVIRONMENT-$(date -u +%Y%m%dT%H%M%S).txt"
for task in "${tasks[@]}"; do
  case "$task" in
    Pendulum-v1|MountainCarContinuous-v0|LunarLanderContinuous-v3) suite=continuous ;;
    *) suite=classic ;;
  esac
  echo "== $(date -u +%FT%TZ) qbench run $suite --only task=$task --results $out --workers $workers"
  nice -n 19 qbench run "$suite" --only "task=$task" --results "$out" --workers "$workers" || true
done
