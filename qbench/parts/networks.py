"""Function approximators with a seed axis: K independent networks stored as stacked parameters.

Every tensor that flows through a network has the seed axis first: observations (K, B, obs_dim), Q values (K, B) or
(K, B, n_actions), actions (K, B, d). A layer's weight is (K, in, out) and its bias (K, 1, out), so one batched
matmul (`baddbmm`) computes all K seeds at once, while no seed's output or gradient depends on another seed's
parameters: the K matrices of a batched matmul are separate products. A single run is K = 1 of the same code.

Seed k's parameters are drawn from its own generator, in the order torch.nn.Linear would draw them (weight with
kaiming_uniform(a=sqrt(5)) on an (out, in) tensor, then bias), layer by layer in construction order, so that seed
k's initial network does not depend on the other seeds of its batch.
"""

from __future__ import annotations

import itertools
import math
import warnings

import torch
from torch import nn

from qbench.parts.sizes import CONV_STACKS


class BatchedLinear(nn.Module):
    """K linear layers: weight (K, in, out), bias (K, 1, out)."""

    def __init__(self, generators: list[torch.Generator], in_dim: int, out_dim: int):
        super().__init__()
        weights, biases = [], []
        for g in generators:
            w = torch.empty(out_dim, in_dim)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
            bound = 1 / math.sqrt(in_dim) if in_dim > 0 else 0.0
            b = torch.empty(out_dim).uniform_(-bound, bound, generator=g)
            weights.append(w.t())
            biases.append(b[None, :])
        # (K, in, out): the weight's gradient then comes out of the batched product in the arena's own layout, so
        # accumulating it is a contiguous add (an (out, in) layout measured 10-15% slower per update at K = 8).
        self.weight = nn.Parameter(torch.stack(weights).contiguous())
        self.bias = nn.Parameter(torch.stack(biases))      # (K, 1, out)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, ..., in) -> (K, ..., out)."""
        lead = x.shape[:-1]
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        if self.out_dim == 1:
            # For K = 1 torch computes a one-column product as a matrix-vector product, whose rounding differs from
            # the batched one: a multiply and a sum give every seed the same numbers alone or in a batch.
            y = (x * self.weight.transpose(1, 2)).sum(dim=-1, keepdim=True) + self.bias
        else:
            y = torch.baddbmm(self.bias, x, self.weight)
        return y.view(*lead, y.shape[-1])


class BatchedConv2d(nn.Module):
    """K conv layers: weight (K, out, in, kh, kw), bias (K, out). Each seed's convolution is its own call: its
    numbers are then exactly those of the seed alone whatever the batch (a grouped convolution over K*C channels
    computes the same thing but is free to block and round differently), and at image sizes one call per seed
    costs little next to the convolution itself."""

    def __init__(self, generators: list[torch.Generator], in_channels: int, out_channels: int, kernel: int,
                 stride: int):
        super().__init__()
        weights, biases = [], []
        fan_in = in_channels * kernel * kernel
        for g in generators:   # torch.nn.Conv2d's initialisation, from seed k's generator
            w = torch.empty(out_channels, in_channels, kernel, kernel)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
            bound = 1 / math.sqrt(fan_in)
            weights.append(w)
            biases.append(torch.empty(out_channels).uniform_(-bound, bound, generator=g))
        self.weight = nn.Parameter(torch.stack(weights))
        self.bias = nn.Parameter(torch.stack(biases))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, N, C, H, W) -> (K, N, out, H', W')."""
        return torch.stack([torch.nn.functional.conv2d(x[k], self.weight[k], self.bias[k], self.stride)
                            for k in range(x.shape[0])])

    def out_size(self, size: int) -> int:
        return (size - self.weight.shape[-1]) // self.stride + 1


class ImageEncoder(nn.Module):
    """Convolutions over image observations, then flattened: (K, B, *obs_shape) uint8 -> (K, B, features) float.
    The observation stays uint8 until here (a quarter of the memory and bandwidth in replay), and is scaled and
    put channels first here."""

    def __init__(self, generators: list[torch.Generator], kind: str, obs_shape: tuple[int, ...], layout: str,
                 pixel_scale: float):
        super().__init__()
        if layout == "channels_last":
            h, w, c = obs_shape
        else:
            c, h, w = obs_shape
        self.layout, self.pixel_scale = layout, pixel_scale
        self.convs = nn.ModuleList()
        for out, kernel, stride in CONV_STACKS[kind]:
            conv = BatchedConv2d(generators, c, out, kernel, stride)
            h, w, c = conv.out_size(h), conv.out_size(w), out
            if h < 1 or w < 1:
                raise ValueError(f"observations of shape {obs_shape} are too small for the {kind} encoder")
            self.convs.append(conv)
        self.out_dim = c * h * w

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        k, n = obs.shape[0], obs.shape[1]
        x = obs.reshape(k * n, *obs.shape[2:])
        if self.layout == "channels_last":
            x = x.permute(0, 3, 1, 2)
        x = (x.float() * self.pixel_scale).reshape(k, n, *x.shape[1:])
        for conv in self.convs:
            x = torch.relu_(conv.forward(x))
        return x.reshape(k, n, -1)


class Flat(nn.Module):
    """The encoder of vector observations: none (they reach the MLP as they are)."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.out_dim = obs_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs


def build_encoder(generators: list[torch.Generator], kind: str, spaces) -> nn.Module:
    """The encoder a head reads its observations through: `kind` is the encoder setting (auto: nature_cnn for
    images, none for vectors). Its parameters are drawn before the head's, from the same generators."""
    if not spaces.is_image:
        if kind not in ("auto", "none"):
            raise ValueError(f"encoder '{kind}' reads images and this task's observations are vectors")
        return Flat(spaces.obs_dim)
    if kind == "none":
        raise ValueError("image observations need an image encoder (encoder auto, nature_cnn or minatar_cnn)")
    return ImageEncoder(generators, "nature_cnn" if kind == "auto" else kind, spaces.obs_shape,
                        spaces.image_layout, spaces.pixel_scale)


# The layers whose parameters live in an arena.
SEED_LAYERS = (BatchedLinear, BatchedConv2d)

# A layer parameter that is a view of its network's arena is not dense on its own; autograd says so once and still
# accumulates into the arena's gradient in place, as intended.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")

# Elementwise kernels (fused Adam, lerp) vectorise over a flat tensor and treat a tail shorter than the vector width
# differently; a seed's parameters padded to this many floats sit in the same lanes whatever the batch size, so a
# seed trained beside others gets the very numbers it gets alone.
ARENA_ALIGN = 64


def flatten_parameters(module: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """Lay every BatchedLinear parameter of `module` out in one (K, P) tensor, the arena (each seed's row padded to
    a multiple of ARENA_ALIGN), and their gradients in a second one. The layers' parameters stay leaves of their
    own, but their storage and their .grad are views of the two arenas, so that autograd accumulates into the grad
    arena in place and the optimiser, per-seed norms, clipping and target updates each act on one tensor (one
    kernel instead of one per layer). Gradients must then be zeroed in place (zero_grad(set_to_none=False)),
    never set to None."""
    layers = [m for m in module.modules() if isinstance(m, SEED_LAYERS)]
    k_seeds = layers[0].weight.shape[0]
    offset = 0
    for layer in layers:
        layer.arena_offsets = (offset, offset + layer.weight[0].numel())
        offset += layer.weight[0].numel() + layer.bias[0].numel()
    arena = torch.zeros(k_seeds, -(-offset // ARENA_ALIGN) * ARENA_ALIGN)   # filled on the CPU, then moved:
    # a seed's initial parameters are the same numbers on every device
    for layer in layers:
        for name, start in zip(("weight", "bias"), layer.arena_offsets, strict=True):
            old = getattr(layer, name)
            arena[:, start:start + old[0].numel()] = old.detach().reshape(k_seeds, -1)
    module.arena = nn.Parameter(arena.to(device), requires_grad=False)   # what the optimiser steps
    for buffer_name, buf in list(module.named_buffers()):
        owner = module.get_submodule(buffer_name.rpartition(".")[0]) if "." in buffer_name else module
        setattr(owner, buffer_name.rpartition(".")[2], buf.to(device))
    return bind_to_arena(module)


def bind_to_arena(module: nn.Module) -> nn.Module:
    """Make every layer parameter a view of module.arena again, and its .grad a view of module.arena.grad (a copy
    of a module, e.g. a target network, holds clones that no longer share the arena's storage)."""
    arena = module.arena
    arena.grad = torch.zeros_like(arena)
    for layer in (m for m in module.modules() if isinstance(m, SEED_LAYERS)):
        for name, start in zip(("weight", "bias"), layer.arena_offsets, strict=True):
            old = getattr(layer, name)
            n = old[0].numel()
            param = nn.Parameter(arena.data[:, start:start + n].view(old.shape), requires_grad=old.requires_grad)
            param.grad = arena.grad[:, start:start + n].view(old.shape)
            setattr(layer, name, param)
    return module


def layer_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters autograd differentiates (the arena's views), without the arena itself."""
    return [p for name, p in module.named_parameters() if name != "arena"]


class MLP(nn.Module):
    """Batched linear layers with ReLU between them. The forward pass calls each layer's forward directly: module
    calls (hooks, dispatch) cost more than the small products themselves in an RL inner loop."""

    def __init__(self, generators: list[torch.Generator], in_dim: int, hidden_sizes: list[int], out_dim: int,
                 relu_last: bool = False):
        super().__init__()
        widths = [in_dim, *hidden_sizes, out_dim]
        self.layers = nn.ModuleList(BatchedLinear(generators, a, b) for a, b in itertools.pairwise(widths))
        self.relu_last = relu_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer.forward(x)
            if i < last or self.relu_last:
                # In place: a layer's output is not needed by its own backward (only its inputs are), and a
                # fresh activation tensor per layer is an allocation, a page-fault risk and cache traffic.
                x = torch.relu_(x)
        return x


def mlp(generators: list[torch.Generator], in_dim: int, hidden_sizes: list[int], out_dim: int) -> MLP:
    return MLP(generators, in_dim, hidden_sizes, out_dim)


def _encoder_or_flat(encoder: nn.Module | None, obs_dim: int) -> nn.Module:
    return Flat(obs_dim) if encoder is None else encoder


def mask_unavailable(q: torch.Tensor, obs: torch.Tensor, valid_actions: torch.Tensor | None) -> torch.Tensor:
    """Q of actions the state does not offer set to -inf, so that no max, argmax or behaviour policy picks them.
    valid_actions: (S, A) float 0/1 for one-hot states (an env's `valid_actions`), None when every action is
    always available."""
    if valid_actions is None:
        return q
    return q.masked_fill(obs @ valid_actions < 0.5, float("-inf"))


class DiscreteQ(nn.Module):
    """Q(s, .) for a finite action set: one output per action."""

    def __init__(self, generators: list[torch.Generator], obs_dim: int, n_actions: int, hidden_sizes: list[int],
                 encoder: nn.Module | None = None, valid_actions=None):
        super().__init__()
        self.n_actions = n_actions
        self.encoder = _encoder_or_flat(encoder, obs_dim)
        self.net = mlp(generators, self.encoder.out_dim, hidden_sizes, n_actions)
        register_valid_actions(self, valid_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.all_actions(obs)

    def all_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """Q(s, a) for every action: shape (K, B, n_actions); -inf where the state does not offer the action."""
        return mask_unavailable(self.net.forward(self.encoder.forward(obs)), obs, self.valid_actions)

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, a) for the given actions (K, B): shape (K, B)."""
        return self.all_actions(obs).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


class TableQ(nn.Module):
    """A table Q(s, a) for one-hot states, zero at the start: a linear layer without bias (its bias stays zero and
    out of the product, so one state's entries never move another's). With SGD on 0.5 (y - Q)^2 at batch one,
    a step of size lr is Q(s, a) += lr (y - Q(s, a)): the tabular update."""

    def __init__(self, generators: list[torch.Generator], n_states: int, n_actions: int, valid_actions=None):
        super().__init__()
        self.n_actions = n_actions
        self.table = BatchedLinear(generators, n_states, n_actions)
        with torch.no_grad():
            self.table.weight.zero_()
            self.table.bias.zero_()
        register_valid_actions(self, valid_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.all_actions(obs)

    def all_actions(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-1]
        q = torch.bmm(obs.reshape(obs.shape[0], -1, obs.shape[-1]), self.table.weight).view(*lead, self.n_actions)
        return mask_unavailable(q, obs, self.valid_actions)

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.all_actions(obs).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def register_valid_actions(module: nn.Module, valid_actions) -> None:
    """The env's (S, A) table of offered actions as a buffer that moves with the module. It is no part of its
    state dict: it has no seed axis (per-seed checkpoints slice every state tensor by seed), and it is rebuilt
    from the env whenever a network is."""
    table = None if valid_actions is None else torch.as_tensor(valid_actions, dtype=torch.float32)
    module.register_buffer("valid_actions", table, persistent=False)


class StateActionQ(nn.Module):
    """Q(s, a) with the (normalised) action as an input: one scalar per (state, action) pair. The observation is
    encoded first (features), so that a sampling maximiser encodes each state once for all its candidates."""

    def __init__(self, generators: list[torch.Generator], obs_dim: int, action_dim: int, hidden_sizes: list[int],
                 encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = _encoder_or_flat(encoder, obs_dim)
        self.net = mlp(generators, self.encoder.out_dim + action_dim, hidden_sizes, 1)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward(obs)

    def q_features(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net.forward(torch.cat([features, actions], dim=-1)).squeeze(-1)

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.q_features(self.encoder.forward(obs), actions)


class NAFQ(nn.Module):
    """Normalised advantage functions (Gu et al., 2016): Q(s, a) = V(s) - 1/2 (a - mu(s))^T P(s) (a - mu(s)).

    P = L L^T with L lower-triangular and a positive (exponentiated) diagonal, so P is positive definite and the
    advantage is a concave quadratic whose maximum, 0, lies at mu(s): argmax and max come in closed form.
    """

    def __init__(self, generators: list[torch.Generator], obs_dim: int, action_dim: int, hidden_sizes: list[int],
                 encoder: nn.Module | None = None):
        super().__init__()
        self.action_dim = action_dim
        self.encoder = _encoder_or_flat(encoder, obs_dim)
        width = hidden_sizes[-1]
        self.trunk = MLP(generators, self.encoder.out_dim, hidden_sizes[:-1], width, relu_last=True)
        self.value_head = BatchedLinear(generators, width, 1)
        self.mu_head = BatchedLinear(generators, width, action_dim)
        self.l_head = BatchedLinear(generators, width, action_dim * (action_dim + 1) // 2)
        self.register_buffer("tril_rows", torch.tril_indices(action_dim, action_dim)[0], persistent=False)
        self.register_buffer("tril_cols", torch.tril_indices(action_dim, action_dim)[1], persistent=False)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encoder.forward(obs)

    def terms_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.trunk.forward(features)
        value = self.value_head.forward(h).squeeze(-1)
        mu = torch.tanh(self.mu_head.forward(h))
        entries = self.l_head.forward(h)
        d = self.action_dim
        lower = torch.zeros(*features.shape[:-1], d, d, dtype=features.dtype, device=features.device)
        lower[..., self.tril_rows, self.tril_cols] = entries
        diag = torch.diagonal(lower, dim1=-2, dim2=-1)
        lower = lower - torch.diag_embed(diag) + torch.diag_embed(torch.exp(diag.clamp(max=10.0)))
        return value, mu, lower @ lower.transpose(-1, -2)

    def terms(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """V(s) (K, B), mu(s) (K, B, d) in [-1, 1], P(s) (K, B, d, d)."""
        return self.terms_features(self.encoder.forward(obs))

    def q_features(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        value, mu, p = self.terms_features(features)
        diff = (actions - mu).unsqueeze(-1)
        return value - 0.5 * (diff.transpose(-1, -2) @ p @ diff).squeeze(-1).squeeze(-1)

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.q_features(self.encoder.forward(obs), actions)

    def mu(self, obs: torch.Tensor) -> torch.Tensor:
        return self.terms(obs)[1]

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value_head.forward(self.trunk.forward(self.encoder.forward(obs))).squeeze(-1)


class Actor(nn.Module):
    """A deterministic policy mu_theta(s) in [-1, 1]^d (tanh), scaled to the env's bounds outside the network."""

    def __init__(self, generators: list[torch.Generator], obs_dim: int, action_dim: int, hidden_sizes: list[int],
                 encoder: nn.Module | None = None):
        super().__init__()
        self.encoder = _encoder_or_flat(encoder, obs_dim)
        self.net = mlp(generators, self.encoder.out_dim, hidden_sizes, action_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net.forward(self.encoder.forward(obs)))
