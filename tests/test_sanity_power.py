"""benchmarks/sanity_power.py: each fault breaks what it says (and is repaired on exit), the probability arithmetic,
and one tiny end-to-end run through the child's code path."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import qbench.engine
import qbench.parts.targets
from qbench.parts.maximisers import ActorMaximiser, ExactMaximiser
from qbench.replay.buffer import ReplayBuffer
from tests.reference_nstep import returns_of

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "sanity_power.py"
_spec = importlib.util.spec_from_file_location("sanity_power", SCRIPT)
sp = importlib.util.module_from_spec(_spec)
sys.modules["sanity_power"] = sp
_spec.loader.exec_module(sp)

ORIGINAL_TD_TARGETS = qbench.parts.targets.td_targets
ORIGINAL_BOOTSTRAP = qbench.parts.targets.bootstrap_value
ORIGINAL_SAMPLE = ReplayBuffer.__dict__["sample"]


def assert_engine_unbroken():
    assert qbench.parts.targets.td_targets is ORIGINAL_TD_TARGETS
    assert qbench.engine.td_targets is ORIGINAL_TD_TARGETS
    assert qbench.parts.targets.bootstrap_value is ORIGINAL_BOOTSTRAP
    assert qbench.engine.bootstrap_value is ORIGINAL_BOOTSTRAP
    assert ReplayBuffer.__dict__["sample"] is ORIGINAL_SAMPLE


def targets_of(reward, discount, bootstrap):
    """y as the engine computes it (its own reference to td_targets) and as qbench.parts.targets does."""
    args = [torch.tensor([v], dtype=torch.float32) for v in (reward, discount, bootstrap)]
    engine_y = float(qbench.engine.td_targets(*args)[0])
    parts_y = float(qbench.parts.targets.td_targets(*args)[0])
    assert engine_y == parts_y
    return engine_y


# --- the TD target faults, on hand-computed values

@pytest.mark.parametrize("fault, hand, hand_terminal", [
    ("none", 1 + 0.5 * 2, 1.0),
    ("target_sign", 1 - 0.5 * 2, 1.0),              # 0 instead of 2
    ("discount_wrong", 1 + 0.5 * 0.5 * 2, 1.0),     # 1.5: the discount halved
    ("no_discount", 1 + 2, 1.0),                    # 3: no discount, the termination still cuts the bootstrap
])
def test_td_target_faults_change_y_as_they_say(fault, hand, hand_terminal):
    assert targets_of(1.0, 0.5, 2.0) == 2.0
    with sp.inject(fault):
        assert targets_of(1.0, 0.5, 2.0) == pytest.approx(hand)
        assert targets_of(1.0, 0.0, 2.0) == pytest.approx(hand_terminal)
    assert_engine_unbroken()
    assert targets_of(1.0, 0.5, 2.0) == 2.0


def test_patch_is_undone_when_the_block_raises():
    with pytest.raises(RuntimeError), sp.inject("target_sign"):
        assert qbench.engine.td_targets is not ORIGINAL_TD_TARGETS
        raise RuntimeError("a failing run")
    assert_engine_unbroken()


# --- no_target_network: every target kind reads the online network

class ValuesQ(torch.nn.Module):
    """Q(s, a) = values[a] for every state (discrete), or slope * a (one continuous action dimension)."""

    def __init__(self, values=None, slope=None):
        super().__init__()
        self.values = None if values is None else torch.tensor(values, dtype=torch.float32)
        self.slope = slope

    def all_actions(self, obs):
        return self.values.expand(*obs.shape[:-1], len(self.values))

    def q(self, obs, actions):
        if self.slope is not None:
            return self.slope * actions[..., 0]
        return self.all_actions(obs).gather(-1, actions[..., None]).squeeze(-1)


class ConstantActor(torch.nn.Module):
    def __init__(self, action):
        super().__init__()
        self.action = action

    def forward(self, obs):
        return torch.full((*obs.shape[:-1], 1), self.action)


def bootstraps(kind, maximiser, online, target):
    obs = torch.zeros(1, 1, 3)   # (K, B, obs_dim)
    engine_value = float(qbench.engine.bootstrap_value(kind, maximiser, online, target, obs).flatten()[0])
    parts_value = float(qbench.parts.targets.bootstrap_value(kind, maximiser, online, target, obs).flatten()[0])
    assert engine_value == parts_value
    return engine_value


def test_no_target_network_bootstraps_from_the_online_network():
    online, target = ValuesQ([7.0, 5.0]), ValuesQ([10.0, 20.0])
    ddpg = ActorMaximiser(ConstantActor(0.5), ConstantActor(-0.5), optimiser=None)
    online_c, target_c = ValuesQ(slope=2.0), ValuesQ(slope=10.0)
    # unbroken: max Q_target = 20; double: Q_target(argmax Q_online = 0) = 10; policy: Q_target(mu_target) = -5
    assert bootstraps("max", ExactMaximiser(), online, target) == 20.0
    assert bootstraps("double", ExactMaximiser(), online, target) == 10.0
    assert bootstraps("policy", ddpg, online_c, target_c) == -5.0
    with sp.inject("no_target_network"):
        assert bootstraps("max", ExactMaximiser(), online, target) == 7.0       # max Q_online
        assert bootstraps("double", ExactMaximiser(), online, target) == 7.0    # Q_online(argmax Q_online)
        assert bootstraps("policy", ddpg, online_c, target_c) == 1.0            # Q_online(mu_online) = 2 * 0.5
    assert_engine_unbroken()
    assert bootstraps("max", ExactMaximiser(), online, target) == 20.0


# --- stale_replay: only the oldest rows come back

def filled_buffer(capacity, rows, n_step=1):
    buffer = ReplayBuffer(2, capacity, (1,), (), np.int64, n_step, 0.99)
    for i in range(rows):
        obs = np.full((2, 1), i, dtype=np.float32)
        buffer.add(obs, np.zeros(2, dtype=np.int64), np.ones(2), obs + 1, np.zeros(2, bool), np.zeros(2, bool))
    return buffer


def sampled_rows(buffer, batch_size, n=None):
    rngs = [np.random.default_rng(s) for s in (0, 1)]
    batch = returns_of(buffer.sample(batch_size, rngs, n), buffer.gamma)
    return batch.obs[..., 0], batch


def test_stale_replay_samples_only_the_oldest_rows():
    buffer = filled_buffer(2000, 1000)   # rows 0..999, never wrapped
    rows, _ = sampled_rows(buffer, 256)
    assert rows.max() >= 80   # unbroken: anywhere in 0..999
    with sp.inject("stale_replay"):
        rows, batch = sampled_rows(buffer, 8)   # the oldest 10 x 8 = 80 rows
        assert rows.shape == (2, 8) and rows.min() >= 0 and rows.max() < 80
        np.testing.assert_array_equal(batch.bootstrap_obs[..., 0], rows + 1)
        rows, _ = sampled_rows(buffer, 256)     # 2,560 > the 1,000 held: all of them
        assert rows.max() >= 80
        wrapped = filled_buffer(500, 1000)      # the ring wrapped: it holds rows 500..999, the oldest at slot pos
        rows, _ = sampled_rows(wrapped, 8)
        assert rows.min() >= 500 and rows.max() < 580
        nstep = filled_buffer(2000, 1000, n_step=3)
        rows, batch = sampled_rows(nstep, 8, n=3)
        assert rows.max() < 80
        np.testing.assert_array_equal(batch.bootstrap_obs[..., 0], rows + 3)   # 3-step windows, still intact
    assert_engine_unbroken()
    rows, _ = sampled_rows(filled_buffer(500, 1000), 256)
    assert rows.max() >= 580


# --- the probability arithmetic

def test_binomial_tail_against_hand_values():
    assert sp.binomial_tail(4, 5, 0.8) == pytest.approx(0.73728)             # 5 * 0.8^4 * 0.2 + 0.8^5
    assert sp.binomial_tail(4, 5, 0.9) == pytest.approx(0.91854)             # 0.32805 + 0.59049
    assert sp.binomial_tail(5, 5, 0.7) == pytest.approx(0.7 ** 5)
    assert sp.binomial_tail(1, 3, 0.5) == pytest.approx(0.875)               # 1 - 0.5^3
    assert sp.binomial_tail(0, 5, 0.1) == 1.0 and sp.binomial_tail(6, 5, 0.9) == 0.0
    assert sp.binomial_tail(4, 5, 0.0) == 0.0 and sp.binomial_tail(4, 5, 1.0) == 1.0


def test_clopper_pearson_against_closed_forms():
    lo, hi = sp.clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** 0.1, abs=1e-9)   # 0.3085
    lo, hi = sp.clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** 0.1, abs=1e-9)
    lo, hi = sp.clopper_pearson(3, 10)   # scipy.stats.beta.ppf(0.025, 3, 8), beta.ppf(0.975, 4, 7)
    assert lo == pytest.approx(0.0667395, abs=1e-6) and hi == pytest.approx(0.6524529, abs=1e-6)


def test_the_rule_and_pairs_come_from_the_suite():
    suite = sp.load_sanity_suite()
    assert sp.suite_rule(suite, "CartPole-v1") == sp.Rule(3, 6)     # each task's own rule
    assert sp.suite_rule(suite, "Pendulum-v1") == sp.Rule(3, 5)
    assert sp.suite_rule(suite, "Pendulum-v1", 3, 10) == sp.Rule(3, 10)
    with pytest.raises(ValueError):
        sp.suite_rule(suite, "CartPole-v1", 7, None)
    judged = sp.suite_pairs(suite)
    assert len(judged) == 9 and ("CartPole-v1", "online_q") not in judged and ("Pendulum-v1", "ddpg") in judged
    assert sp.parse_pairs("CartPole-v1/dqn,Pendulum-v1/naf", suite) == [("CartPole-v1", "dqn"), ("Pendulum-v1", "naf")]
    with pytest.raises(ValueError):
        sp.parse_pairs("CartPole-v1/naf", suite)
    with pytest.raises(ValueError):
        sp.parse_faults("none,target_sine")
    assert sp.parse_seeds("200-202,207") == [200, 201, 202, 207] and sp.seed_span([200, 201, 202, 207]) == "200-202,207"
    jobs = sp.pair_jobs(suite, "CartPole-v1", "dqn", [200, 201], steps_scale=0.01)
    assert [j.seed for j in jobs] == [200, 201]
    assert (jobs[0].config.total_env_steps, jobs[0].config.eval_interval_env_steps,
            jobs[0].config.warmup_env_steps) == (500, 50, 10)
    assert sp.pair_jobs(suite, "Pendulum-v1", "naf", [0])[0].config.total_env_steps == 20_000   # the suite's budget


# --- end to end: the child's code path, in-process, on a tiny budget

TINY = {"total_env_steps": 256, "warmup_env_steps": 64, "eval_interval_env_steps": 256, "eval_episodes": 2,
        "hidden_sizes": [16], "buffer_size": 1000}


def test_tiny_runs_through_the_child_code_path(tmp_path):
    suite = sp.load_sanity_suite()
    seeds = [200, 201]
    records = {fault: sp.run_pair(fault, suite, "CartPole-v1", "dqn", seeds, tmp_path, overrides=TINY)
               for fault in ("none", "target_sign")}
    assert_engine_unbroken()
    for fault, record in records.items():
        assert sp.result_path(tmp_path, fault, "CartPole-v1", "dqn").exists()
        assert record["total_env_steps"] == 256 and record["config"]["hidden_sizes"] == [16]
        assert record["threshold"] == 475.0 and record["suite_rule"] == {"min_passing": 3, "of": 6}
        for seed in seeds:
            row = record["seeds"][str(seed)]
            assert math.isfinite(row["final_return"]) and row["final_return"] >= 8   # CartPole lasts >= 8 steps
            assert row["curve"][-1][0] == 256 and row["grad_steps"] == 4 * 32
    for seed in map(str, seeds):
        # the same seeds and settings: only the fault differs, and y = r - gamma Q' pulls Q down towards 1 / 1.99
        q_none = records["none"]["seeds"][seed]["last_q_mean"]
        q_sign = records["target_sign"]["seeds"][seed]["last_q_mean"]
        assert q_sign < q_none and q_sign < 1.0
    # resumable: nothing left to run for these seeds; another config is refused
    assert sp.plan(suite, ["none", "target_sign"], [("CartPole-v1", "dqn")], seeds, tmp_path, 1.0, TINY) == []
    assert sp.plan(suite, ["none"], [("CartPole-v1", "dqn")], [202], tmp_path, 1.0, TINY) == [
        ("none", "CartPole-v1", "dqn", [202])]
    with pytest.raises(ValueError, match="another config"):
        sp.plan(suite, ["none"], [("CartPole-v1", "dqn")], seeds, tmp_path, 1.0, {**TINY, "hidden_sizes": [8]})
    text = sp.table(suite, tmp_path, min_passing=1, of=2)
    assert "| none | CartPole-v1/dqn | 475 | 1 of 2 | 200-201 (2) |" in text
    assert "| target_sign | CartPole-v1/dqn |" in text and (tmp_path / "table.md").exists()
