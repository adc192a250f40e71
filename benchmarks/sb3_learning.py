"""Issue 25: what qbench learns against what Stable-Baselines3 learns, side by side on the same seeds and settings.

    python benchmarks/sb3_learning.py [--configs dqn_cartpole,dqn_lunarlander,ddpg_pendulum] [--sides sb3,qbench]
                                      [--seeds 0-9] [--steps-scale 1.0] [--out DIR]
    python benchmarks/sb3_learning.py --table [--out DIR]

benchmarks/sb3_side_by_side.py compares the TIME of the two libraries on one configuration; this script compares
what they LEARN: the final greedy return of each of seeds 0-9 and the learning curve, for the same algorithm with
the same settings on both sides. How each SB3 setting maps to a qbench setting is explained at length in that
script's docstring (Huber 1 = smooth_l1, target copies per round, warm-up learning_starts + 1, the budget rounded up
to whole rounds of train_freq, epsilon's decay fraction rescaled to the rounded budget, DDPG's noise in units of half
the action range); what follows repeats only the values and what is new here.

Configurations (rl-baselines3-zoo's hyperparameters for each task; budgets scale with --steps-scale):

dqn_cartpole: SB3 DQN("MlpPolicy", "CartPole-v1", learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
  learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
  exploration_fraction=0.16, exploration_final_eps=0.04, net_arch=[256, 256]), learn(50_000): 196 rounds of 256 =
  50,176 env steps, training in the 193 rounds ending at 1,024 ... 50,176 (24,704 gradient steps).
  qbench huber_dqn: env_steps_per_update=256, grad_steps_per_update=128, target_update=hard with
  target_period_grad_steps=128 (one copy after each round's last gradient step: SB3's copies every 10 env steps
  all happen during collection, so its target in round r is the online net as round r began, the same one),
  huber_delta=1, grad_clip=norm, max_grad_norm=10, warmup_env_steps=1001, total_env_steps=50_176, eps 1 -> 0.04
  with eps_decay_fraction=0.16 x 50_000 / 50_176 (0.04 reached at env step 8,001 on both sides), lr_schedule
  constant, observation_scaling none, epsilon_form uniform (SB3's: a uniform action with probability eps, the greedy
  one included). Curve every 5,000 env steps.

dqn_lunarlander: SB3 DQN("MlpPolicy", "LunarLander-v3", learning_rate=6.3e-4, buffer_size=50_000,
  learning_starts=0, batch_size=128, target_update_interval=250, train_freq=4, gradient_steps=-1,
  exploration_fraction=0.12, exploration_final_eps=0.1, gamma=0.99, net_arch=[256, 256]), learn(100_000).
  gradient_steps=-1 means as many gradient steps as env steps collected in the round: 4 with one env.
  qbench huber_dqn: env_steps_per_update=4, grad_steps_per_update=4, target_period_grad_steps=250, huber_delta=1,
  max_grad_norm=10, batch 128, buffer 50k, eps 1 -> 0.1 over 12%, epsilon_form uniform, total_env_steps=100_000.
  Warm-up: SB3 trains after a collection when num_timesteps > learning_starts = 0, so first at env step 4, then
  every 4 (25,000 rounds, 100,000 gradient steps); qbench updates when env_steps >= warmup_env_steps and
  env_steps % 4 == 0, so any warmup_env_steps in 0 ... 4 gives the same rounds; warmup_env_steps=1 keeps the
  formula of the other configurations (learning_starts + 1). From env step 2 on both sides act epsilon-greedily
  with the same eps. Env step 1 differs in one action, whatever the warm-up: SB3's DQN starts with
  exploration_rate = 0.0 until its first _on_step sets it from the schedule, so its very first action is the greedy
  one of the untrained network; qbench's is uniform (warm-up with 1, eps = 1 with 0). (Both sides sample batches
  with replacement, so the first rounds draw 128 transitions out of 4, 8, ... alike.)
  The one difference: target copies. SB3 counts target_update_interval in _on_step calls, one per env step, and
  copies at env steps 250, 500, 750, ... after the collection step, before that round's training: after 248, 496,
  748, 996, ... gradient steps (250 k - 2 for odd k, 250 k - 4 for even k), always between two rounds. qbench counts
  gradient steps and copies after gradient steps 250, 500, 750, ..., i.e. in the middle of a round (after the 2nd
  or 4th of its 4 steps). The same number of copies (400), each 2 or 4 gradient steps later on the qbench side.

ddpg_pendulum: SB3 DDPG("MlpPolicy", "Pendulum-v1", learning_rate=1e-3, buffer_size=200_000,
  learning_starts=10_000, batch_size=256, tau=0.005, gamma=0.98, train_freq=1, gradient_steps=1,
  action_noise=NormalActionNoise(0, 0.1), net_arch=[400, 300]), learn(20_000): 10,000 updates (env steps
  10,001 ... 20,000). qbench ddpg: hidden_sizes [400, 300], lr=actor_lr=1e-3 constant, batch 256, buffer 200k,
  tau 0.005, gamma 0.98, one gradient step per env step, gaussian action noise 0.1 (in units of half the action
  range, as SB3's noise on the action scaled to [-1, 1]), warmup_env_steps=10_001, total_env_steps=20_000, loss mse,
  no clipping, target policy. Curve every 2,000 env steps.

Settings beyond SB3's that are set on the qbench side so as not to differ from it: divergence_stop_factor=0, since
SB3 has no divergence watch and keeps training a seed whose Q grows large (qbench would otherwise stop such a seed
and record it as diverged: a seed with no final return; NaN or inf still stop a qbench seed); torch_threads=1.

Evaluation (the learning curve): every eval interval (5,000 / 10,000 / 2,000 env steps) and once more at the end,
the mean return of 10 greedy episodes on a separate env.
- qbench does this itself (eval_interval_env_steps, eval_episodes=10); the rows come back through train_batch's
  progress callback (the same rows it writes to evaluations.csv in a run directory). Its evaluation env is reset
  with a seed drawn from the run's seed and the env step for the first episode of each evaluation. An evaluation at
  env step n sees the networks after every update at env steps <= n.
- SB3: a callback (no EvalCallback, no files) runs 10 episodes of model.predict(obs, deterministic=True) on an env
  of its own made with gymnasium.make(task); that env is reset with seed=10_000 + seed for the first episode of the
  first evaluation, and without a seed after that (its own RNG stream goes on across evaluations). So that it sees
  the same networks as qbench at step n, the evaluation due at env step n runs in the callback's _on_step of env
  step n + 1: SB3 calls _on_step(n) before it trains the round that ends at n, and nothing but that round's training
  runs between _on_step(n) and _on_step(n + 1). The final evaluation runs in _on_training_end. Deterministic
  prediction draws no random numbers and the evaluation env is not the training env, so the evaluations do not
  change the training. The callback's own time is recorded (eval_s) and is inside SB3's learn_s.

Processes: one at a time. Each SB3 seed is a fresh subprocess with one torch thread; the qbench side trains all the
requested seeds of a configuration in ONE subprocess, one engine.train_batch call (the seed axis). Both children run
with OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1 and torch.set_num_threads(1).

Output, under --out (default results/benchmarks/issue25_sb3_learning, or ..._scale<S> for --steps-scale S != 1):
one JSON file per (side, configuration, seed), {side}_{config}_seed{seed}.json, written (atomically) when its run
completes: the final return, the curve (env_steps, return_mean, return_std), wall times, env and gradient steps
done, library versions and the exact settings used. A qbench batch writes its seeds' files together when it ends.
A run whose file exists is skipped (resume: a killed run loses only the run in progress). --table reads whatever
is there and writes table.md beside it: per configuration, each side's final return per seed, IQM with a 95%
stratified-bootstrap CI, P(qbench > SB3) with its 95% CI (qbench.analysis.stats), the seeds that reach the task's
threshold (CartPole 475, Pendulum -200, LunarLander 200), and the curves' mean over seeds.

Expected times on one core of this machine (SB3): CartPole ~40-60 s a seed, LunarLander a few minutes, Pendulum
~2-3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from sb3_side_by_side import THREAD_VARS, scaled  # budget rounded up to whole rounds of train_freq

DEFAULT_OUT = REPO / "results" / "benchmarks" / "issue25_sb3_learning"

# At --steps-scale 1. budget, learning_starts and eval_interval scale; rounds, sizes and rates do not.
CONFIGS = {
    "dqn_cartpole": {
        "algo": "dqn", "task": "CartPole-v1", "budget": 50_000, "learning_starts": 1000, "train_freq": 256,
        "gradient_steps": 128, "batch_size": 64, "buffer_size": 100_000, "lr": 2.3e-3, "gamma": 0.99,
        "target_update_interval": 10, "exploration_fraction": 0.16, "exploration_final_eps": 0.04,
        "net_arch": [256, 256], "huber_delta": 1.0, "max_grad_norm": 10.0,
        "eval_interval": 5_000, "threshold": 475.0,
    },
    "ddpg_pendulum": {
        "algo": "ddpg", "task": "Pendulum-v1", "budget": 20_000, "learning_starts": 10_000, "train_freq": 1,
        "gradient_steps": 1, "batch_size": 256, "buffer_size": 200_000, "lr": 1e-3, "gamma": 0.98, "tau": 0.005,
        "noise_std": 0.1, "net_arch": [400, 300], "eval_interval": 2_000, "threshold": -200.0,
    },
    "dqn_lunarlander": {
        "algo": "dqn", "task": "LunarLander-v3", "budget": 100_000, "learning_starts": 0, "train_freq": 4,
        "gradient_steps": -1, "batch_size": 128, "buffer_size": 50_000, "lr": 6.3e-4, "gamma": 0.99,
        "target_update_interval": 250, "exploration_fraction": 0.12, "exploration_final_eps": 0.1,
        "net_arch": [256, 256], "huber_delta": 1.0, "max_grad_norm": 10.0,
        "eval_interval": 10_000, "threshold": 200.0,
    },
}
SIDES = ("sb3", "qbench")
EVAL_EPISODES = 10
EVAL_SEED_OFFSET = 10_000


def scaled_config(name: str, scale: float) -> dict:
    c = scaled(CONFIGS[name], scale)
    c["eval_interval"] = max(1, round(CONFIGS[name]["eval_interval"] * scale))
    # gradient_steps -1 (SB3: as many as env steps collected in the round) is train_freq gradient steps per round.
    c["grad_steps_per_round"] = c["train_freq"] if c["gradient_steps"] < 0 else c["gradient_steps"]
    return c


def qbench_settings(c: dict) -> tuple[str, dict]:
    """(variant, settings) of the qbench side; the module docstring says why each value."""
    total = c["env_steps_done"]
    common = {
        "total_env_steps": total, "warmup_env_steps": c["learning_starts"] + 1,
        "env_steps_per_update": c["train_freq"], "grad_steps_per_update": c["grad_steps_per_round"],
        "batch_size": c["batch_size"], "buffer_size": c["buffer_size"], "lr": c["lr"], "lr_schedule": "constant",
        "gamma": c["gamma"], "hidden_sizes": list(c["net_arch"]), "observation_scaling": "none",
        "eval_interval_env_steps": c["eval_interval"], "eval_episodes": EVAL_EPISODES, "torch_threads": 1,
        "divergence_stop_factor": 0.0, "n_step": 1,
    }
    if c["algo"] == "dqn":
        return "huber_dqn", {
            **common, "target_update": "hard", "target_period_grad_steps": target_period_grad_steps(c),
            "loss": "huber", "huber_delta": c["huber_delta"], "grad_clip": "norm",
            "max_grad_norm": c["max_grad_norm"], "exploration": "epsilon_greedy", "epsilon_form": "uniform",
            "eps_start": 1.0, "eps_end": c["exploration_final_eps"],
            "eps_decay_fraction": c["exploration_fraction"] * c["budget"] / total, "target": "max",
        }
    if c["algo"] == "ddpg":
        return "ddpg", {
            **common, "actor_lr": c["lr"], "target_update": "polyak", "tau": c["tau"], "loss": "mse",
            "grad_clip": "off", "action_noise": "gaussian", "noise_std": c["noise_std"], "target": "policy",
        }
    raise ValueError(c["algo"])


def target_period_grad_steps(c: dict) -> int:
    """SB3 copies every target_update_interval env steps. Where that is shorter than a round (CartPole: 10 < 256)
    every copy of a round falls in its collection and the target of a round is the online net as the round began:
    one copy per round, after its last gradient step. Otherwise (LunarLander: 250 env steps, rounds of 4 with 4
    gradient steps) the same number of gradient steps, target_update_interval x gradient steps per env step."""
    if c["target_update_interval"] <= c["train_freq"]:
        return c["grad_steps_per_round"]
    return c["target_update_interval"] * c["grad_steps_per_round"] // c["train_freq"]


def versions() -> dict:
    import gymnasium
    import numpy
    import torch
    out = {"python": platform.python_version(), "torch": torch.__version__, "gymnasium": gymnasium.__version__,
           "numpy": numpy.__version__, "machine": platform.machine()}
    try:
        import stable_baselines3
        out["stable_baselines3"] = stable_baselines3.__version__
    except ImportError:
        pass
    try:
        from qbench.runner.worker import qbench_version
        from qbench.store import git_commit
        out["qbench"] = qbench_version()
        out["qbench_git"] = git_commit()
    except ImportError:
        pass
    return out


def result_path(out: Path, side: str, config: str, seed: int) -> Path:
    return out / f"{side}_{config}_seed{seed}.json"


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------------- children

def child_sb3(name: str, c: dict, seed: int, scale: float, out: Path) -> None:
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import DDPG, DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.noise import NormalActionNoise

    class GreedyEval(BaseCallback):
        """10 deterministic episodes every `interval` env steps and at the end (see the module docstring)."""

        def __init__(self, task: str, interval: int, episodes: int, first_seed: int):
            super().__init__(verbose=0)
            self.env = gym.make(task)
            self.interval, self.episodes, self.first_seed = interval, episodes, first_seed
            self.seeded = False
            self.due: int | None = None
            self.curve: list[dict] = []
            self.eval_s = 0.0

        def evaluate(self, env_steps: int) -> None:
            started = time.perf_counter()
            returns = []
            for _ in range(self.episodes):
                obs, _ = self.env.reset(seed=None if self.seeded else self.first_seed)
                self.seeded = True
                total, done = 0.0, False
                while not done:
                    action, _ = self.model.predict(obs, deterministic=True)
                    obs, reward, terminated, truncated, _ = self.env.step(action)
                    total += float(reward)
                    done = terminated or truncated
                returns.append(total)
            self.curve.append({"env_steps": env_steps, "return_mean": float(np.mean(returns)),
                               "return_std": float(np.std(returns)), "returns": returns})
            self.eval_s += time.perf_counter() - started

        def _on_step(self) -> bool:
            if self.due is not None:   # the networks are still those after every update at env steps <= due
                self.evaluate(self.due)
                self.due = None
            if self.num_timesteps % self.interval == 0:
                self.due = self.num_timesteps
            return True

        def _on_training_end(self) -> None:
            self.evaluate(self.num_timesteps)   # `due`, if set, is this very step
            self.due = None

    kwargs = {"learning_rate": c["lr"], "buffer_size": c["buffer_size"], "learning_starts": c["learning_starts"],
              "batch_size": c["batch_size"], "gamma": c["gamma"], "train_freq": c["train_freq"],
              "gradient_steps": c["gradient_steps"], "policy_kwargs": {"net_arch": list(c["net_arch"])},
              "seed": seed, "device": "cpu", "verbose": 0}
    if c["algo"] == "dqn":
        kwargs.update(target_update_interval=c["target_update_interval"],
                      exploration_fraction=c["exploration_fraction"],
                      exploration_final_eps=c["exploration_final_eps"])
        algo, noise = DQN, None
    else:
        kwargs.update(tau=c["tau"])
        algo, noise = DDPG, {"type": "NormalActionNoise", "mean": 0.0, "sigma": c["noise_std"]}
    started = time.perf_counter()
    model = algo("MlpPolicy", c["task"], **kwargs,
                 **({} if noise is None else {"action_noise": NormalActionNoise(np.zeros(1),
                                                                                c["noise_std"] * np.ones(1))}))
    callback = GreedyEval(c["task"], c["eval_interval"], EVAL_EPISODES, EVAL_SEED_OFFSET + seed)
    built = time.perf_counter()
    model.learn(total_timesteps=c["budget"], callback=callback)
    ended = time.perf_counter()
    final = callback.curve[-1]
    write_json(result_path(out, "sb3", name, seed), {
        "side": "sb3", "config": name, "seed": seed, "task": c["task"], "steps_scale": scale,
        "final_return": final["return_mean"], "final_return_std": final["return_std"],
        "curve": callback.curve,
        "train_s": ended - started, "setup_s": built - started, "learn_s": ended - built,
        "eval_s": callback.eval_s, "learn_minus_eval_s": ended - built - callback.eval_s,
        "env_steps": int(model.num_timesteps), "grad_steps": int(model._n_updates),
        "versions": versions(),
        "settings": {"algorithm": algo.__name__, "policy": "MlpPolicy", "env": c["task"],
                     "constructor": kwargs, "action_noise": noise, "learn_total_timesteps": c["budget"],
                     "evaluation": {"every_env_steps": c["eval_interval"], "episodes": EVAL_EPISODES,
                                    "deterministic": True, "first_reset_seed": EVAL_SEED_OFFSET + seed}},
        "scaled_config": c,
    })


def child_qbench(name: str, c: dict, seeds: list[int], scale: float, out: Path) -> None:
    from qbench import engine
    from qbench.jobs import build_job

    variant, settings = qbench_settings(c)
    curves: dict[int, list[dict]] = {seed: [] for seed in seeds}

    def progress(env_steps: int, info: dict) -> None:
        if "evaluation" in info:
            row = info["evaluation"]
            curves[info["seed"]].append({"env_steps": int(row["env_steps"]), "return_mean": row["return_mean"],
                                         "return_std": row["return_std"]})

    started = time.perf_counter()
    jobs = [build_job(variant, c["task"], seed, settings) for seed in seeds]
    built = time.perf_counter()
    results = engine.train_batch(jobs, progress=progress)
    ended = time.perf_counter()
    common = {"side": "qbench", "config": name, "task": c["task"], "steps_scale": scale,
              "train_s_batch": ended - started, "train_s": (ended - started) / len(seeds),
              "setup_s": (built - started) / len(seeds), "learn_s": (ended - built) / len(seeds),
              "seeds_in_batch": seeds, "versions": versions(),
              "settings": {"variant": variant, "overrides": settings, "resolved": jobs[0].config.to_dict()},
              "scaled_config": c}
    for seed, job, result in zip(seeds, jobs, results, strict=True):
        if isinstance(result, BaseException):
            row = {"final_return": None, "diverged": str(result), "env_steps": None, "grad_steps": None}
        else:
            row = {"final_return": result["final_return_mean"], "final_return_std": result["final_return_std"],
                   "env_steps": int(result["env_steps"]), "grad_steps": int(result["grad_steps"]),
                   "wall_s_engine": result["wall_s"]}
        write_json(result_path(out, "qbench", name, seed),
                   {**common, "seed": seed, **row, "curve": curves[seed], "job_hash": job.hash})


def run_child(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    c = scaled_config(args.child_config, args.steps_scale)
    out = Path(args.out)
    seeds = parse_seeds(args.seeds)
    if args.child == "sb3":
        child_sb3(args.child_config, c, seeds[0], args.steps_scale, out)
    else:
        child_qbench(args.child_config, c, seeds, args.steps_scale, out)
    return 0


# ------------------------------------------------------------------------------------------------------------ parent

def parse_seeds(text: str) -> list[int]:
    """'0-9', '200-202,207' -> sorted distinct seeds; a ValueError naming the text otherwise."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",")):
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                seeds += range(low, high + 1)
            elif part:
                seeds.append(int(part))
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise ValueError(f"seeds must be non-negative integers or ranges like 0-9 or 200-202,207, got {text!r}")
    return sorted(set(seeds))


def spawn(side: str, config: str, seeds: list[int], scale: float, out: Path) -> tuple[int, float]:
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, "1")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", side, "--child-config", config,
               "--seeds", ",".join(map(str, seeds)), "--steps-scale", repr(scale), "--out", str(out)]
    started = time.perf_counter()
    rc = subprocess.run(command, cwd=REPO, env=env, check=False).returncode
    return rc, time.perf_counter() - started


def run_all(configs: list[str], sides: list[str], seeds: list[int], scale: float, out: Path) -> int:
    failures = 0
    for config in configs:
        c = scaled_config(config, scale)
        print(f"{config}: {c['task']}, budget {c['budget']} env steps ({c['env_steps_done']} in whole rounds of "
              f"{c['train_freq']}), learning starts {c['learning_starts']}, evaluation every {c['eval_interval']}",
              flush=True)
        for side in sides:
            todo = [s for s in seeds if not result_path(out, side, config, s).exists()]
            if len(todo) < len(seeds):
                print(f"  {side}: seeds {sorted(set(seeds) - set(todo))} already done, skipped", flush=True)
            batches = [[s] for s in todo] if side == "sb3" else ([todo] if todo else [])
            for batch in batches:
                print(f"  {side} seed(s) {batch} ... ({time.strftime('%H:%M:%S')})", flush=True)
                rc, process_s = spawn(side, config, batch, scale, out)
                if rc != 0:
                    failures += 1
                    print(f"  {side} {config} seed(s) {batch} FAILED (exit {rc}) after {process_s:.0f} s", flush=True)
                    continue
                for s in batch:
                    r = json.loads(result_path(out, side, config, s).read_text())
                    final = "diverged" if r["final_return"] is None else f"{r['final_return']:.1f}"
                    print(f"  {side} seed {s}: final {final}, train {r['train_s']:.1f} s (per seed), "
                          f"{r['env_steps']} env steps, {r['grad_steps']} grad steps, process {process_s:.1f} s",
                          flush=True)
    return failures


# ------------------------------------------------------------------------------------------------------------- table

def load_results(out: Path) -> dict[tuple[str, str], dict[int, dict]]:
    found: dict[tuple[str, str], dict[int, dict]] = {}
    for path in sorted(out.glob("*_seed*.json")):
        r = json.loads(path.read_text())
        found.setdefault((r["side"], r["config"]), {})[int(r["seed"])] = r
    return found


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(out: Path, seeds: list[int]) -> str:
    import numpy as np

    from qbench.analysis import stats

    found = load_results(out)
    lines = ["# qbench vs Stable-Baselines3: what each learns (issue 25)", "",
             (f"Results in `{out.relative_to(REPO) if out.is_relative_to(REPO) else out}`; final return = mean of "
             f"{EVAL_EPISODES} greedy episodes at the end of training. IQM and P(qbench > SB3) with 95% stratified "
             "bootstrap intervals (2,000 replicates, qbench.analysis.stats). A missing run shows '-'; a diverged "
             "qbench seed 'div' (left out of the statistics)."), ""]
    for config, spec in CONFIGS.items():
        sides = {side: found.get((side, config), {}) for side in SIDES}
        if not any(sides.values()):
            continue
        threshold = spec["threshold"]
        scales = sorted({r["steps_scale"] for runs in sides.values() for r in runs.values()})
        budget = ", ".join(f"{max(1, round(spec['budget'] * x)):,}" for x in scales)
        lines += [f"## {config} ({spec['task']}, {budget} env steps, threshold {threshold:g})", ""]
        shown = sorted(set(seeds) | {s for runs in sides.values() for s in runs})
        lines.append("| side | " + " | ".join(f"seed {s}" for s in shown)
                     + " | IQM [95% CI] | mean | >= threshold | train s / seed | env steps | grad steps |")
        lines.append("|---" * (len(shown) + 7) + "|")
        finals: dict[str, np.ndarray] = {}
        for side, runs in sides.items():
            cells = []
            for s in shown:
                r = runs.get(s)
                cells.append("-" if r is None else ("div" if r["final_return"] is None else fmt(r["final_return"])))
            values = np.array([runs[s]["final_return"] for s in shown
                               if s in runs and runs[s]["final_return"] is not None], dtype=float)
            finals[side] = values
            if values.size:
                ci = stats.bootstrap_ci(values[:, None], stats.iqm, np.random.default_rng(0), reps=2000)
                summary = (f"{ci.point:.1f} [{ci.lower:.1f}, {ci.upper:.1f}] | {values.mean():.1f} | "
                           f"{int((values >= threshold).sum())}/{values.size}")
                done = [runs[s] for s in shown if s in runs]
                train_s = np.median([r["train_s"] for r in done])
                env_steps = sorted({r["env_steps"] for r in done if r["env_steps"] is not None})
                grad_steps = sorted({r["grad_steps"] for r in done if r["grad_steps"] is not None})
                summary += (f" | {train_s:.1f} | {','.join(map(str, env_steps))} | "
                            f"{','.join(map(str, grad_steps))}")
            else:
                summary = "- | - | - | - | - | -"
            lines.append(f"| {side} | " + " | ".join(cells) + f" | {summary} |")
        lines.append("")
        q, s = finals["qbench"], finals["sb3"]
        if q.size and s.size:
            poi = stats.probability_of_improvement_ci(q[:, None], s[:, None], np.random.default_rng(0), reps=2000)
            lines.append(f"P(qbench > SB3) = {poi.point:.2f} [{poi.lower:.2f}, {poi.upper:.2f}] "
                         f"({q.size} qbench seeds, {s.size} SB3 seeds)")
        else:
            lines.append("P(qbench > SB3): needs both sides")
        lines.append("")
        # Learning curves: mean over the seeds present at each evaluation point.
        curve_rows = []
        for side, runs in sides.items():
            by_step: dict[int, list[float]] = {}
            for r in runs.values():
                for point in r["curve"]:
                    by_step.setdefault(int(point["env_steps"]), []).append(float(point["return_mean"]))
            curve_rows.append((side, by_step))
        steps = sorted({st for _, by_step in curve_rows for st in by_step})
        if steps:
            lines.append("Learning curve, mean over seeds of the greedy return (seeds counted in brackets):")
            lines.append("")
            lines.append("| side | " + " | ".join(f"{st:,}" for st in steps) + " |")
            lines.append("|---" * (len(steps) + 1) + "|")
            for side, by_step in curve_rows:
                cells = [f"{np.mean(by_step[st]):.1f} ({len(by_step[st])})" if st in by_step else "-"
                         for st in steps]
                lines.append(f"| {side} | " + " | ".join(cells) + " |")
            lines.append("")
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated, of sb3, qbench (run in this order)")
    parser.add_argument("--seeds", default="0-9", help="seeds, e.g. 0-9 or 0,3,5-7")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply the budget, the warm-up and the evaluation interval (e.g. 0.02 for a smoke "
                             "run; written to a folder of its own unless --out is given)")
    parser.add_argument("--out", default=None, help=f"results folder (default {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--table", action="store_true", help="only read the results there and write table.md")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--child-config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.out is None:
        args.out = str(DEFAULT_OUT if args.steps_scale == 1.0
                       else DEFAULT_OUT.with_name(f"{DEFAULT_OUT.name}_scale{args.steps_scale:g}"))
    if args.child:
        return run_child(args)

    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as exc:
        parser.error(str(exc))
    out = Path(args.out).resolve()
    if args.table:
        print(table(out, seeds))
        print(f"written: {out / 'table.md'}")
        return 0
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not configs or any(c not in CONFIGS for c in configs):
        parser.error(f"--configs: choose from {', '.join(CONFIGS)}")
    if not sides or any(s not in SIDES for s in sides):
        parser.error("--sides: choose from sb3, qbench")
    if args.steps_scale <= 0:
        parser.error("--steps-scale must be > 0")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} results in {out}; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores", flush=True)
    started = time.perf_counter()
    failures = run_all(configs, sides, seeds, args.steps_scale, out)
    print(f"done in {time.perf_counter() - started:.0f} s, {failures} failed run(s)\n", flush=True)
    print(table(out, seeds))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
