"""Issue 25: the power of the sanity suite. Does `qbench sanity` fail an engine that is deliberately broken?

    python benchmarks/sanity_power.py [--faults none,no_target_network,target_sign,discount_wrong,stale_replay]
                                      [--pairs CartPole-v1/dqn,Pendulum-v1/naf] [--seeds 200-209]
                                      [--steps-scale 1.0] [--seed-batch 5] [--workers 1] [--out DIR]
                                      [--min-passing K --of N] [--set key=value ...] [--dry-run]
    python benchmarks/sanity_power.py --table [--out DIR] [--faults ...] [--pairs ...] [--seeds ...]
                                      [--min-passing K --of N]

Issue 25 asks of the sanity suite (suites/sanity.toml, judged by qbench/runner/sanity.py) that it
"passes when the code is right and fails when it is not": each of a few deliberately broken engines fails it with
probability at least 0.95. This script measures that. For every FAULT and every judged (variant, task) pair of
the suite (or the --pairs given), it trains the pair on the --seeds with the fault injected into the engine, at the
suite's own settings and budget (the suite's layers on top of the task's tuned settings and the variant, exactly
as `qbench sanity` resolves them; --steps-scale shrinks the budget, --set adds override layers), and records each
seed's final return (the mean of the final greedy evaluation's episodes, what the suite judges). A diverged seed
(the engine's divergence watch stopped it) has no final return and counts as not passing, as in `qbench sanity`.

Faults. Each is injected by monkeypatching qbench inside the child process that trains (never by editing
qbench/), through a context manager that undoes the patch on exit. A function that the engine imported by name
(`from qbench.parts.targets import td_targets`) is replaced in every qbench module that holds it, so that
qbench.engine's re-export is patched too (the loop's target, qbench.parts.targets.value_target, calls td_targets and
bootstrap_value by their names in qbench.parts.targets).

- none: the unbroken engine, the control. Nothing is patched.
- no_target_network: qbench.parts.targets.bootstrap_value is wrapped so that its target-network argument is the
  online network: max (DQN, NAF, random/CEM sampling) bootstraps from max_a Q_online(s', a); double
  (double_dqn, double_nstep_huber_dqn, cem_q) from Q_online(s', argmax_a Q_online(s', a)), i.e. plain max on the
  online net; policy (DDPG) from Q_online(s', mu_online(s')), the online actor in place of the target actor too.
  Hard copies and Polyak updates still run, but nothing reads the target networks any more. (online_q and
  fitted_q are reported, not judged; online_q has no target network to begin with.)
- target_sign: qbench.parts.targets.td_targets computes y = reward_n - discount_n * bootstrap.
- discount_wrong: td_targets computes y = reward_n + 0.5 * discount_n * bootstrap: the bootstrap is discounted by
  gamma / 2 instead of gamma (gamma^L / 2 for an L-step window; 0 after a termination, as before). Why this one:
  discount_n is made from the replay window by qbench/parts/targets.py (discounted_window: gamma^L, 0 where the
  window ended in a termination; the 1-step path of window_return: gamma or 0) and reaches the target only
  through td_targets, so patching td_targets reaches every sanity variant. Of the candidates, gamma^2 (0.98 on
  CartPole, 0.96 on Pendulum) is a discount both tasks are routinely solved with: no test on returns can or
  should fail it. Discount 1 (gamma forgotten) leaves the greedy policy of a continuing task (Pendulum, whose
  episodes only end by the time limit) unchanged in the limit (relative value iteration: Q_k = k * rho + h,
  greedy in h), and on CartPole the termination still ranks failing actions below surviving ones, so it may
  well not be broken in the returns either; it is available as the extra fault `no_discount` to find out.
  Halving gamma makes both tasks myopic (a horizon of about 2 steps instead of 100 and 50): no long-horizon
  control problem survives it, so it is a fault a sanity suite must catch.
- stale_replay: qbench.replay.buffer.ReplayBuffer.sample draws each seed's indices uniformly from the oldest
  10 x batch_size transitions still held (the first 640 of CartPole, 2,560 of DDPG/CEM/random on Pendulum, 320 of
  NAF: all collected by the uniform warm-up policy), never from the recent ones; one integers() call per seed, as
  the real sampler makes, so the random streams stay aligned. (Atari's FrameReplayBuffer is not patched.)
- no_discount (extra, not in the default list): td_targets computes y = reward_n + [discount_n > 0] * bootstrap.

target_sign, discount_wrong, no_discount and no_target_network do not reach variants whose n-step target is
computed by a trace correction (retrace and the like, qbench.parts.targets.traced_target, which bootstraps from
sum_a pi(a|s) Q(s, a) without td_targets or bootstrap_value; none is in the sanity suite): the child refuses such a
pair rather than report an unbroken run under a fault's name.

Processes: each (fault, pair) runs its missing seeds in batches of --seed-batch, each batch one fresh subprocess
(OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1, torch_threads 1) that trains the batch's seeds together
with qbench.jobs.build_job + qbench.engine.train_batch (the seed axis, as `qbench sanity` trains a pair) under the
fault. --workers runs that many (fault, pair) files at once (never two batches of one file).

Output, under --out (default results/benchmarks/issue25_sanity_power, or ..._scale<S> for --steps-scale S != 1):
one JSON file per (fault, task, variant), <fault>__<task>__<variant>.json, holding per seed the final return (None
for a diverged seed, with the message), the best return, the learning curve, the last logged Q mean and the
divergence watch's record, plus the resolved config and one entry per batch (wall time, git commit). A child
merges its seeds into the file when its batch ends (atomically). Resumable: a seed already in the file is skipped;
a file written with a different resolved config (another budget or --set) is refused, use another --out.

Judging and the probability arithmetic (--table; also printed after a run, and written to table.md). The rule is
the suite's: a pair passes when at least k = min_passing_seeds of its n = seeds seeds end at or above the pair's
threshold (4 of 5 now); --min-passing K --of N judges by another k-of-n rule, since the rule is being redesigned.
For each (fault, pair), with x of the m seeds run at or above the threshold:
- p-hat = x / m, the per-seed success rate, with its exact (Clopper-Pearson) 95% interval;
- P(pair passes) = P(Binomial(n, p) >= k) = sum_{j=k..n} C(n, j) p^j (1 - p)^(n - j), at p-hat and at the
  interval's ends (the tail grows with p, so that is its range over the interval);
- the verdict of qbench.runner.sanity.Verdict on the first n seeds, what one `qbench sanity` run on them would say.
Per fault, the pairs train independently, so P(suite passes) = product over judged pairs of P(pair passes), and
P(suite fails) = 1 - that; issue 25 wants P(fails) >= 0.95 for every fault and P(passes) high for `none`. (The
product of the interval ends is each pair's range multiplied out, not a joint 95% interval.) Examples, 4 of 5:
p = 0.9 on all 9 judged pairs gives 0.9185 per pair and 0.47 for the suite: a control that fails half the time;
one pair with p <= 0.34 is enough to fail a fault with probability >= 0.95; 0 of 10 seeds bounds p by 0.31
(95%) and that pair's P(pass) by 0.034.

CPU cost (full budget): on one core of the 2-core development machine, a 5-seed batch took 107-163 s per CartPole
variant and 516 s (ddpg), 508 s (cem_q), 287 s (random_q), 251 s (naf) on Pendulum (the full sanity suite, 55 jobs,
took 1337 s wall with 2 workers): about 2,300 CPU-s per fault for 5 seeds of the 9 judged pairs, so 5 faults x 10
seeds is about 23,000 CPU-s (6.4 h on one core, about 3.2 h wall with --workers 2). A broken CartPole learner
ends its greedy episodes early, so faulty runs are cheaper than the control there. --dry-run prints the plan and
this estimate.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
from sb3_learning import parse_seeds
from sb3_side_by_side import THREAD_VARS

DEFAULT_OUT = REPO / "results" / "benchmarks" / "issue25_sanity_power"
SUITE_PATH = REPO / "suites" / "sanity.toml"
DEFAULT_SEEDS = "200-209"   # disjoint from the suite's own seeds (0-4) and the seeds-100 run (100-109)

STALE_ROWS_PER_BATCH = 10   # stale_replay samples from the oldest STALE_ROWS_PER_BATCH x batch_size transitions
DISCOUNT_WRONG_FACTOR = 0.5  # discount_wrong's bootstrap is discounted by this x discount_n

# Seconds for a 5-seed batch at the full budget on one core of the 2-core development machine (the full sanity
# suite run, 2 workers): the basis of --dry-run's estimate. CartPole batches took 107-163 s; 135 s is the middle.
KNOWN_BATCH_S = {("Pendulum-v1", "ddpg"): 516.0, ("Pendulum-v1", "cem_q"): 508.0,
                 ("Pendulum-v1", "random_q"): 287.0, ("Pendulum-v1", "naf"): 251.0}
CARTPOLE_BATCH_S = 135.0
KNOWN_BATCH_SEEDS = 5


# ------------------------------------------------------------------------------------------------------ patching

@contextlib.contextmanager
def replaced_function(module_name: str, name: str, replacement: Callable) -> Iterator[Callable]:
    """Replace the function `name` of `module_name` by `replacement` in that module and in every other qbench module
    that imported it by name (qbench.engine re-exports td_targets and bootstrap_value); put the
    original back on exit. Yields the original."""
    home = importlib.import_module(module_name)
    importlib.import_module("qbench.engine")   # imports qbench.training.loop, and re-exports its names
    original = getattr(home, name)
    holders = [module for key, module in list(sys.modules.items())
               if (key == "qbench" or key.startswith("qbench.")) and module is not None
               and getattr(module, name, None) is original]
    for module in holders:
        setattr(module, name, replacement)
    try:
        yield original
    finally:
        for module in holders:
            setattr(module, name, original)


@contextlib.contextmanager
def replaced_attribute(owner: object, name: str, replacement: object) -> Iterator[object]:
    """Replace owner.name (a class's method) by replacement; put the original back on exit. Yields the original."""
    original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield original
    finally:
        setattr(owner, name, original)


# ---------------------------------------------------------------------------------------- the broken functions

def td_targets_sign_flipped(reward_n, discount_n, bootstrap):
    """target_sign: y = reward_n - discount_n * bootstrap (the bootstrap subtracted instead of added)."""
    return reward_n - discount_n * bootstrap


def td_targets_discount_halved(reward_n, discount_n, bootstrap):
    """discount_wrong: y = reward_n + 0.5 * discount_n * bootstrap (gamma / 2 per step where gamma is due; still 0
    after a termination)."""
    return reward_n + DISCOUNT_WRONG_FACTOR * discount_n * bootstrap


def td_targets_undiscounted(reward_n, discount_n, bootstrap):
    """no_discount: y = reward_n + bootstrap where the window did not end in a termination, else reward_n
    (gamma forgotten, the termination mask kept)."""
    return reward_n + (discount_n > 0).to(bootstrap.dtype) * bootstrap


class _OnlineActorAsTarget:
    """DDPG's maximiser seen by a target that has no target networks: its target policy is the online actor."""

    def __init__(self, maximiser, online):
        self.maximiser, self.online = maximiser, online

    def target_policy(self, obs):
        return self.maximiser.argmax(self.online, obs)


def make_bootstrap_from_online(original: Callable) -> Callable:
    """no_target_network: bootstrap_value with the online network wherever it would read the target network."""

    def bootstrap_value(kind, maximiser, online, target, next_obs):
        """The bootstrap value computed from the online network (and, for DDPG's policy target, the online actor):
        the target network passed in is ignored."""
        if kind == "policy":
            return original(kind, _OnlineActorAsTarget(maximiser, online), online, online, next_obs)
        return original(kind, maximiser, online, online, next_obs)
    return bootstrap_value


def stale_sample(self, batch_size, rngs, n=None):
    """stale_replay: ReplayBuffer.sample drawing each seed's indices uniformly from the oldest
    STALE_ROWS_PER_BATCH x batch_size transitions still held (the ring's oldest slots), never the recent ones."""
    oldest = (self.pos - self.size) % self.capacity
    rows = max(1, min(self.size, STALE_ROWS_PER_BATCH * batch_size))
    idx = np.stack([(oldest + rng.integers(0, rows, size=batch_size)) % self.capacity for rng in rngs])
    return self.gather(idx, n)


# ---------------------------------------------------------------------------------------------------- the faults

@contextlib.contextmanager
def fault_none() -> Iterator[None]:
    """The unbroken engine, the control: nothing is patched."""
    yield


@contextlib.contextmanager
def fault_no_target_network() -> Iterator[None]:
    """The bootstrap reads the online network (and DDPG's online actor) instead of the lagged target networks."""
    from qbench.parts import targets
    with replaced_function("qbench.parts.targets", "bootstrap_value",
                           make_bootstrap_from_online(targets.bootstrap_value)):
        yield


@contextlib.contextmanager
def fault_target_sign() -> Iterator[None]:
    """The TD target's sign is wrong: y = r - discount * bootstrap."""
    with replaced_function("qbench.parts.targets", "td_targets", td_targets_sign_flipped):
        yield


@contextlib.contextmanager
def fault_discount_wrong() -> Iterator[None]:
    """The bootstrap is discounted by gamma / 2 instead of gamma: y = r + 0.5 * discount * bootstrap."""
    with replaced_function("qbench.parts.targets", "td_targets", td_targets_discount_halved):
        yield


@contextlib.contextmanager
def fault_stale_replay() -> Iterator[None]:
    """Replay returns only the oldest rows: batches come from the first 10 x batch_size transitions held."""
    from qbench.replay.buffer import ReplayBuffer
    with replaced_attribute(ReplayBuffer, "sample", stale_sample):
        yield


@contextlib.contextmanager
def fault_no_discount() -> Iterator[None]:
    """The bootstrap is not discounted (gamma forgotten, termination kept): y = r + [not terminated] bootstrap."""
    with replaced_function("qbench.parts.targets", "td_targets", td_targets_undiscounted):
        yield


FAULTS: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "none": fault_none,
    "no_target_network": fault_no_target_network,
    "target_sign": fault_target_sign,
    "discount_wrong": fault_discount_wrong,
    "stale_replay": fault_stale_replay,
    "no_discount": fault_no_discount,
}
DEFAULT_FAULTS = ("none", "no_target_network", "target_sign", "discount_wrong", "stale_replay")
# Faults in the TD target or its bootstrap: a trace correction's target (parts/targets.py traced_target) goes past them.
TARGET_FAULTS = ("no_target_network", "target_sign", "discount_wrong", "no_discount")


def inject(fault: str) -> contextlib.AbstractContextManager:
    """The context manager that breaks the engine as `fault` says (and repairs it on exit)."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; faults: {', '.join(FAULTS)}")
    return FAULTS[fault]()


# -------------------------------------------------------------------------------------------------- probability

def binomial_tail(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) >= k): the probability that at least k of n independent seeds, each passing with
    probability p, pass."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(sum(math.comb(n, j) * p ** j * (1.0 - p) ** (n - j) for j in range(k, n + 1)))


def clopper_pearson(x: int, m: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact two-sided interval for a success probability from x successes in m trials: the lower end solves
    P(X >= x | p) = alpha / 2, the upper P(X <= x | p) = alpha / 2 (bisection; both tails are monotone in p)."""
    if m <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence

    def solve(f: Callable[[float], float], level: float) -> float:   # f increasing in p: the p where f(p) = level
        lo, hi = 0.0, 1.0
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            if f(mid) < level:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)
    # P(X >= x | p) and P(X >= x + 1 | p) = 1 - P(X <= x | p) both grow with p
    lower = 0.0 if x == 0 else solve(lambda p: binomial_tail(x, m, p), alpha / 2)
    upper = 1.0 if x == m else solve(lambda p: binomial_tail(x + 1, m, p), 1.0 - alpha / 2)
    return lower, upper


# --------------------------------------------------------------------------------------------- suite and pairs

def load_sanity_suite(path: str | Path = SUITE_PATH):
    from qbench.suites import load_suite
    return load_suite(Path(path))


def suite_pairs(suite, judged_only: bool = True) -> list[tuple[str, str]]:
    """(task, variant) of the suite in file order: those with a threshold, or all."""
    return [(e.name, v) for e in suite.entries for v in e.variants if not judged_only or v in e.thresholds]


def parse_pairs(text: str, suite) -> list[tuple[str, str]]:
    """'CartPole-v1/dqn,Pendulum-v1/naf' -> [(task, variant)]; the variant follows the last '/' (task names may
    hold one). Every pair must be in the suite."""
    valid = suite_pairs(suite, judged_only=False)
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        task, sep, variant = part.rpartition("/")
        if not sep or (task, variant) not in valid:
            raise ValueError(f"pair {part!r} is not a TASK/VARIANT of suite '{suite.name}'; pairs: "
                             + ", ".join(f"{t}/{v}" for t, v in valid))
        if (task, variant) not in pairs:
            pairs.append((task, variant))
    if not pairs:
        raise ValueError("--pairs lists no pair")
    return pairs


def seed_span(seeds: list[int]) -> str:
    """[200, 201, 202, 205] -> '200-202,205'."""
    parts, start = [], None
    for i, seed in enumerate(seeds):
        start = seed if start is None else start
        if i + 1 == len(seeds) or seeds[i + 1] != seed + 1:
            parts.append(str(seed) if seed == start else f"{start}-{seed}")
            start = None
    return ",".join(parts)


def parse_faults(text: str) -> list[str]:
    faults = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if not faults or unknown:
        raise ValueError(f"unknown fault(s) {', '.join(unknown) or '(none given)'}; faults: {', '.join(FAULTS)}")
    return list(dict.fromkeys(faults))


@dataclasses.dataclass(frozen=True)
class Rule:
    """A pair passes when at least k of its n seeds reach the threshold."""

    k: int
    n: int

    def __str__(self) -> str:
        return f"{self.k} of {self.n}"


def suite_rule(suite, task: str, min_passing: int | None = None, of: int | None = None) -> Rule:
    """The suite's k-of-n rule for the task, with --min-passing / --of in place of either."""
    suite_k, suite_n = suite.rule(task)
    k = min_passing if min_passing is not None else suite_k
    n = of if of is not None else suite_n
    if k is None or not 1 <= k <= n:
        raise ValueError(f"the rule needs 1 <= min-passing <= of; got {k} of {n}")
    return Rule(k, n)


def scaled_budget(cfg, steps_scale: float) -> dict:
    """The override layer that shrinks the budget: total env steps, evaluation interval and warm-up times the
    scale (rounds, sizes, rates and fractions unchanged)."""
    if steps_scale == 1.0:
        return {}
    return {"total_env_steps": max(1, round(cfg.total_env_steps * steps_scale)),
            "eval_interval_env_steps": max(1, round(cfg.eval_interval_env_steps * steps_scale)),
            "warmup_env_steps": round(cfg.warmup_env_steps * steps_scale)}


def pair_jobs(suite, task: str, variant: str, seeds: list[int], steps_scale: float = 1.0,
              overrides: dict | None = None) -> list:
    """The jobs `qbench sanity` would build for the pair on these seeds (the suite's layers), with the budget
    scaled and the overrides as further layers."""
    from qbench.jobs import build_job

    entry = suite.entry(task)
    extra = {"extra_variants": suite.custom_variants, "extra_tasks": suite.custom_tasks}
    base = build_job(variant, task, seeds[0], *entry.layers, **extra)
    layer = {**scaled_budget(base.config, steps_scale), **(overrides or {})}
    first = build_job(variant, task, seeds[0], *entry.layers, layer, **extra) if layer else base
    return [dataclasses.replace(first, seed=seed) for seed in seeds]


def config_key(job) -> str:
    """The hash of the resolved job without its seed: what every seed of a results file must share."""
    from qbench.config import config_hash
    return config_hash({**job.to_dict(), "seed": None})


def check_fault_reaches(fault: str, job) -> None:
    from qbench.config import TRACE_CORRECTIONS, max_n_step
    cfg = job.config
    if fault in TARGET_FAULTS and cfg.nstep_correction in TRACE_CORRECTIONS and max_n_step(cfg) > 1:
        raise ValueError(f"fault {fault!r} patches the TD target, which variant {job.variant!r} "
                         f"(nstep_correction {cfg.nstep_correction}) computes in the replay buffer: it would run "
                         "unbroken")


# ----------------------------------------------------------------------------------------------------- results

def _component(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def result_path(out: Path, fault: str, task: str, variant: str) -> Path:
    return Path(out) / f"{_component(fault)}__{_component(task)}__{_component(variant)}.json"


def read_result(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".json.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def versions() -> dict:
    import gymnasium
    import torch
    out = {"python": platform.python_version(), "torch": torch.__version__, "gymnasium": gymnasium.__version__,
           "numpy": np.__version__}
    try:
        from qbench.store import git_commit
        out["qbench_git"] = git_commit()
    except Exception as exc:  # noqa: BLE001 - informative only
        out["qbench_git"] = f"unknown ({type(exc).__name__})"
    return out


# ------------------------------------------------------------------------------------------------------- child

def run_pair(fault: str, suite, task: str, variant: str, seeds: list[int], out: Path, steps_scale: float = 1.0,
             overrides: dict | None = None) -> dict:
    """Train the pair's seeds together (one train_batch) with the fault injected, and merge their results into the
    pair's file under out. Returns the file's new contents. This is what the child process runs; the tests call
    it in-process."""
    from qbench import engine

    jobs = pair_jobs(suite, task, variant, seeds, steps_scale, overrides)
    check_fault_reaches(fault, jobs[0])
    key = config_key(jobs[0])
    path = result_path(out, fault, task, variant)
    record = read_result(path)
    if record is not None and record["config_key"] != key:
        raise ValueError(f"{path} holds runs of another config ({record['config_key']}, this one {key}): use "
                         "another --out")
    curves: dict[int, list] = {seed: [] for seed in seeds}
    q_mean: dict[int, float] = {}

    def progress(env_steps: int, info: dict) -> None:
        if "evaluation" in info:
            curves[info["seed"]].append([int(env_steps), float(info["evaluation"]["return_mean"])])
        if "diagnostics" in info:
            q_mean[info["seed"]] = float(info["diagnostics"]["q_mean"])

    started_at = time.strftime("%Y-%m-%dT%H:%M:%S")
    started = time.perf_counter()
    with inject(fault):
        results = engine.train_batch(jobs, progress=progress)
    wall_s = time.perf_counter() - started

    rule = suite_rule(suite, task)
    threshold = suite.entry(task).thresholds.get(variant)
    if record is None:
        record = {"fault": fault, "task": task, "variant": variant, "threshold": threshold,
                  "suite": str(suite.path), "suite_rule": {"min_passing": rule.k, "of": rule.n},
                  "steps_scale": steps_scale, "overrides": overrides or {}, "config_key": key,
                  "total_env_steps": jobs[0].config.total_env_steps, "config": jobs[0].config.to_dict(),
                  "seeds": {}, "batches": []}
    for job, result in zip(jobs, results, strict=True):
        row: dict = {"job_hash": job.hash, "curve": curves[job.seed], "last_q_mean": q_mean.get(job.seed)}
        if isinstance(result, BaseException):
            row.update(final_return=None, diverged=str(result))
        else:
            row.update(final_return=float(result["final_return_mean"]),
                       final_return_std=float(result["final_return_std"]),
                       best_return=float(result["best_return_mean"]), grad_steps=int(result["grad_steps"]),
                       divergence_watch=result.get("divergence_watch"))
        record["seeds"][str(job.seed)] = row
    record["batches"].append({"seeds": seeds, "wall_s": wall_s, "started_at": started_at, "versions": versions()})
    write_json(path, record)
    return record


def child_main(args: argparse.Namespace) -> int:
    import torch
    torch.set_num_threads(1)
    suite = load_sanity_suite(args.suite)
    task, _, variant = args.child_pair.rpartition("/")
    record = run_pair(args.child, suite, task, variant, parse_seeds(args.seeds), Path(args.out), args.steps_scale,
                      json.loads(args.child_overrides))
    wall = record["batches"][-1]["wall_s"]
    for seed in parse_seeds(args.seeds):
        row = record["seeds"][str(seed)]
        final = "diverged" if row["final_return"] is None else f"{row['final_return']:.1f}"
        print(f"    {args.child} {args.child_pair} seed {seed}: final {final}", flush=True)
    print(f"    {args.child} {args.child_pair} seeds {args.seeds}: batch {wall:.0f} s", flush=True)
    return 0


# ------------------------------------------------------------------------------------------------------ parent

def spawn(fault: str, task: str, variant: str, seeds: list[int], args: argparse.Namespace, overrides: dict) -> int:
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, "1")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", fault, "--child-pair", f"{task}/{variant}",
               "--seeds", ",".join(map(str, seeds)), "--steps-scale", repr(args.steps_scale), "--out", str(args.out),
               "--suite", str(args.suite), "--child-overrides", json.dumps(overrides)]
    return subprocess.run(command, cwd=REPO, env=env, check=False).returncode


def estimate_s(task: str, variant: str, n_seeds: int, steps_scale: float) -> float:
    """CPU seconds of n_seeds of the pair at the scaled budget, from the known 5-seed batches."""
    per_batch = KNOWN_BATCH_S.get((task, variant), CARTPOLE_BATCH_S)
    return per_batch * n_seeds / KNOWN_BATCH_SEEDS * steps_scale


def plan(suite, faults: list[str], pairs: list[tuple[str, str]], seeds: list[int], out: Path, steps_scale: float,
         overrides: dict) -> list[tuple[str, str, str, list[int]]]:
    """(fault, task, variant, missing seeds) per results file with seeds still to run; refuses a file written
    with another resolved config."""
    todo = []
    for task, variant in pairs:
        job = pair_jobs(suite, task, variant, seeds[:1], steps_scale, overrides)[0]
        key = config_key(job)
        for fault in faults:
            check_fault_reaches(fault, job)
            path = result_path(out, fault, task, variant)
            record = read_result(path)
            if record is not None and record["config_key"] != key:
                raise ValueError(f"{path} holds runs of another config ({record['config_key']}, now {key}: another "
                                 "budget or --set): use another --out")
            done = set() if record is None else {int(s) for s in record["seeds"]}
            missing = [s for s in seeds if s not in done]
            if missing:
                todo.append((fault, task, variant, missing))
    return todo


def run_all(todo, args: argparse.Namespace, overrides: dict) -> int:
    """Run every file's missing seeds in batches of --seed-batch, --workers files at a time, costliest first.
    Returns the number of failed batches."""
    def one_file(item) -> int:
        fault, task, variant, missing = item
        failures = 0
        for start in range(0, len(missing), args.seed_batch):
            batch = missing[start:start + args.seed_batch]
            print(f"{time.strftime('%H:%M:%S')} {fault} {task}/{variant} seeds {batch} ...", flush=True)
            rc = spawn(fault, task, variant, batch, args, overrides)
            if rc != 0:
                failures += 1
                print(f"{time.strftime('%H:%M:%S')} {fault} {task}/{variant} seeds {batch} FAILED (exit {rc})",
                      flush=True)
        return failures

    ordered = sorted(todo, key=lambda t: -estimate_s(t[1], t[2], len(t[3]), args.steps_scale))
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        return sum(pool.map(one_file, ordered))


# ------------------------------------------------------------------------------------------------------- table

def load_results(out: Path) -> dict[tuple[str, str, str], dict]:
    found = {}
    for path in sorted(Path(out).glob("*__*__*.json")):
        r = json.loads(path.read_text())
        found[(r["fault"], r["task"], r["variant"])] = r
    return found


@dataclasses.dataclass(frozen=True)
class PairPower:
    """One (fault, pair): its seeds' finals and what they say about the k-of-n rule."""

    fault: str
    task: str
    variant: str
    threshold: float | None
    rule: Rule
    finals: tuple[tuple[int, float | None], ...]   # (seed, final return or None for a diverged seed)

    @property
    def judged(self) -> bool:
        return self.threshold is not None

    @property
    def passing(self) -> int:
        return sum(f is not None and f >= self.threshold for _, f in self.finals) if self.judged else 0

    @property
    def p_hat(self) -> float:
        return self.passing / len(self.finals)

    @property
    def interval(self) -> tuple[float, float]:
        return clopper_pearson(self.passing, len(self.finals))

    def p_pass(self, p: float | None = None) -> float:
        return binomial_tail(self.rule.k, self.rule.n, self.p_hat if p is None else p)

    def verdict(self) -> str:
        """qbench.runner.sanity's verdict on the first n seeds."""
        from qbench.runner.sanity import Verdict
        v = Verdict(self.task, self.variant, self.threshold, self.rule.k if self.judged else None,
                    self.finals[:self.rule.n], self.rule.n)
        return v.verdict


def pair_powers(suite, found: dict, faults: list[str], pairs: list[tuple[str, str]], seeds: list[int] | None,
                min_passing: int | None, of: int | None) -> list[PairPower]:
    powers = []
    for fault in faults:
        for task, variant in pairs:
            r = found.get((fault, task, variant))
            if r is None:
                continue
            stored = {int(s): row["final_return"] for s, row in r["seeds"].items()}
            chosen = sorted(stored) if seeds is None else [s for s in seeds if s in stored]
            if not chosen:
                continue
            powers.append(PairPower(fault, task, variant, suite.entry(task).thresholds.get(variant),
                                    suite_rule(suite, task, min_passing, of),
                                    tuple((s, stored[s]) for s in chosen)))
    return powers


def _f(x: float | None, digits: int = 1) -> str:
    return "div" if x is None else f"{x:.{digits}f}"


def table(suite, out: Path, faults: list[str] | None = None, pairs: list[tuple[str, str]] | None = None,
          seeds: list[int] | None = None, min_passing: int | None = None, of: int | None = None) -> str:
    """The markdown table of every (fault, pair) found under out (of those asked for), and per fault the suite's
    pass probability; also written to out/table.md."""
    found = load_results(out)
    judged_pairs = [pr for pr in (pairs or suite_pairs(suite)) if suite.entry(pr[0]).thresholds.get(pr[1]) is not None]
    faults = faults or [f for f in FAULTS if any(key[0] == f for key in found)]
    pairs = pairs or [p for p in suite_pairs(suite, judged_only=False) if any(key[1:] == p for key in found)]
    powers = pair_powers(suite, found, faults, pairs, seeds, min_passing, of)
    scales = sorted({found[(p.fault, p.task, p.variant)]["steps_scale"] for p in powers})
    lines = ["# The power of the sanity suite (issue 25)", "",
             (f"Results in `{out.relative_to(REPO) if out.is_relative_to(REPO) else out}`, suite "
             f"`{suite.path.name}`, budget scale {', '.join(f'{s:g}' for s in scales) or '-'}. A pair passes when "
             "k of n seeds end (final greedy return) at or above its threshold; 'div': a diverged seed (fails). "
             "p-hat: seeds at/above the threshold over seeds run, with its exact 95% interval. P(pass): "
             "P(Binomial(n, p) >= k) at p-hat [at the interval's ends]. Verdict: qbench.runner.sanity's, on the "
             "first n seeds."), "",
             ("| fault | task/variant | threshold | rule | seeds | final returns | >= thr | p-hat [95%] | "
              "P(pass) [range] | verdict |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in powers:
        finals = " ".join(_f(f, 0) for _, f in p.finals)
        span = f"{seed_span([s for s, _ in p.finals])} ({len(p.finals)})"
        if p.judged:
            lo, hi = p.interval
            cells = [f"{p.threshold:g}", str(p.rule), span, finals, f"{p.passing}/{len(p.finals)}",
                     f"{p.p_hat:.2f} [{lo:.2f}, {hi:.2f}]",
                     f"{p.p_pass():.3f} [{p.p_pass(lo):.3f}, {p.p_pass(hi):.3f}]", p.verdict()]
        else:
            cells = ["-", "-", span, finals, "-", "-", "-", "reported"]
        lines.append(f"| {p.fault} | {p.task}/{p.variant} | " + " | ".join(cells) + " |")
    lines += ["", ("Per fault: P(suite passes) = the product over its judged pairs of P(pair passes) (pairs "
                   "train independently); the range multiplies the pairs' ranges out (not a joint 95% interval). "
                   "Issue 25 wants P(suite fails) >= 0.95 for every fault."), "",
              ("| fault | judged pairs | P(suite passes) [range] | P(suite fails) [range] | verdicts, first n "
               "seeds (pass/fail/incomplete) | suite verdict |"),
              "|---|---|---|---|---|---|"]
    for fault in faults:
        mine = [p for p in powers if p.fault == fault and p.judged]
        if not mine:
            continue
        point = math.prod(p.p_pass() for p in mine)
        low = math.prod(p.p_pass(p.interval[0]) for p in mine)
        high = math.prod(p.p_pass(p.interval[1]) for p in mine)
        verdicts = [p.verdict() for p in mine]
        counts = "/".join(str(verdicts.count(v)) for v in ("pass", "fail", "incomplete"))
        missing = len(judged_pairs) - len(mine)
        suite_verdict = ("fail" if "fail" in verdicts else
                         "incomplete" if "incomplete" in verdicts or missing else "pass")
        lines.append(f"| {fault} | {len(mine)} of {len(judged_pairs)}{' (incomplete)' if missing else ''} | "
                     f"{point:.3f} [{low:.3f}, {high:.3f}] | {1 - point:.3f} [{1 - high:.3f}, {1 - low:.3f}] | "
                     f"{counts} | {suite_verdict} |")
    text = "\n".join(lines) + "\n"
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "table.md").write_text(text)
    return text


# -------------------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default=None,
                        help=f"comma-separated, of {', '.join(FAULTS)} (default: {','.join(DEFAULT_FAULTS)}; "
                             "--table: every fault found)")
    parser.add_argument("--pairs", default=None,
                        help="comma-separated TASK/VARIANT pairs of the suite (default: every judged pair; --table: "
                             "every pair found)")
    parser.add_argument("--seeds", default=None,
                        help=f"seeds, e.g. 200-209 or 200,203-205 (default {DEFAULT_SEEDS}; --table: every seed found)")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply the budget (total env steps, evaluation interval, warm-up); a folder of its "
                             "own unless --out is given")
    parser.add_argument("--seed-batch", type=int, default=5, help="seeds trained together in one child (default 5)")
    parser.add_argument("--workers", type=int, default=1, help="children at once (default 1)")
    parser.add_argument("--out", default=None, help=f"results folder (default {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--suite", default=str(SUITE_PATH), help="the suite file (default the shipped sanity.toml)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a setting for every job, after the suite's layers (part of the resolved config)")
    parser.add_argument("--min-passing", type=int, default=None, help="k of the k-of-n rule (default the suite's)")
    parser.add_argument("--of", type=int, default=None, help="n of the k-of-n rule (default the suite's seeds)")
    parser.add_argument("--table", action="store_true", help="only read the results and print/write the table")
    parser.add_argument("--dry-run", action="store_true", help="print what would run and its estimated CPU time")
    parser.add_argument("--child", choices=list(FAULTS), help=argparse.SUPPRESS)
    parser.add_argument("--child-pair", help=argparse.SUPPRESS)
    parser.add_argument("--child-overrides", default="{}", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)
    if args.steps_scale <= 0:
        parser.error("--steps-scale must be > 0")
    if args.seed_batch < 1 or args.workers < 1:
        parser.error("--seed-batch and --workers must be >= 1")
    if args.out is None:
        args.out = str(DEFAULT_OUT if args.steps_scale == 1.0
                       else DEFAULT_OUT.with_name(f"{DEFAULT_OUT.name}_scale{args.steps_scale:g}"))
    out = args.out = Path(args.out).resolve()
    try:
        from qbench.runner.plan import parse_overrides
        suite = load_sanity_suite(args.suite)
        faults = parse_faults(args.faults) if args.faults else None
        pairs = parse_pairs(args.pairs, suite) if args.pairs else None
        seeds = parse_seeds(args.seeds) if args.seeds else None
        overrides = parse_overrides(args.set)
        for task, _ in pairs or suite_pairs(suite):
            suite_rule(suite, task, args.min_passing, args.of)
    except Exception as exc:  # noqa: BLE001 - a user mistake: one line
        parser.error(str(exc))
    if args.table:
        print(table(suite, out, faults, pairs, seeds, args.min_passing, args.of))
        print(f"written: {out / 'table.md'}")
        return 0

    faults = faults or list(DEFAULT_FAULTS)
    pairs = pairs or suite_pairs(suite)
    seeds = seeds or parse_seeds(DEFAULT_SEEDS)
    try:
        todo = plan(suite, faults, pairs, seeds, out, args.steps_scale, overrides)
    except Exception as exc:  # noqa: BLE001
        parser.error(str(exc))
    cpu_s = sum(estimate_s(task, variant, len(missing), args.steps_scale) for _, task, variant, missing in todo)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} results in {out}; {len(todo)} file(s) with seeds to run, estimated "
          f"{cpu_s:,.0f} CPU-s ({cpu_s / 3600:.1f} h on one core, about {cpu_s / 3600 / args.workers:.1f} h wall "
          f"with {args.workers} worker(s)); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores",
          flush=True)
    if args.dry_run:
        for fault, task, variant, missing in todo:
            print(f"  {fault} {task}/{variant}: seeds {seed_span(missing)} "
                  f"(~{estimate_s(task, variant, len(missing), args.steps_scale):.0f} CPU-s)")
        return 0
    started = time.perf_counter()
    failures = run_all(todo, args, overrides)
    print(f"done in {time.perf_counter() - started:.0f} s, {failures} failed batch(es)\n", flush=True)
    print(table(suite, out, faults, pairs, seeds, args.min_passing, args.of))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
