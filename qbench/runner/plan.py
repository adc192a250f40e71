"""Expanding a suite into jobs, and where each job's run directory lives. Pure: writes nothing."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from qbench.config import ConfigError, parse_assignment
from qbench.jobs import Job, build_job
from qbench.store import ERROR, SUMMARY
from qbench.suites import Suite

ONLY_KEYS = ("variant", "task", "seed")


def parse_only(texts: list[str] | None) -> dict[str, frozenset[str]]:
    """``--only KEY=VALUE`` filters: values of one key are alternatives (or comma-separated); keys combine."""
    only: dict[str, set[str]] = {}
    for text in texts or []:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or key not in ONLY_KEYS or not value.strip():
            raise ConfigError(f"--only '{text}' must be KEY=VALUE with KEY one of {', '.join(ONLY_KEYS)}")
        only.setdefault(key, set()).update(v.strip() for v in value.split(",") if v.strip())
    return {k: frozenset(v) for k, v in only.items()}


def parse_overrides(texts: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` overrides: the command-line layer, applied after everything in the suite file."""
    return dict(parse_assignment(text) for text in texts or [])


def expand(suite: Suite, seeds: int | None = None, only: dict[str, frozenset[str]] | None = None,
           overrides: dict[str, Any] | None = None) -> list[Job]:
    """Every (task, variant, seed) job of the suite, resolved and validated, in file order.

    ``seeds`` replaces the suite's seed count (seeds 0 .. seeds-1); ``only`` keeps the jobs whose variant,
    task and seed match; ``overrides`` is the command-line layer. Raises ConfigError (naming the file and the
    task entry) for any job that cannot be built, so nothing starts unless everything is valid.
    """
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ConfigError(f"--seeds must be a positive integer, got {seeds!r}")
    only = only or {}
    seed_list = range(seeds if seeds is not None else suite.seeds)
    _check_only_matches(suite, seed_list, only)
    jobs: list[Job] = []
    seen: set[str] = set()
    for entry in suite.entries:
        if "task" in only and entry.name not in only["task"]:
            continue
        for variant in entry.variants:
            if "variant" in only and variant not in only["variant"]:
                continue
            where = f"{entry.source}: tasks.{entry.name} (variant '{variant}')"
            try:
                # Seeds share everything but the seed, so one resolution (and one env probe) serves them all.
                first = build_job(variant, entry.name, 0, *entry.layers, overrides or {},
                                  extra_variants=suite.custom_variants, extra_tasks=suite.custom_tasks)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - e.g. env_kwargs the environment refuses: a user mistake
                first_line = (str(exc).strip().splitlines() or [""])[0]
                raise ConfigError(f"{where}: cannot build the environment: {type(exc).__name__}: "
                                  f"{first_line}") from None
            for seed in seed_list:
                if "seed" in only and str(seed) not in only["seed"]:
                    continue
                job = dataclasses.replace(first, seed=seed)
                if job.hash not in seen:
                    seen.add(job.hash)
                    jobs.append(job)
    return jobs


def _check_only_matches(suite: Suite, seed_list: range, only: dict[str, frozenset[str]]) -> None:
    """A filter value that matches nothing is a typo, not an empty run."""
    present = {"task": {e.name for e in suite.entries},
               "variant": {v for e in suite.entries for v in e.variants},
               "seed": {str(s) for s in seed_list}}
    for key, values in only.items():
        missing = sorted(values - present[key])
        if missing:
            raise ConfigError(f"--only {key}={','.join(missing)} matches no job of suite '{suite.name}'; "
                              f"{key}s in it: {', '.join(sorted(present[key], key=_natural))}")


def _natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _component(name: str) -> str:
    """A task or variant name as one safe path component (module:Class names hold a colon)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def run_path(results_dir: Path, suite_name: str, job: Job) -> Path:
    """results/<suite>/<task>/<variant>/seed<k>-<jobhash>: the hash names the resolved config, so a changed
    setting is a new job in a new directory and never mixes with old rows."""
    return (Path(results_dir) / _component(suite_name) / _component(job.task.name) / _component(job.variant)
            / f"seed{job.seed}-{job.hash}")


def job_state(path: Path) -> str:
    """complete (summary.json), failed (error.json, no summary), partial (started, not finished) or new."""
    if (path / SUMMARY).exists():
        return "complete"
    if (path / ERROR).exists():
        return "failed"
    return "partial" if path.exists() else "new"
