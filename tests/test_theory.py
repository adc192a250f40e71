import importlib

import gymnasium as gym
import numpy as np
import pytest

from qbench.envs import toy
from qbench.envs.toy import MaximisationBiasEnv
from qbench.theory.counterexamples import (
    baird_expected_td,
    baird_features,
    baird_growth_factor,
    contraction_curves,
    contraction_table,
    divergence_curves,
    tvr_fitted_value_iteration,
    tvr_growth_factor,
    tvr_tabular_value_iteration,
)
from qbench.theory.mdp import (
    bellman_optimality,
    greedy_policy,
    known_mdp,
    policy_value,
    q_distance,
    q_iteration,
)

# Two-state chain at gamma = 0.9, solved by hand (dynamics in TwoStateChainEnv's docstring):
#   Q(0,0) = 0.9 V1                 (move to 1, reward 0)
#   Q(0,1) = 2 + 0.9 * 0.5 V0       (expected reward 0.5*1 + 0.5*3; continue in 0 w.p. 1/2)
#   Q(1,0) = 5                      (reward 5, episode ends)
#   Q(1,1) = 1 + 0.9 (0.8 V0 + 0.2 V1)
# Guess the shuttle policy (0 -> action 0, 1 -> action 1): V0 = 0.9 V1, so
#   V1 = 1 + 0.9 (0.72 V1 + 0.2 V1) = 1 + 0.828 V1  =>  V1 = 1 / 0.172 = 250/43, V0 = 225/43.
# Check the guess is greedy: Q(1,0) = 5 < 250/43 = 5.81; Q(0,1) = 2 + 0.45 * 225/43 = 749/172 = 4.35 < 225/43 = 5.23.
CHAIN_Q_STAR = np.array([[225 / 43, 749 / 172], [5.0, 250 / 43]])


def chain():
    return known_mdp(gym.make("qbench/TwoStateChain-v0"))


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "CliffWalking-v1", "Taxi-v4", "qbench/TwoStateChain-v0"])
@pytest.mark.parametrize("gamma", [0.9, 0.99])
def test_q_iteration_error_contracts_by_gamma_per_sweep(env_id, gamma):
    mdp = known_mdp(gym.make(env_id))
    run = q_iteration(mdp, gamma)
    # The final iterate is a fixed point of T to rounding, so Q* really is what errors are measured against.
    assert np.max(np.abs(bellman_optimality(mdp, run.q_star, gamma) - run.q_star)[mdp.valid]) < 1e-10
    measured = run.ratios[run.max_errors[:-1] > 1e-10]
    assert measured.size >= 10
    assert measured.max() <= gamma + 1e-9
    # The first sweep's error is ||Q*||_inf, since Q_0 = 0.
    assert run.max_errors[0] == pytest.approx(np.abs(run.q_star[mdp.valid]).max(), rel=1e-12)


def test_q_star_of_the_chain_is_the_hand_solution():
    run = q_iteration(chain(), 0.9)
    np.testing.assert_allclose(run.q_star, CHAIN_Q_STAR, rtol=1e-10)
    assert greedy_policy(run.q_star).tolist() == [0, 1]


def test_q_star_of_maximisation_bias_undiscounted():
    mdp = known_mdp(gym.make("qbench/MaximisationBias-v0"))
    q = q_iteration(mdp, 1.0).q_star
    # Left: 0 now, then any B action is worth its mean -0.1 and ends; right: 0 and ends.
    assert q[0, 0] == pytest.approx(-0.1, abs=1e-15) and q[0, 1] == 0.0
    assert np.all(np.isneginf(q[0, 2:]))
    np.testing.assert_allclose(q[1], -0.1, atol=1e-15)
    assert mdp.observable.tolist() == [True, True]


def test_frozen_lake_holes_and_goal_are_not_observable():
    mdp = known_mdp(gym.make("FrozenLake-v1"))
    assert np.flatnonzero(~mdp.observable).tolist() == [5, 7, 11, 12, 15]   # the 4x4 map's H and G cells
    assert mdp.observable[0] and mdp.initial[0] == 1.0
    # Transitions into holes and the goal end the episode, so those rows of continuation lose that mass.
    assert mdp.continuation[14, 2].sum() == pytest.approx(2 / 3)
    assert mdp.reward[14, 2] == pytest.approx(1 / 3)


def test_known_mdp_needs_p_and_the_start_distribution():
    assert known_mdp(gym.make("CartPole-v1")) is None


def test_policy_value_matches_hand_values_on_the_chain():
    mdp = chain()
    cash_in = np.array([1, 0])   # gamble in 0; cash 5 in 1
    # gamma 0.9: V1 = 5; V0 = 2 + 0.45 V0 => V0 = 2 / 0.55 = 40/11.
    np.testing.assert_allclose(policy_value(mdp, cash_in, 0.9), [40 / 11, 5.0], rtol=1e-12)
    # gamma 1 (iterative path): V0 = 2 + 0.5 V0 => V0 = 4.
    np.testing.assert_allclose(policy_value(mdp, cash_in, 1.0), [4.0, 5.0], rtol=1e-10)
    np.testing.assert_allclose(policy_value(mdp, [0, 1], 0.9), [225 / 43, 250 / 43], rtol=1e-12)


def test_undiscounted_policy_value_of_looping_policies():
    mdp = known_mdp(gym.make("FrozenLake-v1", is_slippery=False))
    # Always left: state 0 bumps the wall for ever with reward 0 (value 0 exactly, no iteration cap hit);
    # always right from 0 walks 0 -> 1 -> 2 -> 3 and bumps the wall at 3: also 0.
    assert policy_value(mdp, np.zeros(16, int), 1.0)[0] == 0.0
    # Down, down, right, down, right, right along the map's safe path reaches the goal: value 1 from start.
    path = np.zeros(16, int)
    path[[0, 4, 9, 13, 14]] = [1, 1, 1, 2, 2]
    path[8] = 2
    v = policy_value(mdp, path, 1.0)
    assert v[0] == 1.0 and v[14] == 1.0
    # The chain's shuttle never ends: a cycle is 1 step in state 0 (reward 0) and on average 1/0.8 = 1.25
    # steps in state 1 (reward 1 each), so it earns 1.25 / 2.25 = 5/9 per step; max_sweeps caps the return.
    shuttle = policy_value(chain(), np.array([0, 1]), 1.0, max_sweeps=1000)
    assert shuttle[0] == pytest.approx(1000 * 5 / 9, rel=0.01)


def test_q_distance_on_constructed_tables():
    mdp, gamma = chain(), 0.9
    q_star = q_iteration(mdp, gamma).q_star
    raised = q_star.copy()
    raised[1, 1] += 0.3          # keeps the greedy policy optimal
    lowered = q_star.copy()
    lowered[0, 0] -= 1.0         # 4.23 < Q(0,1) = 4.35: greedy now gambles in state 0, worth 40/11
    out = q_distance(mdp, q_star, np.stack([raised, lowered]), gamma)
    np.testing.assert_allclose(out["q_error_max"], [0.3, 1.0], rtol=1e-12)
    np.testing.assert_allclose(out["q_error_mean"], [0.15, 0.5], rtol=1e-12)
    np.testing.assert_allclose(out["greedy_value"], [225 / 43, 40 / 11], rtol=1e-10)
    np.testing.assert_allclose(out["optimal_value"], [225 / 43, 225 / 43], rtol=1e-10)
    single = q_distance(mdp, q_star, raised, gamma)
    assert single["q_error_max"].shape == () and single["greedy_value"] == pytest.approx(single["optimal_value"])


def test_q_distance_ignores_invalid_actions_and_unobservable_states():
    mdp = known_mdp(gym.make("FrozenLake-v1"))
    q_star = q_iteration(mdp, 0.9).q_star
    q = q_star.copy()
    q[5] += 100.0                # a hole: never a current state
    q[0, 1] += 0.25
    out = q_distance(mdp, q_star, q, 0.9)
    assert out["q_error_max"] == pytest.approx(0.25)
    assert out["q_error_mean"] == pytest.approx(0.25 / 11)   # 11 observable states
    # Maximisation bias: a huge value at an unavailable action of A must not be chosen.
    bias = known_mdp(gym.make("qbench/MaximisationBias-v0"))
    bias_star = q_iteration(bias, 1.0).q_star
    wild = np.where(bias.valid, bias_star, 50.0)
    out = q_distance(bias, bias_star, wild, 1.0)
    assert out["q_error_max"] == 0.0 and out["greedy_value"] == 0.0 and out["optimal_value"] == 0.0


@pytest.mark.parametrize("gamma", [0.9, 0.8])
def test_tvr_fitted_iteration_follows_six_gamma_over_five(gamma):
    w = tvr_fitted_value_iteration(gamma, 1.5, 50)
    np.testing.assert_allclose(w, 1.5 * (6 * gamma / 5) ** np.arange(51), rtol=1e-10)
    assert tvr_growth_factor(gamma) == pytest.approx(6 * gamma / 5)


def test_tvr_tabular_iteration_converges():
    v = tvr_tabular_value_iteration(0.9, [1.0, 1.0], 200)
    assert np.abs(v[-1]).max() < 1e-3
    np.testing.assert_allclose(v[1:, 1], 0.9 ** np.arange(1, 201), rtol=1e-12)


def test_baird_features_are_the_books():
    phi = baird_features()
    assert phi[0].tolist() == [2, 0, 0, 0, 0, 0, 0, 1]
    assert phi[6].tolist() == [0, 0, 0, 0, 0, 0, 1, 2]


def test_baird_off_policy_diverges_at_its_spectral_radius():
    w = baird_expected_td(0.99, 0.01, 1000)
    norms = np.linalg.norm(w, axis=1)
    assert norms[-1] > 10 * norms[0]
    rho = baird_growth_factor(0.99, 0.01)
    assert rho == pytest.approx(1.0023925046, rel=1e-9)
    assert abs(norms[-1] / norms[-2] - rho) / rho < 1e-3


def test_baird_on_policy_converges_to_the_hand_fixed_point():
    # With all weight on state 6 the update is w -= alpha (1 - gamma) v6 phi6, so only w6, w7 move, along
    # phi6 = (.., 1, 2), and v6 shrinks by 1 - alpha (1 - gamma) |phi6|^2 = 0.9995 per iteration; the
    # other seven directions are untouched (eigenvalue 1), so the spectral radius is 1 and the upper
    # states keep whatever values they reach: w + c phi6 with v6 = 12 + 5c = 0 gives c = -2.4, so
    # w7 = -3.8 and every upper state ends at 2 - 3.8 = -1.8, not 0.
    assert baird_growth_factor(weighting="on_policy") == pytest.approx(1.0, abs=1e-12)
    w = baird_expected_td(iterations=20_000, weighting="on_policy")
    v = baird_features() @ w[-1]
    assert abs(v[6]) < 1e-3          # 12 * 0.9995^20000 = 5.4e-4
    np.testing.assert_allclose(v[:6], -1.8, atol=1e-3)
    np.testing.assert_allclose(w[-1, 6:], [7.6, -3.8], atol=1e-3)


def test_baird_tabular_converges():
    # Tabular, the lower state's value shrinks by 1 - alpha (1 - gamma) / 7 per iteration and the upper
    # ones relax towards gamma v6 at rate 1 - alpha / 7. At alpha 0.01 that needs ~5e5 iterations to
    # reach 1e-2, so the convergence run uses alpha 0.7 (rates 0.999 and 0.9): 10 * 0.999^10000 = 4.5e-4.
    assert baird_growth_factor(features="tabular") == pytest.approx(1 - 0.01 * 0.01 / 7, rel=1e-12)
    w = baird_expected_td(alpha=0.7, iterations=10_000, features="tabular")
    assert w[0].tolist() == [1, 1, 1, 1, 1, 1, 10]
    assert np.linalg.norm(w[-1]) < 1e-2


def test_divergence_curves_match_their_closed_forms():
    df = divergence_curves(iterations=4000)
    assert list(df.columns) == ["example", "method", "iteration", "weight_norm", "analytical_norm"]
    tvr = df[df.method == "fitted_gamma_0.9"]
    np.testing.assert_allclose(tvr.weight_norm, 1.08 ** tvr.iteration.to_numpy(), rtol=1e-10)
    baird = df[df.method == "off_policy_uniform"].iloc[-1]
    # The next mode (eigenvalue 1.000222) dies relative to the top one as exp(-0.00217 k).
    assert baird.weight_norm == pytest.approx(baird.analytical_norm, rel=1e-3)
    assert df[df.method.isin(["on_policy", "tabular", "tabular_gamma_0.9"])].analytical_norm.isna().all()


def test_contraction_table_and_curves():
    mdps = {"chain": (chain(), 0.9), "taxi": (known_mdp(gym.make("Taxi-v4")), 0.99)}
    table = contraction_table(mdps).set_index("task")
    assert (table.max_ratio <= table.bound + 1e-9).all()
    assert table.loc["chain", "first_error"] == pytest.approx(250 / 43)   # ||Q*||_inf from Q_0 = 0
    assert table.loc["taxi", ["states", "actions"]].tolist() == [500, 6]
    curves = contraction_curves(mdps)
    assert len(curves[curves.task == "chain"]) == table.loc["chain", "sweeps"] + 1
    assert curves[curves.sweep == 0].ratio.isna().all() and curves[curves.sweep > 0].ratio.notna().any()


def test_maximisation_bias_rewards_are_seeded_normal_draws():
    env = MaximisationBiasEnv()
    env.reset(seed=3)
    draws = []
    for i in range(20_000):
        env.reset()
        env.step(0)
        draws.append(env.step(i % 10)[1])
    assert abs(np.mean(draws) + 0.1) < 4 * np.std(draws) / np.sqrt(len(draws))


def test_maximisation_bias_left_flag_and_invalid_actions():
    env = gym.make("qbench/MaximisationBias-v0")
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(50):
        env.reset()
        first = int(rng.integers(2))
        _, _, terminated, _, info = env.step(first)
        if not terminated:
            _, _, terminated, _, info = env.step(int(rng.integers(10)))
        assert terminated and info["left"] == int(first == 0)
    env.reset()
    with pytest.raises(ValueError, match="action 5 is not available in state A"):
        env.step(5)


def test_maximisation_bias_same_seed_same_rewards():
    def rewards(seed):
        env = MaximisationBiasEnv()
        out = []
        for episode in range(20):
            env.reset(seed=seed if episode == 0 else None)
            env.step(0)
            out.append(env.step(3)[1])
        return out

    assert rewards(7) == rewards(7)
    assert rewards(7) != rewards(8)


def test_registration_survives_reimport():
    importlib.reload(toy)
    assert gym.make("qbench/TwoStateChain-v0").unwrapped.P[1][0] == [(1.0, 1, 5.0, True)]


def test_policy_iteration_lands_on_value_iteration_s_q_star_on_frozenlake():
    import gymnasium as gym

    from qbench.theory.mdp import known_mdp, policy_iteration, q_iteration

    mdp = known_mdp(gym.make("FrozenLake-v1"))
    for gamma in (0.9, 0.99):
        howard = policy_iteration(mdp, gamma)
        np.testing.assert_allclose(howard.q_star, q_iteration(mdp, gamma).q_star, atol=1e-9)
        assert len(howard.changed[-1]) == 0 and all(len(c) > 0 for c in howard.changed[:-1])
        assert howard.improvements > 1      # from "left everywhere" it has to improve
        # an optimal policy is stable at once: one improvement step, which changes nothing
        again = policy_iteration(mdp, gamma, policy=howard.policy)
        assert again.improvements == 1 and len(again.changed[0]) == 0


def test_policy_iteration_on_the_chain_improves_exactly_where_hand_computed():
    """TwoStateChain at gamma 0.9, starting from action 0 in both states: V = (0.9 * 5, 5) = (4.5, 5); in state 0
    action 1 is worth 0.5 (1 + 0.9 * 4.5) + 0.5 * 3 = 2.525 + 1.5 = 4.025 < 4.5, in state 1 action 1 is worth 1 + 0.9 (0.8 * 4.5
    + 0.2 * 5) = 5.14 > 5: the first improvement changes state 1 only."""
    import gymnasium as gym

    import qbench.envs.toy  # noqa: F401
    from qbench.theory.mdp import known_mdp, policy_iteration, policy_q

    mdp = known_mdp(gym.make("qbench/TwoStateChain-v0"))
    q = policy_q(mdp, np.array([0, 0]), 0.9)
    np.testing.assert_allclose(q, [[4.5, 4.025], [5.0, 5.14]], rtol=1e-12)
    howard = policy_iteration(mdp, 0.9)
    assert howard.changed[0].tolist() == [1]
