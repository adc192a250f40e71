import numpy as np
import pytest

from qbench.parts.exploration import (
    EPSILON_FORMS,
    boltzmann_probs,
    epsilon_greedy_draw,
    epsilon_greedy_probs,
    inverse_cdf_draw,
    linear_schedule,
    sample_from_probs,
)


def test_non_greedy_epsilon_spreads_eps_over_the_non_greedy_actions():
    p = epsilon_greedy_probs(np.array([1.0, 3.0, 2.0, 0.0]), 0.3, "non_greedy")
    assert p.tolist() == pytest.approx([0.1, 0.7, 0.1, 0.1])
    assert epsilon_greedy_probs(np.array([5.0]), 0.5, "non_greedy").tolist() == [1.0]


def test_uniform_epsilon_takes_a_uniform_action_with_probability_eps():
    """SB3's / the zoo's / Sutton and Barto's epsilon: with probability eps a uniform action, the greedy one
    included: greedy 1 - eps + eps/|A|, each other eps/|A|."""
    p = epsilon_greedy_probs(np.array([1.0, 3.0, 2.0, 0.0]), 0.4, "uniform")
    assert p.tolist() == pytest.approx([0.1, 0.7, 0.1, 0.1])
    assert epsilon_greedy_probs(np.array([0.0, 1.0]), 0.04, "uniform").tolist() == pytest.approx([0.02, 0.98])
    assert epsilon_greedy_probs(np.array([0.0, 1.0, 0.5]), 1.0, "uniform").tolist() == pytest.approx([1 / 3] * 3)
    assert epsilon_greedy_probs(np.array([5.0]), 0.5, "uniform").tolist() == [1.0]


# (Q, uniform eps, the uniform form's probabilities computed by hand: (1 - eps) / |T| + eps / m on each of the |T|
# tied greedy actions, eps / m on the other available ones, 0 on an unavailable one (Q = -inf))
HAND = [
    ([0.0, 1.0], 0.1, [0.05, 0.95]),                                       # |A| = 2
    ([2.0, 1.0, 0.0], 0.3, [0.8, 0.1, 0.1]),                               # |A| = 3
    ([0.0, 0.0, 3.0, 1.0, 2.0, -1.0], 0.6, [0.1, 0.1, 0.5, 0.1, 0.1, 0.1]),  # |A| = 6
    ([1.0, 1.0, 0.0], 0.3, [0.45, 0.45, 0.1]),                             # a tie of 2 among 3
    ([4.0, 4.0, 4.0, 0.0, 1.0, 2.0], 0.6, [0.23333333333333334] * 3 + [0.1] * 3),   # a tie of 3 among 6
    ([1.0, -np.inf, 0.0], 0.5, [0.75, 0.0, 0.25]),                         # 2 of 3 available
    ([-np.inf, 2.0, 2.0, -np.inf, 1.0, -np.inf], 0.3, [0.0, 0.45, 0.45, 0.0, 0.1, 0.0]),  # tie, 3 of 6 available
    ([0.0, 0.0], 0.0, [0.5, 0.5]),                                         # eps 0: ties still shared
]


@pytest.mark.parametrize("q, eps, expected", HAND)
def test_both_forms_give_the_hand_computed_policy_at_equivalent_epsilons(q, eps, expected):
    """uniform eps and non_greedy eps (m - 1)/m (m: the available actions) are the same policy, ties and
    unavailable actions included."""
    q = np.array(q)
    m = int(np.isfinite(q).sum())
    assert epsilon_greedy_probs(q, eps, "uniform").tolist() == pytest.approx(expected, abs=1e-12)
    assert epsilon_greedy_probs(q, eps * (m - 1) / m, "non_greedy").tolist() == pytest.approx(expected, abs=1e-12)


def test_the_two_forms_differ_at_the_same_number():
    """The zoo's CartPole eps_end 0.04 read in the non-greedy form explores twice as much as the zoo does."""
    q = np.array([0.0, 1.0])
    assert epsilon_greedy_probs(q, 0.04, "uniform")[0] == pytest.approx(0.02)
    assert epsilon_greedy_probs(q, 0.04, "non_greedy")[0] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="uniform, non_greedy"):
        epsilon_greedy_probs(q, 0.1, "lecture")


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


@pytest.mark.parametrize("form", EPSILON_FORMS)
def test_epsilon_greedy_draw_gives_the_numpy_inverse_cdf_numbers_exactly(form):
    """The Python-float fast path of acting must draw the very actions, with the very probabilities, that
    epsilon_greedy_probs followed by the inverse CDF gives (the published runs were drawn that way)."""
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(3000):
        k, n = int(rng.integers(1, 9)), int(rng.choice([2, 3, 6, 18]))
        q = rng.normal(size=(k, n)).astype(np.float32) * float(rng.choice([1e-3, 1.0, 1e3]))
        eps = float(rng.choice([0.0, 0.01, 0.04, 1 / 3, 0.5, 0.9, 1.0, rng.random()]))
        uniforms = [float(u) for u in rng.random(k)]
        if rng.random() < 0.2:   # edge uniforms: right at a cdf step
            uniforms[0] = float(np.cumsum(epsilon_greedy_probs(q, eps, form)[0])[0])
        fast = epsilon_greedy_draw(q, eps, uniforms, form)
        assert fast is not None
        reference = inverse_cdf_draw(epsilon_greedy_probs(q, eps, form), np.array(uniforms))
        assert np.array_equal(fast[0], reference[0]) and fast[0].dtype == reference[0].dtype
        assert np.array_equal(fast[1], reference[1]) and fast[1].dtype == reference[1].dtype
        checked += 1
    assert checked == 3000


def test_epsilon_greedy_draw_leaves_ties_and_unavailable_actions_to_the_general_path():
    assert epsilon_greedy_draw(np.array([[1.0, 1.0, 0.0]]), 0.1, [0.5], "uniform") is None
    assert epsilon_greedy_draw(np.array([[0.0, 2.0], [1.0, -np.inf]]), 0.1, [0.5, 0.5], "uniform") is None
    assert epsilon_greedy_draw(np.array([[np.nan, 2.0]]), 0.1, [0.5], "uniform") is None
    # one greedy action: u below 1 - eps picks it on two actions with the greedy one first
    actions, probs = epsilon_greedy_draw(np.array([[3.0, 1.0]]), 0.2, [0.79], "non_greedy")
    assert actions.tolist() == [0] and probs.tolist() == [0.8]
    actions, probs = epsilon_greedy_draw(np.array([[3.0, 1.0]]), 0.2, [0.81], "non_greedy")
    assert actions.tolist() == [1] and abs(probs[0] - 0.2) < 1e-15
    # the uniform form: greedy 1 - eps/2 = 0.9 on two actions
    actions, probs = epsilon_greedy_draw(np.array([[3.0, 1.0]]), 0.2, [0.89], "uniform")
    assert actions.tolist() == [0] and probs.tolist() == [0.9]
    actions, probs = epsilon_greedy_draw(np.array([[3.0, 1.0]]), 0.2, [0.91], "uniform")
    assert actions.tolist() == [1] and abs(probs[0] - 0.1) < 1e-15
