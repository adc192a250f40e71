import numpy as np
import pytest

from qbench.parts.exploration import boltzmann_probs, epsilon_greedy_probs, linear_schedule, sample_from_probs


def test_epsilon_greedy_spreads_eps_over_the_non_greedy_actions():
    p = epsilon_greedy_probs(np.array([1.0, 3.0, 2.0, 0.0]), 0.3)
    assert p.tolist() == pytest.approx([0.1, 0.7, 0.1, 0.1])
    assert epsilon_greedy_probs(np.array([5.0]), 0.5).tolist() == [1.0]


def test_boltzmann_by_hand():
    q = np.array([0.0, np.log(2.0), np.log(5.0)])
    assert boltzmann_probs(q, 1.0).tolist() == pytest.approx([1 / 8, 2 / 8, 5 / 8])
    # temperature 2 takes square roots of the weights
    w = np.array([1.0, np.sqrt(2.0), np.sqrt(5.0)])
    assert boltzmann_probs(q, 2.0).tolist() == pytest.approx((w / w.sum()).tolist())
    assert boltzmann_probs(np.array([1000.0, 0.0]), 0.01).tolist() == pytest.approx([1.0, 0.0])


def test_sampling_follows_the_probabilities():
    rng = np.random.default_rng(0)
    probs = np.array([0.1, 0.7, 0.2])
    counts = np.bincount([sample_from_probs(probs, rng) for _ in range(20_000)], minlength=3) / 20_000
    assert counts == pytest.approx(probs, abs=0.015)


def test_linear_schedule():
    assert linear_schedule(1.0, 0.1, 0.5, 0.0) == 1.0
    assert linear_schedule(1.0, 0.1, 0.5, 0.25) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 0.5, 0.9) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 0.0, 0.0) == 0.1
