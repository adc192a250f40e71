"""Everything the loop records beside the algorithm: per-seed counters and rows (LoopState), the update statistics
between log rows (UpdateStats), and the Bookkeeper that logs them, watches divergence, schedules evaluations and
checkpoints and writes the summaries."""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from typing import Any

import numpy as np
import torch

from qbench.config import Config, frames_per_env_step, is_multi_step
from qbench.envs.checks import EnvFault
from qbench.envs.tasks import Spaces
from qbench.jobs import Job
from qbench.parts.divergence import describe, seed_record, watch_round
from qbench.parts.divergence import new_state as new_watch
from qbench.parts.divergence import state_from_records as watch_from_records
from qbench.replay.buffer import ReplayBuffer
from qbench.seed_axis import SeedEnvs, slice_seed, stack_seeds
from qbench.store import RunDir
from qbench.training.behaviour import Behaviour
from qbench.training.build import Learner
from qbench.training.checkpoint import save_checkpoint
from qbench.training.clock import Clock
from qbench.training.evaluation import Evaluation, KnownDynamics, evaluate
from qbench.training.seeding import stream_seed


class DivergedError(RuntimeError):
    """The TD loss (or its gradient) became NaN or infinite."""


class UpdateStats:
    """Per-seed sums of the update diagnostics since the last log row. A gradient step only keeps references to its
    (K,) tensors; they are folded into the sums once per round of gradient steps (one host sync per round, no
    arithmetic per step)."""

    KEYS = ("td_loss", "q_mean", "grad_norm", "actor_loss", "trace_length")
    MAX_KEYS = ("q_abs_max",)   # the largest |Q| predicted on a sampled batch: what the divergence watch reads

    def __init__(self, k_seeds: int, logs_trace: bool = False):
        self.logs_trace = logs_trace   # n-step runs log trace_length (NaN in a row without updates)
        self.sums = {key: torch.zeros(k_seeds, dtype=torch.float64) for key in self.KEYS + self.MAX_KEYS}
        self.pending: dict[str, list[torch.Tensor]] = {key: [] for key in self.KEYS + self.MAX_KEYS}
        self.n = 0
        self.has_actor = False

    def add(self, loss, q_pred, grad_norm, actor_loss, trace_length=None) -> None:
        """trace_length: (K,) the mean number of steps the batch's n-step targets used (the window lengths, or a
        trace correction's sum of trace products), for n-step runs only."""
        self.pending["td_loss"].append(loss.detach())
        self.pending["q_mean"].append(q_pred.detach())   # q_abs_max is read from the same tensors at fold()
        self.pending["grad_norm"].append(grad_norm)
        if actor_loss is not None:
            self.pending["actor_loss"].append(actor_loss)
            self.has_actor = True
        if trace_length is not None:
            self.pending["trace_length"].append(trace_length)
        self.n += 1

    def fold(self) -> None:
        for key, values in self.pending.items():
            if values:
                stacked = torch.stack(values).double().cpu()
                if key == "q_mean":   # (steps, K, B)
                    self.sums["q_abs_max"] = torch.maximum(self.sums["q_abs_max"], stacked.abs().amax(dim=(0, 2)))
                    stacked = stacked.mean(dim=-1)
                self.sums[key] += stacked.sum(dim=0)
                values.clear()

    def non_finite(self) -> np.ndarray:
        """(K,) True where a seed's loss or gradient norm went NaN or infinite since the last log row."""
        self.fold()
        return ~torch.isfinite(self.sums["td_loss"] + self.sums["grad_norm"]).numpy()

    def means(self, k: int) -> dict[str, float]:
        self.fold()
        means = {key: float(self.sums[key][k]) / self.n if self.n else float("nan") for key in self.KEYS}
        means["q_abs_max"] = float(self.sums["q_abs_max"][k]) if self.n else float("nan")
        if not self.has_actor:
            means["actor_loss"] = float("nan")
        if not self.logs_trace:
            del means["trace_length"]
        return means

    def seed_state(self, k: int) -> dict[str, float]:
        self.fold()
        return {**{key: float(self.sums[key][k]) for key in self.KEYS + self.MAX_KEYS}, "n": self.n,
                "actor": self.has_actor}

    def q_abs_max(self) -> np.ndarray:
        """(K,) the largest |Q| on any batch since the last log row (0 before the first update)."""
        self.fold()
        return self.sums["q_abs_max"].numpy()

    def load(self, states: list[dict[str, float]]) -> None:
        for key in self.KEYS + self.MAX_KEYS:
            self.sums[key] = torch.tensor([s.get(key, 0.0) for s in states], dtype=torch.float64)
        self.n = int(states[0].get("n", 0))
        self.has_actor = bool(states[0].get("actor", False))


def mean_or_nan(values: np.ndarray) -> float:
    """The mean of the values that are not NaN; NaN when there are none (no warning)."""
    known = values[~np.isnan(values)]
    return float(known.mean()) if len(known) else float("nan")


class Bookkeeper:
    """Everything the loop records beside the algorithm: per-seed counters and rows, divergence, evaluations,
    checkpoints and summaries, for the seeds of one batch."""

    def __init__(self, jobs: list[Job], runs: list[RunDir | None], progress, cfg: Config, started: float,
                 eval_envs: list, spaces: Spaces, known: KnownDynamics | None, learner: Learner,
                 buffer: ReplayBuffer, envs: SeedEnvs, behaviour: Behaviour):
        self.jobs, self.runs, self.progress, self.cfg, self.started = jobs, runs, progress, cfg, started
        self.eval_envs, self.spaces, self.known = eval_envs, spaces, known
        # the parts whose state a checkpoint saves and restores, and that evaluations read
        self.learner, self.buffer, self.envs, self.behaviour = learner, buffer, envs, behaviour
        self.episode_info = jobs[0].task.episode_info
        self.seeds = [job.seed for job in jobs]
        self.states = [LoopState(lr=cfg.lr, next_checkpoint_env_steps=cfg.checkpoint_interval_env_steps)
                       for _ in jobs]
        self.stats = UpdateStats(len(jobs), logs_trace=is_multi_step(cfg))
        self.alive = np.ones(len(jobs), dtype=bool)
        self.watch = new_watch(len(jobs))
        self.outcomes: list[dict[str, Any] | DivergedError | EnvFault | None] = [None] * len(jobs)
        self.next_checkpoint = cfg.checkpoint_interval_env_steps
        self.last_log = (time.perf_counter(), 0)

    def start_fresh(self) -> None:
        for run in self.runs:
            if run is not None:   # rows are appended from here on: drop those of an attempt that left no checkpoint
                run.write_evaluations([])
                run.write_diagnostics([])
                if self.episode_info:
                    run.write_episodes([])

    def restore(self, checkpoints: list[dict[str, Any]]) -> None:
        learner, buffer, envs, behaviour = self.learner, self.buffer, self.envs, self.behaviour
        self.states = [LoopState(**c["loop"]) for c in checkpoints]
        self.watch = watch_from_records([st.watch or seed_record(new_watch(1), 0) for st in self.states])
        learner.load_state_dict(stack_seeds([{key: c[key] for key in learner.state_dict()} for c in checkpoints]))
        buffer.load_chunks(checkpoints[0]["buffer"], [c["buffer_chunks"] for c in checkpoints])
        self.stats.load([c["loop"]["sums"] for c in checkpoints])
        for k, c in enumerate(checkpoints):
            for part in (behaviour, envs):   # the per-seed parts restore themselves
                part.unbundle(k, c)
            if self.runs[k] is not None:
                self.runs[k].write_evaluations(self.states[k].evaluations)
                self.runs[k].write_diagnostics(self.states[k].diagnostics)
                if self.episode_info:
                    self.runs[k].write_episodes(self.states[k].episode_rows)
            self.states[k].episodes_flushed = len(self.states[k].episode_rows)
        self.started -= self.states[0].elapsed_s
        self.next_checkpoint = self.states[0].next_checkpoint_env_steps
        self.last_log = (time.perf_counter(), self.states[0].env_steps)

    def shared_counters(self) -> tuple[Clock, float]:
        """(the clock, the learning rate): what every seed of the batch shares, where the run stands."""
        st = self.states[0]
        return Clock(self.cfg, st.env_steps, st.grad_steps), st.lr

    def record_steps(self, env_steps: int, rewards: np.ndarray, learn_rewards: np.ndarray, ended: np.ndarray,
                     explore_level: float, infos: list[dict[str, Any]]) -> None:
        """rewards as the env gave them (the score), learn_rewards as the learner saw them (clipped where the
        task clips): their largest size scales the divergence bound."""
        for k in np.flatnonzero(self.alive):
            self.states[k].record_step(rewards[k], ended[k], explore_level, abs(float(learn_rewards[k])),
                                       env_steps, infos[k] if self.episode_info else None)

    def watch_divergence(self, clock: Clock) -> None:
        """Once per round of gradient steps (qbench/parts/divergence.py): a seed whose loss, gradient or |Q| went
        non-finite, or whose |Q| on a sampled batch passed divergence_stop_factor value scales, is recorded as
        diverged (error.json) and masked out of the batch, and the other seeds go on; a seed whose |Q| first
        passes divergence_warn_factor value scales is flagged (said once, recorded in its summary), never
        stopped for it."""
        cfg, env_steps, grad_steps = self.cfg, clock.env_steps, clock.grad_steps
        q_abs_max = self.stats.q_abs_max()
        r_max = np.array([st.reward_abs_max for st in self.states])
        longest = np.array([max(st.longest_episode_steps, st.episode_steps) for st in self.states])
        verdict = watch_round(self.watch, q_abs_max, r_max, cfg.gamma, env_steps, self.stats.non_finite(),
                              self.alive, longest, cfg.divergence_warn_factor,
                              cfg.divergence_stop_factor or np.inf)
        self.watch = verdict.state
        for k in np.flatnonzero(verdict.warned_now):
            if self.progress is not None:
                self.progress(env_steps, {"seed": self.seeds[k], "divergence_warning": describe(
                    verdict, k, q_abs_max[k], r_max[k], cfg.gamma, cfg.divergence_warn_factor,
                    cfg.divergence_stop_factor)})
        for k in np.flatnonzero(verdict.stopped_now):
            means = self.stats.means(k)
            steps = (f"at env step {env_steps} (gradient steps {grad_steps - cfg.grad_steps_per_update + 1}-"
                     f"{grad_steps})")
            if verdict.non_finite_now[k]:
                message = (f"TD loss became {means['td_loss']} (gradient norm {means['grad_norm']}, |Q| "
                           f"{q_abs_max[k]:.4g}) in the gradient steps {steps}")
            else:
                message = (describe(verdict, k, q_abs_max[k], r_max[k], cfg.gamma, cfg.divergence_warn_factor,
                                    cfg.divergence_stop_factor) + f", in the gradient steps {steps}")
            self._stop_seed(k, env_steps, DivergedError(message), {
                "error": "diverged", "message": message, "divergence_watch": seed_record(self.watch, k)})

    def stop_env_faults(self, faults: dict[int, EnvFault], env_steps: int, during: str) -> None:
        """Seeds whose env broke its contract (qbench.envs.checks) stop there, recorded as an env fault (error.json
        kind "env", naming the env, the seed, the env step and what was wrong): the env's fault, never counted as
        the variant's divergence. The other seeds go on."""
        task = self.jobs[0].task
        env = task.name if task.name == task.env_id else f"{task.name} ({task.env_id})"
        for k, fault in faults.items():
            if not self.alive[k]:
                continue
            message = f"env {env} (seed {self.seeds[k]}) at env step {env_steps}, {during}: {fault}"
            outcome = EnvFault(message)
            outcome.__cause__ = fault   # its traceback (error.json) goes on into the env's own call
            self._stop_seed(k, env_steps, outcome, {
                "error": "env", "type": "EnvFault", "message": message, "env": task.name, "env_steps": env_steps,
                "seed": self.seeds[k], "divergence_watch": seed_record(self.watch, k)})

    def _stop_seed(self, k: int, env_steps: int, outcome: DivergedError | EnvFault, record: dict[str, Any]) -> None:
        """Mask seed k out of the batch; its episodes so far and its error.json are written, its rows stand."""
        self.alive[k] = False
        self.outcomes[k] = outcome
        if self.runs[k] is not None:
            if self.episode_info:
                self.runs[k].append_episodes(self.states[k].unflushed_episodes())
            self.runs[k].write_error(record)
        if self.progress is not None:
            event = "diverged" if isinstance(outcome, DivergedError) else "env_fault"
            self.progress(env_steps, {"seed": self.seeds[k], event: str(outcome)})

    def after_step(self, clock: Clock, lr: float) -> None:
        """Log rows, evaluations and checkpoints that fall due at this env step (self.stats starts afresh after a
        log row)."""
        cfg, alive, seeds = self.cfg, np.flatnonzero(self.alive), self.seeds
        env_steps, grad_steps, learner = clock.env_steps, clock.grad_steps, self.learner
        if env_steps % cfg.log_interval_env_steps == 0 or env_steps == cfg.total_env_steps:
            if self.episode_info:
                for k in alive:
                    if self.runs[k] is not None:
                        self.runs[k].append_episodes(self.states[k].unflushed_episodes())
            now = time.perf_counter()
            annealed = {"n_step": clock.n} if cfg.n_step_end else {}
            for k in alive:
                self.states[k].log_row(env_steps, grad_steps, lr, {**self.stats.means(k), **annealed},
                                       (env_steps - self.last_log[1]) / max(now - self.last_log[0], 1e-9),
                                       now - self.started)
                self.emit(k, env_steps, "diagnostics", self.states[k].diagnostics[-1])
            self.stats = UpdateStats(len(seeds), logs_trace=is_multi_step(cfg))
            self.last_log = (now, env_steps)

        if env_steps % cfg.eval_interval_env_steps == 0 or env_steps == cfg.total_env_steps:
            evaluations = evaluate(learner.acting, learner.act_maximiser, self.eval_envs, self.spaces,
                                   cfg.eval_episodes, [stream_seed(seed, "eval_env", env_steps) for seed in seeds],
                                   cfg.gamma, cfg.eval_max_episode_steps,
                                   [stream_seed(seed, "eval_maximiser", env_steps) for seed in seeds], self.alive,
                                   self.jobs[0].task.seeds_every_reset, cfg.reward_clip,
                                   cfg.reward_scale)
            distance = (self.known.distance(learner.acting, len(seeds), learner.device) if self.known is not None
                        else None)
            self.stop_env_faults({k: e for k, e in enumerate(evaluations) if isinstance(e, EnvFault)}, env_steps,
                                 "in a greedy evaluation episode")
            alive = np.flatnonzero(self.alive)
            for k in alive:
                self.states[k].evaluation_row(env_steps, grad_steps, evaluations[k],
                                              time.perf_counter() - self.started,
                                              {key: float(v[k]) for key, v in distance.items()} if distance else {})
                self.emit(k, env_steps, "evaluation", self.states[k].evaluations[-1])

        if env_steps >= self.next_checkpoint and env_steps < cfg.total_env_steps:
            elapsed = time.perf_counter() - self.started
            self.next_checkpoint = env_steps + cfg.checkpoint_interval_env_steps
            for k in alive:
                self.states[k].at_checkpoint(env_steps, grad_steps, lr, elapsed, self.next_checkpoint,
                                             self.stats.seed_state(k), seed_record(self.watch, k))
            if any(self.runs[k] is not None for k in alive):
                learner_state = learner.state_dict()
                for k in alive:
                    if self.runs[k] is not None:
                        save_checkpoint(self.runs[k], self.jobs[k], self.buffer, k, self.states[k], {
                            **slice_seed(learner_state, k), **self.behaviour.bundle(k), **self.envs.bundle(k)})
                if self.progress is not None:
                    self.progress(env_steps, {"checkpoint": env_steps, "seeds": [seeds[k] for k in alive]})

    def emit(self, k: int, env_steps: int, kind: str, row: dict[str, Any]) -> None:
        run = self.runs[k]
        if run is not None:
            (run.append_diagnostics if kind == "diagnostics" else run.append_evaluation)(row)
        if self.progress is not None:
            self.progress(env_steps, {"seed": self.seeds[k], kind: row})

    def results(self, clock: Clock) -> list[dict[str, Any] | DivergedError | EnvFault]:
        wall_s = time.perf_counter() - self.started
        for k in np.flatnonzero(self.alive):
            evaluations, job = self.states[k].evaluations, self.jobs[k]
            self.outcomes[k] = {
                "variant": job.variant, "task": job.task.name, "seed": job.seed,
                "final_return_mean": evaluations[-1]["return_mean"],
                "final_return_std": evaluations[-1]["return_std"],
                "best_return_mean": max(e["return_mean"] for e in evaluations),
                "env_steps": self.cfg.total_env_steps, "grad_steps": clock.grad_steps,
                "episodes": self.states[k].episodes,
                "wall_s": wall_s, "steps_per_s": self.cfg.total_env_steps / wall_s, "seeds_in_batch": len(self.jobs),
                "peak_rss_mb": peak_rss_mb(),
                "replay_bytes_per_transition": self.buffer.bytes_per_transition(),
                "divergence_watch": seed_record(self.watch, k),
                **frame_counts(self.jobs[k], self.cfg.total_env_steps),
                **({"episode_info_unseen": unseen} if (unseen := self._unseen_info(k)) else {}),
            }
        self._say_unseen_info(clock.env_steps)
        return self.outcomes

    def _unseen_info(self, k: int) -> list[str]:
        return self.envs.info_never_seen(k) if self.episode_info else []

    def _say_unseen_info(self, env_steps: int) -> None:
        """A named info key the env never reported in a whole run is said once (and kept in the summary): its
        episodes.csv column is then empty, and any count of it silently zero."""
        by_keys: dict[tuple[str, ...], list[int]] = {}
        for k in np.flatnonzero(self.alive):
            if unseen := self._unseen_info(k):
                by_keys.setdefault(tuple(unseen), []).append(self.seeds[k])
        for keys, seeds in by_keys.items():
            if self.progress is not None:
                which = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
                self.progress(env_steps, {"seed": seeds[0], "notice": (
                    f"the env never reported info key(s) {', '.join(map(repr, keys))} in {env_steps:,} env steps "
                    f"({which}): their cells in episodes.csv are empty")})


def frame_counts(job: Job, env_steps: int) -> dict[str, Any]:
    """For ALE tasks: env steps are agent steps, each frame_skip emulator frames; said in every summary so that no
    number is read in the wrong unit."""
    frames = frames_per_env_step(job.task.env_id, job.config.frame_skip)
    if frames == 1:
        return {}
    return {"frame_skip": frames, "frames": env_steps * frames}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes). A pool worker that
    ran several jobs reports the largest of them, so this is an upper bound per job."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


# diagnostics.csv's train_return_last100: the mean return of the last 100 training episodes completed by each log
# row (fewer before there are 100; NaN before the first), the training return as the MinAtar paper plots it.
TRAIN_RETURN_WINDOW = 100


@dataclasses.dataclass
class LoopState:
    """One seed's counters and logs: with the parts' state, all its checkpoint needs."""

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
    sums: dict = dataclasses.field(default_factory=dict)             # UpdateStats.seed_state at the checkpoint
    evaluations: list = dataclasses.field(default_factory=list)
    diagnostics: list = dataclasses.field(default_factory=list)
    reward_abs_max: float = 0.0        # the largest |reward| the learner has seen: scales the divergence watch
    episode_steps: int = 0
    longest_episode_steps: int = 0     # scales the divergence watch at gamma 1
    watch: dict = dataclasses.field(default_factory=dict)            # divergence.seed_record at the checkpoint
    episode_rows: list = dataclasses.field(default_factory=list)     # for tasks that record episode info
    episodes_flushed: int = 0          # episode_rows already in episodes.csv
    # The returns of the last TRAIN_RETURN_WINDOW training episodes, oldest first (diagnostics'
    # train_return_last100). None only from a checkpoint written before it existed: see __post_init__.
    last_returns: list | None = None

    def __post_init__(self) -> None:
        if self.last_returns is None:
            # A checkpoint from before the window: its episodes' returns are unknown (NaN), so the window's mean
            # is NaN until as many new episodes have pushed them out, never a mean over fewer than it says.
            self.last_returns = [float("nan")] * min(self.episodes, TRAIN_RETURN_WINDOW)
        for i, row in enumerate(self.diagnostics):
            if "train_return_last100" not in row:   # its rows get the column (NaN), where log_row puts it, so
                new: dict[str, Any] = {}            # the rows appended after a resume fit diagnostics.csv's header
                for key, value in row.items():
                    new[key] = value
                    if key == "train_return_mean":
                        new["train_return_last100"] = float("nan")
                self.diagnostics[i] = new

    def record_step(self, reward: float, episode_ended: bool, explore_level: float, learn_reward_abs: float = 0.0,
                    env_steps: int = 0, info: dict[str, Any] | None = None) -> None:
        self.explore_level = explore_level
        self.episode_return += float(reward)
        self.episode_steps += 1
        self.reward_abs_max = max(self.reward_abs_max, learn_reward_abs)
        if episode_ended:
            self.longest_episode_steps = max(self.longest_episode_steps, self.episode_steps)
            self.episodes += 1
            self.recent_returns.append(self.episode_return)
            self.last_returns.append(self.episode_return)
            if len(self.last_returns) > TRAIN_RETURN_WINDOW:
                del self.last_returns[0]
            if info is not None:
                self.episode_rows.append({"episode": self.episodes, "env_steps": env_steps,
                                          "return": self.episode_return, "length": self.episode_steps, **info})
            self.episode_return = 0.0
            self.episode_steps = 0

    def unflushed_episodes(self) -> list[dict[str, Any]]:
        rows = self.episode_rows[self.episodes_flushed:]
        self.episodes_flushed = len(self.episode_rows)
        return rows

    def log_row(self, env_steps: int, grad_steps: int, lr: float, update_means: dict[str, float],
                steps_per_s: float, wall_s: float) -> None:
        self.diagnostics.append({
            "env_steps": env_steps, "grad_steps": grad_steps, "episodes": self.episodes, **update_means,
            "lr": lr, "explore_level": self.explore_level,
            "train_return_mean": float(np.mean(self.recent_returns)) if self.recent_returns else float("nan"),
            "train_return_last100": float(np.mean(self.last_returns)) if self.last_returns else float("nan"),
            "steps_per_s": steps_per_s, "wall_s": wall_s})
        self.recent_returns = []

    def evaluation_row(self, env_steps: int, grad_steps: int, ev: Evaluation, wall_s: float,
                       extra: dict[str, float] | None = None) -> None:
        """extra: columns only some tasks have (the distance to Q* on tasks with known dynamics)."""
        returns = ev.returns
        visited = ev.visited_states
        self.evaluations.append({
            "env_steps": env_steps, "return_mean": float(returns.mean()), "return_std": float(returns.std()),
            "return_min": float(returns.min()), "return_max": float(returns.max()),
            "n_episodes": len(returns), "grad_steps": grad_steps,
            "q_start_mean": mean_or_nan(ev.q_start),
            "discounted_return_mean": mean_or_nan(ev.discounted_returns),
            "q_visited_mean": ev.q_visited_sum / visited if visited else float("nan"),
            "discounted_return_visited_mean": ev.return_visited_sum / visited if visited else float("nan"),
            "visited_states": visited, **(extra or {}),
            "capped_episodes": ev.capped, "wall_s": wall_s})

    def at_checkpoint(self, env_steps: int, grad_steps: int, lr: float, elapsed_s: float, next_checkpoint: int,
                      sums: dict[str, float], watch: dict[str, Any]) -> None:
        self.env_steps, self.grad_steps, self.lr, self.elapsed_s = env_steps, grad_steps, lr, elapsed_s
        self.next_checkpoint_env_steps, self.sums, self.watch = next_checkpoint, sums, watch
