"""Issue 11: the matrix products of the bare CartPole update, timed where they run and alone.

    python benchmarks/products_in_loop.py [--seeds-per-process 1,8,32] [--steps 30] [--json OUT]

One thread. The update is benchmarks/bare_update.py's (qbench's batched 4-256-256-2 layers, arena, FusedAdam, Huber
loss, a fixed batch of 64 a seed). Every aten op of --steps updates is timed around its own call (a
TorchDispatchMode, which sees the backward's ops too); the products (baddbmm, bmm) are grouped by shape. Each
product is then replayed alone on tensors of the same shapes and strides: repeated in place (hot caches, the way a
matmul benchmark runs it) and after 64 MiB of other memory has been written (cold caches). It prints, per K and per
product, ms in the update, ms alone hot and cold, and the share of the update's time the products take.

What it says: the FLOP floor (benchmarks/flop_floor.py) is the rate of a 2048-cube product, which reuses every
operand from cache. A TD update at these shapes is a chain of products whose operands (weights, their gradients,
Adam's moments, the target's weights, activations) add up to megabytes a seed; where a product runs slower in the
update than alone hot, and about as slow as alone cold, the update is bound by memory traffic, not by arithmetic. And where the products alone, at their
speed in the update, already take 1.5x the floor's time, no bookkeeping around them can bring the update within it.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bare_update import best_ms, build_update
from flop_floor import count_flops, matmul_gflops

PRODUCTS = ("aten.baddbmm.default", "aten.bmm.default")


class OpTimer(TorchDispatchMode):
    """Wall time of every aten op, keyed by (op, shapes and strides of its tensor arguments)."""

    def __init__(self):
        super().__init__()
        self.seconds = collections.defaultdict(float)
        self.calls = collections.Counter()
        self.args = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        started = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        elapsed = time.perf_counter() - started
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        key = (str(func), tuple((tuple(t.shape), t.stride()) for t in tensors))
        self.seconds[key] += elapsed
        self.calls[key] += 1
        if key not in self.args:
            self.args[key] = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args]
        return out


def strided_like(t: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
    """A tensor with t's values, shape and strides (the arena's views are not contiguous across seeds)."""
    size = 1 + sum((n - 1) * s for n, s in zip(t.shape, stride, strict=True))
    out = torch.empty(size).as_strided(t.shape, stride)
    out.copy_(t)
    return out


def measure(k_seeds: int, steps: int) -> dict:
    update = build_update(k_seeds)
    for _ in range(20):
        update()
    timer = OpTimer()
    with timer:
        for _ in range(steps):
            update()
    plain_update_ms = best_ms(update, repeats=max(1, steps))
    junk = torch.empty(64 * 1024 * 1024 // 4)
    rows, in_update_total = [], 0.0
    for key, seconds in sorted(timer.seconds.items(), key=lambda kv: -kv[1]):
        op, shapes = key
        if op not in PRODUCTS:
            continue
        args = [strided_like(a, s) if isinstance(a, torch.Tensor) else a
                for a, s in zip(timer.args[key], [sh[1] for sh in shapes] + [None] * 8, strict=False)]
        func = torch.baddbmm if op == "aten.baddbmm.default" else torch.bmm
        tensors = [a for a in args if isinstance(a, torch.Tensor)]

        def product(func=func, tensors=tensors):
            return func(*tensors)

        def cold_ms(product=product, repeats: int = 20) -> float:
            """Best time of the product alone, each call timed right after 64 MiB were written."""
            best = float("inf")
            for _ in range(repeats):
                junk.add_(1.0)
                started = time.perf_counter()
                product()
                best = min(best, time.perf_counter() - started)
            return best * 1e3

        per_update = seconds / steps * 1e3
        in_update_total += per_update
        calls = timer.calls[key] // steps
        rows.append({"op": op.split(".")[1], "shapes": [list(s[0]) for s in shapes], "calls_per_update": calls,
                     "in_update_ms": per_update / calls, "alone_hot_ms": best_ms(product),
                     "alone_cold_ms": cold_ms()})
    all_ops_ms = sum(timer.seconds.values()) / steps * 1e3
    return {"K": k_seeds, "update_ms": plain_update_ms, "all_ops_ms": all_ops_ms, "products_ms": in_update_total, "products": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds-per-process", default="1,8,32", help="comma-separated K values")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    try:
        ks = [int(k) for k in args.seeds_per_process.split(",") if k.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1 or args.steps < 1:
        parser.error("--seeds-per-process must be positive integers (e.g. 1,8,32); --steps >= 1")
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.2f}")
    peak = matmul_gflops()
    flops = count_flops("dqn_cartpole")
    floor_ms = (flops["matmul_flops"] + flops["other_flops"]) / (peak["best_gflops"] * 1e9) * 1e3
    print(f"FLOP floor of the update: {floor_ms:.3f} ms a seed ({peak['best_gflops']:.1f} GFLOP/s, 2048-cube)")
    results = []
    for k in ks:
        r = measure(k, args.steps)
        r["floor_ms"] = floor_ms
        results.append(r)
        print(f"\nK = {k}: update {r['update_ms']:.3f} ms ({r['update_ms'] / k:.3f} a seed); with every op timed, "
              f"the ops took {r['all_ops_ms']:.3f} ms, the products {r['products_ms']:.3f} "
              f"({r['products_ms'] / k:.3f} a seed, {r['products_ms'] / k / floor_ms:.2f}x the floor; the update "
              f"{r['update_ms'] / k / floor_ms:.2f}x)")
        print(f"  {'op':8s} {'shapes':44s} {'calls':>5s} {'in update':>10s} {'alone hot':>10s} {'alone cold':>10s}")
        for p in r["products"]:
            shapes = " ".join("x".join(map(str, s)) for s in p["shapes"])
            print(f"  {p['op']:8s} {shapes:44s} {p['calls_per_update']:5d} {p['in_update_ms']:10.3f} "
                  f"{p['alone_hot_ms']:10.3f} {p['alone_cold_ms']:10.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"torch": torch.__version__, "steps": args.steps, "peak": peak,
                                               "load_before": os.getloadavg()[0], "rows": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
