#!/usr/bin/env bash
# Issue 28: the GPU check, prepared for the first lent device (at most 8 minutes): the CUDA tests, then per-step
# costs on the GPU (benchmarks/gpu_step_cost.py: CartPole-v1 at K = 1, 8, 32 seeds, MinAtar Breakout, ALE Pong),
# written as JSON to ${OUT:-results/benchmarks/gpu_check}. On the device machine: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-results/benchmarks/gpu_check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia_smi.csv" 2>&1 || true
timeout 120 python -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py 2>&1 | tail -n 20 > "$out/cuda_tests.txt"
echo "cuda tests: $(tail -n 1 "$out/cuda_tests.txt")"
timeout 330 python benchmarks/gpu_step_cost.py --device cuda --out "$out"
