"""Seeded bootstrap helpers the studies share: one generator per table row, and trimmed means over seeds of
(seeds, steps) arrays with percentile CIs. Pure functions of arrays, like ``qbench.analysis.stats``.

Every confidence interval is a percentile interval of a bootstrap whose generator is seeded from the report's
``seed`` and the row's own key, so a row's interval does not change when other variants or tasks are added.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
from scipy import stats as scipy_stats


def row_generator(seed: int, *key: Any) -> np.random.Generator:
    """A generator for one row: the same seed and key give the same interval, whatever else is in the report."""
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


# Bootstrap replicates are drawn in chunks of at most this many resampled values: the maximisation-bias
# experiment has ~1000 seeds a variant, and (2000 reps, 1000 seeds, steps) at once would be gigabytes.
_BOOTSTRAP_CHUNK = 4_000_000


def bootstrap_over_seeds(curves: np.ndarray, rng: np.random.Generator, reps: int, confidence: float,
                         trim: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``trim``-trimmed mean over seeds (axis 0; 0.25: the IQM, 0: the mean) of a (seeds, steps) array at
    every step, with percentile bootstrap bounds; seeds are resampled whole, so one replicate keeps each seed's
    curve together."""
    point = scipy_stats.trim_mean(curves, trim, axis=0)
    n = curves.shape[0]
    draws = rng.integers(0, n, size=(reps, n))
    # scipy's trim_mean, cutting int(trim * n) from each end, by a sort: on a handful of seeds it is several
    # times faster than scipy's partition on the (reps, seeds, steps) array.
    cut = int(trim * n)
    per_chunk = max(1, _BOOTSTRAP_CHUNK // max(1, n * curves.shape[1]))
    replicates = np.concatenate([
        (np.sort(curves[part], axis=1)[:, cut:n - cut] if cut else curves[part]).mean(axis=1)
        for part in (draws[i:i + per_chunk] for i in range(0, reps, per_chunk))])
    tail = (1.0 - confidence) / 2.0 * 100.0
    lower, upper = np.percentile(replicates, [tail, 100.0 - tail], axis=0)
    return point, lower, upper


def bootstrap_iqm_over_seeds(curves: np.ndarray, rng: np.random.Generator, reps: int,
                             confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM over seeds (axis 0) of a (seeds, steps) array at every step, with percentile bootstrap bounds; seeds
    are resampled whole, so one replicate keeps each seed's curve together."""
    return bootstrap_over_seeds(curves, rng, reps, confidence, 0.25)


def bootstrap_mean_over_seeds(curves: np.ndarray, rng: np.random.Generator, reps: int,
                              confidence: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return bootstrap_over_seeds(curves, rng, reps, confidence, 0.0)

