"""Issue 11 "Seeds as a tensor axis": qbench against Stable-Baselines3, side by side on identical configurations.

    pip install -e '.[bench]'        # stable-baselines3 >= 2.3
    python benchmarks/sb3_side_by_side.py [--configs dqn_cartpole,ddpg_pendulum] [--repeats 3]
                                          [--steps-scale 1.0] [--json OUT]

Runs alternate, qbench then SB3, for --repeats rounds per configuration (round r trains seed r on both sides). Every
run is a fresh subprocess with one torch thread (OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1 in its
environment, torch.set_num_threads(1) in it). The time compared is the wall time of the whole training call, from
the configuration to the trained agent: qbench `build_job(...)` for each of its K seeds + `engine.train_batch(jobs)`; SB3 the constructor (which
builds the env, the networks and the buffer) + `model.learn(...)`. Imports are outside it; the subprocess's whole
wall time (interpreter start and imports included) is recorded too ("process s"). The table gives, per
configuration, the median over repeats of each side, the ratio sb3_time / qbench_time of the medians (above 1:
qbench is faster), and the per-seed throughput (env steps per second of the training call). Every child reports the
env steps and gradient steps it actually did, and a mismatch between the two sides is flagged: the configurations
are only comparable if both did the same work.

K is the number of seeds qbench trains in one process (--seeds-per-process, default 1,8): the K seeds of a round
(seeds r*K ... r*K + K - 1) go through one engine.train_batch call, and the qbench time of a row is that call's wall
time divided by K, the time per seed. SB3 stays at one seed per process; its rows repeat for each K, so each ratio
compares runs taken side by side.

Configurations and how each side expresses them (the budgets scale with --steps-scale, rounds and sizes do not):

dqn_cartpole: rl-baselines3-zoo's DQN CartPole-v1 hyperparameters at 20k env steps.
  SB3: DQN("MlpPolicy", "CartPole-v1", learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
  learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
  exploration_fraction=0.16, exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256])), learn(20_000).
  qbench: variant huber_dqn on CartPole-v1 with
  - env_steps_per_update=256, grad_steps_per_update=128, batch_size=64, buffer_size=100_000, lr=2.3e-3,
    lr_schedule=constant, gamma=0.99, hidden_sizes=[256, 256], eps_end=0.04.
  - Loss: SB3's DQN is F.smooth_l1_loss (beta 1, mean over the batch) then clip_grad_norm_(10); qbench's huber_dqn
    is F.huber_loss(delta=huber_delta) then clip_grad_norm_(max_grad_norm), so huber_delta=1.0 and
    max_grad_norm=10.0 (smooth_l1 with beta 1 is Huber with delta 1, the same function). Adam with torch's defaults
    on both sides; target max_a Q_target(s', a); no double Q.
  - Target network: SB3 counts target_update_interval in _on_step calls, one per env step (per vec-env step, with
    one env), not in gradient steps: it copies (polyak with tau=1) every 10 env steps, and the 128 gradient steps
    of a round run between two env steps with no _on_step in between. So during the gradient steps of round r SB3's
    target is the online net as it was when round r began (a copy of the same weights is taken 25 or 26 times during
    each 256-step collection, all of them identical). qbench's target_period_grad_steps=128 copies after the last
    gradient step of every round: the same target in every gradient step. Copies: SB3 ~2,000 (one per 10 env steps,
    each a few microseconds of tensor copies, its own cost), qbench one per round.
  - Budget and warm-up: SB3 trains when num_timesteps > learning_starts at the end of a collection of train_freq
    steps, and a collection always runs its whole train_freq steps, so learn(20_000) does 79 x 256 = 20,224 env steps
    and trains in the 76 rounds ending at env steps 1,024 ... 20,224 (9,728 gradient steps). qbench updates when
    env_steps >= warmup_env_steps and env_steps % env_steps_per_update == 0, so warmup_env_steps=1001
    (learning_starts + 1) and total_env_steps=20_224 (the budget rounded up to whole rounds) do the same rounds.
    eps_decay_fraction=0.16 x 20_000 / 20_224, so epsilon reaches 0.04 at env step 3,200 on both sides.
  - Exploration: the same policy on both sides (epsilon_form=uniform, qbench's default since issue 25: a uniform
    action with probability eps, the greedy one included, as in SB3). Warm-up actions are uniform on both sides
    (qbench: env steps 1 ... 1001, SB3: 1 ... 1000).
  - Evaluation: SB3 evaluates nothing; qbench always evaluates at the end of the run, so eval_interval_env_steps =
    total_env_steps and eval_episodes=1: one greedy episode (at most 500 env steps, one forward pass each; a few
    tens of ms) is the only evaluation in the qbench time. Diagnostics rows every 1,000 env steps (qbench's default)
    and SB3's logger records (verbose=0) are each side's own bookkeeping and stay in.

ddpg_pendulum: DDPG on Pendulum-v1, 5k env steps, 1k warm-up, one gradient step per env step after it.
  SB3: DDPG("MlpPolicy", "Pendulum-v1", learning_rate=1e-3, buffer_size=200_000, learning_starts=1000,
  batch_size=256, tau=0.005, gamma=0.98, train_freq=1, gradient_steps=1,
  action_noise=NormalActionNoise(0, 0.1), policy_kwargs=dict(net_arch=[400, 300])), learn(5_000): 4,000 updates
  (env steps 1,001 ... 5,000). SB3's DDPG is TD3 with one critic, policy_delay 1 and target noise clipped to 0.
  qbench: variant ddpg on Pendulum-v1 with hidden_sizes=[400, 300] (actor and critic), lr=actor_lr=1e-3 (constant),
  batch_size=256, buffer_size=200_000, tau=0.005, gamma=0.98, env_steps_per_update=grad_steps_per_update=1,
  action_noise=gaussian, noise_std=0.1 (both in units of half the action range: SB3 adds its noise to the action
  scaled to [-1, 1]), warmup_env_steps=1001 (learning_starts + 1: 4,000 updates), total_env_steps=5_000, the same
  one-episode final evaluation (200 env steps). Critic loss: SB3 F.mse_loss, qbench 0.5 * F.mse_loss (the same
  gradient up to a factor 2, which Adam normalises away; the same cost); no gradient clipping on either side. Actor:
  -Q(s, mu(s)).mean() on the same batch, its own Adam; polyak targets for critic and actor after every update.
  (SB3's actor step also fills the critic's .grad, which its next zero_grad drops; qbench back-propagates into the
  actor's parameters only.)

Installing SB3 (checked for stable-baselines3 2.9.2 with torch 2.13.0+cpu): `pip install --dry-run
stable-baselines3` lists only stable_baselines3 itself to install, since its requirement torch<3.0,>=2.8 is met by
the CPU torch already installed, so a plain `pip install stable-baselines3` (or the `bench` extra) keeps the CPU
torch. Where pip would replace torch with a CUDA build, install `pip install --no-deps stable-baselines3` plus its
light dependencies (cloudpickle, gymnasium, numpy, pandas, matplotlib) instead.

On this 2-core machine a full run (both configurations, --repeats 3) takes about 8 minutes on an idle machine:
issue 11 measured about 18 s (qbench) and 20.5 s (SB3) a run for dqn_cartpole and 46 s and 52 s for ddpg_pendulum,
plus about 2 s of interpreter start and imports per run: 3 x (18 + 20.5 + 4) s + 3 x (46 + 52 + 4) s. Run it on an idle machine: the figures compare two loops on one
core each and are meaningless while other jobs share the cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The configurations at --steps-scale 1: budget (env steps) and learning_starts scale, everything else does not.
CONFIGS = {
    "dqn_cartpole": {
        "task": "CartPole-v1", "budget": 20_000, "learning_starts": 1000, "train_freq": 256, "gradient_steps": 128,
        "batch_size": 64, "buffer_size": 100_000, "lr": 2.3e-3, "gamma": 0.99, "target_update_interval": 10,
        "exploration_fraction": 0.16, "exploration_final_eps": 0.04, "net_arch": [256, 256],
        "huber_delta": 1.0, "max_grad_norm": 10.0,
    },
    "ddpg_pendulum": {
        "task": "Pendulum-v1", "budget": 5_000, "learning_starts": 1000, "train_freq": 1, "gradient_steps": 1,
        "batch_size": 256, "buffer_size": 200_000, "lr": 1e-3, "gamma": 0.98, "tau": 0.005, "noise_std": 0.1,
        "net_arch": [400, 300],
    },
}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def parse_seeds_per_process(text: str, parser: argparse.ArgumentParser) -> list[int]:
    """--seeds-per-process: comma-separated positive integers (K values), or a usage error."""
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        parser.error(f"--seeds-per-process must be comma-separated positive integers, e.g. 1,8; got {text!r}")
    return ks


def scaled(config: dict, scale: float) -> dict:
    c = dict(config)
    c["budget"] = max(1, round(config["budget"] * scale))
    c["learning_starts"] = max(0, round(config["learning_starts"] * scale))
    # SB3 collects whole rounds of train_freq env steps, so it does the budget rounded up to whole rounds.
    c["env_steps_done"] = math.ceil(c["budget"] / c["train_freq"]) * c["train_freq"]
    return c


def qbench_settings(name: str, c: dict) -> tuple[str, dict]:
    """(variant, settings) of the qbench side; see the module docstring for why each value."""
    total = c["env_steps_done"]
    common = {
        "total_env_steps": total, "warmup_env_steps": c["learning_starts"] + 1,
        "env_steps_per_update": c["train_freq"], "grad_steps_per_update": c["gradient_steps"],
        "batch_size": c["batch_size"], "buffer_size": c["buffer_size"], "lr": c["lr"], "lr_schedule": "constant",
        "gamma": c["gamma"], "hidden_sizes": list(c["net_arch"]), "observation_scaling": "none",
        "eval_interval_env_steps": total, "eval_episodes": 1, "torch_threads": 1,
    }
    if name == "dqn_cartpole":
        return "huber_dqn", {
            **common, "target_update": "hard", "target_period_grad_steps": c["gradient_steps"],
            "loss": "huber", "huber_delta": c["huber_delta"], "grad_clip": "norm",
            "max_grad_norm": c["max_grad_norm"], "exploration": "epsilon_greedy", "epsilon_form": "uniform", "eps_start": 1.0,
            "eps_end": c["exploration_final_eps"],
            "eps_decay_fraction": c["exploration_fraction"] * c["budget"] / total,
            "target": "max", "n_step": 1,
        }
    if name == "ddpg_pendulum":
        return "ddpg", {
            **common, "actor_lr": c["lr"], "target_update": "polyak", "tau": c["tau"], "loss": "mse",
            "grad_clip": "off", "action_noise": "gaussian", "noise_std": c["noise_std"], "target": "policy",
            "n_step": 1,
        }
    raise ValueError(name)


# ---------------------------------------------------------------------------------------------------------- child

def child_qbench(name: str, c: dict, seed: int, k_seeds: int = 1) -> dict:
    """K seeds (seed*K ... seed*K + K - 1) in one engine.train_batch call; train_s is per seed (the call's wall
    time / K), the time SB3 needs for one seed."""
    from qbench import engine
    from qbench.jobs import build_job

    variant, settings = qbench_settings(name, c)
    started = time.perf_counter()
    jobs = [build_job(variant, c["task"], seed * k_seeds + i, settings) for i in range(k_seeds)]
    built = time.perf_counter()
    summaries = engine.train_batch(jobs)
    ended = time.perf_counter()
    summary = summaries[0]
    return {"train_s": (ended - started) / k_seeds, "batch_train_s": ended - started,
            "setup_s": (built - started) / k_seeds, "learn_s": (ended - built) / k_seeds, "K": k_seeds,
            "env_steps": int(summary["env_steps"]), "grad_steps": int(summary["grad_steps"]),
            "final_return": [float(s["final_return_mean"]) for s in summaries], "variant": variant,
            "settings": settings}


def child_sb3(name: str, c: dict, seed: int) -> dict:
    import numpy as np
    import stable_baselines3
    from stable_baselines3 import DDPG, DQN
    from stable_baselines3.common.noise import NormalActionNoise

    started = time.perf_counter()
    common = {"learning_rate": c["lr"], "buffer_size": c["buffer_size"], "learning_starts": c["learning_starts"],
              "batch_size": c["batch_size"], "gamma": c["gamma"], "train_freq": c["train_freq"],
              "gradient_steps": c["gradient_steps"], "policy_kwargs": {"net_arch": list(c["net_arch"])},
              "seed": seed, "device": "cpu", "verbose": 0}
    if name == "dqn_cartpole":
        model = DQN("MlpPolicy", c["task"], target_update_interval=c["target_update_interval"],
                    exploration_fraction=c["exploration_fraction"],
                    exploration_final_eps=c["exploration_final_eps"], **common)
    elif name == "ddpg_pendulum":
        n = 1  # Pendulum's action dimension
        model = DDPG("MlpPolicy", c["task"], tau=c["tau"],
                     action_noise=NormalActionNoise(np.zeros(n), c["noise_std"] * np.ones(n)), **common)
    else:
        raise ValueError(name)
    built = time.perf_counter()
    model.learn(total_timesteps=c["budget"])
    ended = time.perf_counter()
    return {"train_s": ended - started, "setup_s": built - started, "learn_s": ended - built,
            "env_steps": int(model.num_timesteps), "grad_steps": int(model._n_updates),
            "sb3_version": stable_baselines3.__version__}


def run_child(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    c = scaled(CONFIGS[args.config], args.steps_scale)
    if args.child == "qbench":
        result = child_qbench(args.config, c, args.seed, args.k)
    else:
        result = child_sb3(args.config, c, args.seed)
    result.update({"torch_threads": torch.get_num_threads(), "torch_version": torch.__version__})
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------------------------------------- parent

def spawn(side: str, config: str, seed: int, scale: float, k_seeds: int = 1) -> dict:
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, "1")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--config", config,
               "--seed", str(seed), "--steps-scale", repr(scale), "--k", str(k_seeds)]
    started = time.perf_counter()
    r = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    process_s = time.perf_counter() - started
    lines = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"{side} {config} seed {seed} failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    result = json.loads(lines[-1][len("RESULT "):])
    # The process time, like train_s, per seed: a K-seed process is shared by its K seeds.
    return {**result, "process_s": process_s / result.get("K", 1), "side": side, "config": config, "seed": seed}


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def summarise(config: str, rows: list[dict], k_seeds: int = 1) -> dict:
    q = [r for r in rows if r["side"] == "qbench"]
    s = [r for r in rows if r["side"] == "sb3"]
    out = {"config": config, "K": k_seeds, "repeats": len(q)}
    for side, rs in (("qbench", q), ("sb3", s)):
        out[f"{side}_train_s"] = median(rs, "train_s")
        out[f"{side}_process_s"] = median(rs, "process_s")
        out[f"{side}_steps_per_s"] = median(rs, "env_steps") / out[f"{side}_train_s"]
        out[f"{side}_env_steps"] = sorted({r["env_steps"] for r in rs})
        out[f"{side}_grad_steps"] = sorted({r["grad_steps"] for r in rs})
    out["ratio_sb3_over_qbench"] = out["sb3_train_s"] / out["qbench_train_s"]
    out["same_work"] = (out["qbench_env_steps"] == out["sb3_env_steps"]
                        and out["qbench_grad_steps"] == out["sb3_grad_steps"])
    return out


def print_table(summaries: list[dict]) -> None:
    header = ("config", "K", "reps", "qbench s", "sb3 s", "sb3/qbench", "qbench steps/s", "sb3 steps/s",
              "env steps q|sb3", "grad steps q|sb3", "process s q|sb3")
    table = [header]
    for m in summaries:
        def steps(key: str, m: dict = m) -> str:
            return f"{','.join(map(str, m['qbench_' + key]))}|{','.join(map(str, m['sb3_' + key]))}"
        table.append((m["config"], str(m["K"]), str(m["repeats"]), f"{m['qbench_train_s']:.2f}",
                      f"{m['sb3_train_s']:.2f}", f"{m['ratio_sb3_over_qbench']:.2f}x",
                      f"{m['qbench_steps_per_s']:.0f}", f"{m['sb3_steps_per_s']:.0f}", steps("env_steps"),
                      steps("grad_steps"), f"{m['qbench_process_s']:.1f}|{m['sb3_process_s']:.1f}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for m in summaries:
        if not m["same_work"]:
            print(f"WARNING {m['config']}: the two sides did different work (env or gradient steps differ); "
                  "the ratio does not compare like with like")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds (qbench, sb3) per config")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply the env-step budget and the warm-up (e.g. 0.05 for a smoke run)")
    parser.add_argument("--json", default=None, help="write every run's raw timings and the summaries here")
    parser.add_argument("--child", choices=("qbench", "sb3"), help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--seeds-per-process", default="1,8",
                        help="comma-separated K values for qbench (seeds trained in one process; SB3 stays at 1)")
    args = parser.parse_args()
    if args.child:
        return run_child(args)

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs:
        parser.error(f"unknown config(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(CONFIGS)}")
    if args.repeats < 1 or args.steps_scale <= 0:
        parser.error("--repeats must be >= 1 and --steps-scale > 0")
    ks = parse_seeds_per_process(args.seeds_per_process, parser)
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        print("stable-baselines3 is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2

    load_before = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} on {os.cpu_count()} cores (run this on an idle machine)")
    started = time.perf_counter()
    runs: list[dict] = []
    summaries = []
    for config in configs:
        c = scaled(CONFIGS[config], args.steps_scale)
        print(f"{config}: budget {c['budget']} env steps ({c['env_steps_done']} in whole rounds), learning starts "
              f"{c['learning_starts']}, {args.repeats} round(s) of qbench then sb3", flush=True)
        for k_seeds in ks:
            rows = []
            for seed in range(args.repeats):
                for side in ("qbench", "sb3"):
                    row = spawn(side, config, seed, args.steps_scale, k_seeds if side == "qbench" else 1)
                    rows.append(row)
                    print(f"  K={k_seeds} seed {seed} {side:6s} train {row['train_s']:7.2f} s per seed (setup "
                          f"{row['setup_s']:.2f}, learn {row['learn_s']:.2f}), process {row['process_s']:6.2f} s, "
                          f"{row['env_steps']} env steps, {row['grad_steps']} grad steps", flush=True)
            runs += rows
            summaries.append(summarise(config, rows, k_seeds))
    print()
    print_table(summaries)
    load_after = os.getloadavg()
    print(f"\nratio = median sb3 train s / median qbench train s per seed (above 1: qbench faster); steps/s = per "
          f"seed; K = seeds per qbench process (SB3: one seed per process)\nload average after: {load_after[0]:.2f}; total "
          f"{time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "steps_scale": args.steps_scale, "repeats": args.repeats, "load_before": load_before[0],
            "load_after": load_after[0], "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "summaries": summaries, "runs": runs}, indent=2) + "\n")
        print(f"raw timings: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
