"""The known-dynamics model of an environment named by id: the one place outside training where an env is made to
read its transition tables (``qbench.theory.mdp.known_mdp``), so that the report's theory tables need not make
envs themselves. Training reads the same tables off the env it already has (``qbench.training.evaluation``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

import qbench.envs.toy  # noqa: F401  (registers qbench's own known-dynamics ids)
from qbench.theory.mdp import KnownMDP, known_mdp


class EnvUnavailable(Exception):
    """The env cannot be made here (another Gymnasium version, a missing package, arguments it does not take);
    the message is the underlying error's type and text."""


def known_mdp_of(env_id: str, env_kwargs: dict[str, Any] | None = None) -> KnownMDP | None:
    """The exact model of ``gym.make(env_id, **env_kwargs)``, or None when that env exposes none (no ``P`` and
    ``initial_state_distrib``); raises ``EnvUnavailable`` when the env cannot be made."""
    try:
        env = gym.make(env_id, **(env_kwargs or {}))
    except (gym.error.Error, ImportError, TypeError, ValueError) as exc:
        raise EnvUnavailable(f"{type(exc).__name__}: {exc}") from exc
    try:
        return known_mdp(env)
    finally:
        env.close()
