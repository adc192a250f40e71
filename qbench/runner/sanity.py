"""The pass rule of a suite with thresholds: a (variant, task) passes when at least ``min_passing_seeds`` of
its seeds end (final greedy evaluation, ``final_return_mean``) at or above the variant's threshold on that
task."""

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
    finals: tuple[tuple[int, float | None], ...]   # (seed, final return), None for a failed job

    @property
    def passing(self) -> int:
        if self.threshold is None:
            return 0
        return sum(f is not None and f >= self.threshold for _, f in self.finals)

    @property
    def verdict(self) -> str:
        if self.threshold is None:
            return "reported"
        return "pass" if self.passing >= self.needed else "fail"


def judge(suite: Suite, outcomes: list[Outcome]) -> list[Verdict]:
    finals: dict[tuple[str, str], list[tuple[int, float | None]]] = defaultdict(list)
    for o in outcomes:
        final = o.summary.get("final_return_mean") if o.status != "failed" else None
        finals[(o.job.task.name, o.job.variant)].append((o.job.seed, final))
    verdicts = []
    for (task, variant), seeds in finals.items():
        threshold = suite.entry(task).thresholds.get(variant)
        needed = suite.min_passing_seeds if threshold is not None else None
        verdicts.append(Verdict(task, variant, threshold, needed,
                                tuple(sorted(seeds))))
    return verdicts
