"""The one training loop. Every variant is this loop with different parts in its slots, and every run is a batch of K
seeds trained side by side (a single run is K = 1 of the same code).

collect -> store -> (every env_steps_per_update) sample -> target -> loss -> step -> maybe update target,
with a greedy evaluation on separate envs every eval_interval_env_steps.

The seed axis: every parameter, optimiser state and batch tensor has the seeds first (see parts/networks.py); each
seed has its own env, replay ring, random streams and run directory. A seed's numbers do not depend on its batch:
its losses are summed with the others', so its parameters get the gradient of its own loss only; Adam, clipping and
target updates are elementwise or per seed; its random numbers come from its own streams.
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

from qbench.config import TRACE_CORRECTIONS, Config, max_n_step, n_step_at
from qbench.envs.tasks import Spaces, make_env, spaces_of
from qbench.jobs import Job
from qbench.parts.divergence import describe, seed_record, watch_round
from qbench.parts.divergence import new_state as new_watch
from qbench.parts.divergence import state_from_records as watch_from_records
from qbench.parts.exploration import (
    GaussianNoise,
    OrnsteinUhlenbeckNoise,
    boltzmann_probs,
    capped_epsilon,
    epsilon_greedy_draw,
    epsilon_greedy_probs,
    inverse_cdf_draw,
    linear_schedule,
)
from qbench.parts.losses import seed_grad_norms, td_loss
from qbench.parts.maximisers import (
    ActorMaximiser,
    CEMMaximiser,
    ExactMaximiser,
    Maximiser,
    NAFMaximiser,
    RandomSamplingMaximiser,
)
from qbench.parts.networks import (
    NAFQ,
    Actor,
    DiscreteQ,
    StateActionQ,
    TableQ,
    bind_to_arena,
    build_encoder,
    flatten_parameters,
)
from qbench.parts.optim import FusedAdam, fused_adam_available
from qbench.parts.target_update import hard_update, polyak_update
from qbench.parts.targets import bootstrap_value, td_targets
from qbench.process import configure_training_process
from qbench.replay.buffer import OffPolicyTrace, ReplayBuffer
from qbench.replay.frames import FrameReplayBuffer
from qbench.seed_axis import SeedEnvs, slice_seed, stack_seeds
from qbench.store import CHECKPOINT, CHECKPOINT_REPLAY, METADATA, RunDir, atomic_write_bytes, run_metadata

CHECKPOINT_FORMAT = 2   # 2: one seed's slice of a seed-axis batch, env restored by replaying its episode's actions


class DivergedError(RuntimeError):
    """The TD loss (or its gradient) became NaN or infinite."""


# Every random stream of a run is a named child of SeedSequence(seed) (its spawn key), so no two streams share a
# state. Gymnasium seeds an env's reset with SeedSequence(seed) itself: an agent drawing from default_rng(seed)
# would replay the env's own draws (CartPole's first reset state would equal the agent's first uniforms).
STREAMS = {"agent": 0, "env": 1, "eval_env": 2, "init": 3, "maximiser": 4, "eval_maximiser": 5}


def stream_sequence(seed: int, name: str, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=(STREAMS[name], *key))


def stream_seed(seed: int, name: str, *key: int) -> int:
    """An integer seed (for env.reset or torch) of the named stream of the job seed."""
    return int(stream_sequence(seed, name, *key).generate_state(1, np.uint64)[0] >> 1)


def torch_generators(seeds: list[int], name: str) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(stream_seed(seed, name)) for seed in seeds]


def resolve_device(name: str) -> torch.device:
    """cpu, cuda, or auto (cuda when torch sees a GPU). Asking for cuda without one is refused when the job is
    built (jobs.build_job), so here it is a bug."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_q(cfg: Config, spaces: Spaces, generators: list[torch.Generator],
            device: torch.device | str = "cpu") -> torch.nn.Module:
    """The Q network of every seed: the head on top of its encoder (an image encoder for pixels, none for
    vectors), whose parameters are drawn first."""
    if cfg.q_head == "table":
        return flatten_parameters(TableQ(generators, spaces.obs_dim, spaces.n_actions, spaces.valid_actions), device)
    if cfg.q_head == "discrete":
        return flatten_parameters(DiscreteQ(generators, spaces.obs_dim, spaces.n_actions, cfg.hidden_sizes,
                                            encoder=build_encoder(generators, cfg.encoder, spaces),
                                            valid_actions=spaces.valid_actions), device)
    head = {"state_action": StateActionQ, "naf": NAFQ}.get(cfg.q_head)
    if head is None:
        raise ValueError(f"unknown q head {cfg.q_head!r}")
    encoder = build_encoder(generators, cfg.encoder, spaces)
    return flatten_parameters(head(generators, spaces.obs_dim, spaces.action_dim, cfg.hidden_sizes,
                                   encoder=encoder), device)


class MeanQ(torch.nn.Module):
    """The mean of two estimators, which Double Q-learning's behaviour acts on (van Hasselt 2010; Sutton and Barto
    act on the sum, whose argmax is the same) and which estimates Q in its evaluations."""

    def __init__(self, first: torch.nn.Module, second: torch.nn.Module):
        super().__init__()
        self.first, self.second = first, second

    @property
    def arena(self) -> torch.Tensor:
        return self.first.arena

    def all_actions(self, obs: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.first.all_actions(obs) + self.second.all_actions(obs))

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.first.q(obs, actions) + self.second.q(obs, actions))


def build_maximisers(cfg: Config, spaces: Spaces, init: list[torch.Generator],
                     sampling: list[torch.Generator],
                     device: torch.device | str = "cpu") -> tuple[Maximiser, Maximiser]:
    """(for acting, for targets): they differ only where the sample count differs (random sampling), since
    targets sit in the inner loop of every gradient step. `init` draws a learned maximiser's parameters, `sampling`
    a sampling maximiser's candidates (one generator per seed each)."""
    d = spaces.action_dim
    if cfg.maximiser == "exact":
        m: Maximiser = ExactMaximiser()
    elif cfg.maximiser == "random":
        return (RandomSamplingMaximiser(cfg.random_samples_act, d, sampling, device),
                RandomSamplingMaximiser(cfg.random_samples_target, d, sampling, device))
    elif cfg.maximiser == "cem":
        m = CEMMaximiser(cfg.cem_iterations, cfg.cem_population, cfg.cem_elites, d, sampling, device=device)
    elif cfg.maximiser == "naf":
        m = NAFMaximiser()
    elif cfg.maximiser == "actor":
        actor = flatten_parameters(Actor(init, spaces.obs_dim, d, cfg.hidden_sizes,
                                         encoder=build_encoder(init, cfg.encoder, spaces)), device)
        m = ActorMaximiser(actor, _frozen_copy(actor), build_optimiser(cfg, [actor.arena], cfg.actor_lr))
    else:
        raise ValueError(f"unknown maximiser {cfg.maximiser!r}")
    return m, m


def _frozen_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A target network: a copy, bound to its own arena, that autograd never differentiates."""
    return bind_to_arena(copy.deepcopy(module)).requires_grad_(False)


def build_optimiser(cfg: Config, params, lr: float):
    """Fused kernels: one pass over every seed's stacked parameters (Adam and RMSprop are elementwise, so each
    seed's optimiser state stays its own). Adam is torch's fused kernel called directly (parts/optim.py)."""
    if cfg.optimizer == "adam":
        if fused_adam_available():
            return FusedAdam(params, lr=lr)
        # torch < 2.4 has no fused Adam on CPU: foreach computes the same update, slower
        return torch.optim.Adam(params, lr=lr, foreach=True)
    if cfg.optimizer == "rmsprop":
        # centred too: the running mean of the gradient is elementwise, so each seed's stays its own
        return torch.optim.RMSprop(params, lr=lr, alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps,
                                   centered=cfg.rmsprop_centered, foreach=True)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, foreach=True)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


@dataclasses.dataclass
class Evaluation:
    """Per-episode results of one greedy evaluation of one seed."""

    returns: np.ndarray             # undiscounted episode returns: the score
    discounted_returns: np.ndarray  # sum_t gamma^t r_t from each episode's first state
    q_start: np.ndarray             # the network's Q(s_0, a_0) for the greedy first action: what it predicted
    capped: int = 0                 # episodes cut at max_episode_steps (the env never ended them)
    # Q(s_t, a_t) and the discounted return collected from s_t, summed over the visited states whose return is
    # known (see visited_returns), and how many those are
    q_visited_sum: float = 0.0
    return_visited_sum: float = 0.0
    visited_states: int = 0


# A state of an episode cut by a time limit counts only when the part of its return the cut hid weighs at most this
# much: gamma^(T - t) <= TAIL_WEIGHT, so that the return measured from it is within 1% of the largest value.
TAIL_WEIGHT = 0.01


def visited_returns(q_values: list[float], rewards: list[float], gamma: float, terminated: bool,
                    horizon: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """(Q(s_t, a_t), discounted return from s_t) for the states of one episode whose return is known, chosen by
    t alone, never by how the episode went on: a state counts when the episode could not have been cut within
    L = log(TAIL_WEIGHT) / log(gamma) steps of it, i.e. horizon - t >= L, where horizon is the most steps an
    episode may last (the env's time limit or the evaluation's cap); of an episode cut earlier than that by
    something else, only the states at least L steps before its cut. (Keeping every state of the episodes that
    terminated and dropping those near the cut of the others would select episodes by their outcome: on FrozenLake
    at gamma 0.99, cut at 100 steps, it reads -0.06 for the exact Q*.) None count when gamma = 1 and the horizon
    is finite. van Hasselt et al. (2016) measure overestimation along such trajectories, not only at s_0."""
    rewards_np = np.asarray(rewards, dtype=np.float64)
    returns = np.zeros(len(rewards_np))
    running = 0.0
    for t in range(len(rewards_np) - 1, -1, -1):
        running = rewards_np[t] + gamma * running
        returns[t] = running
    end = horizon if terminated else len(rewards_np)
    if gamma <= 0.0 or end == math.inf:
        keep = len(rewards_np)
    elif gamma >= 1.0:
        keep = 0
    else:
        tail_steps = int(np.ceil(np.log(TAIL_WEIGHT) / np.log(gamma)))
        keep = int(min(len(rewards_np), max(0, end - tail_steps + 1)))
    return np.asarray(q_values[:keep], dtype=np.float64), returns[:keep]


def episode_horizon(env, max_episode_steps: int) -> float:
    """The most steps an evaluation episode on env may last: its time limit (spec.max_episode_steps), capped at the
    evaluation's max_episode_steps."""
    limit = getattr(getattr(env, "spec", None), "max_episode_steps", None)
    return float(min(max_episode_steps, limit) if isinstance(limit, int) and limit > 0 else max_episode_steps)


def evaluate(q_fn, maximiser, envs: list, spaces: Spaces, episodes: int, seeds: list[int], gamma: float,
             max_episode_steps: int = 10_000, maximiser_seeds: list[int] | None = None,
             active: list[bool] | np.ndarray | None = None,
             seed_every_episode: bool = False, reward_clip: float = 0.0,
             reward_scale: float = 1.0) -> list[Evaluation | None]:
    """Greedy episodes of every active seed of the batch, in lockstep (one forward pass per step for all seeds);
    envs[k] is reset with seeds[k] once, so each evaluation is reproducible. An episode that reaches
    max_episode_steps is cut there and counted in `capped`: a greedy policy that loops on an env without a time
    limit would otherwise never end. Inactive seeds get None. seed_every_episode: envs with random streams of
    their own that a plain reset does not reseed (ALE, MinAtar) get a seed for every episode, derived from
    seeds[k] and the episode's index, so that an evaluation on a fresh env (a resumed run) is the same one.

    Q(s_0, a_0) against the discounted return actually collected from s_0 is the overestimation diagnostic of
    van Hasselt et al. (2016); the same comparison over every visited state whose return is known
    (visited_returns) goes into q_visited_sum, return_visited_sum and visited_states. An episode whose s_0 return
    is not known (visited_returns keeps no state of it: the horizon is too short for gamma) gets NaN in q_start
    and discounted_returns. Discounted returns sum the rewards the learner saw (clipped at reward_clip when it is
    above 0, then times reward_scale), so that they are on Q's scale; `returns` are the game's. Reading Q costs
    one forward pass per step and draws no random numbers.
    """
    k_seeds = len(envs)
    running = np.ones(k_seeds, dtype=bool) if active is None else np.array(active, dtype=bool)
    evaluations = [Evaluation(np.zeros(episodes), np.zeros(episodes), np.zeros(episodes)) if run else None
                   for run in running]
    obs = np.zeros((k_seeds, *spaces.obs_shape), dtype=spaces.obs_dtype)
    device = q_fn.arena.device if hasattr(q_fn, "arena") else torch.device("cpu")
    episode, t = np.zeros(k_seeds, dtype=int), np.zeros(k_seeds, dtype=int)
    total, total_discounted, discount = np.zeros(k_seeds), np.zeros(k_seeds), np.ones(k_seeds)
    q_trace: list[list[float]] = [[] for _ in range(k_seeds)]
    reward_trace: list[list[float]] = [[] for _ in range(k_seeds)]
    horizons = [episode_horizon(env, max_episode_steps) for env in envs]
    for k in np.flatnonzero(running):
        obs[k] = spaces.encode(envs[k].reset(seed=seeds[k])[0])
    with maximiser.reseeded(seeds if maximiser_seeds is None else maximiser_seeds):
        while running.any():
            obs_t = torch.as_tensor(obs)[:, None].to(device)
            with torch.inference_mode():
                action = maximiser.argmax(q_fn, obs_t)
                q_now = q_fn.q(obs_t, action)[:, 0].cpu().numpy()
            action_np = action[:, 0].cpu().numpy()
            for k in np.flatnonzero(running):
                ev = evaluations[k]
                if t[k] == 0:
                    ev.q_start[episode[k]] = float(q_now[k])
                raw, reward, terminated, truncated, _ = envs[k].step(spaces.to_env(action_np[k]))
                total[k] += float(reward)
                learned = float(learner_rewards(float(reward), reward_clip, reward_scale))
                total_discounted[k] += discount[k] * learned
                discount[k] *= gamma
                t[k] += 1
                q_trace[k].append(float(q_now[k]))
                reward_trace[k].append(learned)
                done = terminated or truncated
                if not done and t[k] >= max_episode_steps:
                    ev.capped += 1
                    done = True
                if not done:
                    obs[k] = spaces.encode(raw)
                    continue
                q_kept, returns_kept = visited_returns(q_trace[k], reward_trace[k], gamma, bool(terminated),
                                                       horizons[k])
                ev.q_visited_sum += float(q_kept.sum())
                ev.return_visited_sum += float(returns_kept.sum())
                ev.visited_states += len(q_kept)
                q_trace[k], reward_trace[k] = [], []
                ev.returns[episode[k]], ev.discounted_returns[episode[k]] = total[k], total_discounted[k]
                if len(q_kept) == 0:   # s_0's return is not known to the tail weight: no overestimation from it
                    ev.q_start[episode[k]] = ev.discounted_returns[episode[k]] = np.nan
                episode[k] += 1
                total[k], total_discounted[k], discount[k], t[k] = 0.0, 0.0, 1.0, 0
                if episode[k] < episodes and seed_every_episode:
                    again = np.random.SeedSequence(seeds[k], spawn_key=(int(episode[k]),))
                    obs[k] = spaces.encode(envs[k].reset(seed=int(again.generate_state(1, np.uint64)[0] >> 1))[0])
                elif episode[k] < episodes:
                    obs[k] = spaces.encode(envs[k].reset()[0])
                else:
                    running[k] = False
    return evaluations


class Behaviour:
    """The behaviour policy of every seed: one forward pass for the batch, then each seed's own random draw."""

    def __init__(self, cfg: Config, spaces: Spaces, online, maximiser: Maximiser, rngs: list[np.random.Generator]):
        self.cfg, self.spaces, self.online, self.maximiser, self.rngs = cfg, spaces, online, maximiser, rngs
        self.discrete = spaces.action_kind == "discrete"
        if cfg.action_noise == "ou":
            self.noises = [OrnsteinUhlenbeckNoise(spaces.action_dim, cfg.noise_std, cfg.ou_theta, cfg.ou_dt, rng)
                           for rng in rngs]
        else:
            self.noises = [GaussianNoise(spaces.action_dim, cfg.noise_std, rng) for rng in rngs]

    def act(self, obs: np.ndarray, progress_frac: float,
            warming_up: bool) -> tuple[np.ndarray, float, np.ndarray]:
        """(actions (K,) or (K, d) in the engine's units, exploration level: epsilon, temperature or noise std,
        mu(a | s): the probability each seed's action had under the policy that drew it, (K,), NaN for Box
        actions, whose density is not what trace corrections weigh by).

        During warm-up every action is uniform (an untrained net's greedy choice is arbitrary but not random;
        an untrained actor plus small noise covers little of the box)."""
        cfg, spaces = self.cfg, self.spaces
        if warming_up:
            if self.discrete and spaces.valid_actions is not None:   # uniform over what each state offers
                offered = [np.flatnonzero(spaces.valid_actions[int(np.argmax(o))]) for o in obs]
                return (np.array([a[rng.integers(len(a))] for a, rng in zip(offered, self.rngs)]), float("nan"),
                        np.array([1.0 / len(a) for a in offered]))
            if self.discrete:
                return (np.array([rng.integers(spaces.n_actions) for rng in self.rngs]), float("nan"),
                        np.full(len(self.rngs), 1.0 / spaces.n_actions))
            return np.stack([rng.uniform(-1.0, 1.0, spaces.action_dim).astype(np.float32)
                             for rng in self.rngs]), float("nan"), np.full(len(self.rngs), np.nan)
        obs_t = torch.as_tensor(obs)[:, None].to(self.online.arena.device)
        if not self.discrete:
            with torch.inference_mode():
                greedy = self.maximiser.argmax(self.online, obs_t)[:, 0].cpu().numpy()
            noise = np.stack([n.sample() for n in self.noises])
            return (np.clip(greedy + noise, -1.0, 1.0).astype(np.float32), cfg.noise_std,
                    np.full(len(self.rngs), np.nan))
        with torch.inference_mode():
            q = self.online.all_actions(obs_t)[:, 0].cpu().numpy()
        # Inverse CDF with one uniform per seed, from the seed's own stream.
        uniforms = [rng.random() for rng in self.rngs]
        if cfg.exploration == "epsilon_greedy":
            level = linear_schedule(cfg.eps_start, cfg.eps_end, cfg.eps_decay_fraction, progress_frac)
            if cfg.epsilon_form == "non_greedy":
                level = capped_epsilon(level, spaces.n_actions)
            drawn = epsilon_greedy_draw(q, level, uniforms, cfg.epsilon_form)
            if drawn is not None:
                return drawn[0], level, drawn[1]
            probs = epsilon_greedy_probs(q, level, cfg.epsilon_form)
        else:
            level = linear_schedule(cfg.temperature_start, cfg.temperature_end, cfg.temperature_decay_fraction,
                                    progress_frac)
            probs = boltzmann_probs(q, level)
        actions, mu = inverse_cdf_draw(probs, uniforms)
        return actions, level, mu


class Learner:
    """The parts that learn, with the seed axis: online and target Q, optimiser, maximisers, target followers."""

    def __init__(self, cfg: Config, spaces: Spaces, seeds: list[int]):
        # Seed k's initial parameters come from its own "init" stream, in construction order.
        init = torch_generators(seeds, "init")
        self.device = resolve_device(cfg.device)
        self.online = build_q(cfg, spaces, init, self.device)
        self.act_maximiser, self.target_maximiser = build_maximisers(cfg, spaces, init,
                                                                     torch_generators(seeds, "maximiser"),
                                                                     self.device)
        self.target = self.online if cfg.target_update == "none" else _frozen_copy(self.online)
        self.optimiser = build_optimiser(cfg, [self.online.arena], cfg.lr)
        # What acts and what is evaluated: the online net, or for two estimators that swap roles their mean
        self.acting = MeanQ(self.online, self.target) if cfg.target_update == "swap" else self.online
        pairs = [] if cfg.target_update in ("none", "swap") else [(self.target, self.online),
                                                                  *self.act_maximiser.target_pairs()]
        self.follower_params = [follower.arena for follower, _ in pairs]
        self.leader_params = [leader.arena for _, leader in pairs]

    @torch.no_grad()
    def swap_roles(self, rngs: list[np.random.Generator]) -> None:
        """Double Q-learning's coin, one per seed from its own stream: where it falls, the two estimators exchange
        parameters, so the step that follows updates the other one (selected by itself, evaluated by its twin)."""
        coins = torch.as_tensor(np.array([rng.random() < 0.5 for rng in rngs])).to(self.device)
        if bool(coins.any()):
            first, second = self.online.arena.data, self.target.arena.data
            held = first[coins].clone()
            first[coins] = second[coins]
            second[coins] = held

    def set_lr(self, cfg: Config, lr: float) -> None:
        for group in self.optimiser.param_groups:
            group["lr"] = lr
        for own in self.act_maximiser.optimisers():   # DDPG's actor: the same schedule, from actor_lr
            for group in own.param_groups:
                group["lr"] = cfg.actor_lr * lr / cfg.lr

    def state_dict(self) -> dict[str, Any]:
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimiser": self.optimiser.state_dict(), "act_maximiser": self.act_maximiser.state_dict(),
                "target_maximiser": self.target_maximiser.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        if self.target is not self.online:
            self.target.load_state_dict(state["target"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.act_maximiser.load_state_dict(state["act_maximiser"])
        self.target_maximiser.load_state_dict(state["target_maximiser"])


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


def train_batch(jobs: list[Job], runs: list[RunDir | None] | None = None,
                progress: Callable[[int, dict[str, Any]], None] | None = None,
                checkpoints: list[dict[str, Any] | None] | None = None) -> list[dict[str, Any] | DivergedError]:
    """Train the seeds of one (variant, task, config) side by side, from their checkpoints if given (all taken at
    the same env step); write each seed's rows and checkpoints to its run as they come. Returns one result per
    job: its summary, or the DivergedError of a seed that diverged (masked out of the batch when it did, its
    error.json written; the other seeds go on)."""
    cfg = jobs[0].config
    if any(job.config != cfg or job.task != jobs[0].task or job.variant != jobs[0].variant for job in jobs):
        raise ValueError("the jobs of a batch must share variant, task and config (they differ only in seed)")
    k_seeds = len(jobs)
    runs = runs if runs is not None else [None] * k_seeds
    checkpoints = checkpoints if checkpoints is not None else [None] * k_seeds
    configure_training_process(cfg.torch_threads)   # threads, flushed denormals, the allocator
    started = time.perf_counter()
    seeds = [job.seed for job in jobs]
    rngs = [np.random.default_rng(stream_sequence(seed, "agent")) for seed in seeds]
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

    def greedy_np(states: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return act_maximiser.argmax(online, torch.as_tensor(states).to(device)).cpu().numpy()
    cut_trace = greedy_np if cfg.nstep_correction == "cut" and max_n_step(cfg) > 1 else None
    trace = off_policy_trace(cfg, learner)

    # Loop state: everything that changes as the loop runs, so that a checkpoint is this plus the parts' state.
    book = Bookkeeper(jobs, runs, progress, cfg, started, eval_envs, spaces, known)
    if all(c is None for c in checkpoints):
        envs.start()
        book.start_fresh()
    else:
        book.restore(checkpoints, learner, buffer, envs, behaviour, rngs)
    start_env_steps, grad_steps, lr = book.shared_counters()
    alive, stats = book.alive, book.stats
    clip_at = cfg.max_grad_norm if cfg.grad_clip == "norm" else 0.0
    n_step_run = max_n_step(cfg) > 1

    for env_steps in range(start_env_steps + 1, cfg.total_env_steps + 1):
        progress_frac = (env_steps - 1) / cfg.total_env_steps
        for k in np.flatnonzero(envs.needs_reset & alive):
            envs.reset(k)
            behaviour.noises[k].reset()

        # 1. Collect one transition per seed with the behaviour policy and store it (rewards clipped and lives
        #    ended for learning only, where the task asks for it).
        actions, explore_level, behaviour_prob = behaviour.act(envs.obs, progress_frac,
                                                               env_steps <= cfg.warmup_env_steps)
        next_obs, rewards, terminated, truncated = envs.step_all(actions, alive)
        life_lost = envs.life_lost & cfg.terminal_on_life_loss
        learn_rewards = learner_rewards(rewards, cfg.reward_clip, cfg.reward_scale)
        buffer.add(envs.obs, actions, learn_rewards, next_obs, terminated | life_lost, truncated, life_lost, alive,
                   behaviour_prob)
        envs.advance(next_obs, terminated | truncated, alive)
        book.record_steps(env_steps, rewards, learn_rewards, terminated | truncated, explore_level, envs.last_info)

        # 2. Regress Q on targets: grad_steps_per_update steps every env_steps_per_update env steps.
        if env_steps >= cfg.warmup_env_steps and env_steps % cfg.env_steps_per_update == 0:
            if cfg.lr_schedule == "linear":
                lr = linear_schedule(cfg.lr, cfg.lr_end, cfg.lr_decay_fraction, progress_frac)
                learner.set_lr(cfg, lr)
            weights = None if alive.all() else torch.as_tensor(alive).to(device)   # a diverged seed's loss counts 0
            n_now = n_step_at(cfg, progress_frac)
            for _ in range(cfg.grad_steps_per_update):
                if cfg.target_update == "swap":
                    learner.swap_roles(rngs)
                batch = buffer.sample(cfg.batch_size, rngs, cut_trace, n_now, trace)
                obs_b, actions_b = to_device(device, batch.obs, batch.actions)
                loss, q_pred = td_step_loss(cfg, learner, obs_b, actions_b,
                                            *to_device(device, batch.reward_n, batch.discount_n, batch.bootstrap_obs),
                                            None if batch.target is None else to_device(device, batch.target)[0])
                online.arena.grad.zero_()    # in place: the layers' .grad are views of it
                (loss.sum() if weights is None else torch.where(weights, loss, 0.0).sum()).backward()
                grad_norm = seed_grad_norms([online.arena], clip_at)           # clips each seed on its own
                optimiser.step()
                grad_steps += 1
                # A learned maximiser (DDPG's actor) climbs the critic it was just given.
                actor_loss = act_maximiser.learn(online, obs_b)

                # 3. Let the targets follow.
                if cfg.target_update == "hard" and grad_steps % cfg.target_period_grad_steps == 0:
                    hard_update(learner.follower_params, learner.leader_params)
                elif cfg.target_update == "polyak":
                    polyak_update(learner.follower_params, learner.leader_params, cfg.tau)
                stats.add(loss, q_pred, grad_norm, actor_loss, trace_length(batch) if n_step_run else None)
            book.watch_divergence(env_steps, grad_steps)
            if not alive.any():
                break

        # 4. Diagnostics, evaluation and checkpoints, for every seed still alive.
        stats = book.after_step(env_steps, grad_steps, lr, learner, buffer, envs, behaviour, rngs)

    envs.close()
    for env in eval_envs:
        env.close()
    return book.results(grad_steps, buffer)


@dataclasses.dataclass(frozen=True)
class KnownDynamics:
    """A task whose transition probabilities the env publishes (Gymnasium's toy text, qbench's small MDPs): Q* by
    value iteration, once per batch, so that every evaluation can say how far the learned Q is from it."""

    mdp: Any
    q_star: np.ndarray
    gamma: float

    def distance(self, q_fn, k_seeds: int, device: torch.device) -> dict[str, np.ndarray]:
        """q_error_max, q_error_mean, greedy_value, optimal_value per seed (qbench.theory.mdp.q_distance)."""
        from qbench.theory.mdp import q_distance
        states = torch.eye(self.mdp.n_states).expand(k_seeds, -1, -1).to(device)
        with torch.inference_mode():
            q = q_fn.all_actions(states).double().cpu().numpy()
        return q_distance(self.mdp, self.q_star, q, self.gamma)


def known_dynamics(env, spaces: Spaces, gamma: float) -> KnownDynamics | None:
    """The env's known dynamics, for Discrete states and actions whose env publishes P (else None)."""
    if not spaces.discrete_states or spaces.action_kind != "discrete":
        return None
    from qbench.theory.mdp import known_mdp, q_iteration
    mdp = known_mdp(env)
    if mdp is None or mdp.n_states != spaces.discrete_states or mdp.n_actions != spaces.n_actions:
        return None
    return KnownDynamics(mdp, q_iteration(mdp, gamma).q_star, gamma)


def td_step_loss(cfg: Config, learner: Learner, obs: torch.Tensor, actions: torch.Tensor, reward_n: torch.Tensor,
                 discount_n: torch.Tensor, bootstrap_obs: torch.Tensor,
                 target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(TD loss per seed (K,), Q(s, a) (K, B)) of one batch. The target y = reward_n + discount_n * bootstrap is
    held constant (semi-gradient: no gradient flows through it, so online Q-learning follows no objective's
    gradient), or with target_gradient residual differentiated too (the gradient of the squared Bellman error,
    Baird 1995). target, when given, is y already (a trace correction's, computed by the replay buffer)."""
    if target is not None:
        q_pred = learner.online.q(obs, actions)
        return td_loss(q_pred, target, cfg.loss, cfg.huber_delta), q_pred
    with torch.set_grad_enabled(cfg.target_gradient == "residual"):
        bootstrap = bootstrap_value(cfg.target, learner.target_maximiser, learner.online, learner.target,
                                    bootstrap_obs)
        y = td_targets(reward_n, discount_n, bootstrap)
    q_pred = learner.online.q(obs, actions)
    return td_loss(q_pred, y, cfg.loss, cfg.huber_delta), q_pred


def off_policy_trace(cfg: Config, learner: Learner) -> OffPolicyTrace | None:
    """The trace correction of the run's n-step targets (importance_sampling, retrace, tree_backup), else None.

    Q is the target net (what every target bootstraps from); pi is is_target_eps-greedy w.r.t. the net that
    selects the bootstrap action: the target net for target max (so that with eps 0, E_pi Q' is max Q', DQN's
    bootstrap), the online net for double (E_pi Q' is Double DQN's). Ties share pi's greedy mass evenly."""
    if cfg.nstep_correction not in TRACE_CORRECTIONS or max_n_step(cfg) == 1:
        return None
    device = learner.device

    def evaluate(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            s = torch.as_tensor(states).to(device)
            q_target = learner.target.all_actions(s)
            q_select = q_target if cfg.target == "max" else learner.online.all_actions(s)
            q_target, q_select = q_target.double().cpu().numpy(), q_select.double().cpu().numpy()
        return q_target, epsilon_greedy_probs(q_select, cfg.is_target_eps, cfg.epsilon_form)
    return OffPolicyTrace(cfg.nstep_correction, evaluate, cfg.trace_lambda, cfg.is_clip)


def trace_length(batch) -> torch.Tensor:
    """(K,) the mean number of steps the batch's targets used: sum_j C_j under a trace correction, else L."""
    used = batch.trace_mass if batch.trace_mass is not None else batch.lengths
    return torch.as_tensor(np.asarray(used, dtype=np.float64).mean(axis=1))


def make_buffer(cfg: Config, spaces: Spaces, task, k_seeds: int) -> ReplayBuffer | FrameReplayBuffer:
    """A frame-stacking buffer for ALE's frame stacks (each frame stored once: about 7 KB per transition instead
    of 56 KB), else a plain one that stores obs and next obs."""
    discrete = spaces.action_kind == "discrete"
    action_shape, action_dtype = ((), np.int64) if discrete else ((spaces.action_dim,), np.float32)
    if task.family == "atari" and cfg.frame_stack > 1:
        return FrameReplayBuffer(k_seeds, cfg.buffer_size, spaces.obs_shape, action_shape, action_dtype,
                                 max_n_step(cfg), cfg.gamma)
    return ReplayBuffer(k_seeds, cfg.buffer_size, spaces.obs_shape, action_shape, action_dtype, max_n_step(cfg),
                        cfg.gamma, obs_dtype=spaces.obs_dtype)


def mean_or_nan(values: np.ndarray) -> float:
    """The mean of the values that are not NaN; NaN when there are none (no warning)."""
    known = values[~np.isnan(values)]
    return float(known.mean()) if len(known) else float("nan")


def learner_rewards(rewards: np.ndarray, clip: float, scale: float) -> np.ndarray:
    """Rewards for learning: clipped to [-clip, clip] when clip > 0 (Atari's protocol), then multiplied by scale
    (PFRL's NAF example learns from rewards times 1e-3); as they are with clip 0 and scale 1."""
    clipped = rewards if clip == 0 else np.clip(rewards, -clip, clip)
    return clipped if scale == 1 else clipped * scale


def to_device(device: torch.device, *arrays: np.ndarray) -> list[torch.Tensor]:
    """numpy batches as tensors on the networks' device (no copy on the CPU)."""
    return [torch.as_tensor(a).to(device) for a in arrays]


class Bookkeeper:
    """Everything the loop records beside the algorithm: per-seed counters and rows, divergence, evaluations,
    checkpoints and summaries, for the seeds of one batch."""

    def __init__(self, jobs: list[Job], runs: list[RunDir | None], progress, cfg: Config, started: float,
                 eval_envs: list, spaces: Spaces, known: KnownDynamics | None = None):
        self.jobs, self.runs, self.progress, self.cfg, self.started = jobs, runs, progress, cfg, started
        self.eval_envs, self.spaces, self.known = eval_envs, spaces, known
        self.episode_info = jobs[0].task.episode_info
        self.seeds = [job.seed for job in jobs]
        self.states = [LoopState(lr=cfg.lr, next_checkpoint_env_steps=cfg.checkpoint_interval_env_steps)
                       for _ in jobs]
        self.stats = UpdateStats(len(jobs), logs_trace=max_n_step(cfg) > 1)
        self.alive = np.ones(len(jobs), dtype=bool)
        self.watch = new_watch(len(jobs))
        self.outcomes: list[dict[str, Any] | DivergedError | None] = [None] * len(jobs)
        self.next_checkpoint = cfg.checkpoint_interval_env_steps
        self.last_log = (time.perf_counter(), 0)

    def start_fresh(self) -> None:
        for run in self.runs:
            if run is not None:   # rows are appended from here on: drop those of an attempt that left no checkpoint
                run.write_evaluations([])
                run.write_diagnostics([])
                if self.episode_info:
                    run.write_episodes([])

    def restore(self, checkpoints: list[dict[str, Any]], learner: Learner, buffer: ReplayBuffer, envs: SeedEnvs,
                behaviour: Behaviour, rngs: list[np.random.Generator]) -> None:
        self.states = [LoopState(**c["loop"]) for c in checkpoints]
        self.watch = watch_from_records([st.watch or seed_record(new_watch(1), 0) for st in self.states])
        learner.load_state_dict(stack_seeds([{key: c[key] for key in learner.state_dict()} for c in checkpoints]))
        buffer.load_chunks(checkpoints[0]["buffer"], [c["buffer_chunks"] for c in checkpoints])
        self.stats.load([c["loop"]["sums"] for c in checkpoints])
        for k, c in enumerate(checkpoints):
            rngs[k].bit_generator.state = c["rng"]
            envs.restore(k, c["env"])
            if c["noise"] is not None and hasattr(behaviour.noises[k], "state"):
                behaviour.noises[k].state = np.array(c["noise"])
            if self.runs[k] is not None:
                self.runs[k].write_evaluations(self.states[k].evaluations)
                self.runs[k].write_diagnostics(self.states[k].diagnostics)
                if self.episode_info:
                    self.runs[k].write_episodes(self.states[k].episode_rows)
            self.states[k].episodes_flushed = len(self.states[k].episode_rows)
        self.started -= self.states[0].elapsed_s
        self.next_checkpoint = self.states[0].next_checkpoint_env_steps
        self.last_log = (time.perf_counter(), self.states[0].env_steps)

    def shared_counters(self) -> tuple[int, int, float]:
        """(env steps, gradient steps, learning rate): the counters every seed of the batch shares."""
        st = self.states[0]
        return st.env_steps, st.grad_steps, st.lr

    def record_steps(self, env_steps: int, rewards: np.ndarray, learn_rewards: np.ndarray, ended: np.ndarray,
                     explore_level: float, infos: list[dict[str, Any]]) -> None:
        """rewards as the env gave them (the score), learn_rewards as the learner saw them (clipped where the
        task clips): their largest size scales the divergence bound."""
        for k in np.flatnonzero(self.alive):
            self.states[k].record_step(rewards[k], ended[k], explore_level, abs(float(learn_rewards[k])),
                                       env_steps, infos[k] if self.episode_info else None)

    def watch_divergence(self, env_steps: int, grad_steps: int) -> None:
        """Once per round of gradient steps (qbench/parts/divergence.py): a seed whose loss, gradient or |Q| went
        non-finite, or whose |Q| on a sampled batch passed divergence_stop_factor value scales, is recorded as
        diverged (error.json) and masked out of the batch, and the other seeds go on; a seed whose |Q| first
        passes divergence_warn_factor value scales is flagged (said once, recorded in its summary), never
        stopped for it."""
        cfg = self.cfg
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
            self.alive[k] = False
            self.outcomes[k] = DivergedError(message)
            if self.runs[k] is not None:
                if self.episode_info:
                    self.runs[k].append_episodes(self.states[k].unflushed_episodes())
                self.runs[k].write_error({"error": "diverged", "message": message,
                                          "divergence_watch": seed_record(self.watch, k)})
            if self.progress is not None:
                self.progress(env_steps, {"seed": self.seeds[k], "diverged": message})

    def after_step(self, env_steps: int, grad_steps: int, lr: float, learner: Learner, buffer: ReplayBuffer,
                   envs: SeedEnvs, behaviour: Behaviour, rngs: list[np.random.Generator]) -> UpdateStats:
        """Log rows, evaluations and checkpoints that fall due at this env step; returns the update stats to fill
        next (fresh after a log row)."""
        cfg, alive, seeds = self.cfg, np.flatnonzero(self.alive), self.seeds
        if env_steps % cfg.log_interval_env_steps == 0 or env_steps == cfg.total_env_steps:
            if self.episode_info:
                for k in alive:
                    if self.runs[k] is not None:
                        self.runs[k].append_episodes(self.states[k].unflushed_episodes())
            now = time.perf_counter()
            annealed = {"n_step": n_step_at(cfg, (env_steps - 1) / cfg.total_env_steps)} if cfg.n_step_end else {}
            for k in alive:
                self.states[k].log_row(env_steps, grad_steps, lr, {**self.stats.means(k), **annealed},
                                       (env_steps - self.last_log[1]) / max(now - self.last_log[0], 1e-9),
                                       now - self.started)
                self.emit(k, env_steps, "diagnostics", self.states[k].diagnostics[-1])
            self.stats = UpdateStats(len(seeds), logs_trace=max_n_step(cfg) > 1)
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
                        save_checkpoint(self.runs[k], self.jobs[k], buffer, k, self.states[k], {
                            **slice_seed(learner_state, k), "rng": rngs[k].bit_generator.state,
                            "env": envs.state(k), "noise": getattr(behaviour.noises[k], "state", None)})
                if self.progress is not None:
                    self.progress(env_steps, {"checkpoint": env_steps, "seeds": [seeds[k] for k in alive]})
        return self.stats

    def emit(self, k: int, env_steps: int, kind: str, row: dict[str, Any]) -> None:
        run = self.runs[k]
        if run is not None:
            (run.append_diagnostics if kind == "diagnostics" else run.append_evaluation)(row)
        if self.progress is not None:
            self.progress(env_steps, {"seed": self.seeds[k], kind: row})

    def results(self, grad_steps: int, buffer) -> list[dict[str, Any] | DivergedError]:
        wall_s = time.perf_counter() - self.started
        for k in np.flatnonzero(self.alive):
            evaluations, job = self.states[k].evaluations, self.jobs[k]
            self.outcomes[k] = {
                "variant": job.variant, "task": job.task.name, "seed": job.seed,
                "final_return_mean": evaluations[-1]["return_mean"],
                "final_return_std": evaluations[-1]["return_std"],
                "best_return_mean": max(e["return_mean"] for e in evaluations),
                "env_steps": self.cfg.total_env_steps, "grad_steps": grad_steps, "episodes": self.states[k].episodes,
                "wall_s": wall_s, "steps_per_s": self.cfg.total_env_steps / wall_s, "seeds_in_batch": len(self.jobs),
                "peak_rss_mb": peak_rss_mb(),
                "replay_bytes_per_transition": buffer.bytes_per_transition(),
                "divergence_watch": seed_record(self.watch, k),
                **frame_counts(self.jobs[k], self.cfg.total_env_steps),
            }
        return self.outcomes


def train(job: Job, run: RunDir | None = None, progress: Callable[[int, dict[str, Any]], None] | None = None,
          checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one job (a batch of one seed); return its summary. Raises DivergedError."""
    result = train_batch([job], [run], progress, [checkpoint])[0]
    if isinstance(result, DivergedError):
        raise result
    return result


def frame_counts(job: Job, env_steps: int) -> dict[str, Any]:
    """For ALE tasks: env steps are agent steps, each frame_skip emulator frames; said in every summary so that no
    number is read in the wrong unit."""
    if job.task.family != "atari":
        return {}
    return {"frame_skip": job.config.frame_skip, "frames": env_steps * job.config.frame_skip}


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


def save_checkpoint(run: RunDir, job: Job, buffer: ReplayBuffer, seed_index: int, st: LoopState,
                    parts: dict[str, Any]) -> None:
    """Write the seed's transitions added since its last checkpoint as one more replay chunk, then the checkpoint
    that lists the chunks still needed (atomically: it is the commit point), then delete chunks no longer listed.
    The cost of a checkpoint is bounded by what was added since the last one, not by the buffer's size."""
    folder = run.path / CHECKPOINT_REPLAY
    chunk = buffer.chunk(st.replay_chunks[-1]["end"] if st.replay_chunks else 0, seed_index)
    name = f"{chunk['start']:012d}-{chunk['end']:012d}.npz"
    data = io.BytesIO()
    np.savez(data, **chunk)
    atomic_write_bytes(folder / name, data.getvalue())
    st.replay_chunks = [*(c for c in st.replay_chunks if not buffer.chunk_is_obsolete(c["end"])),
                        {"file": name, "start": chunk["start"], "end": chunk["end"]}]
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "job_hash": job.hash, "loop": dataclasses.asdict(st),
                "buffer": buffer.counters(), **parts}, buf)
    atomic_write_bytes(run.path / CHECKPOINT, buf.getvalue())
    listed = {c["file"] for c in st.replay_chunks}
    for path in folder.glob("*.npz"):
        if path.name not in listed:
            path.unlink(missing_ok=True)


class DamagedCheckpointError(RuntimeError):
    """A checkpoint (or one of its replay chunks) that cannot be read back."""


def load_checkpoint(run: RunDir, job: Job) -> dict[str, Any] | None:
    """The run's checkpoint if it belongs to this very job (same hash), else None. A damaged checkpoint, or one in
    a format this code cannot resume, raises DamagedCheckpointError naming the cause."""
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
    if state.get("format", 1) != CHECKPOINT_FORMAT:
        raise DamagedCheckpointError(f"{path} was written by an older qbench (checkpoint format "
                                     f"{state.get('format', 1)}, this one reads {CHECKPOINT_FORMAT}) and cannot "
                                     "be resumed")
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


def _open_run(job: Job, run: RunDir, command: list[str] | None) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the checkpoint to resume from or None, the metadata to keep) for one seed's run directory: config and
    metadata are written first. A damaged checkpoint is moved aside (kept), said on stderr and in metadata.json,
    and the seed starts afresh."""
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
    return checkpoint, meta


def run_batch(jobs: list[Job], runs: list[RunDir], command: list[str] | None = None,
              progress: Callable[[int, dict[str, Any]], None] | None = None) -> list[dict[str, Any] | BaseException]:
    """Train the seeds of one (variant, task, config) together, each into its run directory: config and metadata
    first, rows as they come, summary last (the marker that the run is complete). One result per job, in order:
    its summary, or the DivergedError of a seed that diverged (its error.json written instead of a summary). Any
    other exception fails the batch.

    Seeds resume from their checkpoints; seeds whose checkpoints stand at different env steps (a batch that was
    split differently before, a damaged checkpoint set aside) train as separate batches, one after another.
    progress(env_steps, info): info carries "seed" for per-seed events (evaluation, diagnostics, diverged) and
    "seeds" for batch events (checkpoint)."""
    opened = [_open_run(job, run, command) for job, run in zip(jobs, runs, strict=True)]
    for run, (_, meta) in zip(runs, opened, strict=True):
        meta["seeds_in_batch"] = len(jobs)
        run.write_metadata(meta)
    groups: dict[int, list[int]] = {}
    for i, (checkpoint, _) in enumerate(opened):
        groups.setdefault(checkpoint["loop"]["env_steps"] if checkpoint else 0, []).append(i)
    results: list[dict[str, Any] | BaseException | None] = [None] * len(jobs)
    for members in groups.values():
        outcome = train_batch([jobs[i] for i in members], [runs[i] for i in members], progress,
                              [opened[i][0] for i in members])
        for i, result in zip(members, outcome, strict=True):
            results[i] = result
            if isinstance(result, DivergedError):
                continue
            meta = opened[i][1]
            meta["wall_s"] = result["wall_s"]
            runs[i].write_metadata(meta)
            runs[i].write_summary({**result, "job_hash": jobs[i].hash})
            (runs[i].path / CHECKPOINT).unlink(missing_ok=True)
            shutil.rmtree(runs[i].path / CHECKPOINT_REPLAY, ignore_errors=True)
    return results


def run_job(job: Job, run: RunDir, command: list[str] | None = None,
            progress: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train one job into its run directory (a batch of one). A diverged run leaves error.json instead of a
    summary, and re-raises."""
    result = run_batch([job], [run], command, progress)[0]
    if isinstance(result, BaseException):
        raise result
    return result
