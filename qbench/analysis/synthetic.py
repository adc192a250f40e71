"""Synthetic results folders with the exact layout ``qbench run`` writes: for report tests and benchmarks.

Scores are made up; the files are real (config.json, runner.json, evaluations.csv, summary.json or error.json,
and the suite's suite.json), written through the same store functions as the engine's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qbench.analysis.scoring import SUITE_RECORD
from qbench.config import config_hash
from qbench.store import ERROR, METADATA, RUNNER, RunDir, atomic_write_json


def write_run(results: Path, suite: str, task: str, variant: str, seed: int, env_steps: Sequence[int],
              returns: Sequence[float], *, env_id: str | None = None, q_start: Sequence[float] | None = None,
              discounted: Sequence[float] | None = None, state: str = "complete", wall_s: float = 10.0,
              peak_rss_mb: float | None = 300.0, runner: dict | None = None, metadata: dict | None = None,
              divergence_watch: Any = None, config: dict | None = None, message: str = "synthetic") -> Path:
    """One run directory; ``state`` is complete (summary.json), diverged, crashed or env (error.json, holding
    ``message``; an env fault's as the engine writes it, type EnvFault) or unfinished.
    No ``env_steps`` (a run that stopped before its first evaluation): no evaluations.csv. ``runner`` adds keys to
    runner.json (e.g. git_commit, attempt_history); ``metadata`` writes a metadata.json. ``divergence_watch``,
    when given, is written as it is under that key of summary.json (or error.json): ``watch_record`` makes
    the engine's; without it the files have no such key, as before the watch recorded itself. ``config`` adds
    settings to config.json's config table (e.g. divergence_warn_factor; it changes the run's hash)."""
    job = {"variant": variant, "task": task, "env_id": env_id or task, "env_kwargs": {}, "seed": seed,
           "config": {"synthetic": True, **(config or {})}}
    path = Path(results) / suite / task / variant / f"seed{seed}-{config_hash(job)}"
    run = RunDir(path)
    run.write_config(job)
    atomic_write_json(path / RUNNER, {"suite": suite, "attempts": 1, **(runner or {})})
    if metadata is not None:
        atomic_write_json(path / METADATA, metadata)
    rows = []
    for i, (steps, ret) in enumerate(zip(env_steps, returns)):
        row = {"env_steps": int(steps), "return_mean": float(ret), "return_std": 0.0, "return_min": float(ret),
               "return_max": float(ret), "n_episodes": 10, "grad_steps": int(steps) // 4}
        if q_start is not None and discounted is not None:
            row.update(q_start_mean=float(q_start[i]), discounted_return_mean=float(discounted[i]))
        row["wall_s"] = wall_s * (i + 1) / len(env_steps)
        rows.append(row)
    if rows:
        run.write_evaluations(rows)
    if state == "complete":
        summary = {"variant": variant, "task": task, "seed": seed, "final_return_mean": float(returns[-1]),
                   "env_steps": int(env_steps[-1]), "wall_s": wall_s, "steps_per_s": env_steps[-1] / wall_s}
        if peak_rss_mb is not None:
            summary["peak_rss_mb"] = peak_rss_mb
        if divergence_watch is not None:
            summary["divergence_watch"] = divergence_watch
        run.write_summary(summary)
    elif state in ("diverged", "crashed", "env"):
        error = {"error": state, "message": message, **({"type": "EnvFault"} if state == "env" else {})}
        if divergence_watch is not None:
            error["divergence_watch"] = divergence_watch
        atomic_write_json(path / ERROR, error)
    return path


def watch_record(peak_value_scales: float = 1.0, first_warned_env_step: int | None = None,
                 stopped_env_step: int | None = None, stopped_non_finite: bool = False,
                 value_scale: float = 100.0) -> dict[str, Any]:
    """A ``divergence_watch`` record as the engine writes it (``qbench.parts.divergence.seed_record``): flagged
    when ``first_warned_env_step`` is given, stopped when ``stopped_env_step`` is."""
    return {"peak_q_abs": peak_value_scales * value_scale, "peak_value_scales": float(peak_value_scales),
            "first_warned_env_step": first_warned_env_step, "stopped_env_step": stopped_env_step,
            "stopped_non_finite": stopped_non_finite}


def write_suite_record(results: Path, suite: str, scores: dict[str, tuple[float, float]],
                       thresholds: dict[str, dict[str, float]] | None = None) -> None:
    """``scores``: task -> (random score, reference score)."""
    thresholds = thresholds or {}
    atomic_write_json(Path(results) / suite / SUITE_RECORD, {
        "suite": suite, "description": "synthetic", "seeds": 0, "min_passing_seeds": None,
        "tasks": {t: {"random_score": r, "reference_score": ref, "thresholds": thresholds.get(t, {})}
                  for t, (r, ref) in scores.items()}})


def write_synthetic_results(results: Path, *, tasks: int, variants: int, seeds: int, evaluations: int,
                            rng: np.random.Generator, suite: str = "synthetic") -> int:
    """A full grid of complete runs whose curves rise towards a per-(task, variant) level with noise; returns the
    number of runs written."""
    steps = np.linspace(0, 100_000, evaluations + 1)[1:].astype(int)
    scores = {f"Task{t}-v0": (0.0, 100.0 * (t + 1)) for t in range(tasks)}
    write_suite_record(results, suite, scores)
    for task, (_, reference) in scores.items():
        for v in range(variants):
            level = reference * rng.uniform(0.3, 1.1)
            for seed in range(seeds):
                curve = level * (1 - np.exp(-5 * steps / steps[-1])) + rng.normal(0, 0.1 * reference, steps.size)
                q = curve * rng.uniform(1.0, 1.5)
                write_run(results, suite, task, f"variant{v}", seed, steps, curve, q_start=q, discounted=curve)
    return tasks * variants * seeds
