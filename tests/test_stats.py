import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, trim_mean

from qbench.analysis import stats
from qbench.analysis.stats import (
    Interval,
    ReferenceUnavailableError,
    area_under_curve,
    bootstrap_ci,
    human_normalised_scores,
    iqm,
    load_atari_reference,
    mean,
    median,
    normalise,
    optimality_gap,
    performance_profile,
    performance_profile_ci,
    probability_of_improvement,
    probability_of_improvement_ci,
)

SHARED_ATARI_CSV = Path("/work/shared/references/atari_human_random.csv")


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------------------------
# Point metrics on balanced (runs, tasks) arrays, by hand


def test_point_metrics_by_hand():
    # sorted: 0 1 2 3 4 6 10 100 -> middle half 2 3 4 6
    scores = np.array([[0, 10], [1, 2], [3, 100], [4, 6]], dtype=float)
    assert iqm(scores) == pytest.approx(3.75)
    assert median(scores) == pytest.approx((2.0 + 29.5) / 2)   # task means 2 and 29.5
    assert mean(scores) == pytest.approx(126 / 8)


def test_iqm_follows_scipy_trim_count_when_entries_not_divisible_by_four():
    # 10 entries: scipy trims floor(2.5) = 2 per end, keeping 3..8
    scores = np.array([[1, 6], [2, 7], [3, 8], [4, 9], [5, 1000]], dtype=float)
    assert iqm(scores) == pytest.approx(5.5)
    assert iqm(scores) == pytest.approx(trim_mean(scores.ravel(), 0.25))


def test_median_is_the_median_of_task_means_not_of_pooled_runs():
    # Three tasks, three runs each. Task means 1, 4 and 10 -> median 4 (rliable's aggregate median). The pooled
    # runs {0, 1, 2, 3, 3, 6, 10, 10, 10} have median 3: the two definitions differ here.
    scores = np.array([[0, 3, 10], [1, 3, 10], [2, 6, 10]], dtype=float)
    assert median(scores) == pytest.approx(4.0)
    assert median([[0.0, 1.0, 2.0], [3.0, 3.0, 6.0], [10.0]]) == pytest.approx(4.0)   # ragged: the same task means
    assert median(scores[:, :2]) == pytest.approx((1 + 4) / 2)                          # even count: average
    assert bootstrap_ci(scores, median, rng(0), reps=200).point == pytest.approx(4.0)


def test_optimality_gap_by_hand():
    scores = np.array([[0.5, 1.2], [0.9, -0.1]])
    assert optimality_gap(scores) == pytest.approx((0.5 + 0 + 0.1 + 1.1) / 4)
    assert optimality_gap(scores, gamma=0.8) == pytest.approx((0.3 + 0 + 0 + 0.9) / 4)


# ---------------------------------------------------------------------------------------------------------------
# Ragged layout: list of per-task arrays, tasks weighted equally


RAGGED = [[0.0, 1.0, 2.0, 3.0], [10.0]]  # task A: 4 runs, task B: 1 run


def test_ragged_metrics_weight_tasks_equally_by_hand():
    assert mean(RAGGED) == pytest.approx((1.5 + 10) / 2)
    assert optimality_gap(RAGGED, gamma=5.0) == pytest.approx((3.5 + 0.0) / 2)
    assert median(RAGGED) == pytest.approx((1.5 + 10) / 2)   # the median of the two task means
    # central mass band [1/4, 3/4]: all of 2 and 3 (1/8 each) and 1/4 of B's 10
    assert iqm(RAGGED) == pytest.approx((2 * 0.125 + 3 * 0.125 + 10 * 0.25) / 0.5)
    assert performance_profile(RAGGED, [0.5, 2.0, 10.0]) == pytest.approx([(0.75 + 1) / 2, (0.25 + 1) / 2, 0.0])


def test_ragged_iqm_equals_balanced_iqm_of_runs_replicated_to_a_common_count():
    a, b = np.array([0.0, 1.0, 2.0, 3.0]), np.array([10.0])
    balanced = np.column_stack([np.repeat(a, 2), np.repeat(b, 8)])
    for metric in (iqm, median, mean):
        assert metric([a, b]) == pytest.approx(metric(balanced)), metric.__name__


def test_more_seeds_of_the_same_task_distribution_do_not_shift_ragged_aggregates():
    doubled = [np.repeat(RAGGED[0], 2), RAGGED[1]]
    for metric in (iqm, median, mean):
        assert metric(doubled) == pytest.approx(metric(RAGGED)), metric.__name__


def test_ragged_list_with_equal_counts_is_the_transposed_array_and_a_mapping_works_too():
    per_task = [[1.0, 5.0, 2.0], [4.0, 9.0, 6.0]]
    table = np.array(per_task).T  # a list is read task by task, an array as (runs, tasks)
    named = {"CartPole-v1": per_task[0], "Acrobot-v1": per_task[1]}
    for metric in (iqm, median, mean, optimality_gap):
        assert metric(per_task) == metric(table) == metric(named), metric.__name__
    assert bootstrap_ci(per_task, iqm, rng(4), reps=200) == bootstrap_ci(table, iqm, rng(4), reps=200)


@pytest.mark.parametrize("bad", [
    np.array([[1.0, 2.0], [np.nan, 3.0]]),  # NaN padding is rejected, not interpreted
    [[1.0, np.nan], [2.0]],
    np.array([1.0, 2.0, 3.0]),  # 1-D: ambiguous between one task and one run
    [[1.0, 2.0], []],  # a task without runs
    [],
    np.array([[1.0, np.inf]]),
])
def test_invalid_layouts_raise(bad):
    with pytest.raises(ValueError):
        iqm(bad)


# ---------------------------------------------------------------------------------------------------------------
# Stratified bootstrap


def test_bootstrap_is_reproducible_with_the_same_seed_and_differs_with_another():
    scores = rng(1).normal(size=(10, 4))
    first = bootstrap_ci(scores, iqm, rng(7), reps=500)
    assert first == bootstrap_ci(scores, iqm, rng(7), reps=500)
    other = bootstrap_ci(scores, iqm, rng(8), reps=500)
    assert (other.lower, other.upper) != (first.lower, first.upper)
    assert first.lower < first.point < first.upper
    assert isinstance(first, Interval) and first.confidence == 0.95


def test_bootstrap_never_touches_the_global_numpy_rng():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    bootstrap_ci(rng(1).normal(size=(5, 3)), median, rng(2), reps=100)
    assert np.array_equal(np.random.get_state()[1], before)
    with pytest.raises(TypeError):
        bootstrap_ci(np.ones((3, 2)), mean, 0, reps=10)


@pytest.mark.parametrize("metric", [iqm, median, mean, functools.partial(optimality_gap, gamma=0.3)],
                         ids=["iqm", "median", "mean", "optimality_gap"])
@pytest.mark.parametrize("layout", ["balanced", "ragged"])
def test_vectorised_bootstrap_matches_metric_called_on_each_resample(metric, layout):
    # A lambda hides the metric from the vectorised path, so the same draws are evaluated by the metric itself.
    g = rng(3)
    scores = g.normal(size=(9, 4)) if layout == "balanced" else [g.normal(size=n) for n in (3, 8, 5, 2)]
    fast = bootstrap_ci(scores, metric, rng(11), reps=300)
    slow = bootstrap_ci(scores, lambda s: metric(s), rng(11), reps=300)
    assert fast.point == pytest.approx(slow.point, abs=1e-12)
    assert fast.lower == pytest.approx(slow.lower, abs=1e-12)
    assert fast.upper == pytest.approx(slow.upper, abs=1e-12)


def test_bootstrap_resamples_within_tasks_only():
    # Every stratified replicate keeps 4 runs from each task, so the mean stays within [50, 51]; pooling the runs
    # before resampling would often draw unequal numbers from the two tasks and land far outside.
    scores = np.array([[0, 100], [1, 101], [0, 100], [1, 101]], dtype=float)
    ci = bootstrap_ci(scores, mean, rng(0), reps=1000)
    assert 50.0 <= ci.lower < ci.upper <= 51.0


def test_bootstrap_ci_of_the_mean_covers_the_truth():
    # 20 runs per task: with 10 the percentile bootstrap undercovers to about 0.91 (plug-in variance), too close
    # to the bound for a stable test.  The upper bound catches intervals that are far too wide.
    g = rng(2024)
    task_means, task_sds = np.array([0.0, 1.0, 3.0]), np.array([0.5, 1.0, 2.0])
    n_datasets = 1000
    covered = 0
    for _ in range(n_datasets):
        ci = bootstrap_ci(g.normal(task_means, task_sds, size=(20, 3)), mean, g, reps=400)
        covered += ci.lower <= task_means.mean() <= ci.upper
    assert 0.90 <= covered / n_datasets <= 0.98


@pytest.mark.parametrize("kwargs", [{"reps": 0}, {"reps": 1.5}, {"confidence": 1.0}, {"confidence": 0.0}])
def test_bootstrap_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones((3, 2)), mean, rng(), **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Performance profiles


def test_performance_profile_by_hand():
    scores = np.array([[0.1, 0.5], [0.6, 1.0], [1.2, 0.9], [0.3, 2.0]])
    # tau 0.5: task 0 has 0.6, 1.2 above (2/4); task 1 has 1.0, 0.9, 2.0 (3/4; 0.5 itself is not strictly above)
    expected = [1.0, (0.5 + 0.75) / 2, (0.25 + 0.25) / 2, 0.0]
    assert performance_profile(scores, [0.0, 0.5, 1.0, 2.0]) == pytest.approx(expected)


def test_performance_profile_band_matches_bootstrap_of_the_profile_at_each_tau():
    scores = [rng(5).normal(size=n) for n in (6, 3, 9)]
    taus = np.array([-1.0, 0.0, 0.5, 1.5])
    band = performance_profile_ci(scores, taus, rng(9), reps=300)
    for k, tau in enumerate(taus):
        single = bootstrap_ci(scores, lambda s, tau=tau: performance_profile(s, [tau])[0], rng(9), reps=300)
        assert (band.lower[k], band.point[k], band.upper[k]) == pytest.approx(
            (single.lower, single.point, single.upper), abs=1e-12)


def test_performance_profile_band_weighs_ragged_tasks_equally():
    # Runs are constant within each task, so every replicate gives exactly the point profile.
    scores = [[0.2, 0.2, 0.2, 0.2], [0.8, 0.8]]
    band = performance_profile_ci(scores, [0.0, 0.5, 1.0], rng(), reps=200)
    for bound in (band.point, band.lower, band.upper):
        assert bound == pytest.approx([1.0, 0.5, 0.0])


# ---------------------------------------------------------------------------------------------------------------
# Probability of improvement


def test_probability_of_improvement_by_hand_with_ties_and_unequal_runs():
    x = [[1.0, 2.0, 4.0], [5.0]]
    y = [[2.0, 3.0], [1.0, 5.0, 9.0, 0.0]]
    # task 0: 2 vs 2 ties (1/2), 4 beats both -> 2.5 / 6; task 1: 5 beats 1 and 0, ties 5 -> 2.5 / 4
    expected = (2.5 / 6 + 2.5 / 4) / 2
    assert probability_of_improvement(x, y) == pytest.approx(expected)
    per_task_u = [mannwhitneyu(a, b).statistic / (len(a) * len(b)) for a, b in zip(x, y)]
    assert np.mean(per_task_u) == pytest.approx(expected)


def test_probability_of_improvement_obvious_cases():
    low, high = np.array([[0.0, 1.0], [0.5, 1.5]]), np.array([[2.0, 3.0], [2.5, 3.5], [4.0, 5.0]])
    assert probability_of_improvement(high, low) == 1.0
    assert probability_of_improvement(low, high) == 0.0
    assert probability_of_improvement(low, low) == 0.5
    assert probability_of_improvement(np.ones((3, 2)), np.ones((4, 2))) == 0.5
    assert probability_of_improvement_ci(high, low, rng(), reps=100) == Interval(1.0, 1.0, 1.0, 0.95)


def test_probability_of_improvement_matches_names_not_positions():
    x = {"a": [3.0, 4.0], "b": [0.0]}
    y = {"b": [1.0, 2.0], "a": [0.0]}
    assert probability_of_improvement(x, y) == 0.5  # a: x always wins, b: x always loses
    with pytest.raises(ValueError):
        probability_of_improvement({"a": [1.0]}, {"c": [1.0]})


def test_probability_of_improvement_ci_resamples_x_and_y_independently_within_each_task():
    # Pins the scheme: per task, x's runs then y's runs are drawn with replacement; compared with scipy on each
    # resample, which also checks the vectorised tie handling.
    g = rng(6)
    x = [g.integers(0, 5, size=4).astype(float), g.integers(0, 5, size=6).astype(float)]
    y = [g.integers(0, 5, size=3).astype(float), g.integers(0, 5, size=5).astype(float)]
    reps = 200
    ci = probability_of_improvement_ci(x, y, rng(3), reps=reps)
    draws = rng(3)
    idx = [draws.integers(0, n, size=(reps, n)) for n in (4, 3, 6, 5)]
    replicates = [np.mean([mannwhitneyu(x[t][idx[2 * t][r]], y[t][idx[2 * t + 1][r]]).statistic
                           / (x[t].size * y[t].size) for t in range(2)]) for r in range(reps)]
    lower, upper = np.quantile(replicates, [0.025, 0.975])
    assert (ci.lower, ci.upper) == pytest.approx((lower, upper), abs=1e-12)
    assert ci.point == pytest.approx(probability_of_improvement(x, y))


# ---------------------------------------------------------------------------------------------------------------
# Normalisation and Atari reference scores


def test_normalise_is_vectorised_and_refuses_undefined_results():
    assert normalise([0.0, 5.0, 10.0], 0.0, 10.0) == pytest.approx([0.0, 0.5, 1.0])
    broadcast = normalise(np.array([[1.0], [3.0]]), np.array([1.0, 0.0]), np.array([3.0, 2.0]))
    assert broadcast == pytest.approx(np.array([[0.0, 0.5], [1.0, 1.5]]))
    assert normalise(15.0, 10.0, 20.0) == 0.5
    with pytest.raises(ValueError):
        normalise(1.0, 2.0, 2.0)
    with pytest.raises(ValueError):
        normalise(1.0, 0.0, np.nan)


@pytest.fixture
def atari_csv(tmp_path):
    path = tmp_path / "atari.csv"
    path.write_text("game,random,human,in_atari100k\n"
                    "breakout,1.7,30.5,1\n"
                    "pong,-20.7,14.6,1\n"
                    "defender,2874.5,,0\n")
    return path


def test_human_normalised_breakout_and_pong_by_hand(atari_csv):
    reference = load_atari_reference(atari_csv)
    normalised = human_normalised_scores({"ALE/Breakout-v5": 59.3, "pong": [-20.7, -3.05, 14.6]}, reference)
    assert normalised["ALE/Breakout-v5"] == pytest.approx((59.3 - 1.7) / (30.5 - 1.7))  # 2.0
    assert normalised["pong"] == pytest.approx([0.0, 0.5, 1.0])  # (raw + 20.7) / 35.3
    assert reference.atari100k == {"breakout", "pong"}


def test_games_without_human_score_are_reported_unavailable(atari_csv):
    reference = load_atari_reference(atari_csv)
    assert reference.unavailable == {"defender"}
    with pytest.raises(ReferenceUnavailableError, match="Defender") as raised:
        human_normalised_scores({"breakout": 10.0, "Defender": 5000.0}, reference)
    assert raised.value.games == ("Defender",)
    kept = human_normalised_scores({"breakout": 30.5, "Defender": 5000.0}, reference, skip_unavailable=True)
    assert kept == {"breakout": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="unknown"):
        human_normalised_scores({"brekout": 1.0}, reference)


@pytest.mark.skipif(not SHARED_ATARI_CSV.exists(), reason="shared reference table not present")
def test_shared_atari_reference_table():
    reference = load_atari_reference(SHARED_ATARI_CSV)
    assert reference.unavailable == {"defender", "surround"}
    normalised = human_normalised_scores({"breakout": 16.1, "pong": 14.6}, reference)
    assert normalised == {"breakout": pytest.approx(0.5), "pong": pytest.approx(1.0)}


# ---------------------------------------------------------------------------------------------------------------
# Sample efficiency


def test_area_under_curve_by_hand():
    # trapezoids: 10 * (0 + 10) / 2 + 20 * 10 = 250 over a span of 30
    assert area_under_curve([0, 10, 30], [0.0, 10.0, 10.0]) == pytest.approx(250 / 30)
    assert area_under_curve([30, 0, 10], [10.0, 0.0, 10.0]) == pytest.approx(250 / 30)  # unsorted input
    assert area_under_curve([0, 10, 10, 30], [0.0, 8.0, 12.0, 10.0]) == pytest.approx(250 / 30)  # repeats averaged
    assert area_under_curve([500], [7.0]) == 7.0  # no span: the curve is its single value
    per_run = area_under_curve([0, 10, 30], np.array([[0.0, 10.0, 10.0], [3.0, 3.0, 3.0]]))
    assert per_run == pytest.approx([250 / 30, 3.0])
    with pytest.raises(ValueError):
        area_under_curve([0, 10], [1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------------------------------------------
# Dependencies


def test_analysis_imports_no_torch_gymnasium_or_other_qbench_code():
    code = ("import sys, qbench; before = set(sys.modules); import qbench.analysis.stats; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "qbench.analysis.stats" in loaded
    offending = [m for m in loaded if m.split(".")[0] in ("torch", "gymnasium", "rliable")
                 or (m.startswith("qbench.") and not m.startswith("qbench.analysis"))]
    assert offending == []
    assert stats.__name__ == "qbench.analysis.stats"
