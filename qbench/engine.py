"""The one training loop. Every variant is this loop with different parts in its slots.

collect -> store -> (every env_steps_per_update) sample -> target -> loss -> step -> maybe update target,
with a greedy evaluation on a separate env every eval_interval_env_steps.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from qbench.config import Config
from qbench.envs.tasks import Spaces, make_env, spaces_of
from qbench.jobs import Job
from qbench.parts.exploration import (
    GaussianNoise,
    OrnsteinUhlenbeckNoise,
    boltzmann_probs,
    epsilon_greedy_probs,
    linear_schedule,
    sample_from_probs,
)
from qbench.parts.losses import global_grad_norm, td_loss
from qbench.parts.maximisers import (
    ActorMaximiser,
    CEMMaximiser,
    ExactMaximiser,
    Maximiser,
    NAFMaximiser,
    RandomSamplingMaximiser,
)
from qbench.parts.networks import NAFQ, Actor, DiscreteQ, StateActionQ
from qbench.parts.target_update import hard_update, polyak_update
from qbench.parts.targets import bootstrap_value, td_targets
from qbench.replay.buffer import ReplayBuffer
from qbench.store import CHECKPOINT, METADATA, RunDir, atomic_write_bytes, run_metadata


class DivergedError(RuntimeError):
    """The TD loss became NaN or infinite."""


def build_q(cfg: Config, spaces: Spaces) -> torch.nn.Module:
    if cfg.q_head == "discrete":
        return DiscreteQ(spaces.obs_dim, spaces.n_actions, cfg.hidden_sizes)
    if cfg.q_head == "state_action":
        return StateActionQ(spaces.obs_dim, spaces.action_dim, cfg.hidden_sizes)
    if cfg.q_head == "naf":
        return NAFQ(spaces.obs_dim, spaces.action_dim, cfg.hidden_sizes)
    raise ValueError(f"unknown q head {cfg.q_head!r}")


def build_maximisers(cfg: Config, spaces: Spaces, seed: int) -> tuple[Maximiser, Maximiser]:
    """(for acting, for targets): they differ only where the sample count differs (random sampling), since
    targets sit in the inner loop of every gradient step."""
    generator = torch.Generator().manual_seed(seed)
    d = spaces.action_dim
    if cfg.maximiser == "exact":
        m = ExactMaximiser()
    elif cfg.maximiser == "random":
        return (RandomSamplingMaximiser(cfg.random_samples_act, d, generator),
                RandomSamplingMaximiser(cfg.random_samples_target, d, generator))
    elif cfg.maximiser == "cem":
        m = CEMMaximiser(cfg.cem_iterations, cfg.cem_population, cfg.cem_elites, d, generator)
    elif cfg.maximiser == "naf":
        m = NAFMaximiser()
    elif cfg.maximiser == "actor":
        actor = Actor(spaces.obs_dim, d, cfg.hidden_sizes)
        target_actor = copy.deepcopy(actor).requires_grad_(False)
        m = ActorMaximiser(actor, target_actor, torch.optim.Adam(actor.parameters(), lr=cfg.actor_lr))
    else:
        raise ValueError(f"unknown maximiser {cfg.maximiser!r}")
    return m, m


def build_optimiser(cfg: Config, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def derived_seed(*parts: int) -> int:
    """A seed for a separate random stream (evaluation env, network init) derived from the job seed."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


@dataclasses.dataclass
class Evaluation:
    """Per-episode results of one greedy evaluation."""

    returns: np.ndarray             # undiscounted episode returns: the score
    discounted_returns: np.ndarray  # sum_t gamma^t r_t from each episode's first state
    q_start: np.ndarray             # the network's Q(s_0, a_0) for the greedy first action: what it predicted


def evaluate(q_fn, maximiser, env, spaces: Spaces, episodes: int, seed: int, gamma: float) -> Evaluation:
    """Greedy episodes; the env is reset with `seed` once, so each evaluation is reproducible.

    Q(s_0, a_0) against the discounted return actually collected from s_0 is the overestimation diagnostic of
    van Hasselt et al. (2016); reading it costs one forward pass per episode and draws no random numbers.
    """
    returns, discounted, q_start = np.zeros(episodes), np.zeros(episodes), np.zeros(episodes)
    raw, _ = env.reset(seed=seed)
    with maximiser.reseeded(seed):
        for ep in range(episodes):
            done, total, total_discounted, discount, t = False, 0.0, 0.0, 1.0, 0
            while not done:
                obs = torch.as_tensor(spaces.encode(raw))[None]
                with torch.inference_mode():
                    action = maximiser.argmax(q_fn, obs)
                    if t == 0:
                        q_start[ep] = float(q_fn.q(obs, action)[0])
                raw, reward, terminated, truncated, _ = env.step(spaces.to_env(action[0].numpy()))
                total += float(reward)
                total_discounted += discount * float(reward)
                discount *= gamma
                t += 1
                done = terminated or truncated
            returns[ep], discounted[ep] = total, total_discounted
            if ep + 1 < episodes:
                raw, _ = env.reset()
    return Evaluation(returns, discounted, q_start)


def train(job: Job, run: RunDir | None = None, progress: Callable[[int, dict[str, Any]], None] | None = None,
          checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one job, from `checkpoint` if given; write rows and checkpoints to `run` as they come; return the
    summary. Raises DivergedError."""
    cfg = job.config
    torch.set_num_threads(cfg.torch_threads)
    started = time.perf_counter()
    rng = np.random.default_rng(job.seed)
    env, eval_env = make_env(job.task), make_env(job.task)
    spaces = spaces_of(env, cfg.observation_scaling)

    # Parts. Initialisation draws from a private torch stream so that the process-wide RNG stays untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(job.seed, 1))
        online = build_q(cfg, spaces)
        act_maximiser, target_maximiser = build_maximisers(cfg, spaces, derived_seed(job.seed, 3))
    target = online if cfg.target_update == "none" else copy.deepcopy(online).requires_grad_(False)
    followers = [] if cfg.target_update == "none" else [(target, online), *act_maximiser.target_pairs()]
    optimiser = build_optimiser(cfg, online.parameters())
    discrete = spaces.action_kind == "discrete"
    action_shape = () if discrete else (spaces.action_dim,)
    buffer = ReplayBuffer(cfg.buffer_size, (spaces.obs_dim,), action_shape, np.int64 if discrete else np.float32,
                          cfg.n_step, cfg.gamma)
    if cfg.action_noise == "ou":
        noise = OrnsteinUhlenbeckNoise(spaces.action_dim, cfg.noise_std, cfg.ou_theta, cfg.ou_dt, rng)
    else:
        noise = GaussianNoise(spaces.action_dim, cfg.noise_std, rng)

    def greedy_np(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return act_maximiser.argmax(online, torch.as_tensor(obs)).numpy()
    cut_trace = greedy_np if cfg.nstep_correction == "cut" and cfg.n_step > 1 else None

    def behaviour_action(obs: np.ndarray, progress_frac: float, warming_up: bool) -> tuple[Any, float]:
        """(action in the engine's units, exploration level: epsilon, temperature or noise std)."""
        if not discrete:
            if warming_up:  # an untrained actor plus small noise covers little of the box: act uniformly
                return rng.uniform(-1.0, 1.0, spaces.action_dim).astype(np.float32), 1.0
            greedy = greedy_np(obs[None])[0]
            return np.clip(greedy + noise.sample(), -1.0, 1.0).astype(np.float32), cfg.noise_std
        with torch.inference_mode():
            q = online.all_actions(torch.as_tensor(obs)[None])[0].numpy()
        if cfg.exploration == "epsilon_greedy":
            level = linear_schedule(cfg.eps_start, cfg.eps_end, cfg.eps_decay_fraction, progress_frac)
            probs = epsilon_greedy_probs(q, level)
        else:
            level = linear_schedule(cfg.temperature_start, cfg.temperature_end, cfg.temperature_decay_fraction,
                                    progress_frac)
            probs = boltzmann_probs(q, level)
        return sample_from_probs(probs, rng), level

    # Loop state: everything that changes as the loop runs, so that a checkpoint is this plus the parts' state.
    st = LoopState(lr=cfg.lr, next_checkpoint_env_steps=cfg.checkpoint_interval_env_steps)
    if checkpoint is None:
        obs = spaces.encode(env.reset(seed=job.seed)[0])
        needs_reset = False
    else:
        st = LoopState(**checkpoint["loop"])
        online.load_state_dict(checkpoint["online"])
        if target is not online:
            target.load_state_dict(checkpoint["target"])
        optimiser.load_state_dict(checkpoint["optimiser"])
        act_maximiser.load_state_dict(checkpoint["act_maximiser"])
        target_maximiser.load_state_dict(checkpoint["target_maximiser"])
        buffer.load_state_dict(checkpoint["buffer"])
        rng.bit_generator.state = checkpoint["rng"]
        # The checkpoint was taken at an episode end, before the reset: restoring the env's own random stream
        # makes the coming reset draw exactly what the uninterrupted run drew.
        env.reset(seed=job.seed)
        env.unwrapped.np_random.bit_generator.state = checkpoint["env_rng"]
        obs, needs_reset = None, True
        started -= st.elapsed_s
        if run is not None:
            run.write_evaluations(st.evaluations)
            run.write_diagnostics(st.diagnostics)
    last_log = (time.perf_counter(), st.env_steps)

    for env_steps in range(st.env_steps + 1, cfg.total_env_steps + 1):
        st.env_steps = env_steps
        progress_frac = (env_steps - 1) / cfg.total_env_steps
        if needs_reset:
            obs = spaces.encode(env.reset()[0])
            noise.reset()
            needs_reset = False

        # 1. Collect one transition with the behaviour policy and store it.
        action, st.explore_level = behaviour_action(obs, progress_frac, env_steps <= cfg.warmup_env_steps)
        raw_next, reward, terminated, truncated, _ = env.step(spaces.to_env(action))
        next_obs = spaces.encode(raw_next)
        buffer.add(obs, action, float(reward), next_obs, terminated, truncated)
        st.episode_return += float(reward)
        if terminated or truncated:
            st.episodes += 1
            st.recent_returns.append(st.episode_return)
            st.episode_return = 0.0
            needs_reset = True
        else:
            obs = next_obs

        # 2. Regress Q on targets: grad_steps_per_update steps every env_steps_per_update env steps.
        if env_steps >= cfg.warmup_env_steps and env_steps % cfg.env_steps_per_update == 0:
            if cfg.lr_schedule == "linear":
                st.lr = linear_schedule(cfg.lr, cfg.lr_end, cfg.lr_decay_fraction, progress_frac)
                for group in optimiser.param_groups:
                    group["lr"] = st.lr
            for _ in range(cfg.grad_steps_per_update):
                batch = buffer.sample(cfg.batch_size, rng, cut_trace)
                obs_b = torch.as_tensor(batch.obs)
                actions_b = torch.as_tensor(batch.actions)
                with torch.no_grad():
                    bootstrap = bootstrap_value(cfg.target, target_maximiser, online, target,
                                                torch.as_tensor(batch.bootstrap_obs))
                    y = td_targets(torch.as_tensor(batch.reward_n, dtype=torch.float32),
                                   torch.as_tensor(batch.discount_n, dtype=torch.float32), bootstrap)
                q_pred = online.q(obs_b, actions_b)
                loss = td_loss(q_pred, y, cfg.loss, cfg.huber_delta)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                clip_at = cfg.max_grad_norm if cfg.grad_clip == "norm" else 0.0
                grad_norm = global_grad_norm(online.parameters(), clip_at)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value) or not math.isfinite(grad_norm):
                    raise DivergedError(f"TD loss became {loss_value} at env step {env_steps} "
                                        f"(gradient step {st.grad_steps})")
                optimiser.step()
                st.grad_steps += 1
                # A learned maximiser (DDPG's actor) climbs the critic it was just given.
                actor_loss = act_maximiser.learn(online, obs_b)

                # 3. Let the targets follow.
                for follower, leader in followers:
                    if cfg.target_update == "hard" and st.grad_steps % cfg.target_period_grad_steps == 0:
                        hard_update(follower, leader)
                    elif cfg.target_update == "polyak":
                        polyak_update(follower, leader, cfg.tau)
                st.sums["actor_loss"] += actor_loss if actor_loss is not None else float("nan")
                st.sums["td_loss"] += loss_value
                st.sums["q_mean"] += float(q_pred.detach().mean())
                st.sums["grad_norm"] += grad_norm
                st.sums["n"] += 1

        # 4. Diagnostics, evaluation and checkpoints.
        if env_steps % cfg.log_interval_env_steps == 0 or env_steps == cfg.total_env_steps:
            now = time.perf_counter()
            n = st.sums["n"]
            st.diagnostics.append({
                "env_steps": env_steps, "grad_steps": st.grad_steps, "episodes": st.episodes,
                **{k: st.sums[k] / n if n else float("nan") for k in ("td_loss", "q_mean", "grad_norm", "actor_loss")},
                "lr": st.lr, "explore_level": st.explore_level,
                "train_return_mean": float(np.mean(st.recent_returns)) if st.recent_returns else float("nan"),
                "steps_per_s": (env_steps - last_log[1]) / max(now - last_log[0], 1e-9),
                "wall_s": now - started,
            })
            st.sums = LoopState().sums
            st.recent_returns = []
            last_log = (now, env_steps)
            if run is not None:
                run.write_diagnostics(st.diagnostics)
            if progress is not None:
                progress(env_steps, {"diagnostics": st.diagnostics[-1]})

        if env_steps % cfg.eval_interval_env_steps == 0 or env_steps == cfg.total_env_steps:
            ev = evaluate(online, act_maximiser, eval_env, spaces, cfg.eval_episodes,
                          derived_seed(job.seed, 2, env_steps), cfg.gamma)
            returns = ev.returns
            st.evaluations.append({
                "env_steps": env_steps, "return_mean": float(returns.mean()), "return_std": float(returns.std()),
                "return_min": float(returns.min()), "return_max": float(returns.max()),
                "n_episodes": len(returns), "grad_steps": st.grad_steps,
                "q_start_mean": float(ev.q_start.mean()),
                "discounted_return_mean": float(ev.discounted_returns.mean()),
                "wall_s": time.perf_counter() - started,
            })
            if run is not None:
                run.write_evaluations(st.evaluations)
            if progress is not None:
                progress(env_steps, {"evaluation": st.evaluations[-1]})

        if (run is not None and needs_reset and env_steps >= st.next_checkpoint_env_steps
                and env_steps < cfg.total_env_steps):
            st.elapsed_s = time.perf_counter() - started
            st.next_checkpoint_env_steps = env_steps + cfg.checkpoint_interval_env_steps
            save_checkpoint(run, job, {
                "loop": dataclasses.asdict(st), "online": online.state_dict(),
                "target": target.state_dict(), "optimiser": optimiser.state_dict(),
                "act_maximiser": act_maximiser.state_dict(), "target_maximiser": target_maximiser.state_dict(),
                "buffer": buffer.state_dict(), "rng": rng.bit_generator.state,
                "env_rng": env.unwrapped.np_random.bit_generator.state,
            })
            if progress is not None:
                progress(env_steps, {"checkpoint": env_steps})

    env.close()
    eval_env.close()
    wall_s = time.perf_counter() - started
    final = st.evaluations[-1]
    return {
        "variant": job.variant, "task": job.task.name, "seed": job.seed,
        "final_return_mean": final["return_mean"], "final_return_std": final["return_std"],
        "best_return_mean": max(e["return_mean"] for e in st.evaluations),
        "env_steps": cfg.total_env_steps, "grad_steps": st.grad_steps, "episodes": st.episodes,
        "wall_s": wall_s, "steps_per_s": cfg.total_env_steps / wall_s,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes). A pool worker that
    ran several jobs reports the largest of them, so this is an upper bound per job."""
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


@dataclasses.dataclass
class LoopState:
    """The training loop's counters and logs: with the parts' state dicts, all a checkpoint needs."""

    lr: float = 0.0
    env_steps: int = 0
    grad_steps: int = 0
    episodes: int = 0
    episode_return: float = 0.0
    explore_level: float = float("nan")
    elapsed_s: float = 0.0
    next_checkpoint_env_steps: int = 0
    recent_returns: list = dataclasses.field(default_factory=list)
    sums: dict = dataclasses.field(
        default_factory=lambda: {"td_loss": 0.0, "q_mean": 0.0, "grad_norm": 0.0, "actor_loss": 0.0, "n": 0})
    evaluations: list = dataclasses.field(default_factory=list)
    diagnostics: list = dataclasses.field(default_factory=list)


def save_checkpoint(run: RunDir, job: Job, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save({"job_hash": job.hash, **state}, buf)
    atomic_write_bytes(run.path / CHECKPOINT, buf.getvalue())


def load_checkpoint(run: RunDir, job: Job) -> dict[str, Any] | None:
    """The run's checkpoint if it belongs to this very job (same hash), else None."""
    path = run.path / CHECKPOINT
    if not path.exists():
        return None
    # Our own file, written atomically by save_checkpoint: it holds numpy RNG states, hence weights_only=False.
    state = torch.load(path, weights_only=False)
    return state if state.get("job_hash") == job.hash else None


def run_job(job: Job, run: RunDir, command: list[str] | None = None,
            progress: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train one job into its run directory: config and metadata first, rows as they come, summary last (the
    marker that the run is complete). A diverged run leaves error.json instead of a summary, and re-raises."""
    checkpoint = load_checkpoint(run, job)
    if checkpoint is not None and (run.path / METADATA).exists():
        meta = json.loads((run.path / METADATA).read_text())
        meta.setdefault("resumed", []).append({"at": run_metadata(command)["started_at"],
                                               "from_env_steps": checkpoint["loop"]["env_steps"],
                                               "command": command if command is not None else sys.argv})
    else:
        checkpoint = None
        meta = run_metadata(command)
        run.write_config(job.to_dict())
    run.write_metadata(meta)
    try:
        summary = train(job, run, progress, checkpoint)
    except DivergedError as exc:
        run.write_error({"error": "diverged", "message": str(exc)})
        raise
    meta["wall_s"] = summary["wall_s"]
    run.write_metadata(meta)
    run.write_summary({**summary, "job_hash": job.hash})
    (run.path / CHECKPOINT).unlink(missing_ok=True)
    return summary
