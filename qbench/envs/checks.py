"""The environment's side of the contract, checked as it runs: Gymnasium's API (reset returns (obs, info), step
returns (obs, reward, terminated, truncated, info)), observations of the shape and kind the declared space promises,
finite rewards and observations. A violation is the env's fault, not the variant's: it raises EnvFault, which the
engine records as an `env` outcome (error.json kind env) instead of letting a NaN reward surface later as a
"diverged" TD loss or a shape error as a traceback."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np


class EnvFault(RuntimeError):
    """The environment broke its contract (what is wrong, without the seed and step: the engine adds those)."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


class ContractChecked(gym.Wrapper):
    """Checks every reset and step of the env it wraps; the checks cost a few attribute reads per step, plus one
    sum over float observations. Errors raised inside the env become EnvFaults naming the call."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        self._box = isinstance(space, gym.spaces.Box)
        self._discrete = isinstance(space, gym.spaces.Discrete)
        self._shape = tuple(space.shape) if self._box else ()
        self._declared_float = self._box and np.issubdtype(space.dtype, np.floating)
        self._kinds = ("biuf" if self._declared_float else "biu") if self._box else ""   # dtype kinds allowed
        self._n_states = int(space.n) if self._discrete else 0
        self._state_start = int(space.start) if self._discrete else 0

    def reset(self, **kwargs):
        try:
            result = self.env.reset(**kwargs)
        except EnvFault:
            raise
        except Exception as exc:
            raise EnvFault(f"reset raised {type(exc).__name__}: {_first_line(exc)}") from exc
        if not (isinstance(result, tuple) and len(result) == 2):
            raise EnvFault(f"reset returned {_describe_result(result)}; Gymnasium's reset returns 2: (obs, info)")
        self._check_observation(result[0], "reset")
        if not isinstance(result[1], dict):
            raise EnvFault(f"reset returned info of type {type(result[1]).__name__}; Gymnasium's info is a dict")
        return result

    def step(self, action):
        try:
            result = self.env.step(action)
        except EnvFault:
            raise
        except Exception as exc:
            message = _first_line(exc)
            hint = (" (the old Gym API's step returns 4 values: obs, reward, done, info; Gymnasium's returns 5: "
                    "obs, reward, terminated, truncated, info)" if "expected 5, got 4" in message else "")
            raise EnvFault(f"step raised {type(exc).__name__}: {message}{hint}") from exc
        if not (isinstance(result, tuple) and len(result) == 5):
            old_api = " (the old Gym API: obs, reward, done, info)" if isinstance(result, tuple) and len(result) == 4 \
                else ""
            raise EnvFault(f"step returned {_describe_result(result)}{old_api}; Gymnasium's step returns 5: "
                           "(obs, reward, terminated, truncated, info)")
        obs, reward, _, _, info = result
        self._check_observation(obs, "step")
        try:
            value = float(reward)
        except (TypeError, ValueError):
            raise EnvFault(f"step returned a reward of type {type(reward).__name__} ({_short(reward)}); a reward "
                           "is a real number") from None
        if not math.isfinite(value):
            raise EnvFault(f"step returned the reward {value}; rewards must be finite")
        if not isinstance(info, dict):
            raise EnvFault(f"step returned info of type {type(info).__name__}; Gymnasium's info is a dict")
        return result

    def _check_observation(self, obs: Any, call: str) -> None:
        # The common case first, in attribute reads: an array of the declared shape and an allowed kind. A small
        # float32 vector is finite exactly when its sum in Python floats is (64 float32 values cannot overflow a
        # float64), and that sum costs a tenth of a numpy reduction's call overhead.
        if type(obs) is np.ndarray and obs.shape == self._shape and obs.dtype.kind in self._kinds:
            if obs.dtype.kind != "f":
                return
            if (math.isfinite(sum(obs.tolist())) if obs.size <= 64 and obs.dtype.itemsize <= 4
                    else np.isfinite(obs).all()):
                return
        if self._box:
            shape = np.shape(obs)
            if shape != self._shape:
                raise EnvFault(f"{call} returned an observation of shape {shape}; the observation space declares "
                               f"{self._shape}")
            kind = np.asarray(obs).dtype.kind
            if kind not in "biuf" or (kind == "f" and not self._declared_float):
                raise EnvFault(f"{call} returned an observation of dtype {np.asarray(obs).dtype}; the observation "
                               f"space declares {self.observation_space.dtype}")
            if kind == "f" and not np.isfinite(obs).all():
                raise EnvFault(f"{call} returned an observation that is not finite: {_short(obs)}")
        elif self._discrete and not self._is_state(obs):
            raise EnvFault(f"{call} returned the observation {_short(obs)}; the observation space declares "
                           f"Discrete({self._n_states}) (an integer in [{self._state_start}, "
                           f"{self._state_start + self._n_states - 1}])")

    def _is_state(self, obs: Any) -> bool:
        return (isinstance(obs, int | np.integer) and not isinstance(obs, bool | np.bool_)
                and self._state_start <= int(obs) < self._state_start + self._n_states)


def _describe_result(result: Any) -> str:
    return f"{len(result)} values" if isinstance(result, tuple) else f"a {type(result).__name__}, not a tuple"


def _short(value: Any, limit: int = 80) -> str:
    text = np.array2string(value, threshold=8) if isinstance(value, np.ndarray) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
