import numpy as np
import pytest

from qbench.replay.buffer import ReplayBuffer
from qbench.replay.nstep import cut_trace_lengths, discounted_window, window_lengths

G = 0.9


def fill(buffer, steps):
    """steps: list of (reward, terminated, truncated, action); obs of step i is [i], next obs [i + 0.5]."""
    for i, (r, term, trunc, a) in enumerate(steps):
        buffer.add(np.array([i], np.float32), a, r, np.array([i + 0.5], np.float32), term, trunc)


def test_three_step_return_inside_an_episode():
    b = ReplayBuffer(100, (1,), (), np.int64, n_step=3, gamma=G)
    fill(b, [(1.0, False, False, 0), (2.0, False, False, 0), (3.0, False, False, 0), (4.0, False, False, 0)])
    batch = b.gather(np.array([0, 1]))
    assert batch.reward_n == pytest.approx([1 + G * 2 + G * G * 3, 2 + G * 3 + G * G * 4])
    assert batch.discount_n == pytest.approx([G ** 3, G ** 3])
    assert batch.bootstrap_obs[:, 0].tolist() == [2.5, 3.5]   # next obs of the window's last step
    assert batch.lengths.tolist() == [3, 3]


def test_termination_inside_the_window_stops_the_return_and_the_bootstrap():
    b = ReplayBuffer(100, (1,), (), np.int64, n_step=3, gamma=G)
    fill(b, [(1.0, False, False, 0), (2.0, True, False, 0), (5.0, False, False, 0), (6.0, False, False, 0)])
    batch = b.gather(np.array([0, 1, 2]))
    assert batch.reward_n == pytest.approx([1 + G * 2, 2.0, 5 + G * 6])
    assert batch.discount_n.tolist()[:2] == [0.0, 0.0]   # terminated: no bootstrap
    assert batch.lengths.tolist() == [2, 1, 2]            # the last window is short: only 2 newer transitions


def test_truncation_inside_the_window_stops_the_return_but_keeps_the_bootstrap():
    b = ReplayBuffer(100, (1,), (), np.int64, n_step=3, gamma=G)
    fill(b, [(1.0, False, False, 0), (2.0, False, True, 0), (5.0, False, False, 0), (6.0, False, False, 0)])
    batch = b.gather(np.array([0]))
    assert batch.reward_n == pytest.approx([1 + G * 2])
    assert batch.discount_n == pytest.approx([G ** 2])      # time limit: the state still has a value
    assert batch.bootstrap_obs[0, 0] == 1.5                  # the truncated episode's final obs, not a reset obs


def test_windows_wrap_around_the_ring_and_never_read_overwritten_data():
    b = ReplayBuffer(4, (1,), (), np.int64, n_step=3, gamma=G)
    fill(b, [(float(r), False, False, 0) for r in range(6)])   # slots now hold steps 4, 5, 2, 3
    batch = b.gather(np.array([3, 0, 1]))                      # step 3 wraps to 4, 5; step 4; step 5 is newest
    assert batch.lengths.tolist() == [3, 2, 1]
    assert batch.reward_n == pytest.approx([3 + G * 4 + G * G * 5, 4 + G * 5, 5.0])


def test_cut_trace_stops_at_the_first_non_greedy_later_action():
    lengths = np.array([4, 4, 4, 2])
    taken = np.array([[1, 1, 1], [0, 1, 1], [1, 1, 0], [0, 1, 1]])   # actions at t+1 .. t+3
    greedy = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]])
    # all greedy -> whole window; first later action off -> only r_t; third off -> r_t..r_t+2; already short -> 1
    assert cut_trace_lengths(lengths, taken, greedy).tolist() == [4, 1, 3, 1]


def test_cut_trace_in_the_buffer_uses_the_greedy_function():
    b = ReplayBuffer(100, (1,), (), np.int64, n_step=3, gamma=G)
    fill(b, [(1.0, False, False, 0), (2.0, False, False, 1), (3.0, False, False, 0), (4.0, False, False, 0)])

    def greedy_is_zero(obs):
        return np.zeros(len(obs), dtype=np.int64)
    batch = b.gather(np.array([0, 2]), greedy_fn=greedy_is_zero)
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
    reward_n, discount_n = discounted_window(rewards, terminated, lengths, 0.5)
    assert reward_n.tolist() == [1.75, 1.5, 1.0]
    assert discount_n.tolist() == [0.125, 0.0, 0.5]


def test_one_step_sampling_matches_stored_transitions():
    b = ReplayBuffer(10, (1,), (), np.int64, n_step=1, gamma=G)
    fill(b, [(float(i), i == 2, False, i % 2) for i in range(5)])
    batch = b.sample(32, np.random.default_rng(0))
    i = batch.obs[:, 0].astype(int)
    assert np.array_equal(batch.reward_n, i.astype(float))
    assert np.array_equal(batch.discount_n, np.where(i == 2, 0.0, G))
    assert np.array_equal(batch.actions, i % 2)
