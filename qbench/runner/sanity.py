"""The pass rule of a suite with thresholds: a (variant, task) passes when at least ``min_passing_seeds`` (the
task's own, else the suite's) of its seeds end (final greedy evaluation, ``final_return_mean``) at or above the
variant's threshold on that task (``Suite.rule``). Where fewer seeds ran than the suite has (``--only seed=...``),
a verdict the missing seeds could still change is ``incomplete``, neither pass nor fail. A seed stopped by an env
fault (error.json's ``"error": "env"``: the environment misbehaved) says nothing of the variant: it counts as a
seed not run, never as a failing one."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from qbench.runner.run import Outcome
from qbench.suites import Suite


@dataclass(frozen=True)
class Verdict:
    task: str
    variant: str
    threshold: float | None           # None: reported without a pass requirement
    needed: int | None
    finals: tuple[tuple[int, float | None], ...]   # (seed, final return), None for a failed job (not env faults)
    seeds: int = 0                    # the seeds the suite gives this task (the rule counts over them)

    @property
    def passing(self) -> int:
        if self.threshold is None:
            return 0
        return sum(f is not None and f >= self.threshold for _, f in self.finals)

    @property
    def verdict(self) -> str:
        if self.threshold is None:
            return "reported"
        if self.passing >= self.needed:
            return "pass"
        not_run = max(0, self.seeds - len(self.finals))
        return "fail" if self.passing + not_run < self.needed else "incomplete"


def judge(suite: Suite, outcomes: list[Outcome]) -> list[Verdict]:
    finals: dict[tuple[str, str], list[tuple[int, float | None]]] = defaultdict(list)
    for o in outcomes:
        if o.status == "failed" and isinstance(o.error, dict) and o.error.get("error") == "env":
            continue   # an env fault: as if the seed had not run
        final = o.summary.get("final_return_mean") if o.status != "failed" else None
        finals[(o.job.task.name, o.job.variant)].append((o.job.seed, final))
    verdicts = []
    for (task, variant), seeds in finals.items():
        threshold = suite.entry(task).thresholds.get(variant)
        k, n = suite.rule(task)
        verdicts.append(Verdict(task, variant, threshold, k if threshold is not None else None,
                                tuple(sorted(seeds)), n))
    return verdicts
