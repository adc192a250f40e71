"""The divergence rule (qbench/parts/divergence.py) on recorded |Q| traces: runs that came back are flagged
and kept; runs that grow without bound, and NaN, are stopped.

The traces are the q_abs_max column of committed diagnostics.csv files (one row per 1,000 env steps: the
largest |Q| on any sampled batch since the previous row), rounded to 0.1, with the |Q| at which the old watch
(10 x r_max / (1 - gamma)) stopped the run appended from its error.json. The rule only compares levels, so a
log row can stand for a round. CartPole-v1 and Acrobot-v1 pay |reward| <= 1 with gamma 0.99: one value scale
is 100, the warning level 500, the stop level 100,000.
"""

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from qbench.parts import divergence as dv

RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"
CORRECTIONS = "issue15_corrections/nstep_corrections"

# results/benchmarks/issue15_corrections/nstep_corrections/CartPole-v1/nstep_cut_dqn/seed4-3d7aa61c0c: env
# steps 2,000-50,000; |Q| up to 981.8 at 7,000 (9.82 value scales, the most of any completed run), final
# return 500.0.
RECOVERED_CARTPOLE = [
    32.2, 103.5, 216.5, 386.2, 490.1, 981.8, 772.2, 682.5, 638.6, 548.7, 483.1, 464.9, 464.7, 402.3, 360.9,
    348.2, 339.6, 334.4, 293.1, 287.3, 291.0, 275.8, 263.8, 242.7, 229.1, 217.2, 207.5, 206.2, 202.2, 200.3,
    197.0, 195.4, 185.4, 183.6, 183.1, 166.8, 161.1, 154.0, 151.9, 153.7, 150.7, 150.2, 148.3, 147.9, 145.8,
    143.3, 143.7, 141.0, 141.3]
RECOVERED_CARTPOLE_STEPS = list(range(2000, 50001, 1000))

# Every run the old watch stopped: (run directory under results/benchmarks, first env step of the trace, |Q|
# per log row, env step and |Q| of the stop from error.json, env step at which the new rule flags it, by hand:
# the first value above 500).
STOPPED_BY_OLD_WATCH = [
    ("issue11_sanity/sanity/CartPole-v1/huber_dqn/seed0-775f4ecb3a", 2000,
     [20.6, 56.6, 95.2, 127.1, 255.7, 289.8, 367.7, 382.3, 352.1, 329.9, 313.7, 343.1, 358.0, 870.9, 958.3],
     16064, 1077.0, 15000),
    ("issue11_sanity/sanity/CartPole-v1/huber_dqn/seed4-f5bf88a2a2", 2000,
     [19.3, 51.7, 92.6, 129.6, 171.8, 391.5, 625.4, 762.4, 939.4], 10816, 1065.0, 8000),
    ("issue11_sanity/sanity/CartPole-v1/online_q/seed0-7cb4664f13", 1000, [217.2, 164.6, 251.6, 618.0],
     4946, 1009.0, 4000),
    ("issue11_sanity/sanity/CartPole-v1/online_q/seed4-d361c0fb72", 1000, [], 156, 1018.0, 156),
    (f"{CORRECTIONS}/Acrobot-v1/nstep5_is_dqn/seed1-2952f26b16", 1000,
     [23.4, 63.9, 47.2, 45.6, 46.6, 50.5, 202.1, 427.6, 575.1, 543.7, 580.5, 702.5, 737.8],
     13984, 1034.0, 9000),
    (f"{CORRECTIONS}/Acrobot-v1/nstep_is_dqn/seed0-6dfca37cc7", 1000,
     [14.6, 21.8, 30.3, 34.9, 55.9, 80.4, 58.7, 50.7, 51.5, 53.0, 54.1, 55.0, 58.5, 58.6, 58.4, 59.8, 59.8,
      58.6, 56.4, 57.5, 57.3, 59.0, 60.1, 59.9, 57.6, 57.7, 58.1, 57.4, 57.1, 55.5, 56.2, 55.1, 54.7, 56.3,
      58.3, 147.5, 181.0, 374.7, 511.8, 715.9, 888.4, 844.2, 810.9, 801.2, 915.3, 821.0, 815.8, 773.0, 640.4,
      743.0],
     50852, 1023.0, 39000),
    (f"{CORRECTIONS}/Acrobot-v1/nstep_is_dqn/seed4-df09bde3e6", 1000,
     [14.5, 24.5, 28.2, 34.0, 40.6, 44.9, 48.5, 53.2, 56.4, 59.3, 60.2, 62.4, 62.9, 63.3, 62.8, 63.4, 117.0,
      261.3, 387.4, 549.8, 790.1, 975.3], 22148, 1105.0, 20000),
    (f"{CORRECTIONS}/CartPole-v1/nstep5_cut_dqn/seed4-6fefb5beeb", 2000,
     [34.3, 105.1, 241.7, 434.4, 504.7, 902.1], 7168, 1036.0, 6000),
    (f"{CORRECTIONS}/CartPole-v1/nstep_is_dqn/seed4-70f195da19", 2000, [50.6, 176.9, 507.6],
     4864, 1030.0, 4000),
    (f"{CORRECTIONS}/CartPole-v1/retrace5_dqn/seed4-5166c378ef", 2000,
     [33.4, 100.4, 215.3, 404.5, 549.4, 587.1], 8000, 1478.0, 6000),
    (f"{CORRECTIONS}/CartPole-v1/retrace_dqn/seed4-2dfb5c8f31", 2000,
     [30.3, 101.8, 209.1, 361.1, 453.6, 540.5, 738.7], 8384, 1117.0, 7000),
    (f"{CORRECTIONS}/CartPole-v1/tree_backup5_dqn/seed2-13c5a161cd", 2000,
     [33.3, 83.8, 108.4, 165.0, 254.2, 343.2, 273.6, 266.2, 281.5, 452.9], 11712, 1055.0, 11712),
    (f"{CORRECTIONS}/CartPole-v1/tree_backup5_dqn/seed4-d1721b44d5", 2000,
     [32.8, 96.1, 200.7, 364.3, 466.6, 468.3], 7744, 1110.0, 7744),
    (f"{CORRECTIONS}/CartPole-v1/tree_backup_dqn/seed4-58e406dcd2", 2000,
     [29.9, 100.5, 208.0, 343.0, 384.3, 625.9], 8000, 1392.0, 7000),
]

PENDULUM_R_MAX = math.pi ** 2 + 0.1 * 8.0 ** 2 + 0.001 * 2.0 ** 2   # the largest cost (angle, speed, torque)
R_MAX = {"CartPole-v1": 1.0, "Acrobot-v1": 1.0, "MountainCar-v0": 1.0, "Pendulum-v1": PENDULUM_R_MAX}


def test_levels_in_value_scales():
    warn, stop = dv.levels([1.0, 0.0, 0.25, 16.2736], 0.99)
    np.testing.assert_allclose(warn, [500.0, 500.0, 500.0, 8136.8])     # r_max below 1 (or none) counts as 1
    np.testing.assert_allclose(stop, [1e5, 1e5, 1e5, 1627360.0])
    np.testing.assert_allclose(dv.value_scale([3.0], 1.0, longest_episode_steps=2), [6.0])
    with pytest.raises(ValueError, match="gamma is 1"):
        dv.value_scale([3.0], 1.0)
    with pytest.raises(ValueError):
        dv.levels([1.0], 0.99, warn_factor=10.0, stop_factor=5.0)


def test_recovered_cartpole_run_is_flagged_not_stopped():
    verdict = dv.judge_trace(RECOVERED_CARTPOLE, 1.0, 0.99, env_steps=RECOVERED_CARTPOLE_STEPS)
    assert verdict.stopped_round is None
    assert verdict.warned_round == 5 and RECOVERED_CARTPOLE_STEPS[5] == 7000   # 490.1 at 6k, 981.8 at 7k
    assert verdict.peak_q_abs == pytest.approx(981.8)
    assert verdict.peak_value_scales == pytest.approx(9.818)


@pytest.mark.parametrize("run, first_step, rows, stop_step, stop_q, warn_step", STOPPED_BY_OLD_WATCH,
                         ids=[case[0].split("/", 1)[1] for case in STOPPED_BY_OLD_WATCH])
def test_runs_the_old_watch_stopped_are_flagged_not_stopped(run, first_step, rows, stop_step, stop_q,
                                                            warn_step):
    steps = [*range(first_step, first_step + 1000 * len(rows), 1000), stop_step]
    trace = [*rows, stop_q]
    new = dv.judge_trace(trace, 1.0, 0.99, env_steps=steps)
    assert new.stopped_round is None
    assert steps[new.warned_round] == warn_step
    assert new.peak_q_abs == stop_q
    # the old rule (stop at 10 value scales) on the same trace stops exactly where the run was stopped
    old = dv.judge_trace(trace, 1.0, 0.99, env_steps=steps, warn_factor=10.0, stop_factor=10.0)
    assert old.stopped_round == len(trace) - 1


def test_runaway_huber_trace_is_stopped_at_its_round():
    """huber_dqn on CartPole: Q(s0) ran away to about 1.9e8 with a finite loss (README, the overestimation
    figure of issue 14; that run's diagnostics were not committed). The trace: the committed rows of
    huber_dqn seed 4 (results/benchmarks/issue11_sanity/sanity/CartPole-v1/huber_dqn/seed4-f5bf88a2a2, env
    steps 2,000 to 10,000, and 1,065 at its stop), then doubling every round up to 1.9e8 (a synthetic
    continuation)."""
    recorded = [19.3, 51.7, 92.6, 129.6, 171.8, 391.5, 625.4, 762.4, 939.4, 1065.0]
    trace = [*recorded, *(1065.0 * 2.0 ** j for j in range(1, 18)), 1.9e8]
    verdict = dv.judge_trace(trace, 1.0, 0.99)
    # by hand: 625.4 (round 6) is the first value above 500; 1065 * 2**6 = 68,160 <= 1e5 < 1065 * 2**7 =
    # 136,320, and 1065 is round 9, so round 9 + 7 = 16 is the first above the stop level
    assert verdict.warned_round == 6
    assert verdict.stopped_round == 16 and not verdict.stopped_non_finite
    assert verdict.peak_q_abs == 136320.0


def test_baird_like_growth_with_zero_rewards_is_stopped():
    """Baird's star pays 0: the old watch never looked (r_max = 0). The growth here is the theory report's:
    |V| starts at 12 (weights 1, ..., 1, 10, 1) and grows by 1.0029 an iteration (docs/results/theory)."""
    trace = 12.0 * 1.0029 ** np.arange(4000)
    verdict = dv.judge_trace(trace, 0.0, 0.99)
    # by hand: one value scale is max(0, 1) / 0.01 = 100; 12 * 1.0029**k > 500 from k = ln(500/12)/ln(1.0029)
    # = 1287.97, i.e. 1288; > 1e5 from k = ln(1e5/12)/ln(1.0029) = 3117.6, i.e. 3118
    assert verdict.warned_round == 1288
    assert verdict.stopped_round == 3118 and not verdict.stopped_non_finite


def test_exact_counterexamples_are_stopped_and_their_convergent_twins_are_not():
    from qbench.theory import counterexamples as ce

    phi = ce.baird_features()
    off_policy = np.abs(ce.baird_expected_td(iterations=4000) @ phi.T).max(axis=1)
    on_policy = np.abs(ce.baird_expected_td(iterations=4000, weighting="on_policy") @ phi.T).max(axis=1)
    assert dv.judge_trace(off_policy, 0.0, 0.99).stopped_round is not None
    twin = dv.judge_trace(on_policy, 0.0, 0.99)
    assert twin.stopped_round is None and twin.warned_round is None
    # Tsitsiklis and Van Roy: V = (w, 2w), w multiplied by 6 gamma / 5 an iteration, rewards 0. By hand at
    # gamma 0.9 (one scale 1 / 0.1 = 10): 2 * 1.08**k > 50 from k = 41.8, > 1e4 from k = 110.7
    tvr = dv.judge_trace(2.0 * np.abs(ce.tvr_fitted_value_iteration(0.9, 1.0, 200)), 0.0, 0.9)
    assert (tvr.warned_round, tvr.stopped_round) == (42, 111)
    shrinking = dv.judge_trace(2.0 * np.abs(ce.tvr_fitted_value_iteration(0.8, 1.0, 200)), 0.0, 0.8)
    assert shrinking.stopped_round is None and shrinking.warned_round is None


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_q_is_stopped_at_once(bad):
    verdict = dv.judge_trace([20.0, 50.0, bad, 10.0], 1.0, 0.99)
    assert verdict.stopped_round == 2 and verdict.stopped_non_finite
    assert verdict.peak_q_abs == 50.0 and verdict.warned_round is None


def test_one_round_for_a_batch_of_seeds():
    state = dv.new_state(4)
    # seed 0 fine, seed 1 past the warning level, seed 2 a NaN loss with a finite |Q|, seed 3 past the stop
    verdict = dv.watch_round(state, [90.0, 700.0, 80.0, 2e5], [1.0, 1.0, 1.0, 1.0], 0.99, env_step=640,
                             non_finite=[False, False, True, False])
    assert state.stopped_env_step.tolist() == [-1, -1, -1, -1]           # the state given is not changed
    assert verdict.warned_now.tolist() == [False, True, False, True]
    assert verdict.stopped_now.tolist() == [False, False, True, True]
    assert verdict.non_finite_now.tolist() == [False, False, True, False]
    s = verdict.state
    assert s.first_warned_env_step.tolist() == [-1, 640, -1, 640]
    assert s.stopped_env_step.tolist() == [-1, -1, 640, 640]
    np.testing.assert_allclose(s.peak_value_scales, [0.9, 7.0, 0.0, 2000.0])
    assert "stop level 1000 x" in dv.describe(verdict, 3, 2e5, 1.0, 0.99)
    assert "NaN" in dv.describe(verdict, 2, 80.0, 1.0, 0.99)
    assert "warning level 5 x" in dv.describe(verdict, 1, 700.0, 1.0, 0.99)

    # next round: stopped seeds are not judged again; seed 1 stays flagged at its first step, its peak follows
    later = dv.watch_round(s, [95.0, 800.0, math.nan, 5e5], [1.0] * 4, 0.99, env_step=704,
                           alive=[True, True, False, False])
    assert not later.stopped_now.any() and not later.warned_now.any()
    assert later.state.first_warned_env_step.tolist() == [-1, 640, -1, 640]
    assert later.state.stopped_env_step.tolist() == [-1, -1, 640, 640]
    np.testing.assert_allclose(later.state.peak_q_abs, [95.0, 800.0, 0.0, 2e5])

    records = [dv.seed_record(later.state, k) for k in range(4)]
    assert records[1]["first_warned_env_step"] == 640 and records[0]["first_warned_env_step"] is None
    json.dumps(records)
    again = dv.state_from_records(records)
    for field in ("peak_q_abs", "peak_value_scales", "first_warned_env_step", "stopped_env_step",
                  "stopped_non_finite"):
        np.testing.assert_array_equal(getattr(again, field), getattr(later.state, field))


# The folders of committed runs (2026-12); other folders under results/benchmarks may hold work in progress.
COMMITTED = ("issue11_sanity", "issue12_minatar", "issue12_pong100k", "issue13_overestimation",
             "issue15_corrections", "issue16_lecture")


def _committed_runs():
    found = (path for folder in COMMITTED for path in (RESULTS / folder).glob("**/diagnostics.csv"))
    for diagnostics in sorted(found):
        run = diagnostics.parent
        config = json.loads((run / "config.json").read_text())
        with diagnostics.open() as f:
            rows = [(int(r["env_steps"]), float(r["q_abs_max"])) for r in csv.DictReader(f)
                    if r.get("q_abs_max") not in (None, "")]
        rows = [(step, q) for step, q in rows if not math.isnan(q)]
        stop = None
        if (run / "error.json").exists():
            message = json.loads((run / "error.json").read_text())["message"]
            found = re.search(r"\|Q\| reached ([0-9.e+]+) on a sampled batch at env step (\d+)", message)
            stop = (int(found.group(2)), float(found.group(1)))
        if rows or stop:
            yield run, config["task"], config["config"]["gamma"], rows, stop


@pytest.mark.skipif(not RESULTS.exists(), reason="no committed runs")
def test_no_committed_run_is_stopped_and_the_old_rule_reproduces_the_old_stops():
    runs = list(_committed_runs())
    assert len(runs) >= 200
    warned = set()
    for run, task, gamma, rows, stop in runs:
        trace = [q for _, q in rows] + ([stop[1]] if stop else [])
        new = dv.judge_trace(trace, R_MAX[task], gamma)
        assert new.stopped_round is None, run
        if new.warned_round is not None and stop is None:
            warned.add((task, run.parent.name, run.name.split("-")[0]))
        old = dv.judge_trace(trace, R_MAX[task], gamma, warn_factor=10.0, stop_factor=10.0)
        assert (old.stopped_round is not None) == (stop is not None), run
    assert len(warned) == 11    # the distinct completed runs above 5 value scales (a seed run twice: once)
