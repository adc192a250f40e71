"""The pixel rung of the ladder: Atari (ALE, under the protocol of Machado et al. 2018) and MinAtar tasks.

Both need an optional extra (`atari`: ale-py and OpenCV; `minatar`), imported only when such a task is made. The
protocol is read from the job's Config (sticky_action_prob, frame_skip, frame_stack, screen_size, noop_max,
max_episode_frames, full_action_space; MinAtar: sticky_action_prob, minatar_action_set), so it is validated,
overridable per suite and recorded in every run's config.json. Reward clipping and the optional life-loss
terminal are the trainer's (for learning only), never the env's: evaluation returns are the game's scores.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from qbench.config import ConfigError

# The settings that describe the ALE protocol (refused on other tasks when changed: they would be ignored).
ATARI_PROTOCOL_KEYS = ("frame_skip", "frame_stack", "screen_size", "noop_max", "max_episode_frames",
                       "full_action_space", "terminal_on_life_loss")
STICKY_KEY = "sticky_action_prob"


def make_pixel_env(task, cfg) -> gym.Env:
    if task.family == "minatar":
        return _make_minatar(task, cfg)
    if task.family == "atari":
        return _make_atari(task, cfg)
    raise ValueError(f"task '{task.name}' is not a pixel task")


def _make_minatar(task, cfg) -> gym.Env:
    try:
        import minatar.gym
    except ImportError:
        raise ConfigError(f"task '{task.name}' needs MinAtar, which is not installed; install it with: "
                          "pip install 'qbench[minatar]'") from None
    if task.env_id not in gym.registry:
        minatar.gym.register_envs()
    # MinAtar's gym BaseEnv: the minimal set maps Discrete(n) onto the game's own action numbers; the full set is
    # all 6 (Environment.num_actions(), what examples/dqn.py acts on). The setting decides, whatever the id registers.
    kwargs = {**task.env_kwargs, "use_minimal_action_set": cfg.minatar_action_set == "minimal"}
    return MinAtarSeeds(gym.make(task.env_id, sticky_action_prob=cfg.sticky_action_prob, **kwargs))


class MinAtarSeeds(gym.Wrapper):
    """MinAtar seeds a legacy numpy RandomState, which takes 32-bit seeds only; qbench's stream seeds have 63 bits.
    A seed is folded to 32 bits through a SeedSequence (so nearby seeds stay unrelated).

    MinAtar keeps the last action for sticky actions across resets, so an episode's first step could repeat the
    previous episode's last action: an episode would then depend on the one before it, and a resumed run (a
    fresh env) or an evaluation on a fresh env would not replay it. Every reset starts from no-op, as ALE does
    (its sticky action is reset to NOOP with the game)."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            seed = int(np.random.SeedSequence(seed).generate_state(1, np.uint32)[0])
        game = getattr(self.env.unwrapped, "game", None)
        if game is not None and hasattr(game, "last_action"):
            game.last_action = 0
        return self.env.reset(seed=seed, options=options)


def atari_protocol(cfg) -> Any:
    from qbench.envs.atari import AtariProtocol
    return AtariProtocol(sticky_action_prob=cfg.sticky_action_prob, frame_skip=cfg.frame_skip,
                         frame_stack=cfg.frame_stack, screen_size=cfg.screen_size, noop_max=cfg.noop_max,
                         max_episode_frames=cfg.max_episode_frames, full_action_space=cfg.full_action_space)


def _make_atari(task, cfg) -> gym.Env:
    try:
        import ale_py  # noqa: F401
        import cv2  # noqa: F401
    except ImportError:
        raise ConfigError(f"task '{task.name}' needs ale-py and OpenCV, which are not installed; install them "
                          "with: pip install 'qbench[atari]'") from None
    from qbench.envs.atari import make_atari_env
    return make_atari_env(task.env_id, atari_protocol(cfg))
