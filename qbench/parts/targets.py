"""Every value target, as torch functions of a replay window (qbench.replay.buffer.Window) and the networks, on the
learner's device: 1-step and n-step (the discounted window), cut (the online maximiser's greedy actions at the later
states shorten the window), and the trace corrections importance_sampling, retrace and tree_backup; bootstrapped by
max, double or policy; held constant (semi-gradient) or differentiated (target_gradient residual).

Small pure functions of tensors, testable with a dummy network; value_target puts them together for a run.

The window arithmetic is float64 with numpy's operation order, so that targets are the same floats as when it was
numpy (tests/reference_nstep.py keeps that numpy as an independent reference): elementwise IEEE operations are exact
in any library, but powers of gamma come from numpy (torch.pow may differ in the last bit) and sums over a window's
steps or a state's actions are added in numpy's order (ordered_sum); the results are cast to float32 where numpy's
were, before the float32 arithmetic of the loss.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from qbench.config import TRACE_CORRECTIONS, Config


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


# ---- float64 arithmetic in numpy's order

def ordered_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum over the last axis, added in the order of numpy's pairwise summation (what x.sum(axis=-1) does on a
    contiguous axis): sequentially from 0 below 8 entries; with 8 running partial sums, combined pairwise, up to 128;
    halves (cut at a multiple of 8) above. torch.sum may add in another order, which changes the last bits."""
    n = x.shape[-1]
    if n < 8:
        total = torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
        for i in range(n):
            total = total + x[..., i]
        return total
    if n > 128:
        half = n // 2
        half -= half % 8
        return ordered_sum(x[..., :half]) + ordered_sum(x[..., half:])
    partial = [x[..., j] for j in range(8)]
    whole = n - n % 8
    for i in range(8, whole, 8):
        partial = [p + x[..., i + j] for j, p in enumerate(partial)]
    total = ((partial[0] + partial[1]) + (partial[2] + partial[3])) + ((partial[4] + partial[5]) +
                                                                       (partial[6] + partial[7]))
    for i in range(whole, n):
        total = total + x[..., i]
    return total


@functools.lru_cache(maxsize=64)   # a few (gamma, n, device) per run; read only, so one tensor serves every step
def gamma_powers(gamma: float, count: int, device: torch.device | str) -> torch.Tensor:
    """(gamma^0, ..., gamma^(count-1)) in float64, computed by numpy (the powers the targets were always made of)."""
    return torch.as_tensor(gamma ** np.arange(count, dtype=np.float64)).to(device)


def cumulative_product(x: torch.Tensor) -> torch.Tensor:
    """The running product over the last axis, multiplied left to right (as numpy's cumprod)."""
    columns = [x[..., 0]]
    for i in range(1, x.shape[-1]):
        columns.append(columns[-1] * x[..., i])
    return torch.stack(columns, dim=-1)


def on_device(device: torch.device | str, *arrays) -> list[torch.Tensor]:
    """numpy arrays as tensors on the device (no copy on the CPU)."""
    return [torch.as_tensor(a).to(device) for a in arrays]


# ---- n-step windows

def cut_lengths(lengths: torch.Tensor, later_actions: torch.Tensor, greedy_actions: torch.Tensor) -> torch.Tensor:
    """Cut each window at the first later action that is not greedy under the current Q.

    later_actions, greedy_actions: (..., n - 1), the actions taken at steps t+1 .. t+n-1 of the window and the
    greedy actions in those states. The return from t may use reward t+k only if actions t+1 .. t+k were greedy,
    so the horizon is the first k >= 1 whose action differs, or the whole window. A cut never lengthens a window,
    so greedy actions past its end cannot matter.
    """
    later = later_actions.shape[-1]
    if later == 0:
        return lengths
    off_policy = later_actions != greedy_actions
    first_off = torch.where(off_policy.any(dim=-1), off_policy.to(torch.uint8).argmax(dim=-1) + 1, later + 1)
    return torch.minimum(lengths, first_off)


def discounted_window(rewards: torch.Tensor, terminated: torch.Tensor, lengths: torch.Tensor,
                      gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(reward_n, discount_n), float64, of windows (..., n) truncated to the given lengths (each >= 1).

    reward_n = sum_{i < L} gamma^i r_{t+i};  discount_n = gamma^L, or 0 if transition t+L-1 terminated.
    A truncated (time-limit) end keeps its discount: the state there still has a value.
    """
    n = rewards.shape[-1]
    inside = torch.arange(n, device=rewards.device) < lengths[..., None]
    # where, not a product: a NaN or inf reward after the window's end (the next episode) must not leak in.
    reward_n = ordered_sum(torch.where(inside, rewards * gamma_powers(gamma, n, rewards.device), 0.0))
    last_terminated = terminated.gather(-1, (lengths - 1)[..., None])[..., 0]
    discount_n = torch.where(last_terminated, 0.0, gamma_powers(gamma, n + 1, rewards.device)[lengths])
    return reward_n, discount_n


def window_return(window, gamma: float, device: torch.device | str,
                  lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(reward_n, discount_n) float32 on the device and the lengths L (numpy) of a window's n-step returns, its
    own lengths or shorter ones (a cut). The bootstrap state is window.next_obs(L - 1)."""
    if window.n == 1:   # the transition itself: r and gamma (0 after a termination), as the window arithmetic gives
        reward, terminated = on_device(device, window.rewards[..., 0], window.terminated[..., 0])
        discount = torch.tensor(gamma, dtype=torch.float32, device=device)
        return reward.float(), torch.where(terminated, 0.0, discount), window.lengths
    rewards, terminated, own = on_device(device, window.rewards, window.terminated, window.lengths)
    lengths = own if lengths is None else lengths
    reward_n, discount_n = discounted_window(rewards, terminated, lengths, gamma)
    return reward_n.float(), discount_n.float(), lengths.cpu().numpy()


# ---- trace corrections

# The trace corrections (qbench.config.TRACE_CORRECTIONS) share the general form of Munos et al. (2016, eq. 3): they
# differ only in c_k, a function of pi(a_k | s_k) and mu(a_k | s_k).

def trace_coefficients(kind: str, target_probs: torch.Tensor, behaviour_probs: torch.Tensor,
                       trace_lambda: float = 1.0, is_clip: float = 0.0) -> torch.Tensor:
    """c_k for the later actions of each window, from pi(a_k | s_k) and mu(a_k | s_k) (same shapes), float64.

    importance_sampling: rho_k = pi / mu, Precup et al. (2000)'s per-decision weight, truncated at is_clip when
                         is_clip > 0; unbiased for pi's n-step return, with a variance that grows with the product.
    retrace:             lambda min(1, rho_k), Munos et al. (2016): never above 1, so the product cannot blow up,
                         and no cut where mu and pi agree.
    tree_backup:         lambda pi(a_k | s_k), Precup et al. (2000): needs no mu at all, and cuts even on-policy
                         traces by pi's own randomness.
    """
    pi = target_probs.double()
    if kind == "tree_backup":
        return trace_lambda * pi
    rho = pi / behaviour_probs.double()   # mu = 0 only past a window's end (never sampled there): inf, masked later
    if kind == "retrace":
        return trace_lambda * torch.minimum(rho.new_ones(()), rho)
    if kind == "importance_sampling":
        return torch.minimum(rho, rho.new_tensor(is_clip)) if is_clip > 0 else rho
    raise ValueError(f"unknown trace correction {kind!r}; valid: importance_sampling, retrace, tree_backup")


def traced_window_target(rewards: torch.Tensor, terminated: torch.Tensor, lengths: torch.Tensor,
                         next_values: torch.Tensor, later_q_taken: torch.Tensor, later_traces: torch.Tensor,
                         gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, trace mass), float64, of windows under trace coefficients: the off-policy n-step target

        y = Q(s_0, a_0) + sum_{j < L} gamma^j C_j delta_j,   delta_j = r_j + gamma V(s_{j+1}) - Q(s_j, a_j),
        C_0 = 1,  C_j = c_1 ... c_j,

    written without Q(s_0, a_0), which cancels: y = sum_{j < L} gamma^j C_j (r_j + gamma V(s_{j+1}))
    - sum_{1 <= j < L} gamma^j C_j Q(s_j, a_j). V(s) = sum_a pi(a | s) Q(s, a), and V(s_{j+1}) = 0 after a
    termination; a window cut by a truncation bootstraps from its last next state like any other.

    rewards, terminated: (..., n); lengths: (...) L; next_values: (..., n) V(s_{j+1}); later_q_taken, later_traces:
    (..., n - 1) Q(s_j, a_j) and c_j for j = 1 .. n - 1. The trace mass sum_{j < L} C_j is how many steps the
    target effectively uses (L when every c is 1, 1 when the first later one is 0). Entries past a window's end
    may be anything, inf and NaN included: they are never multiplied, only masked.
    """
    n = rewards.shape[-1]
    inside = torch.arange(n, device=rewards.device) < lengths[..., None]
    traces = torch.ones_like(rewards)
    if n > 1:   # the products of c are taken only inside the window, which is a prefix of it
        traces = torch.cat([traces[..., :1], cumulative_product(torch.where(inside[..., 1:], later_traces, 1.0))],
                           dim=-1)
    powers = gamma_powers(gamma, n, rewards.device)
    bootstrap = torch.where(terminated, 0.0, gamma * torch.where(inside, next_values, 0.0))
    gain = ordered_sum(torch.where(inside, traces * powers * (rewards + bootstrap), 0.0))
    later_inside = inside[..., 1:]
    spent = ordered_sum(torch.where(later_inside, traces[..., 1:] * powers[1:] *
                                    torch.where(later_inside, later_q_taken, 0.0), 0.0))
    return gain - spent, ordered_sum(torch.where(inside, traces, 0.0))


def traced_target(kind: str, window, q: torch.Tensor, pi: torch.Tensor, gamma: float, trace_lambda: float = 1.0,
                  is_clip: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, trace mass), float64 (K, B), of a window under a trace correction, given Q (the bootstrapping
    net's) and pi at the next state of every step of the window, q and pi (K, B, n, A) on one device (an action
    with pi 0 may have Q -inf). Since s_j is the next state of step j - 1, they give V(s_{j+1}) for every j and
    Q(s_j, a_j), pi(a_j | s_j) for the later steps. The gradient flows through q, never through pi."""
    device = q.device
    rewards, terminated, lengths, later, mu = on_device(device, window.rewards, window.terminated, window.lengths,
                                                        window.later_actions, window.later_behaviour_prob)
    q, pi = q.double(), pi.double().detach()
    next_values = ordered_sum(torch.where(pi > 0, pi * torch.where(pi > 0, q, 0.0), 0.0))   # Q -inf where pi is 0
    later = later[..., None].long()
    later_q = q[..., :-1, :].gather(-1, later)[..., 0]
    later_pi = pi[..., :-1, :].gather(-1, later)[..., 0]
    traces = trace_coefficients(kind, later_pi, mu, trace_lambda, is_clip)
    return traced_window_target(rewards, terminated, lengths, next_values, later_q, traces, gamma)


def epsilon_greedy_policy(q: torch.Tensor, eps: float, form: str) -> torch.Tensor:
    """qbench.parts.exploration.epsilon_greedy_probs in torch float64, the same operations in the same order: the
    greedy action gets 1 minus the non-greedy mass, the other m - 1 available ones (Q > -inf) equal shares of it;
    tied greedy actions share the greedy mass evenly."""
    q = q.double()
    if q.shape[-1] == 1:
        return torch.ones_like(q)
    available = q > -torch.inf
    m = available.sum(dim=-1, keepdim=True).double()
    tied = (q == q.amax(dim=-1, keepdim=True)) & available
    share = tied.double() / tied.sum(dim=-1, keepdim=True).double()
    if form == "uniform":
        mass = eps * (m - 1) / torch.clamp(m, min=1.0)
    elif form == "non_greedy":
        mass = torch.minimum(m.new_tensor(eps), (m - 1) / torch.clamp(m, min=1.0))
    else:
        raise ValueError(f"unknown epsilon form {form!r}")
    others = torch.where(m > 1, mass / torch.clamp(m - 1, min=1.0), 0.0)
    return torch.where(available, (1.0 - mass) * share + others * (1.0 - share), 0.0)


def bootstrap_q_and_policy(cfg: Config, learner, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, pi) at states (K, N, *obs_shape), each (K, N, A): Q the target net's (what every target bootstraps
    from); pi is_target_eps-greedy w.r.t. the net that selects the bootstrap action: the target net for target max
    (so that with eps 0, E_pi Q' is max Q', DQN's bootstrap), the online net for double (E_pi Q' is Double DQN's).
    pi is piecewise constant in Q (an argmax): it carries no gradient."""
    q_target = learner.target.all_actions(states)
    with torch.no_grad():
        q_select = q_target if cfg.target == "max" else learner.online.all_actions(states)
        pi = epsilon_greedy_policy(q_select.detach(), cfg.is_target_eps, cfg.epsilon_form)
    return q_target, pi


# ---- a run's target

def value_target(cfg: Config, learner, window, n: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """(y (K, B) float32 on the learner's device, the steps each target used (K, B): L, or the trace mass under a
    trace correction) of a window, for the run's config. The target is held constant (no gradient: semi-gradient
    Q-learning) or, with target_gradient residual, differentiated through the target net (then the online net:
    residual runs have target_update none), the gradient of the squared Bellman error (Baird 1995)."""
    device = learner.device
    with torch.set_grad_enabled(cfg.target_gradient == "residual"):
        if cfg.nstep_correction in TRACE_CORRECTIONS:
            k, b, steps = window.slots.shape
            states = on_device(device, window.next_obs())[0].reshape(k, b * steps, *window.obs.shape[2:])
            q, pi = (t.reshape(k, b, steps, -1) for t in bootstrap_q_and_policy(cfg, learner, states))
            y, mass = traced_target(cfg.nstep_correction, window, q, pi, cfg.gamma, cfg.trace_lambda, cfg.is_clip)
            return y.float(), mass.detach().cpu().numpy()
        lengths = None
        if cfg.nstep_correction == "cut" and window.n > 1:
            lengths = cut_lengths(*on_device(device, window.lengths, window.later_actions),
                                  greedy_actions(learner, window, device))
        reward_n, discount_n, lengths = window_return(window, cfg.gamma, device, lengths)
        bootstrap_obs = on_device(device, window.next_obs(lengths - 1))[0]
        bootstrap = bootstrap_value(cfg.target, learner.target_maximiser, learner.online, learner.target,
                                    bootstrap_obs)
        return td_targets(reward_n, discount_n, bootstrap), lengths


def greedy_actions(learner, window, device: torch.device | str) -> torch.Tensor:
    """(K, B, n - 1) the online maximiser's greedy actions at the window's later states (evaluated as one batch of
    K x B(n - 1) states)."""
    k, b, steps = window.slots.shape
    states = on_device(device, window.later_obs())[0].reshape(k, b * (steps - 1), *window.obs.shape[2:])
    with torch.no_grad():
        return learner.act_maximiser.argmax(learner.online, states).reshape(k, b, steps - 1)
