#!/usr/bin/env bash
# CPU seconds of identical short training runs on two checkouts of qbench, alternating, for a change that must
# not slow the engine down (issue 26's redesign: before = c6d4857, after = the redesign).
#
#   git worktree add --detach /tmp/before c6d4857
#   benchmarks/before_after_speed.sh /tmp/before . [REPEATS] [STEPS]
#
# One line per run: repeat, side, variant, user s, system s, wall s. Compare user seconds of the same repeat (the
# two sides of a repeat run back to back, so they share the machine's load); report the ratios, not the seconds.
set -euo pipefail
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd); repeats=${3:-3}; steps=${4:-15000}
out=$(mktemp -d)
for rep in $(seq 1 "$repeats"); do
  for variant in dqn nstep_dqn retrace_dqn; do
    for side in before after; do
      tree=$before; [ "$side" = after ] && tree=$after
      ( cd "$out" && /usr/bin/time -f "$rep $side $variant %U %S %e" env PYTHONPATH="$tree" OMP_NUM_THREADS=1 \
          python -m qbench train "$variant" CartPole-v1 --steps "$steps" --out "$out/$side-$variant-$rep" \
          >/dev/null 2>"$out/time" ) || { cat "$out/time" >&2; exit 1; }
      tail -1 "$out/time"
    done
  done
done
rm -rf "$out"
