import numpy as np
import pytest
import torch

from qbench.config import VARIANTS, ConfigError, resolve
from qbench.engine import run_job, train
from qbench.envs.tasks import get_task, probe_spaces
from qbench.jobs import build_job
from qbench.parts.maximisers import ActorMaximiser, CEMMaximiser, NAFMaximiser, RandomSamplingMaximiser
from qbench.parts.networks import NAFQ, Actor, StateActionQ
from qbench.store import RunDir

TINY = {"total_env_steps": 300, "warmup_env_steps": 100, "batch_size": 32, "hidden_sizes": [32, 32],
        "eval_interval_env_steps": 300, "eval_episodes": 1, "buffer_size": 10_000}


class ConcaveQ:
    """Q(s, a) = -|a - a*(s)|^2 with a known maximiser a*(s) = 0.8 * sin(obs) inside the box; max Q = 0."""

    def __init__(self, d):
        self.d = d
        self.calls = 0

    def best_action(self, obs):
        return 0.8 * torch.sin(obs[:, : self.d])

    def q(self, obs, actions):
        self.calls += len(actions)
        return -((actions - self.best_action(obs)) ** 2).sum(-1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_sampling_and_cem_find_the_maximum_of_a_concave_function():
    obs = torch.randn(200, 1, generator=gen(1))
    q = ConcaveQ(1)
    a = RandomSamplingMaximiser(1000, 1, gen()).argmax(q, obs)
    assert (a - q.best_action(obs)).abs().max() < 0.01          # 1000 draws in [-1, 1]: gaps well under 0.01
    err = (CEMMaximiser(4, 64, 6, 1, gen()).argmax(q, obs) - q.best_action(obs)).abs()
    # CEM's refit can collapse early on a few states: typical error is tiny, the worst case is bounded
    assert err.median() < 1e-3 and err.max() < 0.05
    action, value = CEMMaximiser(4, 64, 6, 1, gen()).best(q, obs)
    torch.testing.assert_close(value, q.q(obs, action))             # max is Q at the action it found
    assert value.max() <= 0 and value.min() > -0.05 ** 2


def test_cem_beats_random_sampling_at_the_same_number_of_q_evaluations():
    d = 4
    obs = torch.randn(300, d, generator=gen(2))
    q_random, q_cem = ConcaveQ(d), ConcaveQ(d)
    cem = CEMMaximiser(iterations=4, population=64, elites=6, action_dim=d, generator=gen())
    rnd = RandomSamplingMaximiser(n_samples=4 * 64, action_dim=d, generator=gen())
    err_cem = (cem.argmax(q_cem, obs) - q_cem.best_action(obs)).norm(dim=1).mean()
    err_rnd = (rnd.argmax(q_random, obs) - q_random.best_action(obs)).norm(dim=1).mean()
    assert q_cem.calls == q_random.calls == 300 * 256
    assert err_cem < 0.5 * err_rnd, (err_cem, err_rnd)


def test_sampled_actions_stay_in_the_box():
    obs = torch.randn(50, 3, generator=gen(3)) * 10
    q = ConcaveQ(3)
    for m in (RandomSamplingMaximiser(100, 3, gen()), CEMMaximiser(3, 32, 4, 3, gen())):
        a = m.argmax(q, obs)
        assert a.abs().max() <= 1.0


def test_naf_q_at_mu_is_v_and_below_v_elsewhere_with_p_positive_definite():
    torch.manual_seed(0)
    naf = NAFQ(obs_dim=5, action_dim=3, hidden_sizes=[32, 32])
    obs = torch.randn(64, 5)
    value, mu, p = naf.terms(obs)
    torch.testing.assert_close(naf.q(obs, mu), value)
    assert torch.linalg.eigvalsh(p).min() > 0
    for _ in range(5):
        other = torch.rand(64, 3) * 2 - 1
        assert torch.all(naf.q(obs, other) <= value + 1e-6)
    m = NAFMaximiser()
    torch.testing.assert_close(m.argmax(naf, obs), mu)
    torch.testing.assert_close(m.max(naf, obs), value)
    assert mu.abs().max() <= 1.0


def test_naf_quadratic_by_hand():
    naf = NAFQ(obs_dim=1, action_dim=2, hidden_sizes=[4])
    with torch.no_grad():
        for p in naf.parameters():
            p.zero_()
        naf.value_head.bias.fill_(3.0)
        naf.mu_head.bias.copy_(torch.atanh(torch.tensor([0.5, -0.5])))
        naf.l_head.bias.copy_(torch.tensor([np.log(2.0), 1.0, 0.0]))   # L = [[2, 0], [1, 1]]
    obs, a = torch.zeros(1, 1), torch.tensor([[0.0, 0.0]])
    diff = torch.tensor([-0.5, 0.5])
    lower = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    expected = 3.0 - 0.5 * diff @ (lower @ lower.T) @ diff
    torch.testing.assert_close(naf.q(obs, a), expected.view(1))


def test_ddpg_actor_step_raises_q_at_the_actors_action_and_leaves_the_critic_alone():
    torch.manual_seed(0)
    critic = StateActionQ(4, 2, [32, 32])
    actor = Actor(4, 2, [32, 32])
    target_actor = Actor(4, 2, [32, 32])
    m = ActorMaximiser(actor, target_actor, torch.optim.Adam(actor.parameters(), lr=1e-2))
    obs = torch.randn(128, 4)
    critic_before = [p.detach().clone() for p in critic.parameters()]
    with torch.no_grad():
        before = critic.q(obs, actor(obs)).mean()
    for _ in range(20):
        m.learn(critic, obs)
    with torch.no_grad():
        after = critic.q(obs, actor(obs)).mean()
    assert after > before
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
