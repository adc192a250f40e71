"""Aggregate metrics, stratified bootstrap intervals and score helpers for multi-seed results.

Score layouts
-------------
Every function that takes ``scores`` accepts exactly two layouts:

* balanced: a 2-D ``numpy.ndarray`` (or any array-like that is not a list, tuple or mapping, e.g. a DataFrame)
  of shape ``(runs, tasks)``;
* ragged, for unequal seed counts: a ``list``/``tuple`` of 1-D per-task arrays, or a ``Mapping`` from task name
  to a 1-D array.  A list is always read task by task, never row by row: ``[[1, 2, 3], [4, 5]]`` is two tasks,
  and so is ``[[1, 2, 3], [4, 5, 6]]`` (three runs each, i.e. the transpose of ``np.array`` of it).  Ragged input
  whose tasks all have the same run count is treated exactly like the stacked ``(runs, tasks)`` array.

NaN padding is not a layout: NaN (and any non-finite score) raises ``ValueError``, so a missing run is never
silently dropped or propagated.  Every task needs at least one run.

Weighting
---------
Every aggregate weighs tasks equally.  Pooled statistics (IQM, performance profile) are taken over the mixture
in which each task carries the same total mass, split evenly over its runs.  With equal run counts this is simply
the pool of all runs x tasks entries; with unequal counts a task with more seeds gets no more say, each of its
runs just carries less mass.  Means (mean, optimality gap) are therefore means of per-task means, and the median
is rliable's: the median over tasks of the per-task mean scores.

Bootstrap
---------
Intervals are percentile intervals of a stratified bootstrap: runs are resampled with replacement independently
within each task (tasks are the strata, never resampled).  Randomness comes only from the ``numpy.random.Generator``
passed in; the same generator state gives the same interval.  The built-in metrics are evaluated on all
replicates at once from how often each run was drawn, so no per-replicate sort or Python loop is needed.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

__all__ = [
    "AtariReference",
    "Interval",
    "ProfileBand",
    "ReferenceUnavailableError",
    "area_under_curve",
    "bootstrap_ci",
    "game_key",
    "human_normalised_scores",
    "iqm",
    "load_atari_reference",
    "mean",
    "median",
    "normalise",
    "optimality_gap",
    "performance_profile",
    "performance_profile_ci",
    "probability_of_improvement",
    "probability_of_improvement_ci",
]

# Replicates are evaluated in chunks of about this many resampled scores: small enough for the working arrays to
# stay in cache (measured faster than larger chunks) and to bound memory for any number of runs.
_CHUNK_SCORES = 1 << 18


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile bootstrap confidence interval at level ``confidence``."""

    point: float
    lower: float
    upper: float
    confidence: float


@dataclass(frozen=True, eq=False)
class ProfileBand:
    """A performance profile (fraction of runs above each tau) with pointwise percentile bootstrap bounds."""

    taus: np.ndarray
    point: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: float


# --------------------------------------------------------------------------------------------------------------
# Input layouts


def _one_task(values, label: str) -> np.ndarray:
    runs = np.asarray(values, dtype=float)
    if runs.ndim != 1:
        raise ValueError(f"{label}: per-task scores must be 1-D, got shape {runs.shape}")
    if runs.size == 0:
        raise ValueError(f"{label} has no runs")
    if np.isnan(runs).any():
        raise ValueError(f"{label} contains NaN; NaN padding is not accepted, pass unequal run counts as a list "
                         "of per-task arrays")
    if not np.isfinite(runs).all():
        raise ValueError(f"{label} contains an infinite score")
    return runs


def _task_runs(scores) -> tuple[tuple | None, list[np.ndarray]]:
    """Split any accepted layout into (task names or None, one 1-D array of runs per task)."""
    if isinstance(scores, Mapping):
        names = tuple(scores)
        tasks = [_one_task(scores[name], f"task {name!r}") for name in names]
    elif isinstance(scores, (list, tuple)):
        names = None
        tasks = [_one_task(runs, f"task {i}") for i, runs in enumerate(scores)]
    else:
        names = None
        table = np.asarray(scores, dtype=float)
        if table.ndim != 2:
            raise ValueError(f"a score array must be 2-D (runs, tasks), got shape {table.shape}; pass unequal run "
                             "counts as a list of per-task arrays")
        tasks = [_one_task(table[:, t], f"task {t}") for t in range(table.shape[1])]
    if not tasks:
        raise ValueError("scores hold no tasks")
    return names, tasks


def _is_balanced(tasks: list[np.ndarray]) -> bool:
    return all(runs.size == tasks[0].size for runs in tasks)


@dataclass(frozen=True, eq=False)
class _Pool:
    """All runs of all tasks in ascending order, each carrying its task-equalising mass."""

    names: tuple | None
    tasks: tuple[np.ndarray, ...]
    values: np.ndarray  # every run of every task, ascending
    order: np.ndarray  # values == concatenate(tasks)[order]
    unit_mass: np.ndarray  # mass of one draw of values[i]
    total_mass: float
    trim_mass: float  # mass the IQM cuts from each end

    @property
    def sizes(self) -> list[int]:
        return [runs.size for runs in self.tasks]


def _pool(names, tasks: list[np.ndarray]) -> _Pool:
    everything = np.concatenate(tasks)
    order = np.argsort(everything, kind="stable")
    n_total = everything.size
    if _is_balanced(tasks):
        # Integer masses keep the bootstrap exact, and trimming floor(N/4) runs per end is scipy's trim_mean.
        unit_mass = np.ones(n_total, dtype=np.int64)
        total_mass, trim_mass = n_total, n_total // 4
    else:
        counts = np.array([runs.size for runs in tasks])
        unit_mass = np.repeat(1.0 / (len(tasks) * counts), counts)[order]
        total_mass, trim_mass = 1.0, 0.25
    return _Pool(names, tuple(tasks), everything[order], order, unit_mass, total_mass, trim_mass)


# --------------------------------------------------------------------------------------------------------------
# Kernels: statistics of many weighted resamples at once.  ``masses`` is (replicates, N) in the pool's sorted order.


def _mean_kernel(pool: _Pool, masses: np.ndarray) -> np.ndarray:
    return masses @ pool.values / pool.total_mass


def _optimality_gap_kernel(pool: _Pool, masses: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    return masses @ np.maximum(gamma - pool.values, 0.0) / pool.total_mass


def _iqm_kernel(pool: _Pool, masses: np.ndarray) -> np.ndarray:
    # Each value keeps the part of its mass interval [cum - mass, cum] lying inside the central band.
    cumulative = np.cumsum(masses, axis=1)
    low, high = pool.trim_mass, pool.total_mass - pool.trim_mass
    kept = np.clip(cumulative, low, high) - np.clip(cumulative - masses, low, high)
    return kept @ pool.values / (high - low)


def _median_kernel(pool: _Pool, masses: np.ndarray) -> np.ndarray:
    # Per-task means of each replicate: a task's weighted sum over its total mass (the same for every replicate,
    # since each task is resampled to its own run count), then the median over tasks.
    task_of = np.repeat(np.arange(len(pool.tasks)), pool.sizes)[pool.order]
    one_hot = np.zeros((task_of.size, len(pool.tasks)))
    one_hot[np.arange(task_of.size), task_of] = 1.0
    task_means = ((masses * pool.values) @ one_hot) / (masses @ one_hot)
    return np.median(task_means, axis=1)


def _profile_kernel(pool: _Pool, masses: np.ndarray, taus: np.ndarray) -> np.ndarray:
    cumulative = np.cumsum(masses, axis=1)
    n_at_or_below = np.searchsorted(pool.values, taus, side="right")
    mass_at_or_below = np.where(n_at_or_below > 0, cumulative[:, np.maximum(n_at_or_below - 1, 0)], 0)
    return (pool.total_mass - mass_at_or_below) / pool.total_mass


# --------------------------------------------------------------------------------------------------------------
# Point metrics


def iqm(scores) -> float:
    """Interquartile mean: the mean of the middle half of all runs pooled over tasks.

    Balanced ``(runs, tasks)`` input: exactly ``scipy.stats.trim_mean(scores.ravel(), 0.25)``, which trims
    ``floor(N / 4)`` of the N entries from each end.  Ragged input (unequal runs per task): the mean of the central
    half of the task-equalising mixture (each task has equal total mass, see module docstring), trimming exactly a
    quarter of the mass from each end with partial weight at the boundaries; so a task with more seeds is not
    favoured.  For balanced data with N divisible by 4 both definitions agree.
    """
    names, tasks = _task_runs(scores)
    if _is_balanced(tasks):
        return float(scipy_stats.trim_mean(np.concatenate(tasks), 0.25))
    pool = _pool(names, tasks)
    return float(_iqm_kernel(pool, pool.unit_mass[None])[0])


def mean(scores) -> float:
    """Mean over tasks of the per-task mean run score (for balanced input, the mean of all entries)."""
    _, tasks = _task_runs(scores)
    if _is_balanced(tasks):
        return float(np.mean(np.concatenate(tasks)))
    return float(np.mean([runs.mean() for runs in tasks]))


def median(scores) -> float:
    """Median over tasks of the per-task mean run score: rliable's aggregate median (Agarwal et al., 2021).

    Every task weighs the same whatever its number of runs; with an even number of tasks the two middle task means
    are averaged, as ``np.median`` does.  With one task it is that task's mean.  (It is not the median of all runs
    pooled: on tasks whose runs disagree the two differ, and the pooled one is what :func:`iqm` trims towards.)
    """
    _, tasks = _task_runs(scores)
    return float(np.median([runs.mean() for runs in tasks]))


def optimality_gap(scores, gamma: float = 1.0) -> float:
    """Mean shortfall below ``gamma``: mean over tasks of the per-task mean of ``max(gamma - score, 0)``."""
    _, tasks = _task_runs(scores)
    return float(np.mean([np.maximum(gamma - runs, 0.0).mean() for runs in tasks]))


_KERNELS: dict[Callable, Callable] = {
    iqm: _iqm_kernel,
    mean: _mean_kernel,
    median: _median_kernel,
    optimality_gap: _optimality_gap_kernel,
}


def _kernel_for(metric: Callable) -> Callable | None:
    """The vectorised kernel of a built-in metric (also through functools.partial with keywords), else None."""
    if isinstance(metric, functools.partial) and not metric.args:
        kernel = _kernel_for(metric.func)
        return None if kernel is None else functools.partial(kernel, **metric.keywords)
    # Identity, not equality: an arbitrary callable need not be hashable.
    return next((kernel for known, kernel in _KERNELS.items() if metric is known), None)


# --------------------------------------------------------------------------------------------------------------
# Stratified bootstrap


def _check_bootstrap_arguments(rng, reps, confidence) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator, e.g. numpy.random.default_rng(seed); the global "
                        "numpy RNG is never used")
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _resampled_indices(sizes: list[int], rng: np.random.Generator, reps: int) -> Iterator[list[np.ndarray]]:
    """Per chunk of replicates, one (chunk, n) array of run indices drawn with replacement for each stratum."""
    chunk = max(1, _CHUNK_SCORES // sum(sizes))
    for start in range(0, reps, chunk):
        n_reps = min(chunk, reps - start)
        yield [rng.integers(0, n, size=(n_reps, n)) for n in sizes]


def _draw_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(replicates, n) number of times each run was drawn, from (replicates, draws) indices."""
    n_reps = indices.shape[0]
    offsets = n * np.arange(n_reps)[:, None]
    return np.bincount((indices + offsets).ravel(), minlength=n_reps * n).reshape(n_reps, n)


def _resampled_masses(pool: _Pool, rng: np.random.Generator, reps: int) -> Iterator[np.ndarray]:
    for indices in _resampled_indices(pool.sizes, rng, reps):
        counts = np.concatenate([_draw_counts(idx, n) for idx, n in zip(indices, pool.sizes)], axis=1)
        yield counts[:, pool.order] * pool.unit_mass


def _resampled_scores(pool: _Pool, indices: list[np.ndarray], replicate: int):
    """One replicate in the layout a custom metric expects: a dict if tasks were named, else array or list."""
    tasks = [runs[idx[replicate]] for runs, idx in zip(pool.tasks, indices)]
    if pool.names is not None:
        return dict(zip(pool.names, tasks))
    return np.column_stack(tasks) if _is_balanced(tasks) else tasks


def _percentiles(replicates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(replicates, [tail, 1.0 - tail], axis=0)
    return lower, upper


def bootstrap_ci(scores, metric: Callable, rng: np.random.Generator, reps: int = 2000,
                 confidence: float = 0.95) -> Interval:
    """Percentile interval of ``metric`` under a stratified bootstrap (runs resampled within each task).

    ``scores`` is any accepted layout (module docstring).  ``iqm``, ``mean``, ``median`` and ``optimality_gap``
    (also as ``functools.partial(optimality_gap, gamma=...)``) are evaluated on all replicates at once.  Any other
    callable is called once per replicate with a resampled copy of the data: a dict for named tasks, else a
    ``(runs, tasks)`` array when run counts are equal, else a list of per-task arrays.  The generator is consumed;
    pass a freshly seeded one to reproduce an interval.
    """
    _check_bootstrap_arguments(rng, reps, confidence)
    pool = _pool(*_task_runs(scores))
    kernel = _kernel_for(metric)
    replicates = []
    if kernel is not None:
        for masses in _resampled_masses(pool, rng, reps):
            replicates.append(kernel(pool, masses))
    else:
        for indices in _resampled_indices(pool.sizes, rng, reps):
            replicates.append([float(metric(_resampled_scores(pool, indices, r))) for r in range(len(indices[0]))])
    lower, upper = _percentiles(np.concatenate(replicates), confidence)
    return Interval(float(metric(scores)), float(lower), float(upper), confidence)


# --------------------------------------------------------------------------------------------------------------
# Performance profiles


def _as_taus(taus) -> np.ndarray:
    grid = np.atleast_1d(np.asarray(taus, dtype=float))
    if grid.ndim != 1 or np.isnan(grid).any():
        raise ValueError("taus must be a 1-D sequence of thresholds without NaN")
    return grid


def performance_profile(scores, taus) -> np.ndarray:
    """For each tau, the fraction of runs whose (already normalised) score is strictly greater than tau.

    The fraction is computed per task and then averaged over tasks, so each task weighs equally whatever its
    number of runs.  Returns an array shaped like ``taus``, non-increasing in tau.
    """
    _, tasks = _task_runs(scores)
    grid = _as_taus(taus)
    return np.mean([np.mean(runs[:, None] > grid, axis=0) for runs in tasks], axis=0)


def performance_profile_ci(scores, taus, rng: np.random.Generator, reps: int = 2000,
                           confidence: float = 0.95) -> ProfileBand:
    """:func:`performance_profile` with pointwise stratified-bootstrap percentile bounds at each tau."""
    _check_bootstrap_arguments(rng, reps, confidence)
    pool = _pool(*_task_runs(scores))
    grid = _as_taus(taus)
    replicates = np.concatenate([_profile_kernel(pool, masses, grid)
                                 for masses in _resampled_masses(pool, rng, reps)])
    lower, upper = _percentiles(replicates, confidence)
    return ProfileBand(grid, performance_profile(scores, grid), lower, upper, confidence)


# --------------------------------------------------------------------------------------------------------------
# Probability of improvement


def _paired_tasks(x_scores, y_scores) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-task runs of x and y, matched by name when both are mappings, else by position."""
    x_names, x_tasks = _task_runs(x_scores)
    y_names, y_tasks = _task_runs(y_scores)
    if x_names is not None and y_names is not None:
        if set(x_names) != set(y_names):
            raise ValueError(f"x and y name different tasks: {sorted(map(str, set(x_names) ^ set(y_names)))}")
        y_by_name = dict(zip(y_names, y_tasks))
        y_tasks = [y_by_name[name] for name in x_names]
    elif len(x_tasks) != len(y_tasks):
        raise ValueError(f"x has {len(x_tasks)} tasks but y has {len(y_tasks)}")
    return x_tasks, y_tasks


def probability_of_improvement(x_scores, y_scores) -> float:
    """Mean over tasks of P(X > Y), a run of x beating a run of y on that task, ties counting one half.

    Per task this is the Mann-Whitney U statistic of x against y divided by ``n_x * n_y``; x and y may have
    different numbers of runs, per task and between each other.
    """
    x_tasks, y_tasks = _paired_tasks(x_scores, y_scores)
    per_task = [scipy_stats.mannwhitneyu(x, y).statistic / (x.size * y.size) for x, y in zip(x_tasks, y_tasks)]
    return float(np.mean(per_task))


@dataclass(frozen=True, eq=False)
class _WinCounter:
    """P(X > Y) on one task for resampled runs, from how often each run of x and of y was drawn.

    Sorting y once turns the n_x * n_y pair comparison into cumulative sums of the y draw counts: a run of x beats
    all y mass strictly below its left insertion point and ties with the mass up to its right insertion point.
    """

    y_order: np.ndarray
    y_below: np.ndarray  # per run of x: how many runs of y are strictly smaller
    y_not_above: np.ndarray  # per run of x: how many runs of y are smaller or equal

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> _WinCounter:
        y_order = np.argsort(y, kind="stable")
        y_sorted = y[y_order]
        return cls(y_order, np.searchsorted(y_sorted, x, side="left"), np.searchsorted(y_sorted, x, side="right"))

    def rates(self, x_counts: np.ndarray, y_counts: np.ndarray) -> np.ndarray:
        n_x, n_y = self.y_below.size, self.y_order.size
        cumulative = np.zeros((y_counts.shape[0], n_y + 1))
        np.cumsum(y_counts[:, self.y_order], axis=1, out=cumulative[:, 1:])
        wins = (cumulative[:, self.y_below] + cumulative[:, self.y_not_above]) / 2.0
        return np.einsum("ri,ri->r", x_counts, wins) / (n_x * n_y)


def probability_of_improvement_ci(x_scores, y_scores, rng: np.random.Generator, reps: int = 2000,
                                  confidence: float = 0.95) -> Interval:
    """:func:`probability_of_improvement` with a stratified-bootstrap percentile interval.

    Within each task the runs of x and the runs of y are resampled independently with replacement.
    """
    _check_bootstrap_arguments(rng, reps, confidence)
    x_tasks, y_tasks = _paired_tasks(x_scores, y_scores)
    counters = [_WinCounter.of(x, y) for x, y in zip(x_tasks, y_tasks)]
    sizes = [n for x, y in zip(x_tasks, y_tasks) for n in (x.size, y.size)]
    replicates = []
    for indices in _resampled_indices(sizes, rng, reps):
        per_task = [counter.rates(_draw_counts(indices[2 * t], sizes[2 * t]),
                                  _draw_counts(indices[2 * t + 1], sizes[2 * t + 1]))
                    for t, counter in enumerate(counters)]
        replicates.append(np.mean(per_task, axis=0))
    lower, upper = _percentiles(np.concatenate(replicates), confidence)
    return Interval(probability_of_improvement(x_scores, y_scores), float(lower), float(upper), confidence)


# --------------------------------------------------------------------------------------------------------------
# Normalisation


def normalise(score, random, reference):
    """``(score - random) / (reference - random)``, broadcast elementwise; a float for scalar input.

    0 means random play, 1 means the reference (e.g. human).  NaN anywhere, or a reference equal to the random
    score, raises ``ValueError`` instead of producing NaN or infinity.
    """
    score, random, reference = (np.asarray(v, dtype=float) for v in (score, random, reference))
    for name, values in (("score", score), ("random", random), ("reference", reference)):
        if np.isnan(values).any():
            raise ValueError(f"{name} contains NaN")
    span = reference - random
    if np.any(span == 0):
        raise ValueError("reference score equals random score; the normalised score is undefined")
    result = (score - random) / span
    return float(result) if result.ndim == 0 else result


class ReferenceUnavailableError(ValueError):
    """Some games have no human reference score, so they cannot be human-normalised."""

    def __init__(self, games):
        self.games = tuple(sorted(games))
        super().__init__(f"no human reference score for: {', '.join(self.games)} (pass skip_unavailable=True to "
                         "leave them out)")


@dataclass(frozen=True)
class AtariReference:
    """Per-game random and human scores, keyed by canonical game name (lower case, letters and digits only)."""

    random: Mapping[str, float]
    human: Mapping[str, float]  # only the games that have a human score
    atari100k: frozenset[str]

    @property
    def unavailable(self) -> frozenset[str]:
        """Games with a random score but no human score."""
        return frozenset(self.random) - frozenset(self.human)


def game_key(name: str) -> str:
    """Canonical game name: 'ALE/Breakout-v5', 'BreakoutNoFrameskip-v4' and 'breakout' all give 'breakout'."""
    key = name.strip().lower()
    key = re.sub(r"^ale/", "", key)
    key = re.sub(r"(noframeskip|deterministic)?-v\d+$", "", key)
    return re.sub(r"[^a-z0-9]", "", key)


def load_atari_reference(path: str | Path) -> AtariReference:
    """Read a CSV with columns game,random,human,in_atari100k; an empty human cell marks the game unavailable."""
    random, human, atari100k = {}, {}, set()
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"game", "random", "human", "in_atari100k"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            game = game_key(row["game"])
            if game in random:
                raise ValueError(f"{path}:{line}: game {row['game']!r} listed twice")
            try:
                random[game] = float(row["random"])
                if row["human"].strip():
                    human[game] = float(row["human"])
            except ValueError:
                raise ValueError(f"{path}:{line}: unreadable score for {row['game']!r}") from None
            if row["in_atari100k"].strip() not in ("0", "1"):
                raise ValueError(f"{path}:{line}: in_atari100k must be 0 or 1")
            if row["in_atari100k"].strip() == "1":
                atari100k.add(game)
    return AtariReference(random, human, frozenset(atari100k))


def human_normalised_scores(raw_scores: Mapping, reference: AtariReference, *,
                            skip_unavailable: bool = False) -> dict:
    """Human-normalised scores for a mapping game -> raw score (scalar or array), keyed like the input.

    Game names are matched canonically (see ``game_key``).  A game missing from the table raises ``ValueError``.
    A game in the table without a human score raises :class:`ReferenceUnavailableError` naming every such game,
    or, with ``skip_unavailable=True``, is left out of the result (``reference.unavailable`` lists them).
    """
    keys = {name: game_key(name) for name in raw_scores}
    unknown = sorted(name for name, key in keys.items() if key not in reference.random)
    if unknown:
        raise ValueError(f"unknown Atari game(s): {', '.join(unknown)}")
    unavailable = [name for name, key in keys.items() if key not in reference.human]
    if unavailable and not skip_unavailable:
        raise ReferenceUnavailableError(unavailable)
    return {name: normalise(raw_scores[name], reference.random[key], reference.human[key])
            for name, key in keys.items() if key in reference.human}


# --------------------------------------------------------------------------------------------------------------
# Sample efficiency


def area_under_curve(env_steps, returns):
    """Average return over training: trapezoidal area under the learning curve divided by the step span.

    ``env_steps`` is 1-D; ``returns`` has the evaluation points on its last axis (e.g. ``(runs, points)``) and one
    value per leading index is returned (a float for a single curve).  Points are sorted by step first; several
    returns logged at the same step are averaged, so input order never matters.  A curve with a single distinct
    step has no span and returns the return at that step.
    """
    steps = np.asarray(env_steps, dtype=float)
    curve = np.asarray(returns, dtype=float)
    if steps.ndim != 1 or steps.size == 0:
        raise ValueError("env_steps must be a non-empty 1-D sequence")
    if curve.shape[-1:] != steps.shape:
        raise ValueError(f"returns must have the {steps.size} evaluation points on its last axis, got shape "
                         f"{curve.shape}")
    if not (np.isfinite(steps).all() and np.isfinite(curve).all()):
        raise ValueError("env_steps and returns must be finite")
    order = np.argsort(steps, kind="stable")
    steps, curve = steps[order], curve[..., order]
    first_of_step = np.flatnonzero(np.r_[True, np.diff(steps) != 0])
    repeats = np.diff(np.r_[first_of_step, steps.size])
    curve = np.add.reduceat(curve, first_of_step, axis=-1) / repeats
    steps = steps[first_of_step]
    if steps.size == 1:
        result = curve[..., 0]
    else:
        result = np.trapezoid(curve, steps, axis=-1) / (steps[-1] - steps[0])
    return float(result) if result.ndim == 0 else result
