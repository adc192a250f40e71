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


def test_epsilon_greedy_draw_gives_the_numpy_inverse_cdf_numbers_exactly():
    """The Python-float fast path of acting must draw the very actions, with the very probabilities, that
    epsilon_greedy_probs followed by the inverse CDF gives (the published runs were drawn that way)."""
    from qbench.parts.exploration import epsilon_greedy_draw, inverse_cdf_draw

    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(3000):
        k, n = int(rng.integers(1, 9)), int(rng.choice([2, 3, 6, 18]))
        q = rng.normal(size=(k, n)).astype(np.float32) * float(rng.choice([1e-3, 1.0, 1e3]))
        eps = float(rng.choice([0.0, 0.01, 0.04, 1 / 3, 0.5, 0.9, 1.0, rng.random()]))
        uniforms = [float(u) for u in rng.random(k)]
        if rng.random() < 0.2:   # edge uniforms: right at a cdf step
            uniforms[0] = float(np.cumsum(epsilon_greedy_probs(q, eps)[0])[0])
        fast = epsilon_greedy_draw(q, eps, uniforms)
        assert fast is not None
        reference = inverse_cdf_draw(epsilon_greedy_probs(q, eps), np.array(uniforms))
        assert np.array_equal(fast[0], reference[0]) and fast[0].dtype == reference[0].dtype
        assert np.array_equal(fast[1], reference[1]) and fast[1].dtype == reference[1].dtype
        checked += 1
    assert checked == 3000


def test_epsilon_greedy_draw_leaves_ties_and_unavailable_actions_to_the_general_path():
    from qbench.parts.exploration import epsilon_greedy_draw

    assert epsilon_greedy_draw(np.array([[1.0, 1.0, 0.0]]), 0.1, [0.5]) is None
    assert epsilon_greedy_draw(np.array([[0.0, 2.0], [1.0, -np.inf]]), 0.1, [0.5, 0.5]) is None
    assert epsilon_greedy_draw(np.array([[np.nan, 2.0]]), 0.1, [0.5]) is None
    # one greedy action: u below 1 - eps picks it on two actions with the greedy one first
    actions, probs = epsilon_greedy_draw(np.array([[3.0, 1.0]]), 0.2, [0.79])
    assert actions.tolist() == [0] and probs.tolist() == [0.8]
    actions, probs = epsilon_greedy_draw(np.array([[3.0, 1.0]]), 0.2, [0.81])
    assert actions.tolist() == [1] and abs(probs[0] - 0.2) < 1e-15
