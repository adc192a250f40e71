"""Correctness fixes of the engine (issue 10): each test fails on the code before the fix."""

import itertools
import json

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from qbench.config import ConfigError
from qbench.engine import STREAMS, run_job, stream_seed, stream_sequence, train
from qbench.envs.tasks import observation_encoder, spaces_of
from qbench.jobs import build_job
from qbench.parts.exploration import epsilon_greedy_probs
from qbench.parts.targets import discounted_window
from qbench.replay.buffer import ReplayBuffer
from qbench.store import CHECKPOINT, CHECKPOINT_REPLAY, RunDir
from tests.trust_envs import ConstantEnv, MutatingEnv

TINY = {"hidden_sizes": [16], "eval_episodes": 1, "log_interval_env_steps": 100}


def test_the_agents_stream_is_not_the_envs():
    # Gymnasium seeds reset(seed=7) with SeedSequence(7): CartPole's first state is default_rng(7)'s first uniforms.
    env = gym.make("CartPole-v1")
    assert np.allclose(env.reset(seed=7)[0], np.random.default_rng(7).uniform(-0.05, 0.05, 4))
    agent_first = np.random.default_rng(stream_sequence(7, "agent")).uniform(-0.05, 0.05, 4)
    env_first = env.reset(seed=stream_seed(7, "env"))[0]
    assert not np.allclose(agent_first, np.random.default_rng(7).uniform(-0.05, 0.05, 4))
    assert not np.allclose(agent_first, env_first)
    seeds = [stream_seed(7, name) for name in STREAMS]
    assert len(set(seeds)) == len(seeds) and 7 not in seeds
    assert stream_seed(7, "eval_env", 500) != stream_seed(7, "eval_maximiser", 500)


def test_the_engine_seeds_its_envs_from_their_own_streams():
    ConstantEnv.reset_seeds.clear()
    train(build_job("dqn", "tests.trust_envs:ConstantEnv", 7, TINY,
                    {"total_env_steps": 200, "warmup_env_steps": 100, "eval_interval_env_steps": 200}))
    given = [s for s in ConstantEnv.reset_seeds if s is not None]
    assert given == [stream_seed(7, "env"), stream_seed(7, "eval_env", 200)]


def test_an_env_that_mutates_its_observation_in_place_is_copied():
    env = MutatingEnv()
    spaces = spaces_of(env)
    first = spaces.encode(env.reset(seed=0)[0])
    second = spaces.encode(env.step(0)[0])
    assert first[0] == 0.0 and second[0] == 1.0   # the first encoding did not follow the env's array


def test_non_greedy_epsilon_is_capped_at_the_uniform_point():
    assert epsilon_greedy_probs(np.array([0.0, 1.0]), 1.0, "non_greedy").tolist() == [0.5, 0.5]
    assert epsilon_greedy_probs(np.array([0.0, 1.0]), 0.8, "non_greedy").tolist() == [0.5, 0.5]
    assert epsilon_greedy_probs(np.array([0.0, 1.0, 0.0, 0.0]), 1.0, "non_greedy").tolist() == [0.25] * 4
    assert epsilon_greedy_probs(np.array([0.0, 1.0]), 0.3, "non_greedy").tolist() == pytest.approx([0.3, 0.7])
    assert epsilon_greedy_probs(np.array([0.0, 1.0, 0.0, 0.0]), 1.0, "uniform").tolist() == [0.25] * 4


@pytest.mark.parametrize("settings", [
    {"warmup_env_steps": 0, "eps_start": 1.0, "eps_end": 1.0},     # eps 1: uniform
    {"warmup_env_steps": 0, "eps_start": 1.0, "eps_end": 1.0, "epsilon_form": "non_greedy"},   # not anti-greedy
    {"warmup_env_steps": 600, "eps_start": 0.0, "eps_end": 0.0},   # warm-up: uniform, whatever eps says
])
def test_a_fully_random_behaviour_takes_both_actions_equally(settings):
    ConstantEnv.actions.clear()
    train(build_job("dqn", "tests.trust_envs:ConstantEnv", 0, TINY,
                    {"total_env_steps": 600, "eval_interval_env_steps": 600, "batch_size": 8, **settings}))
    ones = np.mean(ConstantEnv.actions[:600])
    assert abs(ones - 0.5) < 0.07, ones   # 600 fair coin flips: 0.5 +- 0.02


def test_the_learner_sees_rewards_clipped_then_scaled():
    from qbench.engine import learner_rewards

    rewards = np.array([-16.0, 0.5, 3.0])
    assert learner_rewards(rewards, 0.0, 1.0) is rewards
    assert learner_rewards(rewards, 0.0, 1e-3).tolist() == pytest.approx([-0.016, 0.0005, 0.003])
    assert learner_rewards(rewards, 1.0, 0.5).tolist() == [-0.5, 0.25, 0.5]


def test_nan_rewards_after_the_window_do_not_poison_it():
    rewards = np.array([[1.0, np.nan, 2.0], [1.0, 2.0, np.inf]])
    reward_n, discount_n = discounted_window(torch.as_tensor(rewards), torch.zeros((2, 3), dtype=torch.bool),
                                             torch.tensor([1, 2]), 0.5)
    assert reward_n.tolist() == [1.0, 2.0] and discount_n.tolist() == [0.5, 0.25]


def test_an_evaluation_without_a_time_limit_is_capped_and_counted(tmp_path):
    job = build_job("dqn", "CliffWalking-v1", 0, TINY, {"total_env_steps": 200, "warmup_env_steps": 100,
                                                        "eval_interval_env_steps": 200, "eval_episodes": 2,
                                                        "eval_max_episode_steps": 300})
    run_job(job, RunDir(tmp_path))
    row = pd.read_csv(tmp_path / "evaluations.csv").iloc[-1]
    # CliffWalking never terminates off the goal: -1 a step, -100 a cliff; an untrained greedy policy loops
    assert row["capped_episodes"] == 2 and row["return_max"] <= -300


def test_image_observations_are_refused_with_one_line():
    with pytest.raises(ConfigError, match="image observations"):
        observation_encoder(gym.spaces.Box(0, 255, (84, 84, 3), np.uint8))
    assert observation_encoder(gym.spaces.Box(-1.0, 1.0, (2, 3), np.float32))[0] == 6


@pytest.mark.parametrize("variant,task,settings,says", [
    ("ddpg", "Pendulum-v1", {"exploration": "boltzmann"}, "Box actions explore by action_noise"),
    ("dqn", "CartPole-v1", {"action_noise": "ou"}, "Discrete actions explore by exploration"),
    ("dqn", "CartPole-v1", {"nstep_correction": "cut"}, "does nothing with n_step = 1"),
])
def test_settings_that_would_be_ignored_are_refused(variant, task, settings, says):
    with pytest.raises(ConfigError, match=says):
        build_job(variant, task, 0, settings)


def test_ddpgs_actor_follows_the_optimiser_and_the_learning_rate_schedule(tmp_path):
    job = build_job("ddpg", "Pendulum-v1", 0, TINY, {
        "total_env_steps": 1000, "warmup_env_steps": 100, "eval_interval_env_steps": 1000, "batch_size": 16,
        "optimizer": "rmsprop", "lr": 1e-3, "actor_lr": 4e-4, "lr_schedule": "linear", "lr_end": 5e-4,
        "lr_decay_fraction": 0.4, "checkpoint_interval_env_steps": 800})

    class Stop(Exception):
        pass

    def stop_at_checkpoint(env_steps, info):
        if "checkpoint" in info:
            raise Stop
    with pytest.raises(Stop):
        run_job(job, RunDir(tmp_path), progress=stop_at_checkpoint)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    actor_opt = state["act_maximiser"]["optimiser"]
    assert "square_avg" in next(iter(actor_opt["state"].values()))          # RMSprop's state, not Adam's
    assert actor_opt["param_groups"][0]["lr"] == pytest.approx(2e-4)        # 4e-4 * (5e-4 / 1e-3) after decay


def ring_arrays(buf):
    return {k: getattr(buf, k).copy() for k in ReplayBuffer._ARRAYS}


def test_replay_chunks_rebuild_the_ring_exactly_and_old_ones_become_obsolete():
    rng = np.random.default_rng(0)
    seeds = 2                                # each seed's ring holds its own transitions, saved as its own chunks
    buf = ReplayBuffer(seeds, 10, (2,), (), np.int64, 3, 0.9)
    chunks, start = [[] for _ in range(seeds)], 0
    for n_new in (4, 7, 12, 3):   # wraps around the ring, once by more than its capacity
        for _ in range(n_new):
            buf.add(rng.normal(size=(seeds, 2)), rng.integers(2, size=seeds), rng.normal(size=seeds),
                    rng.normal(size=(seeds, 2)), rng.random(seeds) < 0.1, rng.random(seeds) < 0.1)
        new = [buf.chunk(start, k) for k in range(seeds)]
        for chunk in new:
            assert chunk["end"] - chunk["start"] == min(n_new, 10)   # only what was added since, at most a ring
        assert not np.array_equal(new[0]["rewards"], new[1]["rewards"])   # each seed's chunk holds its own data
        chunks = [[c for c in seed_chunks if not buf.chunk_is_obsolete(c["end"])] + [chunk]
                  for seed_chunks, chunk in zip(chunks, new, strict=True)]
        start = new[0]["end"]
        rebuilt = ReplayBuffer(seeds, 10, (2,), (), np.int64, 3, 0.9)
        rebuilt.load_chunks(buf.counters(), chunks)
        for k, v in ring_arrays(buf).items():
            np.testing.assert_array_equal(getattr(rebuilt, k)[:, : buf.size], v[:, : buf.size])
        assert rebuilt.counters() == buf.counters()
    # 26 added: [0, 4) and [4, 11) were overwritten; [13, 23) (the last 10 of the 12) still holds slots 3-9
    for seed_chunks in chunks:
        assert [(c["start"], c["end"]) for c in seed_chunks] == [(13, 23), (23, 26)]


def test_rows_are_appended_not_rewritten(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(RunDir, "write_evaluations", lambda self, rows: calls.append(len(rows)))
    monkeypatch.setattr(RunDir, "write_diagnostics", lambda self, rows: calls.append(len(rows)))
    job = build_job("dqn", "CartPole-v1", 0, TINY, {"total_env_steps": 600, "warmup_env_steps": 100,
                                                    "eval_interval_env_steps": 200})
    run_job(job, RunDir(tmp_path))
    assert calls == [0, 0]   # the two files are emptied once at the start, then only appended to
    rows = pd.read_csv(tmp_path / "evaluations.csv")
    assert rows["env_steps"].tolist() == [200, 400, 600]
    assert len(pd.read_csv(tmp_path / "diagnostics.csv")) == 6


def test_checkpoints_write_only_new_transitions_and_a_damaged_one_is_set_aside(tmp_path):
    settings = {"total_env_steps": 1500, "warmup_env_steps": 100, "eval_interval_env_steps": 500,
                "checkpoint_interval_env_steps": 300, "buffer_size": 400, "batch_size": 16}
    job = build_job("dqn", "CartPole-v1", 3, TINY, settings)
    straight = run_job(job, RunDir(tmp_path / "straight"))
    seen = []

    class Stop(Exception):
        pass

    def stop_at_third(env_steps, info):
        if "checkpoint" in info:
            chunk_files = sorted((tmp_path / "cut" / CHECKPOINT_REPLAY).glob("*.npz"))
            seen.append([(int(f.stem.split("-")[0]), int(f.stem.split("-")[1])) for f in chunk_files])
            if len(seen) == 3:
                raise Stop
    with pytest.raises(Stop):
        run_job(job, RunDir(tmp_path / "cut"), progress=stop_at_third)
    # each checkpoint adds one chunk from where the previous ended; chunks the ring has overwritten are deleted
    for before, after in itertools.pairwise(seen):
        assert after[-1][0] == before[-1][1]
    end = seen[-1][-1][1]
    assert all(e + 400 > end for _, e in seen[-1])
    # a torn checkpoint: the job starts afresh, keeps the damaged file aside and ends like a straight run
    (tmp_path / "cut" / CHECKPOINT).write_bytes(b"torn")
    resumed = run_job(job, RunDir(tmp_path / "cut"))
    assert resumed["final_return_mean"] == straight["final_return_mean"]
    assert resumed["grad_steps"] == straight["grad_steps"]
    meta = json.loads((tmp_path / "cut" / "metadata.json").read_text())
    kept = meta["damaged_checkpoints"][0]["kept_in"]
    assert (tmp_path / "cut" / kept.split("/")[-1] / CHECKPOINT).read_bytes() == b"torn"
    assert not (tmp_path / "cut" / CHECKPOINT_REPLAY).exists()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "straight" / "evaluations.csv").drop(columns="wall_s"),
                                  pd.read_csv(tmp_path / "cut" / "evaluations.csv").drop(columns="wall_s"))
