"""Bootstrap values and TD targets as pure functions of Q functions and a maximiser."""

from __future__ import annotations

import torch


def bootstrap_value(kind: str, maximiser, online, target, next_obs: torch.Tensor) -> torch.Tensor:
    """The value of the bootstrap state.

    max:    max_a Q_target(s', a)
    double: Q_target(s', argmax_a Q_online(s', a)); the online net selects, the target net evaluates, which removes
            the upward bias of taking a max over noisy estimates with the same net (van Hasselt et al., 2016).
    policy: Q_target(s', mu_target(s')); the target actor of a learned maximiser picks the action (DDPG).
    """
    if kind == "max":
        return maximiser.max(target, next_obs)
    if kind == "double":
        return target.q(next_obs, maximiser.argmax(online, next_obs))
    if kind == "policy":
        return target.q(next_obs, maximiser.target_policy(next_obs))
    raise ValueError(f"unknown target kind {kind!r}")


def td_targets(reward_n: torch.Tensor, discount_n: torch.Tensor, bootstrap: torch.Tensor) -> torch.Tensor:
    """y = reward_n + discount_n * bootstrap; discount_n is 0 where the window ended in a termination."""
    return reward_n + discount_n * bootstrap
