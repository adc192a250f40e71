#!/usr/bin/env bash
# Issue 25, item 6: LunarLander-v3 `dqn` and `double_dqn` (MSE loss, no clipping) at the task's 100k env steps. With
# the zoo's settings, which the zoo tuned for SB3's DQN (Huber loss, gradient norm 10), they reached a mean of 9.5 and
# 85.5 on seeds 0-4 against the zoo's 154. Candidates change the task's settings, so one candidate serves both
# variants (the same budget, 100k env steps and 10 seeds a batch, for every variant and candidate).
# The rule, fixed before any candidate ran: a candidate's score is the mean final return over seeds 100-104 of both
# variants (10 runs); the highest score is kept. Seeds 0-4 train in the same batch (one process per variant and
# candidate, seeds 0-4 and 100-104; a seed's numbers do not depend on its batch-mates) and are reported for the kept
# candidate only as its result; they play no part in the choice.
# Results: benchmarks/tuning/issue25_lunarlander/<candidate>/<variant>/seed<k>.
# Usage: bash benchmarks/tuning/issue25_lunarlander.sh CANDIDATE VARIANT
set -euo pipefail
cd "$(dirname "$0")/../.."
out=benchmarks/tuning/issue25_lunarlander
declare -A candidates=(
  # the learning rate decayed linearly to 0 (what CartPole and MountainCar needed): late updates stop moving a
  # greedy policy that MSE's large LunarLander errors (crash -100, landing +100) keep shaking
  [l1_linear]="--set lr_schedule=linear"
  # and a smaller step: MSE's gradient grows with the TD error where Huber's stops at delta 1
  [l2_lr2.5e-4_linear]="--set lr=2.5e-4 --set lr_schedule=linear"
  # added after l1 and l2 had run, under the same rule: the zoo's settings with the gradient-norm clip at 10 that
  # SB3's DQN applies by default, so that the zoo's numbers ran with it (the loss stays MSE)
  [l3_clip10]="--set grad_clip=norm --set max_grad_norm=10"
)
name=$1; variant=$2
echo "== $name: qbench train $variant LunarLander-v3 --seeds 0-4,100-104 ${candidates[$name]}"
# shellcheck disable=SC2086
qbench train "$variant" LunarLander-v3 --seeds 0-4,100-104 --out "$out/$name/$variant" ${candidates[$name]}
