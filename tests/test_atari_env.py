"""qbench.envs.atari: the Machado et al. (2018) protocol wrapper chain, checked against a raw ALE env, and
ale-py's native vector env checked against the chain."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("ale_py")
cv2 = pytest.importorskip("cv2")

import gymnasium as gym

from qbench.envs.atari import (
    ATARI_57_GAMES,
    ATARI_100K_GAMES,
    AtariProtocol,
    ale_id,
    ale_seed,
    make_atari_env,
    make_native_vector_env,
    rom_id,
)

NO_STICKY = AtariProtocol(sticky_action_prob=0.0)


def _actions(n, n_actions, seed=0):
    return np.random.default_rng(seed).integers(n_actions, size=n)


def _nonnegative_ale_seeds(k):
    """Python-env seeds whose ALE seed the native vector env can take (it ignores negative ones)."""
    return [s for s in range(100) if ale_seed(s) >= 0][:k]


# -------------------------------------------------------------------------------------------------- names
def test_game_lists_and_ids_are_registered():
    import ale_py
    from ale_py import roms

    gym.register_envs(ale_py)
    assert len(ATARI_100K_GAMES) == 26 and len(ATARI_57_GAMES) == 57
    assert set(ATARI_100K_GAMES) <= set(ATARI_57_GAMES)
    assert [g for g in ATARI_57_GAMES if g not in gym.registry] == []
    assert [g for g in ATARI_57_GAMES if rom_id(g) not in roms.get_all_rom_ids()] == []
    assert ale_id("pong") == "ALE/Pong-v5"
    assert ale_id("montezuma_revenge") == ale_id("montezumarevenge") == "ALE/MontezumaRevenge-v5"
    assert ale_id("ALE/MsPacman-v5") == "ALE/MsPacman-v5"
    assert rom_id("upndown") == "up_n_down" and rom_id("MsPacman") == "ms_pacman"
    assert "ALE/Pong-v5" in ATARI_100K_GAMES and "ALE/MontezumaRevenge-v5" not in ATARI_100K_GAMES
    with pytest.raises(ValueError, match="unknown Atari game"):
        ale_id("pongg")


def test_protocol_defaults_and_dict():
    protocol = AtariProtocol()
    assert protocol.to_dict() == {"sticky_action_prob": 0.25, "frame_skip": 4, "frame_stack": 4, "screen_size": 84,
                                  "noop_max": 0, "max_episode_frames": 108_000, "full_action_space": False}
    assert AtariProtocol(**protocol.to_dict()) == protocol
    with pytest.raises(dataclasses.FrozenInstanceError):
        protocol.frame_skip = 3
    with pytest.raises(ValueError):
        AtariProtocol(sticky_action_prob=1.5)
    with pytest.raises(ValueError):
        AtariProtocol(frame_skip=0)


# ---------------------------------------------------------------------------------------------- one env
def test_observation_shape_dtype_and_reset_padding():
    env = make_atari_env("ALE/Breakout-v5")
    assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert all(np.array_equal(obs[0], obs[i]) for i in range(1, 4))   # padded with the reset frame, not zeros
    assert obs.any()
    first = obs[-1].copy()
    for step in range(1, 4):
        obs, *_ = env.step(1)
        for i in range(4 - step):                                       # still padding: the reset frame
            np.testing.assert_array_equal(obs[i], first)
    assert not np.array_equal(obs[-1], first)


def test_sticky_actions_and_settings_reach_ale():
    env = make_atari_env("pong")
    ale = env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert ale.getInt("max_num_frames_per_episode") == 108_000
    assert ale.getInt("frame_skip") == 1 and env.unwrapped._frameskip == 1   # the skip is AtariPreprocessing's
    assert env.action_space.n == 6                                           # Pong's minimal action set
    assert make_atari_env("pong", NO_STICKY).unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    assert make_atari_env("pong", AtariProtocol(full_action_space=True)).action_space.n == 18
    # the draws are real: the same seed and actions with and without stickiness part ways
    actions = _actions(200, 6)
    runs = []
    for protocol in (AtariProtocol(), NO_STICKY):
        env = make_atari_env("pong", protocol)
        env.reset(seed=3)
        runs.append(np.stack([env.step(int(a))[0][-1] for a in actions]))
    assert not np.array_equal(*runs)


def test_max_pool_and_resize_match_a_raw_env_including_the_truncated_step():
    """The newest frame is resize_area(max(frame 3, frame 4)) of each skip of 4 raw frames; the frame cap
    truncates after 100 agent steps of 4 frames (cap 400), and the observation it comes with is stale: the skip is
    cut before frame 4 is captured, so it pools the previous step's pooled screen with frame 3."""
    protocol = AtariProtocol(sticky_action_prob=0.0, max_episode_frames=400)
    env = make_atari_env("ALE/Pong-v5", protocol)
    raw = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0, obs_type="grayscale",
                   max_num_frames_per_episode=400)
    obs, _ = env.reset(seed=1)
    frame, _ = raw.reset(seed=1)

    def resize(img):
        return cv2.resize(img, (84, 84), interpolation=cv2.INTER_AREA)

    np.testing.assert_array_equal(obs[-1], resize(frame))
    pooled_prev, pooling_mattered, linear_differs = frame, False, False
    steps = 0
    for a in _actions(100, env.action_space.n, seed=2):
        prev = obs
        obs, _, terminated, truncated, info = env.step(int(a))
        steps += 1
        frames = []
        for _ in range(4):
            f, _, raw_term, raw_trunc, _ = raw.step(int(a))
            frames.append(f)
            if raw_term or raw_trunc:
                break
        if truncated:
            assert len(frames) == 4 and raw_trunc            # the cap falls on the 4th frame of step 100
            expected_raw = np.maximum(pooled_prev, frames[2])
        else:
            expected_raw = np.maximum(frames[2], frames[3])
            pooling_mattered |= not np.array_equal(expected_raw, frames[3])
            linear_differs |= not np.array_equal(
                resize(expected_raw), cv2.resize(expected_raw, (84, 84), interpolation=cv2.INTER_LINEAR))
        np.testing.assert_array_equal(obs[-1], resize(expected_raw))
        np.testing.assert_array_equal(obs[:-1], prev[1:])
        pooled_prev = expected_raw
        if terminated or truncated:
            break
    assert pooling_mattered and linear_differs               # the comparison can tell max-pool and INTER_AREA apart
    assert (steps, terminated, truncated) == (100, False, True)
    assert info["episode_frame_number"] == 400


def test_lives_in_every_info_and_no_life_loss_terminal():
    env = make_atari_env("breakout", NO_STICKY)
    _, info = env.reset(seed=0)
    assert info["lives"] == 5
    lost = False
    for a in _actions(2000, env.action_space.n):
        _, _, terminated, _, info = env.step(int(a))
        assert "lives" in info
        if info["lives"] < 5:
            lost = True
            assert not terminated                             # terminal_on_life_loss=False
            break
    assert lost


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out, rewards = [obs], []
    for a in actions:
        obs, r, terminated, truncated, _ = env.step(int(a))
        out.append(obs)
        rewards.append(r)
        if terminated or truncated:
            break
    return np.stack(out), np.array(rewards)


def test_determinism_across_freshly_constructed_envs():
    actions = _actions(300, 6, seed=5)
    a = _rollout(make_atari_env("pong"), 11, actions)
    b = _rollout(make_atari_env("pong"), 11, actions)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = _rollout(make_atari_env("pong"), 12, actions)           # another seed: other sticky draws
    assert not np.array_equal(a[0], c[0])
    # a checkpoint restore: a fresh env, reset with the seed and replayed, continues as the original
    env = make_atari_env("pong")
    _rollout(env, 11, actions[:150])
    restored = make_atari_env("pong")
    _rollout(restored, 11, actions[:150])
    for act in actions[150:200]:
        np.testing.assert_array_equal(env.step(int(act))[0], restored.step(int(act))[0])


def test_reset_without_seed_does_not_reseed_ale():
    actions = _actions(300, 6, seed=5)
    env = make_atari_env("pong")
    first = _rollout(env, 7, actions)[0]
    unseeded = _rollout(env, None, actions)[0]                  # continues ALE's generator
    n = min(len(first), len(unseeded))
    assert not np.array_equal(first[:n], unseeded[:n])
    np.testing.assert_array_equal(_rollout(env, 7, actions)[0], first)   # an explicit seed does reseed
    twin = make_atari_env("pong")                               # ... and the history is deterministic
    _rollout(twin, 7, actions)
    np.testing.assert_array_equal(_rollout(twin, None, actions)[0], unseeded)


# ------------------------------------------------------------------------------------------- native vector
def test_native_vector_env_matches_the_wrapper_chain():
    """With matched ALE seeds the native env gives the chain's observations, rewards, flags and lives, sticky
    actions included, over several episodes (cap 400 frames: truncation, then NEXT_STEP autoreset vs reset())."""
    protocol = AtariProtocol(max_episode_frames=400)
    seeds = _nonnegative_ale_seeds(2)
    envs = [make_atari_env("ms_pacman", protocol) for _ in seeds]        # rewards of 10: clipping would show
    native = make_native_vector_env("ms_pacman", len(seeds), protocol)
    assert native.single_observation_space == envs[0].observation_space
    assert native.single_action_space == envs[0].action_space
    obs, info = native.reset(seed=np.array([ale_seed(s) for s in seeds]))
    for i, (env, s) in enumerate(zip(envs, seeds)):
        o, inf = env.reset(seed=s)
        np.testing.assert_array_equal(obs[i], o)
        assert info["lives"][i] == inf["lives"]
    done = np.zeros(len(envs), dtype=bool)
    episodes = np.zeros(len(envs), dtype=int)
    big_rewards = 0
    rng = np.random.default_rng(0)
    for _ in range(260):
        actions = rng.integers(envs[0].action_space.n, size=len(envs))
        obs, rewards, terminated, truncated, info = native.step(actions)
        for i, env in enumerate(envs):
            if done[i]:                                         # NEXT_STEP: this step was the reset
                o, inf = env.reset()
                r, te, tr = 0.0, False, False
                episodes[i] += 1
            else:
                o, r, te, tr, inf = env.step(int(actions[i]))
            np.testing.assert_array_equal(obs[i], o)
            assert (rewards[i], terminated[i], truncated[i], info["lives"][i]) == (r, te, tr, inf["lives"])
            done[i] = te or tr
            big_rewards += r > 1
    assert (episodes >= 2).all() and big_rewards > 0


def test_native_vector_env_padding_and_seed():
    protocol = AtariProtocol()
    native = make_native_vector_env("pong", 2, protocol, seed=3)
    assert native.observation_space.shape == (2, 4, 84, 84) and native.observation_space.dtype == np.uint8
    obs, _ = native.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert all(np.array_equal(obs[:, 0], obs[:, i]) for i in range(1, 4))
    raw_obs, _ = native.unwrapped.reset(seed=3)                 # ale-py itself pads with zeros
    assert not raw_obs[:, :3].any() and raw_obs[:, 3].any()
    actions = _actions(100, 6).reshape(50, 2)
    runs = []
    for _ in range(2):                                          # seed=3 on the first reset: ALE seeds 3 and 4
        env = make_native_vector_env("pong", 2, protocol, seed=3)
        env.reset()
        runs.append(np.stack([env.step(a)[0] for a in actions]))
    np.testing.assert_array_equal(*runs)
    assert not np.array_equal(runs[0][:, 0], runs[0][:, 1])     # the two sub-envs have seeds of their own
