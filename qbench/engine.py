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
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
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
    capped_epsilon,
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
from qbench.store import CHECKPOINT, CHECKPOINT_REPLAY, METADATA, RunDir, atomic_write_bytes, run_metadata


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
        m = ActorMaximiser(actor, target_actor, build_optimiser(cfg, actor.parameters(), cfg.actor_lr))
    else:
        raise ValueError(f"unknown maximiser {cfg.maximiser!r}")
    return m, m


def build_optimiser(cfg: Config, params, lr: float) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


# Every random stream of a run is a named child of SeedSequence(seed) (its spawn key), so no two streams share a
# state. Gymnasium seeds an env's reset with SeedSequence(seed) itself: an agent drawing from default_rng(seed)
# would replay the env's own draws (CartPole's first reset state would equal the agent's first uniforms).
STREAMS = {"agent": 0, "env": 1, "eval_env": 2, "init": 3, "maximiser": 4, "eval_maximiser": 5}


def stream_sequence(seed: int, name: str, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(STREAMS[name], *key))


def stream_seed(seed: int, name: str, *key: int) -> int:
    """An integer seed (for env.reset or torch) of the named stream of the job seed."""
    return int(stream_sequence(seed, name, *key).generate_state(1, np.uint64)[0] >> 1)


@dataclasses.dataclass
class Evaluation:
    """Per-episode results of one greedy evaluation."""

    returns: np.ndarray             # undiscounted episode returns: the score
    discounted_returns: np.ndarray  # sum_t gamma^t r_t from each episode's first state
    q_start: np.ndarray             # the network's Q(s_0, a_0) for the greedy first action: what it predicted
    capped: int = 0                 # episodes cut at max_episode_steps (the env never ended them)


def evaluate(q_fn, maximiser, env, spaces: Spaces, episodes: int, seed: int, gamma: float,
             max_episode_steps: int = 10_000, maximiser_seed: int | None = None) -> Evaluation:
    """Greedy episodes; the env is reset with `seed` once, so each evaluation is reproducible. An episode that
    reaches max_episode_steps is cut there and counted in `capped`: a greedy policy that loops on an env without a
    time limit would otherwise never end.

    Q(s_0, a_0) against the discounted return actually collected from s_0 is the overestimation diagnostic of
    van Hasselt et al. (2016); reading it costs one forward pass per episode and draws no random numbers.
    """
    returns, discounted, q_start = np.zeros(episodes), np.zeros(episodes), np.zeros(episodes)
    capped = 0
    raw, _ = env.reset(seed=seed)
    with maximiser.reseeded(seed if maximiser_seed is None else maximiser_seed):
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
                if not done and t >= max_episode_steps:
                    capped += 1
                    done = True
            returns[ep], discounted[ep] = total, total_discounted
            if ep + 1 < episodes:
                raw, _ = env.reset()
    return Evaluation(returns, discounted, q_start, capped)


def train(job: Job, run: RunDir | None = None, progress: Callable[[int, dict[str, Any]], None] | None = None,
          checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one job, from `checkpoint` if given; write rows and checkpoints to `run` as they come; return the
    summary. Raises DivergedError."""
    cfg = job.config
    torch.set_num_threads(cfg.torch_threads)
    started = time.perf_counter()
    rng = np.random.default_rng(stream_sequence(job.seed, "agent"))
    env, eval_env = make_env(job.task), make_env(job.task)
    spaces = spaces_of(env, cfg.observation_scaling)

    # Parts. Initialisation draws from a private torch stream so that the process-wide RNG stays untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(job.seed, "init"))
        online = build_q(cfg, spaces)
        act_maximiser, target_maximiser = build_maximisers(cfg, spaces, stream_seed(job.seed, "maximiser"))
    target = online if cfg.target_update == "none" else copy.deepcopy(online).requires_grad_(False)
    followers = [] if cfg.target_update == "none" else [(target, online), *act_maximiser.target_pairs()]
    optimiser = build_optimiser(cfg, online.parameters(), cfg.lr)
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
        """(action in the engine's units, exploration level: epsilon, temperature or noise std).

        During warm-up every action is uniform (an untrained net's greedy choice is arbitrary but not random)."""
        if discrete and warming_up:
            return int(rng.integers(spaces.n_actions)), float("nan")
        if not discrete:
            if warming_up:  # an untrained actor plus small noise covers little of the box: act uniformly
                return rng.uniform(-1.0, 1.0, spaces.action_dim).astype(np.float32), float("nan")
            greedy = greedy_np(obs[None])[0]
            return np.clip(greedy + noise.sample(), -1.0, 1.0).astype(np.float32), cfg.noise_std
        with torch.inference_mode():
            q = online.all_actions(torch.as_tensor(obs)[None])[0].numpy()
        if cfg.exploration == "epsilon_greedy":
            level = capped_epsilon(linear_schedule(cfg.eps_start, cfg.eps_end, cfg.eps_decay_fraction,
                                                   progress_frac), spaces.n_actions)
            probs = epsilon_greedy_probs(q, level)
        else:
            level = linear_schedule(cfg.temperature_start, cfg.temperature_end, cfg.temperature_decay_fraction,
                                    progress_frac)
            probs = boltzmann_probs(q, level)
        return sample_from_probs(probs, rng), level

    # Loop state: everything that changes as the loop runs, so that a checkpoint is this plus the parts' state.
    st = LoopState(lr=cfg.lr, next_checkpoint_env_steps=cfg.checkpoint_interval_env_steps)
    env_seed = stream_seed(job.seed, "env")
    if checkpoint is None:
        obs = spaces.encode(env.reset(seed=env_seed)[0])
        needs_reset = False
        if run is not None:   # rows are appended from here on: drop those of an attempt that left no checkpoint
            run.write_evaluations([])
            run.write_diagnostics([])
    else:
        st = LoopState(**checkpoint["loop"])
        online.load_state_dict(checkpoint["online"])
        if target is not online:
            target.load_state_dict(checkpoint["target"])
        optimiser.load_state_dict(checkpoint["optimiser"])
        act_maximiser.load_state_dict(checkpoint["act_maximiser"])
        target_maximiser.load_state_dict(checkpoint["target_maximiser"])
        buffer.load_chunks(checkpoint["buffer"], checkpoint["buffer_chunks"])
        rng.bit_generator.state = checkpoint["rng"]
        # The checkpoint was taken at an episode end, before the reset: restoring the env's own random stream
        # makes the coming reset draw exactly what the uninterrupted run drew.
        env.reset(seed=env_seed)
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
                for own in act_maximiser.optimisers():   # DDPG's actor: the same schedule, from actor_lr
                    for group in own.param_groups:
                        group["lr"] = cfg.actor_lr * st.lr / cfg.lr
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
                run.append_diagnostics(st.diagnostics[-1])
            if progress is not None:
                progress(env_steps, {"diagnostics": st.diagnostics[-1]})

        if env_steps % cfg.eval_interval_env_steps == 0 or env_steps == cfg.total_env_steps:
            ev = evaluate(online, act_maximiser, eval_env, spaces, cfg.eval_episodes,
                          stream_seed(job.seed, "eval_env", env_steps), cfg.gamma, cfg.eval_max_episode_steps,
                          stream_seed(job.seed, "eval_maximiser", env_steps))
            returns = ev.returns
            st.evaluations.append({
                "env_steps": env_steps, "return_mean": float(returns.mean()), "return_std": float(returns.std()),
                "return_min": float(returns.min()), "return_max": float(returns.max()),
                "n_episodes": len(returns), "grad_steps": st.grad_steps,
                "q_start_mean": float(ev.q_start.mean()),
                "discounted_return_mean": float(ev.discounted_returns.mean()),
                "capped_episodes": ev.capped,
                "wall_s": time.perf_counter() - started,
            })
            if run is not None:
                run.append_evaluation(st.evaluations[-1])
            if progress is not None:
                progress(env_steps, {"evaluation": st.evaluations[-1]})

        if (run is not None and needs_reset and env_steps >= st.next_checkpoint_env_steps
                and env_steps < cfg.total_env_steps):
            st.elapsed_s = time.perf_counter() - started
            st.next_checkpoint_env_steps = env_steps + cfg.checkpoint_interval_env_steps
            save_checkpoint(run, job, buffer, st, {
                "online": online.state_dict(),
                "target": target.state_dict(), "optimiser": optimiser.state_dict(),
                "act_maximiser": act_maximiser.state_dict(), "target_maximiser": target_maximiser.state_dict(),
                "rng": rng.bit_generator.state, "env_rng": env.unwrapped.np_random.bit_generator.state,
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
    replay_chunks: list = dataclasses.field(default_factory=list)   # {"file", "start", "end"} of the checkpoint
    recent_returns: list = dataclasses.field(default_factory=list)
    sums: dict = dataclasses.field(
        default_factory=lambda: {"td_loss": 0.0, "q_mean": 0.0, "grad_norm": 0.0, "actor_loss": 0.0, "n": 0})
    evaluations: list = dataclasses.field(default_factory=list)
    diagnostics: list = dataclasses.field(default_factory=list)


def save_checkpoint(run: RunDir, job: Job, buffer: ReplayBuffer, st: LoopState, parts: dict[str, Any]) -> None:
    """Write the transitions added since the last checkpoint as one more replay chunk, then the checkpoint that
    lists the chunks still needed (atomically: it is the commit point), then delete chunks no longer listed. The
    cost of a checkpoint is bounded by what was added since the last one, not by the buffer's size."""
    folder = run.path / CHECKPOINT_REPLAY
    chunk = buffer.chunk(st.replay_chunks[-1]["end"] if st.replay_chunks else 0)
    name = f"{chunk['start']:012d}-{chunk['end']:012d}.npz"
    data = io.BytesIO()
    np.savez(data, **chunk)
    atomic_write_bytes(folder / name, data.getvalue())
    st.replay_chunks = [*(c for c in st.replay_chunks if not buffer.chunk_is_obsolete(c["end"])),
                        {"file": name, "start": chunk["start"], "end": chunk["end"]}]
    buf = io.BytesIO()
    torch.save({"job_hash": job.hash, "loop": dataclasses.asdict(st), "buffer": buffer.counters(), **parts}, buf)
    atomic_write_bytes(run.path / CHECKPOINT, buf.getvalue())
    listed = {c["file"] for c in st.replay_chunks}
    for path in folder.glob("*.npz"):
        if path.name not in listed:
            path.unlink(missing_ok=True)


class DamagedCheckpointError(RuntimeError):
    """A checkpoint (or one of its replay chunks) that cannot be read back."""


def load_checkpoint(run: RunDir, job: Job) -> dict[str, Any] | None:
    """The run's checkpoint if it belongs to this very job (same hash), else None. A damaged checkpoint raises
    DamagedCheckpointError naming the cause."""
    path = run.path / CHECKPOINT
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=False)
        if not isinstance(state, dict):
            raise TypeError("not a qbench checkpoint")
    except Exception as exc:   # noqa: BLE001 - torch raises many kinds for a torn or foreign file
        raise DamagedCheckpointError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from None
    if state.get("job_hash") != job.hash:
        return None
    chunks = []
    for c in state["loop"].get("replay_chunks", []):
        chunk_path = run.path / CHECKPOINT_REPLAY / c["file"]
        try:
            with np.load(chunk_path) as arrays:
                chunks.append({k: arrays[k] for k in arrays.files})
        except Exception as exc:   # noqa: BLE001
            raise DamagedCheckpointError(f"replay chunk {chunk_path} of {path} cannot be read "
                                         f"({type(exc).__name__}: {exc})") from None
    state["buffer_chunks"] = chunks
    return state


def set_aside_damaged_checkpoint(run: RunDir) -> Path:
    """Move a damaged checkpoint (and its replay chunks) aside under a new name, never deleting it."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = run.path / f"damaged-checkpoint-{stamp}"
    n = 1
    while aside.exists():
        n += 1
        aside = run.path / f"damaged-checkpoint-{stamp}-{n}"
    aside.mkdir()
    for name in (CHECKPOINT, CHECKPOINT_REPLAY):
        if (run.path / name).exists():
            (run.path / name).rename(aside / name)
    return aside


def run_job(job: Job, run: RunDir, command: list[str] | None = None,
            progress: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train one job into its run directory: config and metadata first, rows as they come, summary last (the
    marker that the run is complete). A diverged run leaves error.json instead of a summary, and re-raises. A
    damaged checkpoint is moved aside (kept), said on stderr and in metadata.json, and the job starts afresh."""
    damaged = None
    try:
        checkpoint = load_checkpoint(run, job)
    except DamagedCheckpointError as exc:
        aside = set_aside_damaged_checkpoint(run)
        damaged = {"at": run_metadata(command)["started_at"], "reason": str(exc), "kept_in": str(aside)}
        print(f"qbench: warning: {exc}; it was moved to {aside} and the job starts afresh", file=sys.stderr,
              flush=True)
        checkpoint = None
    if checkpoint is not None and (run.path / METADATA).exists():
        meta = json.loads((run.path / METADATA).read_text())
        meta.setdefault("resumed", []).append({"at": run_metadata(command)["started_at"],
                                               "from_env_steps": checkpoint["loop"]["env_steps"],
                                               "command": command if command is not None else sys.argv})
    else:
        checkpoint = None
        meta = run_metadata(command)
        run.write_config(job.to_dict())
    if damaged is not None:
        meta.setdefault("damaged_checkpoints", []).append(damaged)
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
    shutil.rmtree(run.path / CHECKPOINT_REPLAY, ignore_errors=True)
    return summary


def run_batch(jobs: list[Job], runs: list[RunDir], command: list[str] | None = None,
              progress: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any] | BaseException]:
    """Train the seeds of one (variant, task, config) together; one result per job, in order: its summary, or
    the DivergedError of a seed that diverged (its error.json is written). Any other exception fails the batch.
    progress(env_steps, info): info carries "seed" for per-seed events (evaluation, diagnostics) and "seeds" for
    batch events (checkpoint).

    (Interim: trains the seeds one after another; the seed-axis engine replaces the body.)"""
    results: list[dict[str, Any] | BaseException] = []
    for job, run in zip(jobs, runs, strict=True):
        try:
            results.append(run_job(job, run, command, progress))
        except DivergedError as exc:
            results.append(exc)
    return results
