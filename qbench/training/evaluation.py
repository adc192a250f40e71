"""Greedy evaluation of every seed of a batch, with the overestimation diagnostic (Q against the discounted return
collected, at the first state and along the visited ones), and the distance to Q* on tasks with known dynamics."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from qbench.envs.checks import EnvFault
from qbench.envs.tasks import Spaces
from qbench.training.build import learner_rewards
from qbench.training.seeding import derived_seed


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
             reward_scale: float = 1.0) -> list[Evaluation | EnvFault | None]:
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
    one forward pass per step and draws no random numbers. A seed whose env breaks its contract (EnvFault) gets
    the fault instead of an Evaluation; the others go on.
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
    def fail(k: int, fault: EnvFault) -> None:   # the env's fault stops this seed's evaluation, not the others'
        evaluations[k] = fault
        running[k] = False

    for k in np.flatnonzero(running):
        try:
            obs[k] = spaces.encode(envs[k].reset(seed=seeds[k])[0])
        except EnvFault as fault:
            fail(k, fault)
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
                try:
                    raw, reward, terminated, truncated, _ = envs[k].step(spaces.to_env(action_np[k]))
                except EnvFault as fault:
                    fail(k, fault)
                    continue
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
                if episode[k] >= episodes:
                    running[k] = False
                    continue
                try:
                    obs[k] = spaces.encode(envs[k].reset(**({"seed": derived_seed(seeds[k], int(episode[k]))}
                                                             if seed_every_episode else {}))[0])
                except EnvFault as fault:
                    fail(k, fault)
    return evaluations


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
