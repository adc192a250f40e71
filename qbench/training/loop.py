"""The one training loop. Every variant is this loop with different parts in its slots, and every run is a batch of K
seeds trained side by side (a single run is K = 1 of the same code).

collect -> store -> (every env_steps_per_update) sample -> target -> loss -> step -> maybe update target,
with a greedy evaluation on separate envs every eval_interval_env_steps.

The seed axis: every parameter, optimiser state and batch tensor has the seeds first (see parts/networks.py); each
seed has its own env, replay ring, random streams and run directory. A seed's numbers do not depend on its batch:
its losses are summed with the others', so its parameters get the gradient of its own loss only; Adam, clipping and
target updates are elementwise or per seed; its random numbers come from its own streams.

Beside this module: build.py (the parts), seeding.py (every random stream), behaviour.py (the behaviour policy),
evaluation.py (evaluation and the overestimation diagnostic), bookkeeping.py (rows, divergence watch, schedules),
checkpoint.py (checkpoint I/O) and rundir.py (run directories).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from qbench.config import Config, is_multi_step
from qbench.envs.checks import EnvFault
from qbench.envs.tasks import make_env, spaces_of
from qbench.jobs import Job
from qbench.parts.exploration import linear_schedule
from qbench.parts.losses import seed_grad_norms, td_loss
from qbench.parts.target_update import hard_update, polyak_update
from qbench.parts.targets import on_device, value_target
from qbench.process import configure_training_process
from qbench.seed_axis import SeedEnvs
from qbench.store import RunDir
from qbench.training.behaviour import Behaviour
from qbench.training.bookkeeping import Bookkeeper, DivergedError
from qbench.training.build import Learner, learner_rewards, make_buffer
from qbench.training.evaluation import known_dynamics
from qbench.training.seeding import agent_rngs, stream_seed


def train_batch(jobs: list[Job], runs: list[RunDir | None] | None = None,
                progress: Callable[[int, dict[str, Any]], None] | None = None,
                checkpoints: list[dict[str, Any] | None] | None = None
                ) -> list[dict[str, Any] | DivergedError | EnvFault]:
    """Train the seeds of one (variant, task, config) side by side, from their checkpoints if given (all taken at
    the same env step); write each seed's rows and checkpoints to its run as they come. Returns one result per
    job: its summary, or the DivergedError of a seed that diverged or the EnvFault of a seed whose env broke its
    contract (qbench.envs.checks) (masked out of the batch when it did, its error.json written; the other seeds
    go on)."""
    cfg = jobs[0].config
    if any(job.config != cfg or job.task != jobs[0].task or job.variant != jobs[0].variant for job in jobs):
        raise ValueError("the jobs of a batch must share variant, task and config (they differ only in seed)")
    k_seeds = len(jobs)
    runs = runs if runs is not None else [None] * k_seeds
    checkpoints = checkpoints if checkpoints is not None else [None] * k_seeds
    configure_training_process(cfg.torch_threads)   # threads, flushed denormals, the allocator
    started = time.perf_counter()
    seeds = [job.seed for job in jobs]
    rngs = agent_rngs(seeds)
    task = jobs[0].task
    probe = make_env(task, cfg)
    spaces = spaces_of(probe, cfg.observation_scaling, cfg.image_layout)
    known = known_dynamics(probe, spaces, cfg.gamma)
    probe.close()
    envs = SeedEnvs(task, spaces, [stream_seed(seed, "env") for seed in seeds], cfg, task.episode_info)
    eval_envs = [make_env(task, cfg) for _ in seeds]

    # Parts. Initialisation draws from private torch streams, so the process-wide RNG stays untouched.
    learner = Learner(cfg, spaces, seeds)
    online, optimiser, act_maximiser = learner.online, learner.optimiser, learner.act_maximiser
    behaviour = Behaviour(cfg, spaces, learner.acting, act_maximiser, rngs)
    buffer = make_buffer(cfg, spaces, task, k_seeds)
    device = learner.device

    # Loop state: everything that changes as the loop runs, so that a checkpoint is this plus the parts' state.
    book = Bookkeeper(jobs, runs, progress, cfg, started, eval_envs, spaces, known, learner, buffer, envs,
                      behaviour)
    if all(c is None for c in checkpoints):
        envs.start()
        book.start_fresh()
        book.stop_env_faults(envs.take_faults(), 0, "at its first reset")
    else:
        book.restore(checkpoints)
    clock, lr = book.shared_counters()
    alive = book.alive
    clip_at = cfg.max_grad_norm if cfg.grad_clip == "norm" else 0.0
    n_step_run = is_multi_step(cfg)

    while clock.running:
        clock.tick()
        for k in np.flatnonzero(envs.needs_reset & alive):
            envs.reset(k)
            behaviour.noises[k].reset()
        book.stop_env_faults(envs.take_faults(), clock.env_steps, "at a reset")

        # 1. Collect one transition per seed with the behaviour policy and store it (rewards clipped and lives
        #    ended for learning only, where the task asks for it).
        actions, explore_level, behaviour_prob = behaviour.act(envs.obs, clock.progress,
                                                               clock.env_steps <= cfg.warmup_env_steps)
        next_obs, rewards, terminated, truncated = envs.step_all(actions, alive)
        book.stop_env_faults(envs.take_faults(), clock.env_steps, "in a step")   # the env's fault: no transition
        if not alive.any():
            break
        life_lost = envs.life_lost & cfg.terminal_on_life_loss
        learn_rewards = learner_rewards(rewards, cfg.reward_clip, cfg.reward_scale)
        buffer.add(envs.obs, actions, learn_rewards, next_obs, terminated | life_lost, truncated, life_lost, alive,
                   behaviour_prob)
        envs.advance(next_obs, terminated | truncated, alive)
        book.record_steps(clock.env_steps, rewards, learn_rewards, terminated | truncated, explore_level,
                          envs.last_info)

        # 2. Regress Q on targets: grad_steps_per_update steps every env_steps_per_update env steps.
        if clock.env_steps >= cfg.warmup_env_steps and clock.env_steps % cfg.env_steps_per_update == 0:
            if cfg.lr_schedule == "linear":
                lr = linear_schedule(cfg.lr, cfg.lr_end, cfg.lr_decay_fraction, clock.progress)
                learner.set_lr(cfg, lr)
            weights = None if alive.all() else torch.as_tensor(alive).to(device)   # a diverged seed's loss counts 0
            for _ in range(cfg.grad_steps_per_update):
                if cfg.target_update == "swap":
                    learner.swap_roles(rngs)
                window = buffer.sample(cfg.batch_size, rngs, clock.n)
                obs_b, actions_b = on_device(device, window.obs, window.actions)
                loss, q_pred, steps_used = td_step_loss(cfg, learner, obs_b, actions_b, window)
                online.arena.grad.zero_()    # in place: the layers' .grad are views of it
                (loss.sum() if weights is None else torch.where(weights, loss, 0.0).sum()).backward()
                grad_norm = seed_grad_norms([online.arena], clip_at)           # clips each seed on its own
                optimiser.step()
                clock.grad_steps += 1
                # A learned maximiser (DDPG's actor) climbs the critic it was just given.
                actor_loss = act_maximiser.learn(online, obs_b)

                # 3. Let the targets follow.
                if cfg.target_update == "hard" and clock.grad_steps % cfg.target_period_grad_steps == 0:
                    hard_update(learner.follower_params, learner.leader_params)
                elif cfg.target_update == "polyak":
                    polyak_update(learner.follower_params, learner.leader_params, cfg.tau)
                book.stats.add(loss, q_pred, grad_norm, actor_loss, trace_length(steps_used) if n_step_run else None)
            book.watch_divergence(clock)
            if not alive.any():
                break

        # 4. Diagnostics, evaluation and checkpoints, for every seed still alive.
        book.after_step(clock, lr)

    envs.close()
    for env in eval_envs:
        env.close()
    return book.results(clock)


def train(job: Job, run: RunDir | None = None, progress: Callable[[int, dict[str, Any]], None] | None = None,
          checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one job (a batch of one seed); return its summary. Raises DivergedError, or EnvFault."""
    result = train_batch([job], [run], progress, [checkpoint])[0]
    if isinstance(result, BaseException):
        raise result
    return result


def td_step_loss(cfg: Config, learner: Learner, obs: torch.Tensor, actions: torch.Tensor,
                 window) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(TD loss per seed (K,), Q(s, a) (K, B), the steps each target used (K, B)) of one replay window; obs and
    actions are its s_t and a_t on the learner's device. The target (qbench.parts.targets.value_target) is held
    constant (semi-gradient: no gradient flows through it, so online Q-learning follows no objective's gradient),
    or with target_gradient residual differentiated too (the gradient of the squared Bellman error, Baird 1995)."""
    y, steps_used = value_target(cfg, learner, window)
    q_pred = learner.online.q(obs, actions)
    return td_loss(q_pred, y, cfg.loss, cfg.huber_delta), q_pred, steps_used


def trace_length(steps_used: np.ndarray) -> torch.Tensor:
    """(K,) the mean number of steps the batch's targets used: sum_j C_j under a trace correction, else L."""
    return torch.as_tensor(np.asarray(steps_used, dtype=np.float64).mean(axis=1))
