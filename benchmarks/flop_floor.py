"""Issue 11 "Seeds as a tensor axis": the hardware floor of one TD update on one thread, and qbench's distance to it.

    python benchmarks/flop_floor.py [--configs dqn_cartpole,ddpg_pendulum] [--reps 200] [--repeats 3]
                                    [--steps-scale 1.0] [--seeds-per-process 1,8,32] [--no-engine] [--json OUT]

Everything runs on one thread (OMP/MKL/OPENBLAS_NUM_THREADS=1 set before torch is imported, and
torch.set_num_threads(1)). Three measurements:

(a) Peak rate: GFLOP/s of a 2048 x 2048 x 2048 float32 matmul (2 * 2048^3 FLOPs), the best of 5 after a warm-up
    (a floor wants the best rate the core reaches; the median is printed beside it).

(b) FLOP count and floor of one TD update of each configuration of benchmarks/sb3_side_by_side.py, counted by hand
    for the minimal update:
    - dqn_cartpole: MLP 4-256-256-2 at batch 64: forward of the online net on s, of the target net on s' (no grad),
      backward (weight gradients of every layer, input gradients of every layer but the first), gradient-norm
      clipping, Adam.
    - ddpg_pendulum: critic 4-400-300-1 (state and action in) and actor 3-400-300-1 (tanh) at batch 256: target actor
      and target critic on s', critic forward and backward (as above), actor forward, critic forward at (s, mu(s)),
      backward through the critic to the action (input gradients of all critic layers, no critic weight gradients)
      and through the actor (weight gradients, input gradients but the first layer's), two Adams, polyak on both
      targets.
    "matmul" FLOPs are 2 * batch * in * out per matrix product; "other" FLOPs count bias adds, ReLU/tanh and their
    gradients (one FLOP per element each way), the loss, Adam (12 per parameter), clipping (3 per parameter) and
    polyak (3 per parameter). floor = (matmul + other) FLOPs / the peak rate of (a): a lower bound that no
    implementation reaches (the small elementwise ops are memory-bound and every op has a fixed dispatch cost).

    The minimal update is then measured: the same ops written as plain torch (parameters as bare tensors,
    torch.addmm, autograd, fused Adam, clip_grad_norm_ with foreach, _foreach_lerp_ for polyak, hard copy every 128
    updates for DQN), each update sampling its batch by index from a filled, preallocated replay tensor (one randint
    and five index_selects; part of any update). Time per update = median over 5 blocks of --reps updates each,
    after a warm-up.

(c) qbench's own cost per gradient step, measured through the public API so that it keeps measuring whatever the
    engine becomes: two `engine.train_batch` runs of the configuration (the settings of sb3_side_by_side.py, on a shorter
    budget) that differ only in grad_steps_per_update (dqn: 128 and 384 per round of 256 env steps, 4,096 env steps;
    ddpg: 1 and 3 per env step, 2,000 env steps; both with the 1,000-step warm-up), alternated --repeats times.
    per-update = (median wall of the larger - median wall of the smaller) / (difference in gradient steps). Acting,
    env steps, warm-up and setup cancel; what remains is the engine's whole gradient step: replay sampling, target,
    loss, backward, clipping, Adam, target follow, and its per-step bookkeeping. (The two runs learn differently, so
    their episodes and the final one-episode evaluation differ a little: tens of milliseconds against seconds.)
    --steps-scale multiplies these budgets (and the warm-up) for a smoke run. With --seeds-per-process K, each run
    trains K seeds side by side and the difference is divided by K: the cost of a gradient step per seed.

The table gives, per configuration: FLOPs, floor, minimal measured, qbench per update, and the ratios qbench/floor
and minimal/floor. The floor and the minimal update are per seed at K = 1; qbench's figure is per seed at its K.

Expected duration on an idle 2-core machine, defaults: about 3 minutes (matmuls a few seconds; minimal updates
about 10 s; the engine runs, each pair after one short untimed warm-up run: dqn about 3 x (3 + 7) s, ddpg about
3 x (12 + 35) s).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

from sb3_side_by_side import CONFIGS, parse_seeds_per_process, qbench_settings, scaled

# Shapes of the minimal updates (obs dim, action dim / number of actions); must agree with CONFIGS.
SHAPES = {"dqn_cartpole": {"obs": 4, "n_actions": 2}, "ddpg_pendulum": {"obs": 3, "action": 1}}
# The engine runs of (c): (budget env steps, the two grad_steps_per_update).
ENGINE = {"dqn_cartpole": (4096, (128, 384)), "ddpg_pendulum": (2000, (1, 3))}


# ------------------------------------------------------------------------------------------------------ (a) peak

def matmul_gflops(n: int = 2048, reps: int = 5) -> dict:
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - started)
    flops = 2 * n ** 3
    return {"n": n, "best_gflops": flops / min(times) / 1e9, "median_gflops": flops / statistics.median(times) / 1e9}


# ---------------------------------------------------------------------------------------------------- (b) FLOPs

def layer_dims(in_dim: int, hidden: list[int], out_dim: int) -> list[tuple[int, int]]:
    dims = [in_dim, *hidden, out_dim]
    return list(itertools.pairwise(dims))


def macs(layers: list[tuple[int, int]]) -> int:
    return sum(i * o for i, o in layers)


def n_params(layers: list[tuple[int, int]]) -> int:
    return sum(i * o + o for i, o in layers)


def act_elems(layers: list[tuple[int, int]]) -> int:
    """Elementwise work of one forward per sample: bias add on every output, activation on every layer's output."""
    return sum(o for _, o in layers) * 2


def count_flops(config: str) -> dict:
    c = CONFIGS[config]
    shape = SHAPES[config]
    b = c["batch_size"]
    if config == "dqn_cartpole":
        net = layer_dims(shape["obs"], c["net_arch"], shape["n_actions"])
        m, first = macs(net), net[0][0] * net[0][1]
        matmul = 2 * b * (m + m          # online forward on s, target forward on s'
                          + m            # weight gradients
                          + (m - first))  # input gradients, not the first layer's
        p = n_params(net)
        other = (b * act_elems(net) * 3     # two forwards, one backward
                 + 10 * b                   # max over actions, target, Huber and its gradient
                 + 12 * p + 3 * p)          # Adam, gradient-norm clipping
        return {"matmul_flops": matmul, "other_flops": other, "params": p}
    if config == "ddpg_pendulum":
        critic = layer_dims(shape["obs"] + shape["action"], c["net_arch"], 1)
        actor = layer_dims(shape["obs"], c["net_arch"], shape["action"])
        mc, ma = macs(critic), macs(actor)
        first_a = actor[0][0] * actor[0][1]
        first_c = critic[0][0] * critic[0][1]
        matmul = 2 * b * (ma + mc                      # target actor, target critic on s'
                          + mc + mc + (mc - first_c)   # critic forward, weight and input gradients
                          + ma + mc                    # actor forward, critic at (s, mu(s))
                          + mc                         # input gradients through the critic, to the action
                          + ma + (ma - first_a))       # actor weight and input gradients
        pc, pa = n_params(critic), n_params(actor)
        other = (b * (act_elems(actor) * 3 + act_elems(critic) * 5)  # 2 actor fwd + 1 bwd; 3 critic fwd + 2 bwd
                 + 10 * b                                             # target, MSE and its gradient, actor loss
                 + 12 * (pc + pa) + 3 * (pc + pa))                    # two Adams, two polyak updates
        return {"matmul_flops": matmul, "other_flops": other, "params": pc + pa}
    raise ValueError(config)


# ------------------------------------------------------------------------------------------- (b) minimal update

def make_mlp(layers: list[tuple[int, int]], gen: torch.Generator) -> list[torch.Tensor]:
    params = []
    for i, o in layers:
        bound = 1 / i ** 0.5
        params.append(((torch.rand(i, o, generator=gen) * 2 - 1) * bound).requires_grad_())
        params.append(((torch.rand(o, generator=gen) * 2 - 1) * bound).requires_grad_())
    return params


def forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    n = len(params) // 2
    for k in range(n):
        x = torch.addmm(params[2 * k + 1], x, params[2 * k])
        if k < n - 1:
            x = torch.relu(x)
    return x


def adam(params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def replay(n: int, obs_dim: int, action: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {"obs": torch.randn(n, obs_dim, generator=gen), "next_obs": torch.randn(n, obs_dim, generator=gen),
            "action": action, "reward": torch.randn(n, generator=gen),
            "not_done": (torch.rand(n, generator=gen) > 0.01).float()}


def sample(buffer: dict[str, torch.Tensor], batch: int, gen: torch.Generator) -> list[torch.Tensor]:
    idx = torch.randint(buffer["obs"].shape[0], (batch,), generator=gen)
    return [buffer[k].index_select(0, idx) for k in ("obs", "action", "reward", "not_done", "next_obs")]


def minimal_update(config: str) -> tuple:
    """(one update as a closure, number of updates per call)."""
    c = CONFIGS[config]
    shape = SHAPES[config]
    gen = torch.Generator().manual_seed(0)
    b, gamma, n = c["batch_size"], c["gamma"], 20_000
    if config == "dqn_cartpole":
        online = make_mlp(layer_dims(shape["obs"], c["net_arch"], shape["n_actions"]), gen)
        target = [p.detach().clone() for p in online]
        opt = adam(online, c["lr"])
        buffer = replay(n, shape["obs"], torch.randint(shape["n_actions"], (n,), generator=gen), gen)
        period = c["gradient_steps"]
        state = {"steps": 0}

        def step() -> None:
            obs, action, reward, not_done, next_obs = sample(buffer, b, gen)
            with torch.no_grad():
                y = reward + gamma * not_done * forward(target, next_obs).amax(1)
            q = forward(online, obs).gather(1, action.view(-1, 1)).squeeze(1)
            loss = F.huber_loss(q, y, delta=c["huber_delta"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(online, c["max_grad_norm"], foreach=True)
            opt.step()
            state["steps"] += 1
            if state["steps"] % period == 0:
                with torch.no_grad():
                    torch._foreach_copy_(target, online)
        return step
    if config == "ddpg_pendulum":
        critic = make_mlp(layer_dims(shape["obs"] + shape["action"], c["net_arch"], 1), gen)
        actor = make_mlp(layer_dims(shape["obs"], c["net_arch"], shape["action"]), gen)
        critic_t = [p.detach().clone() for p in critic]
        actor_t = [p.detach().clone() for p in actor]
        critic_opt, actor_opt = adam(critic, c["lr"]), adam(actor, c["lr"])
        buffer = replay(n, shape["obs"], torch.rand(n, shape["action"], generator=gen) * 2 - 1, gen)
        tau = c["tau"]

        def step() -> None:
            obs, action, reward, not_done, next_obs = sample(buffer, b, gen)
            with torch.no_grad():
                next_action = torch.tanh(forward(actor_t, next_obs))
                y = reward + gamma * not_done * forward(critic_t, torch.cat([next_obs, next_action], 1)).squeeze(1)
            q = forward(critic, torch.cat([obs, action], 1)).squeeze(1)
            critic_loss = F.mse_loss(q, y)
            critic_opt.zero_grad(set_to_none=True)
            critic_loss.backward()
            critic_opt.step()
            actor_loss = -forward(critic, torch.cat([obs, torch.tanh(forward(actor, obs))], 1)).mean()
            grads = torch.autograd.grad(actor_loss, actor)  # no critic weight gradients
            for p, g in zip(actor, grads, strict=True):
                p.grad = g
            actor_opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(critic_t, critic, tau)
                torch._foreach_lerp_(actor_t, actor, tau)
        return step
    raise ValueError(config)


def time_minimal(config: str, reps: int, blocks: int = 5) -> dict:
    step = minimal_update(config)
    for _ in range(max(10, reps // 10)):
        step()
    per = []
    for _ in range(blocks):
        started = time.perf_counter()
        for _ in range(reps):
            step()
        per.append((time.perf_counter() - started) / reps)
    return {"minimal_ms": statistics.median(per) * 1e3, "minimal_best_ms": min(per) * 1e3}


# ------------------------------------------------------------------------------------------------ (c) qbench

def qbench_per_update(config: str, scale: float, repeats: int, k_seeds: int = 1) -> dict:
    """Per seed: the K seeds of a run share one engine.train_batch call, whose extra wall time per extra gradient
    step is divided by K."""
    from qbench import engine
    from qbench.jobs import build_job

    budget, grads = ENGINE[config]
    c = scaled({**CONFIGS[config], "budget": budget}, scale)
    walls: dict[int, list[float]] = {g: [] for g in grads}
    steps: dict[int, int] = {}
    # Untimed warm-up (first-call costs: allocator, lazy imports, env registration), a couple of rounds long.
    variant, settings = qbench_settings(config, c)
    short = 2 * c["train_freq"]
    engine.train_batch([build_job(variant, c["task"], i, {**settings, "warmup_env_steps": 1,
                                                          "total_env_steps": short, "eval_interval_env_steps": short})
                        for i in range(k_seeds)])
    for seed in range(repeats):
        for g in grads:
            variant, settings = qbench_settings(config, c)
            settings = {**settings, "grad_steps_per_update": g}
            started = time.perf_counter()
            summary = engine.train_batch([build_job(variant, c["task"], seed * k_seeds + i, settings)
                                          for i in range(k_seeds)])[0]
            walls[g].append(time.perf_counter() - started)
            steps[g] = int(summary["grad_steps"])
    lo, hi = grads
    per = (statistics.median(walls[hi]) - statistics.median(walls[lo])) / (steps[hi] - steps[lo]) / k_seeds
    return {"qbench_ms": per * 1e3, "engine_env_steps": c["env_steps_done"], "engine_grad_steps": steps,
            "engine_walls_s": {str(g): w for g, w in walls.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    parser.add_argument("--reps", type=int, default=200, help="minimal updates per timed block (5 blocks)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating pairs of engine runs for (c)")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply the engine runs' budgets")
    parser.add_argument("--no-engine", action="store_true", help="skip (c), qbench's own per-update cost")
    parser.add_argument("--seeds-per-process", default="1",
                        help="comma-separated K values for (c): seeds trained side by side, time per seed")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    ks = parse_seeds_per_process(args.seeds_per_process, parser)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in SHAPES]
    if unknown or not configs:
        parser.error(f"unknown config(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(SHAPES)}")
    if args.reps < 1 or args.repeats < 1 or args.steps_scale <= 0:
        parser.error("--reps and --repeats must be >= 1 and --steps-scale > 0")

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores (run this on an idle machine)")
    peak = matmul_gflops()
    print(f"(a) 2048^3 float32 matmul: best {peak['best_gflops']:.1f} GFLOP/s, median "
          f"{peak['median_gflops']:.1f} GFLOP/s")
    rows = []
    for config in configs:
        base = {"config": config, **count_flops(config)}
        base["floor_ms"] = (base["matmul_flops"] + base["other_flops"]) / (peak["best_gflops"] * 1e9) * 1e3
        base.update(time_minimal(config, args.reps))
        for k_seeds in ([1] if args.no_engine else ks):
            row = {**base, "K": k_seeds}
            if not args.no_engine:
                row.update(qbench_per_update(config, args.steps_scale, args.repeats, k_seeds))
            rows.append(row)
            print(f"    {config} K={k_seeds}: done", flush=True)

    header = ("config", "K", "matmul MFLOP", "other MFLOP", "floor ms", "minimal ms", "minimal/floor",
              "qbench ms", "qbench/floor", "qbench/minimal")
    table = [header]
    for r in rows:
        q = r.get("qbench_ms")
        table.append((r["config"], str(r["K"]), f"{r['matmul_flops'] / 1e6:.1f}", f"{r['other_flops'] / 1e6:.2f}",
                      f"{r['floor_ms']:.3f}", f"{r['minimal_ms']:.3f}", f"{r['minimal_ms'] / r['floor_ms']:.2f}x",
                      "-" if q is None else f"{q:.3f}", "-" if q is None else f"{q / r['floor_ms']:.2f}x",
                      "-" if q is None else f"{q / r['minimal_ms']:.2f}x"))
    widths = [max(len(t[i]) for t in table) for i in range(len(header))]
    print()
    for i, t in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(t, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\n(b) floor = FLOPs / {peak['best_gflops']:.1f} GFLOP/s; minimal = plain-torch update, median of 5 blocks "
          f"of {args.reps} (K = 1)\n(c) qbench = engine.train_batch wall difference per extra gradient step, per seed"
          + (" (skipped)" if args.no_engine else f", {args.repeats} alternating pair(s), steps scale "
             f"{args.steps_scale:g}") + f"\nload average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"peak": peak, "rows": rows, "reps": args.reps,
                                               "repeats": args.repeats, "steps_scale": args.steps_scale},
                                              indent=2) + "\n")
        print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
