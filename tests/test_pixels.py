"""Pixel tasks end to end: MinAtar (and Atari, where ale-py is installed) through the engine, the image encoders
with the seed axis, and checkpoint + resume of a pixel job."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from qbench.engine import run_batch
from qbench.jobs import build_job
from qbench.store import RunDir
from tests.test_seed_axis import kill_and_resume, rows

pytest.importorskip("minatar")

MINATAR_TINY = {"total_env_steps": 1_000, "warmup_env_steps": 300, "eval_interval_env_steps": 500,
                "eval_episodes": 2, "buffer_size": 2_000, "checkpoint_interval_env_steps": 350,
                "log_interval_env_steps": 300, "target_period_grad_steps": 100, "eps_decay_fraction": 0.5}


@pytest.mark.parametrize("variant", ["double_dqn"])
def test_a_killed_minatar_batch_resumes_to_the_uninterrupted_numbers(variant, tmp_path):
    """MinAtar keeps its own random stream (sticky actions, spawns): each episode is reset with a seed of its own,
    so a checkpoint mid-episode is restored by replaying the episode from that seed."""
    jobs = [build_job(variant, "MinAtar/Breakout-v1", s, MINATAR_TINY) for s in (0, 3)]
    straight, _ = kill_and_resume(jobs, tmp_path, 2)
    # several episodes: later resets, seeded from the episode counter, were replayed
    assert all(summary["episodes"] > 5 for summary in straight)


IMAGE_TINY = {"total_env_steps": 3_000, "warmup_env_steps": 300, "eval_interval_env_steps": 3_000,
              "eval_episodes": 50, "buffer_size": 3_000, "batch_size": 32, "env_steps_per_update": 1,
              "target_period_grad_steps": 100, "eps_decay_fraction": 0.5, "eps_end": 0.02, "lr": 1e-3,
              "encoder": "minatar_cnn", "hidden_sizes": [32], "gamma": 0.0}


def test_a_user_image_env_is_read_through_the_cnn_and_learned(tmp_path):
    """The reward depends only on where a square sits in the picture: random play earns 0.5; a network that reads
    the image earns about 1 (measured 1.0 at 3,000 steps)."""
    job = build_job("dqn", "tests.pixel_envs:SideImageEnv", 0, IMAGE_TINY)
    summary = run_batch([job], [RunDir(tmp_path)])[0]
    assert summary["final_return_mean"] >= 0.9


@pytest.mark.parametrize("variant", ["ddpg", "naf", "cem_q"])
def test_box_action_heads_work_on_an_image_encoder(variant, tmp_path):
    settings = {**IMAGE_TINY, "total_env_steps": 400, "warmup_env_steps": 100, "eval_interval_env_steps": 400,
                "eval_episodes": 3, "cem_population": 8, "cem_elites": 2, "batch_size": 8}
    settings.pop("eps_decay_fraction"), settings.pop("eps_end")
    job = build_job(variant, "tests.pixel_envs:SideImageBoxEnv", 0, settings)
    summary = run_batch([job], [RunDir(tmp_path)])[0]
    assert summary["grad_steps"] == 301 and summary["replay_bytes_per_transition"] > 2 * 300


def test_a_two_dimensional_grey_frame_gets_a_channel_axis(tmp_path):
    from qbench.envs.tasks import probe_spaces
    job = build_job("dqn", "tests.pixel_envs:GreyFrameEnv", 0, {**IMAGE_TINY, "total_env_steps": 400,
                                                                "eval_interval_env_steps": 400, "eval_episodes": 1})
    spaces = probe_spaces(job.task, job.config)
    assert (spaces.obs_shape, spaces.image_layout, spaces.obs_dtype) == ((1, 12, 12), "channels_first", np.uint8)
    assert run_batch([job], [RunDir(tmp_path)])[0]["env_steps"] == 400


def test_the_image_encoder_equals_a_plain_convolution_per_seed():
    """Seed k's features are torch's conv2d of its own weights on the image scaled and put channels first, and
    ReLU: the seed axis, the layout and the scaling change nothing else."""
    from qbench.parts.networks import ImageEncoder
    gens = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
    enc = ImageEncoder(gens, "nature_cnn", (36, 36, 4), "channels_last", 1 / 255)
    obs = torch.randint(0, 256, (3, 5, 36, 36, 4), dtype=torch.uint8)
    out = enc(obs)
    for k in range(3):
        x = obs[k].permute(0, 3, 1, 2).float() / 255
        for conv in enc.convs:
            x = torch.relu(torch.nn.functional.conv2d(x, conv.weight[k], conv.bias[k], conv.stride))
        torch.testing.assert_close(out[k], x.reshape(5, -1), rtol=1e-6, atol=1e-6)
    assert out.shape == (3, 5, 64 * 1 * 1)   # 36 -> 8 -> 3 -> 1


def test_a_minatar_seed_in_a_batch_equals_the_seed_alone(tmp_path):
    settings = {**MINATAR_TINY, "total_env_steps": 800}
    jobs = [build_job("dqn", "MinAtar/SpaceInvaders-v1", s, settings) for s in (1, 4)]
    run_batch(jobs, [RunDir(tmp_path / "batch" / str(j.seed)) for j in jobs])
    run_batch(jobs[1:], [RunDir(tmp_path / "alone")])
    pd.testing.assert_frame_equal(rows(tmp_path / "batch" / "4", "evaluations.csv"),
                                  rows(tmp_path / "alone", "evaluations.csv"))
    assert (rows(tmp_path / "batch" / "4", "diagnostics.csv")["td_loss"]
            == rows(tmp_path / "alone", "diagnostics.csv")["td_loss"]).all()


@pytest.mark.parametrize("settings,says", [
    ({"frame_skip": 2}, "part of the Atari protocol"),
    ({"encoder": "nature_cnn"}, "reads images"),
    ({"sticky_action_prob": 0.1}, "part of the Atari protocol"),
    ({"terminal_on_life_loss": True}, "part of the Atari protocol"),
])
def test_pixel_settings_on_a_vector_task_are_refused(settings, says):
    from qbench.config import ConfigError
    with pytest.raises(ConfigError, match=says):
        build_job("dqn", "CartPole-v1", 0, settings)


def test_an_image_task_without_an_image_encoder_is_refused():
    from qbench.config import ConfigError
    with pytest.raises(ConfigError, match="need an image encoder; valid encoders for images"):
        build_job("dqn", "MinAtar/Breakout-v1", 0, {"encoder": "none"})
    with pytest.raises(ConfigError, match="too small for encoder 'nature_cnn'"):
        build_job("dqn", "MinAtar/Breakout-v1", 0, {"encoder": "nature_cnn"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_in_one_line():
    from qbench.config import ConfigError
    with pytest.raises(ConfigError, match="torch sees none here"):
        build_job("dqn", "CartPole-v1", 0, {"device": "cuda"})
    assert build_job("dqn", "CartPole-v1", 0, {"device": "auto"}).config.device == "auto"


def test_batches_never_hold_more_seeds_than_their_replay_fits_in_memory():
    from qbench.runner.plan import make_batches, replay_bytes_estimate
    jobs = [build_job("dqn", "MinAtar/Breakout-v1", s, {"buffer_size": 1_000_000}) for s in range(5)]
    per_seed = replay_bytes_estimate(jobs[0])
    assert per_seed == 1_000_000 * 2020
    # 70% of 9 GB holds 3 seeds of 2.02 GB: batches of 3 and 2, not one of 5
    assert [len(b) for b in make_batches(jobs, None, 1, memory_bytes=9e9)] == [3, 2]
    assert [len(b) for b in make_batches(jobs, 4, 1, memory_bytes=9e9)] == [3, 2]
    assert [len(b) for b in make_batches(jobs, None, 1, memory_bytes=1e12)] == [5]
    assert [len(b) for b in make_batches(jobs, None, 2, memory_bytes=1e9)] == [1] * 5   # one seed even if too big


# Atari at a tenth of the pixels (36x36 is the smallest frame the Nature CNN takes), so that a job is a few seconds.
ATARI_TINY = {"total_env_steps": 700, "warmup_env_steps": 200, "eval_interval_env_steps": 350, "eval_episodes": 1,
              "eval_max_episode_steps": 200, "buffer_size": 400, "screen_size": 36, "hidden_sizes": [64],
              "target_period_grad_steps": 20, "checkpoint_interval_env_steps": 230, "log_interval_env_steps": 100,
              "n_step": 3, "nstep_correction": "cut"}


@pytest.mark.parametrize("settings", [{"terminal_on_life_loss": True}])
def test_a_killed_atari_batch_resumes_to_the_uninterrupted_numbers(settings, tmp_path):
    """The frame-stacking replay (one frame per transition, wrapped around: 700 steps in 400 slots), n-step windows
    cut at off-policy actions, clipped rewards, Breakout's lives as terminals, and ALE episodes replayed from their
    reset seeds: after a kill and a resume every row equals the uninterrupted run's."""
    pytest.importorskip("ale_py")
    jobs = [build_job("dqn", "ALE/Breakout-v5", s, {**ATARI_TINY, **settings}) for s in (0, 5)]
    straight, resumed = kill_and_resume(jobs, tmp_path, 2)
    for a, b in zip(straight, resumed, strict=True):
        assert a["frames"] == b["frames"] == 2800
        # one 36x36 frame a transition plus a few bytes, and each seed's newest stack spread over 400 slots
        assert a["replay_bytes_per_transition"] == pytest.approx(36 * 36 + 20 + 4 * 36 * 36 / 400, abs=4)
    # the protocol is recorded with the run
    recorded = json.loads((tmp_path / "cut" / "5" / "config.json").read_text())["config"]
    protocol = {"sticky_action_prob": 0.25, "frame_skip": 4, "frame_stack": 4, "noop_max": 0,
                "max_episode_frames": 108_000, "full_action_space": False, "reward_clip": 1.0}
    assert {k: recorded[k] for k in protocol} == protocol


def test_life_loss_ends_the_return_for_learning_only(tmp_path):
    """With terminal_on_life_loss, Breakout's lost lives are terminals in the replay but the game goes on (no
    reset; the frame-stacking replay refuses a stack that does not continue), and the replay holds one terminal per
    lost life and per game over."""
    pytest.importorskip("ale_py")
    from qbench.engine import make_buffer
    from qbench.envs.tasks import probe_spaces
    from qbench.seed_axis import SeedEnvs
    job = build_job("dqn", "ALE/Breakout-v5", 0, {**ATARI_TINY, "terminal_on_life_loss": True})
    spaces = probe_spaces(job.task, job.config)
    envs, buffer = SeedEnvs(job.task, spaces, [7], job.config), make_buffer(job.config, spaces, job.task, 1)
    envs.start()
    rng = np.random.default_rng(0)
    lives_lost = games_over = 0
    for _ in range(390):
        if envs.needs_reset[0]:
            envs.reset(0)
        obs = envs.obs.copy()
        next_obs, rewards, terminated, truncated = envs.step_all(rng.integers(4, size=1), np.ones(1, bool))
        lost = envs.life_lost.copy()
        buffer.add(obs, rng.integers(4, size=1), rewards, next_obs, terminated | lost, truncated, lost)
        envs.advance(next_obs, terminated | truncated, np.ones(1, bool))
        assert not (lost[0] and envs.needs_reset[0])
        lives_lost += int(lost[0])
        games_over += int(terminated[0])
    assert lives_lost >= 2 and buffer.terminated[0, :buffer.size].sum() == lives_lost + games_over


def test_a_minatar_episode_does_not_depend_on_the_episode_before_it():
    """MinAtar keeps its sticky action across resets; qbench starts every episode from no-op (as ALE does), so an
    episode reset with a seed plays the same on a used env as on a fresh one (a resumed run's env is fresh)."""
    from qbench.envs.tasks import get_task, make_env

    task = get_task("MinAtar/Breakout-v1")
    cfg = build_job("dqn", task.name, 0).config
    actions = [1, 2, 1, 1, 2, 0, 2, 2, 1, 0] * 5   # indices into Breakout's minimal action set

    def play(env, seed):
        obs, _ = env.reset(seed=seed)
        frames = [obs.copy()]
        for a in actions:
            obs, _, terminated, truncated, _ = env.step(a)
            frames.append(obs.copy())
            if terminated or truncated:
                break
        return np.array(frames)

    used, fresh = make_env(task, cfg), make_env(task, cfg)
    for seed in range(40):   # a sticky first step (probability 0.1 each) is all but certain among 40 episodes
        used.unwrapped.game.last_action = 3   # what an episode that ended moving right leaves behind
        np.testing.assert_array_equal(play(used, seed), play(fresh, seed))
