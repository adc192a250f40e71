"""A job is one (variant, task, seed) with its fully resolved settings, checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qbench.config import (
    MAX_SEED,
    TRACE_CORRECTIONS,
    VARIANTS,
    Config,
    ConfigError,
    Variant,
    config_hash,
    get_variant,
    is_multi_step,
    resolve,
)
from qbench.envs.pixels import ATARI_PROTOCOL_KEYS, STICKY_KEY
from qbench.envs.tasks import Spaces, Task, get_task, probe_spaces

# Which action space each q head serves.
HEAD_ACTION_KIND = {"discrete": "discrete", "table": "discrete", "state_action": "box", "naf": "box"}


@dataclass(frozen=True)
class Job:
    variant: str
    task: Task
    seed: int
    config: Config
    # Where its settings came from when qbench tune chose them (a suite's ``tuned`` folder): the budget, tuning
    # seeds, objective and the tuned settings' names (qbench.tuning.read_tuned_file). Part of config.json, and so of
    # the job's hash; absent from both for every other job.
    tuned_from: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"variant": self.variant, "task": self.task.name, "env_id": self.task.env_id,
               "env_kwargs": self.task.env_kwargs, "seed": self.seed, "config": self.config.to_dict()}
        if self.tuned_from is not None:
            out["tuned_from"] = self.tuned_from
        return out

    @property
    def hash(self) -> str:
        return config_hash(self.to_dict())


def variants_for(action_kind: str, variants: dict[str, Variant]) -> list[str]:
    defaults = Config()
    return sorted(name for name, v in variants.items()
                  if HEAD_ACTION_KIND[v.settings.get("q_head", defaults.q_head)] == action_kind)


def build_job(variant_name: str, task_name: str, seed: int, *overrides: dict[str, Any],
              extra_variants: dict[str, Variant] | None = None, extra_tasks: dict[str, Task] | None = None) -> Job:
    """Resolve and validate one job; raises ConfigError with a one-line message on any mistake."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer in 0..{MAX_SEED} (2^63 - 1), got {seed!r}")
    variant = get_variant(variant_name, extra_variants)
    task = get_task(task_name, extra_tasks)
    config = resolve(variant, task.settings, *overrides)
    check_task_settings(task, config)
    spaces = probe_spaces(task, config)
    check_encoder(task, config, spaces)
    needs = HEAD_ACTION_KIND[config.q_head]
    if needs != spaces.action_kind:
        fitting = variants_for(spaces.action_kind, {**VARIANTS, **(extra_variants or {})})
        kind_name = {"discrete": "Discrete", "box": "Box"}
        raise ConfigError(
            f"variant '{variant_name}' needs a {kind_name[needs]} action space but task '{task.name}' has "
            f"{kind_name[spaces.action_kind]} actions; variants for {kind_name[spaces.action_kind]} actions: "
            f"{', '.join(fitting) if fitting else 'none yet'}")
    if config.q_head == "table" and not spaces.discrete_states:
        raise ConfigError(f"q_head 'table' keeps one entry per state and task '{task.name}' has "
                          f"{'image' if spaces.is_image else 'Box'} observations; a table needs Discrete "
                          "observations; for these use q_head discrete (a network)")
    defaults = Config()
    if spaces.action_kind == "box" and config.exploration != defaults.exploration:
        raise ConfigError(f"exploration '{config.exploration}' chooses among discrete actions and task "
                          f"'{task.name}' has Box actions; Box actions explore by action_noise (gaussian, ou)")
    if spaces.action_kind == "box" and config.epsilon_form != defaults.epsilon_form:
        raise ConfigError(f"epsilon_form '{config.epsilon_form}' says what epsilon-greedy's epsilon means and task "
                          f"'{task.name}' has Box actions; Box actions explore by action_noise (gaussian, ou)")
    if spaces.action_kind == "discrete" and config.action_noise != defaults.action_noise:
        raise ConfigError(f"action_noise '{config.action_noise}' perturbs Box actions and task '{task.name}' has "
                          "Discrete actions; Discrete actions explore by exploration (epsilon_greedy, boltzmann)")
    if config.nstep_correction == "cut" and spaces.action_kind != "discrete" and is_multi_step(config):
        raise ConfigError("nstep_correction 'cut' compares actions with the greedy one and needs discrete "
                          "actions; use 'ignore'")
    if config.nstep_correction in TRACE_CORRECTIONS and spaces.action_kind != "discrete":
        raise ConfigError(f"nstep_correction '{config.nstep_correction}' weighs each action by pi(a|s) / mu(a|s), "
                          f"probabilities of discrete actions, and task '{task.name}' has Box actions (a density "
                          "ratio under action noise is not defined for a deterministic greedy pi); use 'ignore'")
    from qbench.runner.plan import check_networks_fit
    check_networks_fit(config, spaces)
    return Job(variant_name, task, seed, config)


def check_task_settings(task: Task, config: Config) -> None:
    """Refuse settings that the task would ignore: the ALE protocol off ALE, sticky actions off ALE and MinAtar,
    the MinAtar action set off MinAtar, cuda without a GPU."""
    defaults = Config()
    protocol = ATARI_PROTOCOL_KEYS + (() if task.family in ("atari", "minatar") else (STICKY_KEY,))
    if task.family != "atari":
        changed = [key for key in protocol if getattr(config, key) != getattr(defaults, key)]
        if changed:
            raise ConfigError(f"setting '{changed[0]}' is part of the Atari protocol and task '{task.name}' is not "
                              "an ALE game; it applies to ALE/... tasks only")
    if task.family != "minatar" and config.minatar_action_set != defaults.minatar_action_set:
        raise ConfigError(f"setting 'minatar_action_set' chooses among a MinAtar game's actions and task "
                          f"'{task.name}' is not a MinAtar game; it applies to MinAtar/... tasks only (on ALE "
                          "games: full_action_space)")
    if config.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("setting device 'cuda' asks for a GPU and torch sees none here; use device 'cpu' "
                              "or 'auto' (cuda where there is one)")


def check_encoder(task: Task, config: Config, spaces: Spaces) -> None:
    if spaces.is_image and config.encoder == "none":
        raise ConfigError(f"task '{task.name}' has image observations {spaces.obs_shape}, which need an image "
                          "encoder; valid encoders for images: auto, nature_cnn, minatar_cnn")
    if not spaces.is_image and config.encoder not in ("auto", "none"):
        raise ConfigError(f"encoder '{config.encoder}' reads images and task '{task.name}' has vector "
                          "observations; valid encoders for vectors: auto, none")
    if spaces.is_image:
        from qbench.parts.sizes import conv_output_hw
        kind = "nature_cnn" if config.encoder == "auto" else config.encoder
        h, w = conv_output_hw(kind, *(spaces.obs_shape[:2] if spaces.image_layout == "channels_last"
                                      else spaces.obs_shape[1:]))
        if h < 1 or w < 1:
            raise ConfigError(f"image observations {spaces.obs_shape} of task '{task.name}' are too small for "
                              f"encoder '{kind}'; valid encoders: nature_cnn (84x84 frames), minatar_cnn (from 3x3)")
