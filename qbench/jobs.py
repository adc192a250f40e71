"""A job is one (variant, task, seed) with its fully resolved settings, checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qbench.config import VARIANTS, Config, ConfigError, Variant, config_hash, get_variant, resolve
from qbench.envs.tasks import Task, get_task, probe_spaces

# Which action space each q head serves.
HEAD_ACTION_KIND = {"discrete": "discrete", "state_action": "box", "naf": "box"}


@dataclass(frozen=True)
class Job:
    variant: str
    task: Task
    seed: int
    config: Config

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "task": self.task.name, "env_id": self.task.env_id,
                "env_kwargs": self.task.env_kwargs, "seed": self.seed, "config": self.config.to_dict()}

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
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    variant = get_variant(variant_name, extra_variants)
    task = get_task(task_name, extra_tasks)
    config = resolve(variant, task.settings, *overrides)
    spaces = probe_spaces(task, config.observation_scaling)
    needs = HEAD_ACTION_KIND[config.q_head]
    if needs != spaces.action_kind:
        fitting = variants_for(spaces.action_kind, {**VARIANTS, **(extra_variants or {})})
        kind_name = {"discrete": "Discrete", "box": "Box"}
        raise ConfigError(
            f"variant '{variant_name}' needs a {kind_name[needs]} action space but task '{task.name}' has "
            f"{kind_name[spaces.action_kind]} actions; variants for {kind_name[spaces.action_kind]} actions: "
            f"{', '.join(fitting) if fitting else 'none yet'}")
    defaults = Config()
    if spaces.action_kind == "box" and config.exploration != defaults.exploration:
        raise ConfigError(f"exploration '{config.exploration}' chooses among discrete actions and task "
                          f"'{task.name}' has Box actions; Box actions explore by action_noise (gaussian, ou)")
    if spaces.action_kind == "discrete" and config.action_noise != defaults.action_noise:
        raise ConfigError(f"action_noise '{config.action_noise}' perturbs Box actions and task '{task.name}' has "
                          "Discrete actions; Discrete actions explore by exploration (epsilon_greedy, boltzmann)")
    if config.nstep_correction == "cut" and spaces.action_kind != "discrete" and config.n_step > 1:
        raise ConfigError("nstep_correction 'cut' compares actions with the greedy one and needs discrete "
                          "actions; use 'ignore'")
    return Job(variant_name, task, seed, config)
