import numpy as np
import pytest
import torch

from qbench.config import VARIANTS, ConfigError, resolve
from qbench.engine import run_job, train
from qbench.envs.tasks import get_task, probe_spaces
from qbench.jobs import build_job
from qbench.parts.maximisers import ActorMaximiser, CEMMaximiser, NAFMaximiser, RandomSamplingMaximiser
from qbench.parts.networks import NAFQ, Actor, StateActionQ, flatten_parameters
from qbench.store import RunDir

TINY = {"total_env_steps": 300, "warmup_env_steps": 100, "batch_size": 32, "hidden_sizes": [32, 32],
        "eval_interval_env_steps": 300, "eval_episodes": 1, "buffer_size": 10_000}


class ConcaveQ:
    """Q(s, a) = -|a - a*(s)|^2 with a known maximiser a*(s) = 0.8 * sin(obs) inside the box; max Q = 0.

    States (K, B, obs_dim), actions (K, B, d) -> (K, B); calls counts the (state, action) pairs evaluated."""

    def __init__(self, d):
        self.d = d
        self.calls = 0

    def best_action(self, obs):
        return 0.8 * torch.sin(obs[..., : self.d])

    def q(self, obs, actions):
        self.calls += actions.shape[:-1].numel()
        return -((actions - self.best_action(obs)) ** 2).sum(-1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_sampling_and_cem_find_the_maximum_of_a_concave_function():
    obs = torch.randn(1, 200, 1, generator=gen(1))
    q = ConcaveQ(1)
    a = RandomSamplingMaximiser(1000, 1, [gen()]).argmax(q, obs)
    assert a.shape == (1, 200, 1)
    assert (a - q.best_action(obs)).abs().max() < 0.01          # 1000 draws in [-1, 1]: gaps well under 0.01
    err = (CEMMaximiser(4, 64, 6, 1, [gen()]).argmax(q, obs) - q.best_action(obs)).abs()
    # CEM's refit can collapse early on a few states: typical error is tiny, the worst case is bounded
    assert err.median() < 1e-3 and err.max() < 0.05
    action, value = CEMMaximiser(4, 64, 6, 1, [gen()]).best(q, obs)
    assert value.shape == (1, 200)
    torch.testing.assert_close(value, q.q(obs, action))             # max is Q at the action it found
    assert value.max() <= 0 and value.min() > -0.05 ** 2


def test_cem_beats_random_sampling_at_the_same_number_of_q_evaluations():
    d = 4
    obs = torch.randn(1, 300, d, generator=gen(2))
    q_random, q_cem = ConcaveQ(d), ConcaveQ(d)
    cem = CEMMaximiser(iterations=4, population=64, elites=6, action_dim=d, generators=[gen()])
    rnd = RandomSamplingMaximiser(n_samples=4 * 64, action_dim=d, generators=[gen()])
    err_cem = (cem.argmax(q_cem, obs) - q_cem.best_action(obs)).norm(dim=-1).mean()
    err_rnd = (rnd.argmax(q_random, obs) - q_random.best_action(obs)).norm(dim=-1).mean()
    assert q_cem.calls == q_random.calls == 300 * 256
    assert err_cem < 0.5 * err_rnd, (err_cem, err_rnd)


def test_sampled_actions_stay_in_the_box():
    obs = torch.randn(1, 50, 3, generator=gen(3)) * 10
    q = ConcaveQ(3)
    for m in (RandomSamplingMaximiser(100, 3, [gen()]), CEMMaximiser(3, 32, 4, 3, [gen()])):
        a = m.argmax(q, obs)
        assert a.abs().max() <= 1.0


@pytest.mark.parametrize("make", [lambda gens: RandomSamplingMaximiser(200, 2, gens),
                                  lambda gens: CEMMaximiser(3, 32, 4, 2, gens)], ids=["random", "cem"])
def test_each_seed_of_a_sampling_maximiser_draws_from_its_own_generator(make):
    obs = torch.randn(2, 40, 2, generator=gen(4))    # two seeds, each with its own states
    action, value = make([gen(10), gen(11)]).best(ConcaveQ(2), obs)
    assert action.shape == (2, 40, 2) and value.shape == (2, 40)
    for k, seed in enumerate((10, 11)):   # seed k alone, with only its own generator, gets the very same answer
        alone_action, alone_value = make([gen(seed)]).best(ConcaveQ(2), obs[k:k + 1])
        torch.testing.assert_close(action[k:k + 1], alone_action, rtol=0, atol=0)
        torch.testing.assert_close(value[k:k + 1], alone_value, rtol=0, atol=0)
    # seeds with the same states but different generators draw different candidates
    same = obs[:1].expand(2, -1, -1)
    action, _ = make([gen(10), gen(11)]).best(ConcaveQ(2), same)
    assert not torch.equal(action[0], action[1])


@pytest.mark.parametrize("head", ["state_action", "naf"])
def test_candidates_evaluated_in_pieces_give_the_whole_batchs_q_bit_for_bit(head, monkeypatch):
    """q_of_candidates splits a target's 256 x 100 candidates into cache-sized pieces: every Q must be the number
    one call over all of them gives (so that the piece size is a speed knob, never a change of results)."""
    from qbench.parts import maximisers

    gens = [gen(20), gen(21)]
    net = (StateActionQ(gens, 3, 2, [64, 64]) if head == "state_action" else NAFQ(gens, 3, 2, [64, 64]))
    net = flatten_parameters(net)
    obs = torch.randn(2, 256, 3, generator=gen(5))
    candidates = torch.rand(2, 256, 100, 2, generator=gen(6)) * 2 - 1
    with torch.no_grad():
        monkeypatch.setattr(maximisers, "CANDIDATE_ROWS", 10**9)
        whole = maximisers.q_of_candidates(net, obs, candidates)
        for rows in (maximisers.CANDIDATE_ROWS, 2048, 700, 100, 1):
            monkeypatch.setattr(maximisers, "CANDIDATE_ROWS", rows)
            pieces = maximisers.q_of_candidates(net, obs, candidates)
            assert pieces.shape == (2, 256, 100) and torch.equal(pieces, whole), rows
    # (the smallest piece is one state's 100 candidates: a single row would be a matrix-vector product, which
    # torch rounds differently)


def test_naf_q_at_mu_is_v_and_below_v_elsewhere_with_p_positive_definite():
    naf = NAFQ([gen(0)], obs_dim=5, action_dim=3, hidden_sizes=[32, 32])
    obs = torch.randn(1, 64, 5, generator=gen(5))
    value, mu, p = naf.terms(obs)
    assert value.shape == (1, 64) and mu.shape == (1, 64, 3) and p.shape == (1, 64, 3, 3)
    torch.testing.assert_close(naf.q(obs, mu), value)
    assert torch.linalg.eigvalsh(p).min() > 0
    for i in range(5):
        other = torch.rand(1, 64, 3, generator=gen(100 + i)) * 2 - 1
        assert torch.all(naf.q(obs, other) <= value + 1e-6)
    m = NAFMaximiser()
    torch.testing.assert_close(m.argmax(naf, obs), mu)
    torch.testing.assert_close(m.max(naf, obs), value)
    assert mu.abs().max() <= 1.0


def test_naf_quadratic_by_hand():
    naf = NAFQ([gen()], obs_dim=1, action_dim=2, hidden_sizes=[4])
    with torch.no_grad():
        for p in naf.parameters():
            p.zero_()
        naf.value_head.bias.fill_(3.0)
        naf.mu_head.bias.copy_(torch.atanh(torch.tensor([[[0.5, -0.5]]])))
        naf.l_head.bias.copy_(torch.tensor([[[np.log(2.0), 1.0, 0.0]]]))   # L = [[2, 0], [1, 1]]
    obs, a = torch.zeros(1, 1, 1), torch.tensor([[[0.0, 0.0]]])
    diff = torch.tensor([-0.5, 0.5])
    lower = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    expected = 3.0 - 0.5 * diff @ (lower @ lower.T) @ diff
    torch.testing.assert_close(naf.q(obs, a), expected.view(1, 1))


def test_naf_quadratic_by_hand_per_seed_and_after_flattening():
    naf = NAFQ([gen(0), gen(1)], obs_dim=1, action_dim=2, hidden_sizes=[4])
    with torch.no_grad():
        for p in naf.parameters():
            p.zero_()
        naf.value_head.bias.copy_(torch.tensor([3.0, 1.0]).view(2, 1, 1))
        naf.mu_head.bias.copy_(torch.atanh(torch.tensor([[[0.5, -0.5]], [[0.0, 0.25]]])))
        naf.l_head.bias.copy_(torch.tensor([[[np.log(2.0), 1.0, 0.0]],          # seed 0: L = [[2, 0], [1, 1]]
                                            [[0.0, 0.0, np.log(3.0)]]]))       # seed 1: L = [[1, 0], [0, 3]]
    obs, a = torch.zeros(2, 1, 1), torch.zeros(2, 1, 2)
    expected = []
    for value, mu, lower in ((3.0, [0.5, -0.5], [[2.0, 0.0], [1.0, 1.0]]), (1.0, [0.0, 0.25], [[1.0, 0.0], [0.0, 3.0]])):
        diff, lower = -torch.tensor(mu), torch.tensor(lower)
        expected.append(value - 0.5 * diff @ (lower @ lower.T) @ diff)
    expected = torch.stack(expected).view(2, 1)
    assert expected[1].item() == pytest.approx(1.0 - 0.5 * 9 * 0.25 ** 2)
    torch.testing.assert_close(naf.q(obs, a), expected)
    flatten_parameters(naf)
    assert naf.arena.shape[0] == 2
    torch.testing.assert_close(naf.q(obs, a), expected)


def test_ddpg_actor_step_raises_q_at_the_actors_action_and_leaves_the_critic_alone():
    k = 2
    critic = StateActionQ([gen(0), gen(1)], 4, 2, [32, 32])
    actor = Actor([gen(2), gen(3)], 4, 2, [32, 32])
    target_actor = Actor([gen(4), gen(5)], 4, 2, [32, 32])
    m = ActorMaximiser(actor, target_actor, torch.optim.Adam(actor.parameters(), lr=1e-2))
    obs = torch.randn(k, 128, 4, generator=gen(6))
    critic_before = [p.detach().clone() for p in critic.parameters()]
    with torch.no_grad():
        before = critic.q(obs, actor(obs)).mean(dim=1)
    first = m.learn(critic, obs)
    assert first.shape == (k,)
    torch.testing.assert_close(first, -before)       # each seed's loss: -Q(s, mu(s)) averaged over its batch
    for _ in range(19):
        m.learn(critic, obs)
    with torch.no_grad():
        after = critic.q(obs, actor(obs)).mean(dim=1)
    assert torch.all(after > before), (before, after)  # every seed's actor climbed its own critic
    assert all(torch.equal(a, b) for a, b in zip(critic_before, critic.parameters(), strict=True))
    assert all(p.grad is None for p in critic.parameters())


@pytest.mark.parametrize("variant", ["ddpg", "naf", "cem_q", "random_q"])
def test_actions_never_leave_asymmetric_bounds_even_with_large_noise(variant):
    from tests.bounds_env import BoundsCheckingEnv

    BoundsCheckingEnv.seen_low = np.full(2, np.inf)
    BoundsCheckingEnv.seen_high = np.full(2, -np.inf)
    job = build_job(variant, "tests.bounds_env:BoundsCheckingEnv", 0, TINY,
                    {"noise_std": 5.0, "random_samples_act": 50, "random_samples_target": 10,
                     "cem_population": 16, "cem_elites": 4})
    train(job)
    # huge noise is clipped: both ends of each bound are reached, never passed (the env raises if passed)
    assert np.allclose(BoundsCheckingEnv.seen_low, [0.0, -5.0]) and np.allclose(BoundsCheckingEnv.seen_high,
                                                                                  [3.0, -1.0])


def test_continuous_variant_on_discrete_actions_is_refused():
    with pytest.raises(ConfigError, match="variant 'ddpg' needs a Box action space.*CartPole-v1.*Discrete.*dqn"):
        build_job("ddpg", "CartPole-v1", 0)


def test_box_task_lists_the_continuous_variants():
    with pytest.raises(ConfigError, match="variants for Box actions: cem_q, ddpg, naf, random_q"):
        build_job("double_dqn", "Pendulum-v1", 0)


@pytest.mark.parametrize("settings,fragment", [
    ({"q_head": "discrete", "maximiser": "naf"}, "maximiser 'naf' does not fit q_head 'discrete'"),
    ({"target": "policy"}, "target 'policy' needs maximiser 'actor'"),
    ({"cem_elites": 10, "cem_population": 8}, "cem_elites"),
])
def test_part_combinations_are_checked(settings, fragment):
    with pytest.raises(ConfigError, match=fragment):
        resolve(VARIANTS["dqn"], {}, settings)


def test_cut_the_trace_is_refused_for_box_actions():
    with pytest.raises(ConfigError, match="'cut'.*needs discrete actions"):
        build_job("ddpg", "Pendulum-v1", 0, {"n_step": 3, "nstep_correction": "cut"})


@pytest.mark.parametrize("task", ["LunarLanderContinuous-v3", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"])
def test_box2d_and_mujoco_tasks_run_end_to_end(task, tmp_path):
    spaces = probe_spaces(get_task(task))
    assert spaces.action_kind == "box"
    job = build_job("ddpg", task, 0, TINY)
    summary = run_job(job, RunDir(tmp_path))
    assert summary["env_steps"] == 300 and np.isfinite(summary["final_return_mean"])
    assert (tmp_path / "summary.json").exists()


def test_continuous_runs_are_reproducible():
    settings = {**TINY, "random_samples_act": 20, "random_samples_target": 5}
    for variant in ("ddpg", "random_q"):
        a = train(build_job(variant, "Pendulum-v1", 4, settings))
        b = train(build_job(variant, "Pendulum-v1", 4, settings))
        assert a["final_return_mean"] == b["final_return_mean"]


def test_evaluation_does_not_shift_the_random_numbers_training_sees(tmp_path):
    settings = {**TINY, "total_env_steps": 400, "eval_interval_env_steps": 150, "log_interval_env_steps": 100,
                "random_samples_act": 20, "random_samples_target": 5}
    for name, episodes in (("one", 1), ("three", 3)):
        run_job(build_job("random_q", "Pendulum-v1", 2, settings, {"eval_episodes": episodes}),
                RunDir(tmp_path / name))
    import pandas as pd
    cols = ["td_loss", "q_mean", "grad_norm", "train_return_mean"]
    one = pd.read_csv(tmp_path / "one" / "diagnostics.csv")[cols]
    three = pd.read_csv(tmp_path / "three" / "diagnostics.csv")[cols]
    pd.testing.assert_frame_equal(one, three)
