"""Atari 2600 games under the evaluation protocol of Machado et al. (2018), "Revisiting the Arcade Learning
Environment": sticky actions (p = 0.25, applied by ALE to every emulator frame), 4 frames per agent step with the
last two max-pooled, 84x84 grayscale (cv2.INTER_AREA), 4 stacked frames, no life-loss terminal, no no-op starts,
at most 108,000 emulator frames (30 minutes) per episode, the game's minimal action set and its raw score
(rewards are clipped by the trainer, not here).

Two constructions:

* ``make_atari_env``: one env, ``gym.make(ALE/...-v5, frameskip=1)`` + ``AtariPreprocessing`` +
  ``FrameStackObservation(padding_type="reset")``. Observations are uint8 (frame_stack, 84, 84), frame -1 the
  newest; right after a reset all frames are the reset frame.
* ``make_native_vector_env``: ale-py's C++ ``AtariVectorEnv`` (threads, no Python per frame) set to the same
  protocol, wrapped so that its frame stack is padded with the reset frame as above (ale-py pads with zeros).
  On a fixed seed it gives the same observations, rewards and flags as ``make_atari_env`` (tests/test_atari_env.py);
  the differences that remain are listed on ``make_native_vector_env``.

What ALE and the wrappers do, measured with ale-py 0.12.1 and gymnasium 1.4 (tests/test_atari_env.py checks each):

* Frame cap: ``max_num_frames_per_episode`` is ALE's own counter of emulator frames since ``reset_game``; when it
  is reached ``AtariEnv.step`` returns ``terminated=False, truncated=True`` (``ale.game_truncated()``), and
  ``AtariPreprocessing`` passes that on unchanged (it stops the frame skip early if the cap falls inside one).
  With the default 108,000 frames and frame skip 4 the episode is truncated at agent step 27,000. No-op starts
  (``noop_max > 0``) are emulator frames too and count against the cap. gym.make adds no TimeLimit for ALE/*-v5.
* Stale last observation: when an episode ends inside a frame skip (game over or the cap), AtariPreprocessing
  breaks out of the skip before it captures the frames it pools, so the observation returned with
  terminated/truncated is max(previous step's pooled screen, whatever of this skip's frames -2 was captured),
  resized, not the final screen. With the cap a multiple of the frame skip the cap falls on the skip's last frame,
  so the final observation is max(previous pooled screen, this skip's third frame). ale-py's vector env does
  the same. A trainer that bootstraps from truncated transitions bootstraps from that image.
* Lives: every step's info has ``"lives"`` (``ale.lives()``, 0 for games without lives such as Pong), as has the
  reset info; ``episode_frame_number`` and ``frame_number`` too.
* Seeding: ``reset(seed=s)`` derives an ALE seed and a numpy seed from ``SeedSequence(s)``, reloads the ROM and
  resets, so a freshly constructed env reset with the same seed and stepped with the same actions gives the same
  observations. ``reset()`` without a seed does NOT reseed: ALE's generator (sticky actions) and the no-op
  generator continue from where the previous episode left them, so the episode depends on the whole history
  since the last seeded reset (deterministic given it, but not replayable from the episode alone), and a fresh
  env's first unseeded reset draws its seeds from OS entropy. Pass an explicit seed to every reset that has to be
  replayable.
"""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = [
    "ATARI_57_GAMES",
    "ATARI_100K_GAMES",
    "AtariProtocol",
    "NativeAtariVectorEnv",
    "ale_id",
    "ale_seed",
    "make_atari_env",
    "make_native_vector_env",
    "rom_id",
]


@dataclass(frozen=True)
class AtariProtocol:
    """Evaluation protocol settings; the defaults are Machado et al. (2018)'s."""

    sticky_action_prob: float = 0.25     # ALE repeats the previous frame's action with this probability, per frame
    frame_skip: int = 4                  # emulator frames per agent step (last two max-pooled)
    frame_stack: int = 4                 # observations stacked
    screen_size: int = 84                # frames resized to screen_size x screen_size (cv2.INTER_AREA)
    noop_max: int = 0                    # > 0: 1..noop_max no-op agent frames after each reset
    max_episode_frames: int = 108_000    # emulator frames per episode; then truncated=True
    full_action_space: bool = False      # False: the game's minimal action set

    def __post_init__(self):
        if not 0.0 <= self.sticky_action_prob <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {self.sticky_action_prob}")
        for name in ("frame_skip", "frame_stack", "screen_size", "max_episode_frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.noop_max, int) or isinstance(self.noop_max, bool) or self.noop_max < 0:
            raise ValueError(f"noop_max must be a non-negative int, got {self.noop_max!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------- game names
# The csv names games in lower case without separators (stats.game_key); ALE's ids are CamelCase.
_CAMEL = {name.lower(): name for name in ["Alien", "Amidar", "Assault", "Asterix", "Asteroids", "Atlantis", "BankHeist", "BattleZone", "BeamRider", "Berzerk", "Bowling", "Boxing", "Breakout", "Centipede", "ChopperCommand", "CrazyClimber", "Defender", "DemonAttack", "DoubleDunk", "Enduro", "FishingDerby", "Freeway", "Frostbite", "Gopher", "Gravitar", "Hero", "IceHockey", "Jamesbond", "Kangaroo", "Krull", "KungFuMaster", "MontezumaRevenge", "MsPacman", "NameThisGame", "Phoenix", "Pitfall", "Pong", "PrivateEye", "Qbert", "Riverraid", "RoadRunner", "Robotank", "Seaquest", "Skiing", "Solaris", "SpaceInvaders", "StarGunner", "Surround", "Tennis", "TimePilot", "Tutankham", "UpNDown", "Venture", "VideoPinball", "WizardOfWor", "YarsRevenge", "Zaxxon"]}


def _key(game: str) -> str:
    """'ALE/MsPacman-v5', 'MsPacman', 'ms_pacman' and 'mspacman' all give 'mspacman'."""
    key = re.sub(r"^ale/", "", game.strip().lower())
    key = re.sub(r"(noframeskip|deterministic)?-v\d+$", "", key)
    return re.sub(r"[^a-z0-9]", "", key)


def ale_id(game: str) -> str:
    """The Gymnasium id of a game: 'pong' -> 'ALE/Pong-v5', 'montezuma_revenge' -> 'ALE/MontezumaRevenge-v5'."""
    key = _key(game)
    if key not in _CAMEL:
        raise ValueError(f"unknown Atari game {game!r}; known: {', '.join(sorted(_CAMEL))}")
    return f"ALE/{_CAMEL[key]}-v5"


def rom_id(game: str) -> str:
    """ale-py's ROM name of a game (what AtariVectorEnv takes): 'MsPacman' -> 'ms_pacman', 'UpNDown' ->
    'up_n_down'."""
    camel = ale_id(game)[len("ALE/"):-len("-v5")]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _read_games() -> tuple[tuple[str, ...], tuple[str, ...]]:
    with resources.files("qbench.data").joinpath("atari_human_random.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    all_games = tuple(ale_id(row["game"]) for row in rows)
    atari100k = tuple(ale_id(row["game"]) for row in rows if row["in_atari100k"].strip() == "1")
    return atari100k, all_games


ATARI_100K_GAMES, ATARI_57_GAMES = _read_games()   # ALE ids, in the csv's (alphabetical) order


# ------------------------------------------------------------------------------------------------- one env
def _register_ale_envs() -> None:
    import ale_py  # optional extra: qbench[atari]
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)   # no banner on stdout at every ROM load
    gym.register_envs(ale_py)


def make_atari_env(env_id: str, protocol: AtariProtocol | None = None) -> gym.Env:
    """One Atari env under ``protocol``: uint8 observations (frame_stack, screen_size, screen_size), frame -1 the
    newest, raw game score as reward, ``info["lives"]`` in every step. ``env_id``: an ALE id or a game name."""
    protocol = AtariProtocol() if protocol is None else protocol
    _register_ale_envs()
    if not env_id.startswith("ALE/"):
        env_id = ale_id(env_id)
    # frameskip=1: AtariPreprocessing does the skipping, so that it can pool the last two frames; ALE applies the
    # sticky-action draw inside every ale.act, i.e. per emulator frame, as in Machado et al.
    env = gym.make(env_id, frameskip=1, repeat_action_probability=protocol.sticky_action_prob,
                   full_action_space=protocol.full_action_space,
                   max_num_frames_per_episode=protocol.max_episode_frames)
    # The frame cap surfaces as truncated=True (terminated=False) from AtariEnv.step, passed on unchanged by
    # AtariPreprocessing; the observation returned with it is stale (see the module docstring).
    env = gym.wrappers.AtariPreprocessing(env, noop_max=protocol.noop_max, frame_skip=protocol.frame_skip,
                                          screen_size=protocol.screen_size, terminal_on_life_loss=False,
                                          grayscale_obs=True, scale_obs=False)
    return gym.wrappers.FrameStackObservation(env, protocol.frame_stack, padding_type="reset")


def ale_seed(seed: int) -> int:
    """The ALE ``random_seed`` that ``AtariEnv.reset(seed=seed)`` sets (SeedSequence's second word as an int32).
    The native vector env takes ALE seeds directly and only non-negative ones, so a Python env reset with ``seed``
    can be matched by a native env reset with ``ale_seed(seed)`` when that is >= 0 (about half the seeds)."""
    word = np.random.SeedSequence(seed).generate_state(n_words=2)[1]
    return int(np.array(word, dtype=np.uint32).view(np.int32))


# ------------------------------------------------------------------------------------------ native vector env
class NativeAtariVectorEnv(gym.vector.VectorWrapper):
    """ale-py's AtariVectorEnv with its frame stack padded by the reset frame (as FrameStackObservation's
    padding_type="reset") instead of zeros. Autoreset is ale-py's NEXT_STEP: the step after one that returned
    terminated or truncated ignores its action and returns the new episode's first observation with reward 0 and
    both flags False. Synchronous only (batch_size = num_envs)."""

    def __init__(self, env: gym.vector.VectorEnv, frame_stack: int, seed: int | None = None):
        super().__init__(env)
        self._stack = frame_stack
        self._seed = seed
        self._seeded = False
        self._age = np.full(self.num_envs, frame_stack)     # frames in each stack since its reset, capped
        self._done = np.zeros(self.num_envs, dtype=bool)     # last step ended the episode: next step autoresets

    def _pad(self, obs: np.ndarray) -> np.ndarray:
        short = np.flatnonzero(self._age < self._stack)
        if len(short):
            obs = obs.copy() if not obs.flags.writeable else obs
            for i in short:
                pad = self._stack - self._age[i]
                obs[i, :pad] = obs[i, pad]
        return obs

    def reset(self, *, seed: int | np.ndarray | None = None, options: dict[str, Any] | None = None):
        """``seed``: an int seeds sub-env i with ALE seed seed + i, an array gives one ALE seed per sub-env being
        reset (non-negative: ale-py ignores negative seeds); None, on the first reset, the seed given to
        make_native_vector_env. ``options={"reset_mask": bool array}`` resets some sub-envs only."""
        if seed is None and not self._seeded and self._seed is not None:
            seed = self._seed
        self._seeded = True
        obs, info = self.env.reset(seed=seed, options=options)
        mask = np.ones(self.num_envs, dtype=bool) if not options or "reset_mask" not in options \
            else options["reset_mask"]
        self._age[mask] = 1
        self._done[mask] = False
        return self._pad(obs), info

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(actions))
        self._age = np.where(self._done, 1, np.minimum(self._age + 1, self._stack))
        self._done = np.logical_or(terminated, truncated)
        return self._pad(obs), reward, terminated, truncated, info


def make_native_vector_env(game: str, num_envs: int, protocol: AtariProtocol | None = None,
                           seed: int | None = None, *, num_threads: int = 0) -> NativeAtariVectorEnv:
    """ale-py's C++ vector env under ``protocol`` (no fire reset, no reward clipping, no life-loss terminal),
    observations uint8 (num_envs, frame_stack, screen_size, screen_size) padded like make_atari_env's.

    ``seed``: sub-env i's first reset uses ALE seed ``seed + i`` (ale-py's convention; None: OS entropy). This is
    NOT the stream of ``make_atari_env(...).reset(seed=seed + i)``, which hashes its seed first (``ale_seed``); with
    ALE seeds matched (``reset(seed=np.array([ale_seed(s), ...]))``) the two agree observation for observation,
    sticky actions included. What still differs from make_atari_env:

    * no-op starts: ale-py draws 0..noop_max-1 no-ops from its own generator (AtariPreprocessing: 1..noop_max from
      the env's numpy generator), and does not count them against the frame cap. Equal with noop_max=0 (the
      protocol's default).
    * autoreset: NEXT_STEP (see NativeAtariVectorEnv); rewards are int32 arrays, flags bool arrays, info a dict of
      arrays (lives, frame_number, episode_frame_number, env_id).
    """
    protocol = AtariProtocol() if protocol is None else protocol
    from ale_py.vector_env import AtariVectorEnv
    env = AtariVectorEnv(
        rom_id(game), num_envs, num_threads=num_threads,
        max_num_frames_per_episode=protocol.max_episode_frames,
        repeat_action_probability=protocol.sticky_action_prob, full_action_space=protocol.full_action_space,
        img_height=protocol.screen_size, img_width=protocol.screen_size, grayscale=True,
        stack_num=protocol.frame_stack, frameskip=protocol.frame_skip, maxpool=True, noop_max=protocol.noop_max,
        episodic_life=False, life_loss_info=False, reward_clipping=False, use_fire_reset=False,
        autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    return NativeAtariVectorEnv(env, protocol.frame_stack, seed)
