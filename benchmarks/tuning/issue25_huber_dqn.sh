#!/usr/bin/env bash
# Issue 25: huber_dqn on CartPole-v1 (the sanity pair that failed), its Huber delta and gradient-norm threshold
# chosen on seeds 100-109 (never reported), the task's 50k env steps, 4 candidates (the same number as NAF's). Each
# candidate trains its 10 seeds in one process. Candidate h0 (the task's settings, delta 10 and norm 100) was run as
# `qbench run sanity --seeds 110 --only seed=100,...,109 --only task=CartPole-v1 --only variant=huber_dqn`
# (results/benchmarks/issue25_sanity_seeds100). Results: benchmarks/tuning/issue25_huber_dqn/<candidate>/seed<k>.
# Usage: bash benchmarks/tuning/issue25_huber_dqn.sh [candidate ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/tuning/issue25_huber_dqn
declare -A candidates=(
  [h1_delta100_norm100]="--set huber_delta=100 --set max_grad_norm=100"
  [h2_delta100_norm1000]="--set huber_delta=100 --set max_grad_norm=1000"
  [h3_delta10_norm1000]="--set huber_delta=10 --set max_grad_norm=1000"
)
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(h1_delta100_norm100 h2_delta100_norm1000 h3_delta10_norm1000)
for name in "${names[@]}"; do
  echo "== $name: qbench train huber_dqn CartPole-v1 --seeds 100-109 ${candidates[$name]}"
  # shellcheck disable=SC2086
  qbench train huber_dqn CartPole-v1 --seeds 100-109 --out "$out/$name" ${candidates[$name]}
done
