"""N-step off-policy corrections: importance sampling, Retrace and Tree-backup against exact expectations on a small
MDP and hand-computed windows; the behaviour probabilities the buffer keeps; the settings' refusals."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from qbench.config import ConfigError
from qbench.engine import run_batch, td_step_loss
from qbench.jobs import build_job
from qbench.parts.exploration import epsilon_greedy_probs, linear_schedule
from qbench.parts.maximisers import ExactMaximiser
from qbench.parts.targets import trace_coefficients
from qbench.replay.buffer import ReplayBuffer
from qbench.store import RunDir
from tests.reference_nstep import returns_of, traced_of
from tests.test_checkpoint import Interrupt, interrupt_after_checkpoint
from tests.test_seed_axis import kill_and_resume

GAMMA = 0.9


def _tables(q: np.ndarray, pi: np.ndarray):
    """An evaluate() (for traced_of, in place of the networks) for states stored as their index (obs shape (1,)): Q and pi looked up per state."""
    def evaluate(states: np.ndarray):
        s = states[..., 0].astype(int)
        return q[s], pi[s]
    return evaluate


# ---- a small MDP with a terminal state, a fixed behaviour mu and a fixed target policy pi

N_STATES, N_ACTIONS, TERMINAL = 4, 3, 3          # states 0..2 live, 3 terminal (absorbing, value 0)


def _mdp():
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(N_STATES), size=(N_STATES, N_ACTIONS))       # P[s, a, s']
    p[:, :, TERMINAL] *= 0.3
    p /= p.sum(axis=2, keepdims=True)
    reward = rng.normal(size=(N_STATES, N_ACTIONS)) * 2.0                  # deterministic r(s, a)
    reward[:, 2] += 3.0                                                     # pi prefers action 2, mu does not
    q = rng.normal(size=(N_STATES, N_ACTIONS))
    q[TERMINAL] = 0.0
    pi = np.array([[0.1, 0.1, 0.8], [0.2, 0.1, 0.7], [0.05, 0.15, 0.8], [1 / 3, 1 / 3, 1 / 3]])
    mu = np.array([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [0.6, 0.2, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    return p, reward, q, pi, mu


def _n_step_pi_value(p, reward, q, pi, n: int) -> np.ndarray:
    """(T^pi)^n Q, computed exactly: T^pi Q(s, a) = r(s, a) + gamma sum_s' P(s'|s, a) sum_a' pi(a'|s') Q(s', a'),
    with the terminal state's value 0."""
    live = np.arange(N_STATES) != TERMINAL
    for _ in range(n):
        v = np.where(live, (pi * q).sum(axis=1), 0.0)
        q = reward + GAMMA * p @ v
    return q


def _sampled_windows(p, reward, mu, start: tuple[int, int], n: int, windows: int, seed: int) -> ReplayBuffer:
    """A buffer of `windows` episodes that start at (s, a) = start, act by mu, and are truncated after n steps
    unless they terminate first: window i starts at slot i * n."""
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(1, windows * n, (1,), (), np.int64, n_step=n, gamma=GAMMA)
    for _ in range(windows):
        s, a = start
        for step in range(n):
            s_next = rng.choice(N_STATES, p=p[s, a])
            terminated = s_next == TERMINAL
            buffer.add(np.array([[s]], np.float32), np.array([a]), np.array([reward[s, a]]),
                       np.array([[s_next]], np.float32), np.array([terminated]), np.array([step == n - 1]),
                       behaviour_prob=np.array([mu[s, a]]))
            if terminated:
                break
            s, a = s_next, rng.choice(N_ACTIONS, p=mu[s_next])
        while buffer.total_added % n:   # pad to the next window start with a finished one-step episode
            buffer.add(np.array([[0]], np.float32), np.array([0]), np.array([0.0]), np.array([[TERMINAL]], np.float32),
                       np.array([True]), np.array([False]), behaviour_prob=np.array([1.0]))
    return buffer


@pytest.mark.parametrize("n", [2, 3])
def test_importance_sampling_is_unbiased_for_the_target_policys_n_step_value_and_ignoring_is_not(n):
    p, reward, q, pi, mu = _mdp()
    start, windows = (0, 1), 40_000
    buffer = _sampled_windows(p, reward, mu, start, n, windows, seed=n)
    idx = np.arange(windows)[None, :] * n
    exact = _n_step_pi_value(p, reward, q, pi, n)[start]
    traced = traced_of(buffer.gather(idx), "importance_sampling", _tables(q, pi), GAMMA).target[0]
    se = traced.std() / np.sqrt(windows)
    assert abs(traced.mean() - exact) < 4 * se, (traced.mean(), exact, se)
    # the same windows uncorrected, bootstrapping from pi's value like the corrected target: mu's return, not pi's
    batch = returns_of(buffer.gather(idx), GAMMA)
    v = np.where(np.arange(N_STATES) != TERMINAL, (pi * q).sum(axis=1), 0.0)
    ignored = batch.reward_n[0] + batch.discount_n[0] * v[batch.bootstrap_obs[0, :, 0].astype(int)]
    assert abs(ignored.mean() - exact) > 10 * ignored.std() / np.sqrt(windows)


def _recursive_target(rewards, states, actions, last_next_state, terminated_last, c, q, pi):
    """An independent form of the traced target, from the window's end backwards: G_last = r + gamma V(s_L)
    (0 after a termination), G_j = r_j + gamma (V(s_j+1) + c_j+1 (G_j+1 - Q(s_j+1, a_j+1)))."""
    v = (pi * q).sum(axis=1)
    length = len(rewards)
    g = rewards[-1] + (0.0 if terminated_last else GAMMA * v[last_next_state])
    for j in range(length - 2, -1, -1):
        s1, a1 = states[j + 1], actions[j + 1]
        g = rewards[j] + GAMMA * (v[s1] + c[j + 1] * (g - q[s1, a1]))
    return g


def _hand_buffer():
    """Slots 0-3: one episode s0 a1 -> s1 a0 -> s2 a2 -> s1 a1 -> s2, not ended. Slots 4-5: s0 a0 -> s2 a1, which
    terminates. Slots 6-7: s1 a2 -> s0 a0 -> s2, truncated by the time limit. Slot 8: s2 a0 -> s0, the newest."""
    steps = [  # (s, a, r, s', terminated, truncated, mu)
        (0, 1, 1.0, 1, False, False, 0.5), (1, 0, 2.0, 2, False, False, 0.25), (2, 2, -1.0, 1, False, False, 0.5),
        (1, 1, 4.0, 2, False, False, 0.25),
        (0, 0, 0.5, 2, False, False, 0.25), (2, 1, 3.0, 0, True, False, 0.25),
        (1, 2, 1.5, 0, False, False, 0.5), (0, 0, -2.0, 2, False, True, 0.25),
        (2, 0, 1.0, 0, False, False, 0.25)]
    buffer = ReplayBuffer(1, 16, (1,), (), np.int64, n_step=3, gamma=GAMMA)
    for s, a, r, s1, term, trunc, m in steps:
        buffer.add(np.array([[s]], np.float32), np.array([a]), np.array([r]), np.array([[s1]], np.float32),
                   np.array([term]), np.array([trunc]), behaviour_prob=np.array([m]))
    q = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [2.0, 1.0, 1.5]])
    pi = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    return buffer, steps, q, pi


@pytest.mark.parametrize("kind", ["retrace", "tree_backup", "importance_sampling"])
def test_traced_targets_match_hand_computed_windows_cut_by_a_terminal_a_truncation_and_the_newest_data(kind):
    buffer, steps, q, pi = _hand_buffer()
    lam = 0.8 if kind != "importance_sampling" else 1.0
    # (window start, its slots): a full window, one cut by a termination, one cut by a truncation, the newest
    windows = {0: [0, 1, 2], 1: [1, 2, 3], 4: [4, 5], 5: [5], 6: [6, 7], 8: [8]}
    batch = traced_of(buffer.gather(np.array([list(windows)])), kind, _tables(q, pi), GAMMA, lam, 0.0)
    for column, (start, slots) in enumerate(windows.items()):
        s = [steps[i][0] for i in slots]
        a = [steps[i][1] for i in slots]
        pi_taken = np.array([pi[si, ai] for si, ai in zip(s, a, strict=True)])
        mu_taken = np.array([steps[i][6] for i in slots])
        c = {"retrace": lam * np.minimum(1.0, pi_taken / mu_taken), "tree_backup": lam * pi_taken,
             "importance_sampling": pi_taken / mu_taken}[kind]
        want = _recursive_target([steps[i][2] for i in slots], s, a, steps[slots[-1]][3], steps[slots[-1]][4], c, q,
                                 pi)
        assert batch.target[0, column] == pytest.approx(want, rel=1e-6), (kind, start)
        assert batch.lengths[0, column] == len(slots)
        assert batch.trace_mass[0, column] == pytest.approx(sum(np.prod(c[1:j + 1]) for j in range(len(slots))))


def test_one_retrace_window_by_hand():
    """Slots 0-2 under Retrace with lambda 1: V = pi . Q is (1.2, 0.3, 1.5) for states 0, 1, 2; the later actions
    are a0 in s1 (pi 0.6, mu 0.25: c = 1) and a2 in s2 (pi 0.8, mu 0.5: c = 1)."""
    buffer, _, q, pi = _hand_buffer()
    got = traced_of(buffer.gather(np.array([[0]])), "retrace", _tables(q, pi), GAMMA).target[0, 0]
    v0, v1, v2 = 1.2, 0.3, 1.5
    want = (1.0 + GAMMA * v1) + GAMMA * (2.0 + GAMMA * v2 - 0.5) + GAMMA ** 2 * (-1.0 + GAMMA * v1 - 1.5)
    assert want == pytest.approx(1.27 + 2.565 - 1.8063)
    assert got == pytest.approx(want, rel=1e-6)
    assert (pi * q).sum(axis=1) == pytest.approx([v0, v1, v2])


def test_with_a_greedy_target_and_an_on_policy_behaviour_every_correction_equals_ignoring():
    """Behaviour = pi = greedy (mu 1 for every action taken): every trace coefficient is 1 (lambda 1) and the
    traced target telescopes to sum gamma^j r_j + gamma^L max Q(s_L), the uncorrected one."""
    rng = np.random.default_rng(3)
    q = rng.normal(size=(5, 3))
    greedy = q.argmax(axis=1)
    pi = epsilon_greedy_probs(q, 0.0, "uniform")
    buffer = ReplayBuffer(1, 64, (1,), (), np.int64, n_step=4, gamma=GAMMA)
    s = 0
    for t in range(40):
        s_next = int(rng.integers(5))
        buffer.add(np.array([[s]], np.float32), np.array([greedy[s]]), np.array([rng.normal()]),
                   np.array([[s_next]], np.float32), np.array([t % 11 == 10]), np.array([t % 7 == 6]),
                   behaviour_prob=np.array([1.0]))
        s = int(rng.integers(5)) if t % 11 == 10 or t % 7 == 6 else s_next
    idx = np.arange(40)[None, :]
    plain = returns_of(buffer.gather(idx), GAMMA)
    ignored = plain.reward_n + plain.discount_n * q.max(axis=1)[plain.bootstrap_obs[..., 0].astype(int)]
    for kind in ("importance_sampling", "retrace", "tree_backup"):
        traced = traced_of(buffer.gather(idx), kind, _tables(q, pi), GAMMA)
        np.testing.assert_allclose(traced.target, ignored, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(traced.trace_mass, plain.lengths)


def test_trace_coefficients_by_hand():
    pi, mu = torch.tensor([0.9, 0.1, 0.5]), torch.tensor([0.45, 0.5, 0.5])
    np.testing.assert_allclose(trace_coefficients("importance_sampling", pi, mu), [2.0, 0.2, 1.0])
    np.testing.assert_allclose(trace_coefficients("importance_sampling", pi, mu, is_clip=1.5), [1.5, 0.2, 1.0])
    np.testing.assert_allclose(trace_coefficients("retrace", pi, mu, trace_lambda=0.5), [0.5, 0.1, 0.5])
    np.testing.assert_allclose(trace_coefficients("tree_backup", pi, mu, trace_lambda=0.5), [0.45, 0.05, 0.25])


@pytest.mark.parametrize("form", ["uniform", "non_greedy"])
def test_the_buffer_keeps_each_actions_behaviour_probability_through_a_checkpoint(tmp_path, form):
    """CartPole (2 actions): mu is 1/2 in warm-up, then the form's probability of the action taken, with eps the
    schedule's at that step (uniform: 1 - eps/2 greedy, eps/2 the other; non_greedy: 1 - eps or eps, eps capped
    at 1/2); the checkpoint's replay chunks hold it, and the killed batch resumes to the uninterrupted numbers
    (Retrace's targets depend on mu: a lost mu would show as different rows)."""
    settings = {"total_env_steps": 900, "eval_interval_env_steps": 450, "eval_episodes": 1, "warmup_env_steps": 100,
                "checkpoint_interval_env_steps": 290, "log_interval_env_steps": 150, "hidden_sizes": [16],
                "eps_decay_fraction": 0.5, "epsilon_form": form}
    jobs = [build_job("retrace_dqn", "CartPole-v1", s, settings) for s in (0, 3)]
    cut = [RunDir(tmp_path / "first" / str(job.seed)) for job in jobs]
    with pytest.raises(Interrupt):
        run_batch(jobs, cut, progress=interrupt_after_checkpoint(1))
    stored = np.concatenate([np.load(c)["behaviour_prob"]
                             for c in sorted((cut[0].path / "checkpoint-replay").glob("*.npz"))])
    assert len(stored) >= 290
    steps = np.arange(1, len(stored) + 1)
    cfg = jobs[0].config
    eps = np.array([linear_schedule(cfg.eps_start, cfg.eps_end, 0.5, (t - 1) / 900) for t in steps])
    eps = eps / 2 if form == "uniform" else np.minimum(eps, 0.5)   # the mass on the non-greedy action
    warm = steps <= 100
    np.testing.assert_array_equal(stored[warm], np.float32(0.5))
    later = stored[~warm].astype(np.float64)
    assert (np.isclose(later, 1 - eps[~warm], atol=1e-6) | np.isclose(later, eps[~warm], atol=1e-6)).all()
    assert (later > 0.5 + 1e-6).any() and (later < 0.5 - 1e-6).any()   # greedy and exploring actions both seen

    kill_and_resume(jobs, tmp_path / "again", 2)
    rows = pd.read_csv(tmp_path / "again" / "straight" / "0" / "diagnostics.csv")
    assert rows["trace_length"].between(1.0, 3.0).all()   # the n-step run logs how much of its 3 steps it used


@pytest.mark.parametrize("settings, message", [
    ({"nstep_correction": "retrace", "is_clip": 2.0}, ("setting 'is_clip' applies to nstep_correction "
                                                      "importance_sampling, not 'retrace'")),
    ({"nstep_correction": "cut", "trace_lambda": 0.5}, ("setting 'trace_lambda' applies to nstep_correction "
                                                        "retrace or tree_backup, not 'cut'")),
    ({"nstep_correction": "ignore", "is_target_eps": 0.1}, ("setting 'is_target_eps' applies to nstep_correction "
                                                            "importance_sampling or retrace or tree_backup")),
    ({"nstep_correction": "tree_backup", "n_step": 1}, "does nothing with n_step = 1"),
])
def test_settings_a_correction_would_ignore_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_job("nstep_dqn", "CartPole-v1", 0, settings)


def test_trace_corrections_refuse_box_actions():
    with pytest.raises(ConfigError, match="nstep_correction 'retrace' weighs each action by pi.a.s. / mu.a.s."):
        build_job("naf", "Pendulum-v1", 0, {"n_step": 3, "nstep_correction": "retrace"})


class LinearQ(torch.nn.Module):
    """Q(s, a) = s . W[:, a]: a gradient small enough to write down."""

    def __init__(self, w: np.ndarray):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w, dtype=torch.float32))

    def all_actions(self, obs: torch.Tensor) -> torch.Tensor:
        return obs @ self.w

    def q(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.all_actions(obs).gather(-1, actions.long()[..., None])[..., 0]


@pytest.mark.parametrize("gradient", ["residual", "semi"])
def test_residual_gradient_of_a_tree_backup_target_by_hand(gradient):
    """Residual gradients with a trace correction: the gradient flows through every Q of the traced target
    (V(s_j+1) = sum_a pi(a | s_j+1) Q(s_j+1, a) and Q(s_j, a_j)); pi and the trace coefficients are held constant,
    since an epsilon-greedy pi is piecewise constant in Q (its derivative is 0 wherever it exists), so this is the
    exact gradient of the squared traced Bellman error wherever it is differentiable. One 2-step window s0 a0 ->
    s1 a1 -> s2 under Tree-backup (c1 = lambda pi(a1 | s1)) on a linear Q:

        y = r0 + g V(s1) + g c1 (r1 + g V(s2) - Q(s1, a1)),
        dy/dW[:, a] = g pi(a | s1) s1 + g c1 (g pi(a | s2) s2 - [a = a1] s1),
        d/dW 0.5 (Q(s0, a0) - y)^2 = (Q(s0, a0) - y) (dQ(s0, a0)/dW - dy/dW)   (semi-gradient: without dy/dW)."""
    lam, eps = 0.8, 0.2
    cfg = build_job("residual_q" if gradient == "residual" else "online_q", "CartPole-v1", 0,
                    {"n_step": 2, "nstep_correction": "tree_backup", "trace_lambda": lam, "is_target_eps": eps,
                     "buffer_size": 8, "batch_size": 1}).config
    g = cfg.gamma
    w = np.array([[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]])
    net = LinearQ(w)
    learner = SimpleNamespace(online=net, target=net, device=torch.device("cpu"), act_maximiser=ExactMaximiser(),
                              target_maximiser=ExactMaximiser())
    s = np.array([[1.0, 0.0, 2.0], [0.5, -1.0, 1.0], [-1.0, 2.0, 0.5], [0.0, 0.0, 1.0]])
    a, r = [1, 0, 1], [1.0, -2.0, 0.5]
    buffer = ReplayBuffer(1, 8, (3,), (), np.int64, n_step=2, gamma=g)
    for i in range(3):
        buffer.add(s[None, i].astype(np.float32), np.array([a[i]]), np.array([r[i]]), s[None, i + 1].astype(np.float32),
                   np.array([False]), np.array([False]), behaviour_prob=np.array([0.5]))
    window = buffer.gather(np.array([[0]]))
    obs, actions = torch.as_tensor(window.obs), torch.as_tensor(window.actions)
    loss, q_pred, used = td_step_loss(cfg, learner, obs, actions, window)
    loss.sum().backward()

    q = s @ w
    pi = epsilon_greedy_probs(q, eps, cfg.epsilon_form)   # the target net is the online one (target_update none)
    v = (pi * q).sum(axis=1)
    c1 = lam * pi[1, a[1]]
    y = r[0] + g * v[1] + g * c1 * (r[1] + g * v[2] - q[1, a[1]])
    assert float(q_pred[0, 0].detach()) == pytest.approx(q[0, a[0]])
    assert float(loss[0].detach()) == pytest.approx(0.5 * (q[0, a[0]] - y) ** 2, rel=1e-5)
    assert used[0, 0] == pytest.approx(1 + c1)
    dq, dy = np.zeros_like(w), np.zeros_like(w)
    dq[:, a[0]] = s[0]
    for action in range(2):
        dy[:, action] = g * pi[1, action] * s[1] + g * c1 * (g * pi[2, action] * s[2] - (action == a[1]) * s[1])
    want = (q[0, a[0]] - y) * (dq - (dy if gradient == "residual" else 0.0))
    np.testing.assert_allclose(net.w.grad.numpy(), want, rtol=1e-5, atol=1e-6)
