"""Building the parts of a run from its config: the Q networks of every seed, the maximisers, the optimiser, the
replay buffer, and the Learner that holds what learns; and the rewards the learner sees."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from qbench.config import Config, max_n_step
from qbench.envs.tasks import Spaces
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
from qbench.replay.buffer import ReplayBuffer
from qbench.replay.frames import FrameReplayBuffer
from qbench.training.seeding import torch_generators


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


def learner_rewards(rewards: np.ndarray, clip: float, scale: float) -> np.ndarray:
    """Rewards for learning: clipped to [-clip, clip] when clip > 0 (Atari's protocol), then multiplied by scale
    (PFRL's NAF example learns from rewards times 1e-3); as they are with clip 0 and scale 1."""
    clipped = rewards if clip == 0 else np.clip(rewards, -clip, clip)
    return clipped if scale == 1 else clipped * scale
