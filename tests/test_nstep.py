from types import SimpleNamespace

import numpy as np
import pytest
import torch

from qbench.parts import targets
from qbench.parts.exploration import epsilon_greedy_probs
from qbench.replay.buffer import ReplayBuffer, window_lengths
from tests import reference_nstep as reference
from tests.reference_nstep import returns_of

G = 0.9


def buffer(capacity, n_step, seeds=1):
    return ReplayBuffer(seeds, capacity, (1,), (), np.int64, n_step=n_step, gamma=G)


def fill(buffer, steps):
    """steps: list of (reward, terminated, truncated, action), the same transition for every seed of the buffer;
    obs of step i is [i], next obs [i + 0.5]."""
    k = buffer.seeds
    for i, (r, term, trunc, a) in enumerate(steps):
        buffer.add(np.full((k, 1), i, np.float32), np.full(k, a), np.full(k, r), np.full((k, 1), i + 0.5, np.float32),
                   np.full(k, term), np.full(k, trunc))


def gather(buffer, idx, greedy_fn=None):
    """gather for a one-seed buffer: idx (B,) -> the batch of seed 0, fields (B, ...)."""
    batch = returns_of(buffer.gather(np.asarray(idx)[None, :]), buffer.gamma, greedy_fn)
    assert batch.reward_n.shape == batch.discount_n.shape == batch.lengths.shape == (1, len(idx))
    return type(batch)(**{key: field[0] for key, field in vars(batch).items()})


def test_three_step_return_inside_an_episode():
    b = buffer(100, 3)
    fill(b, [(1.0, False, False, 0), (2.0, False, False, 0), (3.0, False, False, 0), (4.0, False, False, 0)])
    batch = gather(b, [0, 1])
    assert batch.reward_n == pytest.approx([1 + G * 2 + G * G * 3, 2 + G * 3 + G * G * 4])
    assert batch.discount_n == pytest.approx([G ** 3, G ** 3])
    assert batch.bootstrap_obs[:, 0].tolist() == [2.5, 3.5]   # next obs of the window's last step
    assert batch.lengths.tolist() == [3, 3]


def test_termination_inside_the_window_stops_the_return_and_the_bootstrap():
    b = buffer(100, 3)
    fill(b, [(1.0, False, False, 0), (2.0, True, False, 0), (5.0, False, False, 0), (6.0, False, False, 0)])
    batch = gather(b, [0, 1, 2])
    assert batch.reward_n == pytest.approx([1 + G * 2, 2.0, 5 + G * 6])
    assert batch.discount_n.tolist()[:2] == [0.0, 0.0]   # terminated: no bootstrap
    assert batch.lengths.tolist() == [2, 1, 2]            # the last window is short: only 2 newer transitions


def test_truncation_inside_the_window_stops_the_return_but_keeps_the_bootstrap():
    b = buffer(100, 3)
    fill(b, [(1.0, False, False, 0), (2.0, False, True, 0), (5.0, False, False, 0), (6.0, False, False, 0)])
    batch = gather(b, [0])
    assert batch.reward_n == pytest.approx([1 + G * 2])
    assert batch.discount_n == pytest.approx([G ** 2])      # time limit: the state still has a value
    assert batch.bootstrap_obs[0, 0] == 1.5                  # the truncated episode's final obs, not a reset obs


def test_windows_wrap_around_the_ring_and_never_read_overwritten_data():
    b = buffer(4, 3)
    fill(b, [(float(r), False, False, 0) for r in range(6)])   # slots now hold steps 4, 5, 2, 3
    batch = gather(b, [3, 0, 1])                               # step 3 wraps to 4, 5; step 4; step 5 is newest
    assert batch.lengths.tolist() == [3, 2, 1]
    assert batch.reward_n == pytest.approx([3 + G * 4 + G * G * 5, 4 + G * 5, 5.0])


def test_cut_trace_stops_at_the_first_non_greedy_later_action():
    lengths = np.array([4, 4, 4, 2])
    taken = np.array([[1, 1, 1], [0, 1, 1], [1, 1, 0], [0, 1, 1]])   # actions at t+1 .. t+3
    greedy = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]])
    # all greedy -> whole window; first later action off -> only r_t; third off -> r_t..r_t+2; already short -> 1
    assert reference.cut_trace_lengths(lengths, taken, greedy).tolist() == [4, 1, 3, 1]
    got = targets.cut_lengths(*(torch.as_tensor(a) for a in (lengths, taken, greedy)))
    assert got.tolist() == [4, 1, 3, 1]


def test_cut_trace_in_the_buffer_uses_the_greedy_function():
    b = buffer(100, 3)
    fill(b, [(1.0, False, False, 0), (2.0, False, False, 1), (3.0, False, False, 0), (4.0, False, False, 0)])

    def greedy_is_zero(obs):
        assert obs.shape[0] == 1 and obs.shape[2:] == (1,)    # (K, N, obs_dim)
        return np.zeros(obs.shape[:2], dtype=np.int64)
    batch = gather(b, [0, 2], greedy_fn=greedy_is_zero)
    # window at 0: action at step 1 is 1, not greedy -> cut after r_0, bootstrap from s_1 with gamma^1
    assert batch.lengths.tolist() == [1, 2]
    assert batch.reward_n == pytest.approx([1.0, 3 + G * 4])
    assert batch.discount_n == pytest.approx([G, G ** 2])
    assert batch.bootstrap_obs[0, 0] == 0.5


def test_window_lengths_and_discounted_window_directly():
    ends = np.array([[False, False, False], [False, True, False], [True, False, False]])
    lengths = window_lengths(ends, np.array([3, 3, 3]))
    assert lengths.tolist() == [3, 2, 1]
    rewards = np.ones((3, 3))
    terminated = np.array([[False, False, False], [False, True, False], [False, False, False]])
    for reward_n, discount_n in (reference.discounted_window(rewards, terminated, lengths, 0.5),
                                 targets.discounted_window(*(torch.as_tensor(a) for a in (rewards, terminated, lengths)),
                                                           0.5)):
        assert reward_n.tolist() == [1.75, 1.5, 1.0]
        assert discount_n.tolist() == [0.125, 0.0, 0.5]


def test_one_step_sampling_matches_stored_transitions():
    b = buffer(10, 1)
    fill(b, [(float(i), i == 2, False, i % 2) for i in range(5)])
    batch = returns_of(b.sample(32, [np.random.default_rng(0)]), G)
    assert batch.obs.shape == (1, 32, 1) and batch.reward_n.shape == (1, 32)
    i = batch.obs[0, :, 0].astype(int)
    assert batch.reward_n.dtype == batch.discount_n.dtype == np.float32   # what the loss consumes, cast once here
    assert np.array_equal(batch.reward_n[0], i.astype(np.float32))
    assert np.array_equal(batch.discount_n[0], np.where(i == 2, 0.0, G).astype(np.float32))
    assert np.array_equal(batch.actions[0], i % 2)
    assert np.array_equal(batch.bootstrap_obs[0, :, 0], i + 0.5)
    assert batch.lengths.tolist() == [[1] * 32]


def test_one_step_fast_path_equals_the_general_window_code():
    # terminations, truncations and a wrapped ring (capacity 6, 9 transitions), two seeds with their own data
    b = buffer(6, 1, seeds=2)
    steps = [(1.0, False, False), (2.0, True, False), (3.0, False, False), (4.0, False, True), (5.0, False, False),
             (6.0, False, False), (7.0, True, False), (8.0, False, False), (9.0, False, True)]
    for i, (r, term, trunc) in enumerate(steps):
        b.add(np.array([[i], [10 * i]], np.float32), np.array([i % 2, (i + 1) % 2]), np.array([r, -3 * r]),
              np.array([[i + 0.5], [10 * i + 5]], np.float32), np.array([term, not term]), np.array([trunc, trunc]))
    idx = np.array([[0, 1, 2, 3, 4, 5, 5, 0], [5, 4, 3, 2, 1, 0, 2, 2]])
    batch = returns_of(b.gather(idx), G)
    for k in range(2):
        j = idx[k]
        available = (b.pos - 1 - j) % b.capacity + 1
        lengths = window_lengths(b.episode_end[k, j][:, None], available)
        reward_n, discount_n = reference.discounted_window(b.rewards[k, j][:, None], b.terminated[k, j][:, None], lengths, G)
        assert np.array_equal(batch.lengths[k], lengths)
        assert np.array_equal(batch.reward_n[k], reward_n.astype(np.float32))
        assert np.array_equal(batch.discount_n[k], discount_n.astype(np.float32))
        assert np.array_equal(batch.bootstrap_obs[k], b.next_obs[k, (j + lengths - 1) % b.capacity])
        assert np.array_equal(batch.obs[k], b.obs[k, j]) and np.array_equal(batch.actions[k], b.actions[k, j])
    assert discount_n.tolist().count(0.0) > 0   # the seeds' terminations reached the comparison


def test_each_seed_gets_the_n_step_returns_of_its_own_ring():
    b = buffer(100, 3, seeds=2)
    rewards = [(1.0, 10.0), (2.0, 20.0), (3.0, 30.0), (4.0, 40.0)]
    for i, (r0, r1) in enumerate(rewards):   # seed 1 terminates at step 1, seed 0 never
        b.add(np.array([[i], [i]], np.float32), np.zeros(2, np.int64), np.array([r0, r1]),
              np.array([[i + 0.5], [i + 0.5]], np.float32), np.array([False, i == 1]), np.array([False, False]))
    batch = returns_of(b.gather(np.array([[0, 1], [0, 1]])), G)
    assert batch.reward_n[0] == pytest.approx([1 + G * 2 + G * G * 3, 2 + G * 3 + G * G * 4])
    assert batch.reward_n[1] == pytest.approx([10 + G * 20, 20.0])
    assert batch.discount_n[0] == pytest.approx([G ** 3, G ** 3])
    assert batch.discount_n[1].tolist() == [0.0, 0.0]
    assert batch.lengths.tolist() == [[3, 3], [2, 1]]
    assert batch.bootstrap_obs[..., 0].tolist() == [[2.5, 3.5], [1.5, 1.5]]

    # each seed's trace is cut by its own greedy actions: seed 0's greedy action is 0 (all taken actions), seed 1's
    # is 1 (none of them)
    def greedy_is_seed_index(obs):
        return np.broadcast_to(np.arange(obs.shape[0])[:, None], obs.shape[:2])
    cut = returns_of(b.gather(np.array([[0, 2], [2, 2]])), G, greedy_is_seed_index)
    assert cut.lengths.tolist() == [[3, 2], [1, 1]]
    assert cut.reward_n[0] == pytest.approx([1 + G * 2 + G * G * 3, 3 + G * 4])
    assert cut.reward_n[1] == pytest.approx([30.0, 30.0])


def test_each_seed_samples_from_its_own_generator():
    b = buffer(50, 3, seeds=2)
    fill(b, [(float(i), False, False, 0) for i in range(20)])
    batch = returns_of(b.sample(16, [np.random.default_rng(1), np.random.default_rng(2)]), G)
    alone = returns_of(b.sample(16, [np.random.default_rng(7), np.random.default_rng(2)]), G)   # another generator for seed 0
    expected = [np.random.default_rng(s).integers(0, 20, size=16) for s in (1, 2)]
    assert batch.obs[..., 0].astype(int).tolist() == [e.tolist() for e in expected]
    assert np.array_equal(batch.reward_n[1], alone.reward_n[1])   # seed 1's batch does not depend on seed 0's


# ---- the torch module against the numpy reference, bit for bit, on random windows

def random_windows(rng, batch, n, actions):
    """Windows with terminations, truncations (lengths cut short without one) and lengths 1..n; past each window's
    end the rewards, Q values and behaviour probabilities are NaN, inf or 0, which must never leak in."""
    lengths = rng.integers(1, n + 1, size=batch)
    inside = np.arange(n)[None, :] < lengths[:, None]
    rewards = rng.normal(size=(batch, n)) * 10.0 ** rng.integers(-3, 4, size=(batch, n))
    rewards[~inside] = rng.choice([np.nan, np.inf, -np.inf, 1e300], size=int((~inside).sum()))
    terminated = np.zeros((batch, n), bool)
    ends = rng.random(batch) < 0.4   # the rest end by a truncation or run to the window's length
    terminated[np.arange(batch)[ends], lengths[ends] - 1] = True
    terminated[~inside] = rng.random(int((~inside).sum())) < 0.5
    q = rng.normal(size=(batch, n, actions))
    q[rng.random((batch, n, actions)) < 0.1] = -np.inf                       # unavailable actions
    q[:, :, 0] = np.where(np.isinf(q[:, :, 0]), 0.5, q[:, :, 0])             # one action always available
    tied = rng.random(batch) < 0.2
    q[tied] = np.round(q[tied])   # ties among the greedy actions
    later_actions = rng.integers(0, actions, size=(batch, n - 1))
    mu = rng.uniform(0.05, 1.0, size=(batch, n - 1)).astype(np.float32)
    mu[~inside[:, 1:]] = rng.choice([0.0, np.nan], size=int((~inside[:, 1:]).sum()))
    return lengths, rewards, terminated, q, later_actions, mu


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 10])
def test_discounted_window_equals_the_numpy_reference_bit_for_bit(n):
    rng = np.random.default_rng(n)
    for gamma in (0.99, 0.9, 0.5, 0.997):
        lengths, rewards, terminated, *_ = random_windows(rng, 500, n, 2)
        with np.errstate(invalid="ignore", over="ignore"):
            want = reference.discounted_window(rewards, terminated, lengths, gamma)
        got = targets.discounted_window(*(torch.as_tensor(a) for a in (rewards, terminated, lengths)), gamma)
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(g.numpy(), w)
            np.testing.assert_array_equal(g.float().numpy(), w.astype(np.float32))


@pytest.mark.parametrize("kind", ["importance_sampling", "retrace", "tree_backup"])
@pytest.mark.parametrize("n, actions", [(1, 2), (2, 2), (3, 6), (5, 18), (7, 9), (8, 4), (10, 18)])
def test_traced_target_equals_the_numpy_reference_bit_for_bit(kind, n, actions):
    rng = np.random.default_rng([n, actions])
    lengths, rewards, terminated, q, later_actions, mu = random_windows(rng, 400, n, actions)
    eps = float(rng.choice([0.0, 0.05, 0.3]))
    pi = epsilon_greedy_probs(q, eps, "uniform")
    lam, clip = (0.9, 0.0) if kind != "importance_sampling" else (1.0, float(rng.choice([0.0, 1.5])))
    later_q = np.take_along_axis(q[:, :-1], later_actions[..., None], axis=2)[..., 0]
    later_pi = np.take_along_axis(pi[:, :-1], later_actions[..., None], axis=2)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        traces = reference.trace_coefficients(kind, later_pi, mu, lam, clip)
        want_y, want_mass = reference.traced_window_target(rewards, terminated, lengths,
                                                           reference.next_values(q, pi), later_q, traces, 0.99)
    window = SimpleNamespace(rewards=rewards, terminated=terminated, lengths=lengths, later_actions=later_actions,
                             later_behaviour_prob=mu)
    got_pi = targets.epsilon_greedy_policy(torch.as_tensor(q), eps, "uniform")
    np.testing.assert_array_equal(got_pi.numpy(), pi)
    got_y, got_mass = targets.traced_target(kind, window, torch.as_tensor(q), got_pi, 0.99, lam, clip)
    np.testing.assert_array_equal(got_y.numpy(), want_y)
    np.testing.assert_array_equal(got_y.float().numpy(), want_y.astype(np.float32))
    np.testing.assert_array_equal(got_mass.numpy(), want_mass)


@pytest.mark.parametrize("form", ["uniform", "non_greedy"])
def test_epsilon_greedy_policy_equals_the_numpy_one_with_ties_and_unavailable_actions(form):
    rng = np.random.default_rng(5)
    q = np.round(rng.normal(size=(300, 7)), 1)   # rounded: many ties
    q[rng.random((300, 7)) < 0.2] = -np.inf
    q[:, 3] = np.where(np.isinf(q[:, 3]), 0.0, q[:, 3])
    for eps in (0.0, 0.1, 0.9, 1.0):
        np.testing.assert_array_equal(targets.epsilon_greedy_policy(torch.as_tensor(q), eps, form).numpy(),
                                      epsilon_greedy_probs(q, eps, form))


@pytest.mark.parametrize("n", [3, 8, 9, 16, 17, 130, 300])
def test_ordered_sum_adds_in_numpys_order(n):
    x = np.random.default_rng(n).normal(size=(200, n)) * 10.0 ** np.random.default_rng(n + 1).integers(-8, 8, (200, n))
    np.testing.assert_array_equal(targets.ordered_sum(torch.as_tensor(x)).numpy(), x.sum(axis=1))
