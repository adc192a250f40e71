"""The run's time, shared by every seed of a batch: the env steps and gradient steps taken, and what follows from
them (the progress fraction that every schedule reads, and the n of n-step targets at that point)."""

from __future__ import annotations

import dataclasses

from qbench.config import Config, n_step_at


@dataclasses.dataclass
class Clock:
    cfg: Config
    env_steps: int = 0    # during a step of the loop, that step's number (1 for the first)
    grad_steps: int = 0

    def tick(self) -> None:
        """On to the next env step."""
        self.env_steps += 1

    @property
    def running(self) -> bool:
        return self.env_steps < self.cfg.total_env_steps

    @property
    def progress(self) -> float:
        """The fraction of the run done before this env step: what schedules (epsilon, temperature, learning rate,
        n) read."""
        return (self.env_steps - 1) / self.cfg.total_env_steps

    @property
    def n(self) -> int:
        """The n of n-step targets at this env step (it follows a schedule where n_step_end is set)."""
        return n_step_at(self.cfg, self.progress)
