#!/usr/bin/env bash
# Issue 25: NAF with its own settings, chosen on seeds 100-104 (never reported), Pendulum-v1 at the task's 20k env
# steps, 4 candidates (the same number as every other variant retuned in this issue). Each candidate trains its 5
# seeds in one process (qbench train --seeds). Results: benchmarks/tuning/issue25_naf/<candidate>/seed<k>.
# Usage: bash benchmarks/tuning/issue25_naf.sh [candidate ...]   (default: all; a finished one is skipped)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/tuning/issue25_naf
# PFRL's NAF example (examples/gym/train_dqn_gym.py on a Box space): 2 x 100 units, Adam 1e-3, replay 5e5, batch 32,
# 1000 steps before learning, one gradient step per env step, hard target copy every 100, gamma 0.99, rewards x 1e-3,
# additive OU noise with sigma 0.2 x the action range (= 0.4 in qbench's units of half the range), theta 0.15, dt 1.
pfrl=(--set 'hidden_sizes=[100, 100]' --set lr=1e-3 --set buffer_size=500000 --set batch_size=32
      --set warmup_env_steps=1000 --set env_steps_per_update=1 --set grad_steps_per_update=1
      --set target_update=hard --set target_period_grad_steps=100 --set gamma=0.99 --set reward_scale=1e-3
      --set action_noise=ou --set noise_std=0.4 --set ou_theta=0.15 --set ou_dt=1.0)
declare -A candidates=(
  [n0_task_settings]=""                                             # today's: DDPG's settings from the task
  [n1_pfrl]="${pfrl[*]@Q}"                                          # PFRL verbatim
  [n2_pfrl_gamma098]="${pfrl[*]@Q} --set gamma=0.98"                # the task's (the zoo's) discount
  [n3_pfrl_unscaled]="${pfrl[*]@Q} --set reward_scale=1.0"          # rewards as the env pays them
)
names=("$@"); [ ${#names[@]} -eq 0 ] && names=(n0_task_settings n1_pfrl n2_pfrl_gamma098 n3_pfrl_unscaled)
for name in "${names[@]}"; do
  eval "args=(${candidates[$name]})"
  echo "== $name: qbench train naf Pendulum-v1 --seeds 100-104 ${args[*]}"
  qbench train naf Pendulum-v1 --seeds 100-104 --out "$out/$name" "${args[@]}"
done
