"""Issue 11: the bare TD update of the CartPole configuration on qbench's own parts, with nothing around it.

    python benchmarks/bare_update.py [--seeds-per-process 1,8,32] [--compile] [--steps 100] [--blocks 5]

One thread. K seeds' online and target DiscreteQ (4-256-256-2, batched layers, one arena each), FusedAdam, a fixed
batch of 64 random transitions a seed (no replay sampling, no acting, no env, no bookkeeping): target max under the
target net, Huber loss (delta 1), backward, Adam. Prints the best of --blocks blocks of --steps updates, per step
and per seed. With --compile the loss (forward, target and backward through AOTAutograd) is compiled by
torch.compile's default CPU backend (inductor) first, and its compile time printed: it measures what fusing the
elementwise ops around the matrix products would buy (numbers differ from eager: fusion rounds differently).

What it bounds: no engine step built from these parts can be faster than this bare update, so it says how much of
the gap to the FLOP floor (benchmarks/flop_floor.py) is the update itself, at its kernels' speed, and how much is
the engine around it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qbench.parts.networks import DiscreteQ, flatten_parameters
from qbench.parts.optim import FusedAdam


def build_update(k_seeds: int, compile_loss: bool = False):
    """The bare update of K seeds as a function of nothing (its tensors live in the closure); with compile_loss
    the loss is wrapped in torch.compile (compiled on its first call)."""
    gens = [torch.Generator().manual_seed(i) for i in range(k_seeds)]
    online = flatten_parameters(DiscreteQ(gens, 4, 2, [256, 256]))
    target = flatten_parameters(DiscreteQ(gens, 4, 2, [256, 256])).requires_grad_(False)
    optimiser = FusedAdam([online.arena], lr=1e-3)
    data = torch.Generator().manual_seed(1)
    obs, next_obs = torch.randn(k_seeds, 64, 4, generator=data), torch.randn(k_seeds, 64, 4, generator=data)
    actions = torch.randint(0, 2, (k_seeds, 64), generator=data)
    rewards, discounts = torch.randn(k_seeds, 64, generator=data), torch.full((k_seeds, 64), 0.99)

    def loss_of(obs, actions, rewards, discounts, next_obs):
        with torch.no_grad():
            y = rewards + discounts * target.all_actions(next_obs).amax(-1)
        q = online.all_actions(obs).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return F.huber_loss(q, y, reduction="none", delta=1.0).mean(-1)

    loss_fn = torch.compile(loss_of) if compile_loss else loss_of

    def update() -> None:
        online.arena.grad.zero_()
        loss_fn(obs, actions, rewards, discounts, next_obs).sum().backward()
        optimiser.step()

    return update


def bare_update_ms(k_seeds: int, compile_loss: bool, steps: int, blocks: int) -> tuple[float, float | None]:
    """(best ms per update of all K seeds, compile seconds or None)."""
    started = time.perf_counter()
    update = build_update(k_seeds, compile_loss)
    compile_s = None
    if compile_loss:
        update()
        update()
        compile_s = time.perf_counter() - started
    return best_ms(update, steps, blocks, warmup=20), compile_s


def best_ms(fn, repeats: int = 50, blocks: int = 5, warmup: int = 5) -> float:
    """The best of `blocks` blocks of `repeats` calls of fn, in ms a call, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(blocks):
        started = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - started) / repeats)
    return best * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds-per-process", default="1,8,32", help="comma-separated K values")
    parser.add_argument("--compile", action="store_true", help="torch.compile the loss first (inductor)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--blocks", type=int, default=5)
    args = parser.parse_args()
    try:
        ks = [int(k) for k in args.seeds_per_process.split(",") if k.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1 or args.steps < 1 or args.blocks < 1:
        parser.error("--seeds-per-process must be positive integers (e.g. 1,8,32); --steps and --blocks >= 1")
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.2f}")
    for k in ks:
        ms, compile_s = bare_update_ms(k, args.compile, args.steps, args.blocks)
        extra = "" if compile_s is None else f" (compiled in {compile_s:.1f} s)"
        print(f"K={k:3d} {'compiled' if args.compile else 'eager':8s}: {ms:7.3f} ms an update, "
              f"{ms / k:.3f} ms a seed{extra}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
