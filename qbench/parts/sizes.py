"""How many parameters a run's networks hold, from its config and its task's spaces alone, without torch: the
networks are checked against the machine's memory before anything is built or written (a layer of 1e9 units would
otherwise allocate until the machine swaps). parts/networks.py builds exactly these shapes; a test compares the
counts with the built modules' parameters."""

from __future__ import annotations

import itertools
from typing import Any

# The image encoders: (out channels, kernel, stride) per conv layer, ReLU after each.
CONV_STACKS = {
    "nature_cnn": [(32, 8, 4), (64, 4, 2), (64, 3, 1)],   # Mnih et al. (2015), for 84x84 Atari frames
    "minatar_cnn": [(16, 3, 1)],                          # Young and Tian (2019), for MinAtar's 10x10 grids
}

FLOAT_BYTES = 4   # every network is float32

# Tensors of a parameter's size an optimiser keeps besides the parameter and its gradient.
OPTIMISER_STATES = {"adam": 2, "rmsprop": 1, "sgd": 0}


def conv_output_hw(kind: str, height: int, width: int) -> tuple[int, int]:
    """The (height, width) an encoder's convolutions leave of an image (below 1: too small for it)."""
    for _, kernel, stride in CONV_STACKS[kind]:
        height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    return height, width


def linear_parameters(in_dim: int, out_dim: int) -> int:
    return in_dim * out_dim + out_dim


def mlp_parameters(widths: list[int]) -> int:
    """Linear layers between consecutive widths (input, hidden..., output)."""
    return sum(linear_parameters(a, b) for a, b in itertools.pairwise(widths))


def encoder_parameters(encoder: str, spaces: Any) -> tuple[int, int]:
    """(parameters, output width) of what reads the observation: nothing for vectors, convolutions for images."""
    if not spaces.is_image:
        return 0, spaces.obs_dim
    kind = "nature_cnn" if encoder == "auto" else encoder
    if spaces.image_layout == "channels_last":
        height, width, channels = spaces.obs_shape
    else:
        channels, height, width = spaces.obs_shape
    count = 0
    for out, kernel, stride in CONV_STACKS[kind]:
        count += out * channels * kernel * kernel + out
        height, width, channels = (height - kernel) // stride + 1, (width - kernel) // stride + 1, out
    return count, channels * height * width


def q_parameters(cfg: Any, spaces: Any) -> int:
    """One seed's Q network (online or target): its encoder and head, as training/build.py builds them."""
    hidden = list(cfg.hidden_sizes)
    if cfg.q_head == "table":
        return linear_parameters(spaces.obs_dim, spaces.n_actions)
    encoder, features = encoder_parameters(cfg.encoder, spaces)
    if cfg.q_head == "discrete":
        return encoder + mlp_parameters([features, *hidden, spaces.n_actions])
    d = spaces.action_dim
    if cfg.q_head == "state_action":
        return encoder + mlp_parameters([features + d, *hidden, 1])
    if cfg.q_head == "naf":   # trunk to the last width, then the V, mu and L heads on it
        width = hidden[-1]
        heads = linear_parameters(width, 1) + linear_parameters(width, d) + linear_parameters(width, d * (d + 1) // 2)
        return encoder + mlp_parameters([features, *hidden]) + heads
    raise ValueError(f"unknown q head {cfg.q_head!r}")


def actor_parameters(cfg: Any, spaces: Any) -> int:
    """One seed's actor (the learned maximiser of DDPG; 0 for every other maximiser), with its own encoder."""
    if cfg.maximiser != "actor":
        return 0
    encoder, features = encoder_parameters(cfg.encoder, spaces)
    return encoder + mlp_parameters([features, *cfg.hidden_sizes, spaces.action_dim])


def network_bytes(cfg: Any, spaces: Any) -> tuple[int, int]:
    """(parameters, bytes) one seed's learning networks hold at least: each network with its gradient and its
    optimiser's state, and a target copy where one follows it."""
    states = OPTIMISER_STATES[cfg.optimizer] + (1 if cfg.optimizer == "rmsprop" and cfg.rmsprop_centered else 0)
    q = q_parameters(cfg, spaces)
    actor = actor_parameters(cfg, spaces)
    q_target = 0 if cfg.target_update == "none" else 1
    tensors = q * (2 + states + q_target) + actor * (2 + states + 1)
    return q + actor, FLOAT_BYTES * tensors


