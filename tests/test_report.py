"""qbench report: tables by hand on a synthetic results folder, every format written, HTML rendered, CLI errors."""

import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from qbench.analysis import stats
from qbench.analysis.render import write_report
from qbench.analysis.report import build_report
from qbench.analysis.scoring import final_scores
from qbench.analysis.studies.core import base_env, load_references, per_task_table
from qbench.analysis.synthetic import write_run, write_suite_record
from qbench.loading import load_results
from tests.harness import run_qbench

STEPS = [1000, 2000]
FINALS = {  # (task, variant) -> final return per seed
    ("Alpha-v1", "dqn_x"): [10, 20, 30, 40],
    ("Alpha-v1", "dqn_y"): [20, 30, 50, 60],
    ("Beta-v0", "dqn_x"): [0, 50, 100],        # seed 3 diverged after one evaluation (7.0): it counts as 7.0
    ("Beta-v0", "dqn_y"): [80, 90, 100, 100],
}
SCORES = {"Alpha-v1": (0.0, 100.0), "Beta-v0": (0.0, 200.0)}


def write_folder(results, extra_variant=False):
    write_suite_record(results, "toy", SCORES, {"Alpha-v1": {"dqn_x": 25.0}})
    for (task, variant), finals in FINALS.items():
        for seed, final in enumerate(finals):
            overestimate = variant == "dqn_y" and task == "Alpha-v1"
            write_run(results, "toy", task, variant, seed, STEPS, [final / 2, final],
                      q_start=[final / 2 + 10, final + 10] if overestimate else None,
                      discounted=[final / 2, final] if overestimate else None, wall_s=10.0 + seed)
    write_run(results, "toy", "Beta-v0", "dqn_x", 3, STEPS[:1], [7.0], state="diverged")
    if extra_variant:
        for seed in range(3):
            write_run(results, "toy", "Alpha-v1", "dqn_z", seed, STEPS, [1.0, 2.0 + seed])


@pytest.fixture
def folder(tmp_path):
    write_folder(tmp_path / "results")
    return tmp_path / "results"


@pytest.fixture
def report(folder):
    return build_report(folder, reps=400)


def row(table, **keys):
    match = table
    for k, v in keys.items():
        match = match[match[k] == v]
    assert len(match) == 1, keys
    return match.iloc[0]


def test_per_task_table_by_hand(report):
    t = report.tables["per_task"]
    x = row(t, task="Alpha-v1", variant="dqn_x")
    assert (x["seeds"], x["env_steps"], x["mean"]) == (4, 2000, 25.0)
    assert x["std"] == pytest.approx(math.sqrt(((15**2 + 5**2) * 2) / 3))   # sample std of 10, 20, 30, 40
    assert x["iqm"] == 25.0                                                  # mean of the middle two
    assert row(t, task="Alpha-v1", variant="dqn_y")["iqm"] == 40.0
    beta_x = row(t, task="Beta-v0", variant="dqn_x")
    # the diverged seed counts at its last evaluation before divergence (7.0)
    assert (beta_x["seeds"], beta_x["diverged"], beta_x["mean"]) == (4, 1, (0 + 50 + 100 + 7) / 4)
    assert x["diverged"] == 0
    assert x["iqm_lower"] <= x["iqm"] <= x["iqm_upper"] and x["iqm_lower"] < x["iqm_upper"]
    # AUC = mean return over training: trapezoid of (1000, f/2) -> (2000, f) over the span = 3f/4, mean over seeds
    assert x["auc_mean"] == pytest.approx(0.75 * 25.0)
    # the diverged run is held at 7.0 from its divergence to the budget: its AUC is 7.0
    assert beta_x["auc_mean"] == pytest.approx((0.75 * (0 + 50 + 100) + 7.0) / 4)


def test_runs_and_notes_say_unequal_seeds_and_failures(report, folder):
    runs = report.tables["runs"]
    beta_x = row(runs, task="Beta-v0", variant="dqn_x")
    assert (beta_x["complete"], beta_x["diverged"], beta_x["crashed"], beta_x["in_statistics"],
            beta_x["seeds"]) == (3, 1, 0, 4, "0,1,2,3")
    assert any("Beta-v0 / dqn_x: 1 run(s) diverged" in n and "count against the variant in every statistic" in n
               for n in report.notes)
    assert not any("unequal" in n for n in report.notes)     # the diverged seed counts: 4 and 4
    write_run(folder, "toy", "Alpha-v1", "dqn_x", 4, STEPS, [1.0, 2.0], state="crashed")
    write_run(folder, "toy", "Alpha-v1", "dqn_y", 4, STEPS, [1.0, 2.0])
    again = build_report(folder, reps=100)
    assert row(again.tables["runs"], task="Alpha-v1", variant="dqn_x")["crashed"] == 1
    assert any("Alpha-v1: unequal numbers of runs in the statistics: dqn_x 4, dqn_y 5" in n for n in again.notes)
    assert any("Alpha-v1 / dqn_x: 1 run(s) crashed, left out of every statistic" in n for n in again.notes)


def test_aggregate_uses_the_suite_scores(report):
    agg = report.tables["aggregate"]
    mean_x = row(agg, variant="dqn_x", metric="mean")
    # Alpha: (10..40)/100 -> mean 0.25; Beta: (0, 50, 100, diverged 7)/200 -> mean 0.19625; mean over tasks
    assert mean_x["point"] == pytest.approx((0.25 + 0.19625) / 2)
    assert (mean_x["tasks"], mean_x["runs"], mean_x["diverged"]) == (2, 8, 1)
    gap_y = row(agg, variant="dqn_y", metric="optimality gap")
    # Alpha y: 1 - (0.2, 0.3, 0.5, 0.6) -> 0.6; Beta y: 1 - (0.4, 0.45, 0.5, 0.5) -> 0.5375
    assert gap_y["point"] == pytest.approx((0.6 + 0.5375) / 2)
    expected_iqm = stats.iqm({"Alpha-v1": np.array([0.1, 0.2, 0.3, 0.4]),
                              "Beta-v0": np.array([0.0, 0.25, 0.5, 0.035])})
    assert row(agg, variant="dqn_x", metric="IQM")["point"] == pytest.approx(expected_iqm)


def test_probability_of_improvement_by_hand(report):
    poi = report.tables["improvement"]
    # Alpha: x beats y in 3 of 16 pairs and ties 2 -> 4/16; Beta (0, 50, 100, diverged 7) against
    # (80, 90, 100, 100): 100 wins 2 and ties 2 -> 3/16
    assert row(poi, x="dqn_x", y="dqn_y")["point"] == pytest.approx((4 / 16 + 3 / 16) / 2)
    assert row(poi, x="dqn_y", y="dqn_x")["point"] == pytest.approx(1 - (4 / 16 + 3 / 16) / 2)
    assert row(poi, x="dqn_x", y="dqn_y")[["x_diverged", "y_diverged"]].tolist() == [1, 0]


def test_learning_curves_are_iqm_over_seeds(report):
    curves = report.tables["curves"]
    first = row(curves, task="Alpha-v1", variant="dqn_x", env_steps=1000)
    assert first["iqm"] == 12.5 and first["seeds"] == 4        # middle two of 5, 10, 15, 20
    assert first["lower"] <= 12.5 <= first["upper"]


def test_overestimation_only_for_runs_that_logged_it(report):
    over = report.tables["overestimation"]
    assert set(zip(over["task"], over["variant"])) == {("Alpha-v1", "dqn_y")}
    assert (over["overestimation"] == 10.0).all() and (over["seeds"] == 4).all()


def test_thresholds_and_cost(report):
    rows = report.sections()
    thresholds = next(s.table for s in rows if s.title == "Pass thresholds")
    assert row(thresholds, variant="dqn_x")["seeds at or above"] == "2/4"
    cost = row(report.tables["cost"], task="Alpha-v1", variant="dqn_x")
    assert cost["wall_s_mean"] == pytest.approx(11.5) and cost["wall_s_total"] == pytest.approx(46.0)
    assert cost["peak_rss_mb_max"] == 300.0


def test_published_reference_of_the_same_algorithm_closest_in_budget():
    refs = load_references()
    assert base_env("LunarLanderContinuous-v3") == base_env("LunarLanderContinuous-v2")
    df = pd.DataFrame({"task": "Acrobot-v1", "variant": "dqn", "seed": [0, 1], "env_id": "Acrobot-v1",
                       "env_steps": 100_000, "return_mean": [-80.0, -90.0], "complete": True, "failed": False,
                       "run_dir": ["a", "b"]})
    finals = final_scores(df)
    near_zoo = per_task_table(finals, df, refs, seed=0, reps=50, confidence=0.95).iloc[0]
    assert near_zoo["reference_mean"] == -76.64 and "zoo" in near_zoo["reference_source"]
    far = df.assign(env_steps=500_000)
    near_cleanrl = per_task_table(final_scores(far), far, refs, seed=0, reps=50, confidence=0.95).iloc[0]
    assert near_cleanrl["reference_mean"] == -91.54
    other = df.assign(variant="double_dqn")
    assert math.isnan(per_task_table(final_scores(other), other, refs, seed=0, reps=50,
                                     confidence=0.95).iloc[0]["reference_mean"])


def test_same_seed_same_report_and_rows_do_not_move_when_variants_are_added(folder, tmp_path):
    a, b = build_report(folder, reps=300, seed=3), build_report(folder, reps=300, seed=3)
    for name in ("per_task", "aggregate", "improvement", "profiles", "curves"):
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    other_seed = build_report(folder, reps=300, seed=4)
    assert not a.tables["aggregate"]["lower"].equals(other_seed.tables["aggregate"]["lower"])
    bigger = tmp_path / "bigger"
    write_folder(bigger, extra_variant=True)
    c = build_report(bigger, reps=300, seed=3)
    for name, columns in (("per_task", ["variant"]), ("aggregate", ["variant"]), ("improvement", ["x", "y"])):
        table = c.tables[name]
        keep = table[~table[columns].isin(["dqn_z"]).any(axis=1)].reset_index(drop=True)
        pd.testing.assert_frame_equal(a.tables[name], keep)


def test_every_format_is_written_and_holds_every_table_and_figure(report, tmp_path):
    out = tmp_path / "report"
    write_report(report, out)
    md = (out / "report.md").read_text()
    for title in ("Runs", "Final return per task", "Pass thresholds", "Learning curves",
                  "Aggregate normalised scores", "Performance profiles", "Probability of improvement",
                  "Overestimation", "Cost"):
        assert f"## {title}" in md, title
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == ["aggregate_intervals.png", "learning_curves.png", "overestimation.png",
                       "performance_profiles.png", "probability_of_improvement.png"]
    for name in figures:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(figures/{name})" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5 and "figures/" not in page   # self-contained
    assert "Beta-v0 / dqn_x: 1 run(s) diverged" in page
    tex = (out / "tables.tex").read_text()
    assert tex.count("\\begin{tabular}") == sum(s.table is not None and not s.table.empty
                                                for s in report.sections())
    assert "dqn\\_x" in tex and "$\\pm$" in tex and "dqn_x" not in tex
    back = pd.read_csv(out / "csv" / "per_task.csv")
    assert back["iqm"].tolist() == pytest.approx(report.tables["per_task"]["iqm"].tolist())
    assert sorted(p.stem for p in (out / "csv").iterdir()) == sorted(report.tables)


def test_a_report_of_a_folder_without_suite_scores_leaves_out_the_normalised_tables(tmp_path):
    write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0])
    report = build_report(tmp_path, reps=100)
    assert report.tables["aggregate"].empty and report.tables["profiles"].empty
    assert any("no random and reference score for Gamma-v0" in n for n in report.notes)
    write_report(report, tmp_path / "out", ("md",))
    assert "## Aggregate normalised scores" not in (tmp_path / "out" / "report.md").read_text()


def test_each_run_is_normalised_by_the_scores_of_the_suite_that_ran_it(tmp_path):
    """Two suites score CartPole differently (reference 500 and 120): a run at its own suite's reference is 1, a
    diverged run without evaluations takes its own suite's random score, and the report says they differ."""
    write_suite_record(tmp_path, "long", {"CartPole-v1": (20.0, 500.0)})
    write_suite_record(tmp_path, "short", {"CartPole-v1": (10.0, 120.0)})
    for seed in range(3):
        write_run(tmp_path, "long", "CartPole-v1", "dqn", seed, STEPS, [250.0, 500.0])
        write_run(tmp_path, "short", "CartPole-v1", "fast_dqn", seed, STEPS, [65.0, 120.0 - 11.0 * seed])
    write_run(tmp_path, "short", "CartPole-v1", "fast_dqn", 3, [], [], state="diverged")
    report = build_report(tmp_path, reps=100)
    iqm = report.tables["aggregate"].query("metric == 'IQM'").set_index("variant")["point"]
    assert iqm["dqn"] == pytest.approx(1.0)
    # seeds 0-2: (120 - 10) / 110 = 1.0, (109 - 10) / 110 = 0.9, (98 - 10) / 110 = 0.8; seed 3 diverged before any
    # evaluation and scores short's random score, 0: the middle two of [0, 0.8, 0.9, 1.0] average 0.85
    assert iqm["fast_dqn"] == pytest.approx(0.85)
    finals = report.tables["finals"].set_index(["variant", "seed"])
    assert finals.loc[("fast_dqn", 3), "final_return"] == 10.0
    assert any("CartPole-v1 is scored differently by its suites ('long': random 20, reference 500; 'short': "
               "random 10, reference 120)" in n for n in report.notes)


def test_variants_aggregated_over_different_tasks_are_said_so(tmp_path):
    write_suite_record(tmp_path, "s", {"Alpha-v0": (0.0, 100.0), "Beta-v0": (0.0, 100.0)})
    for seed in range(2):
        for task in ("Alpha-v0", "Beta-v0"):
            write_run(tmp_path, "s", task, "a_dqn", seed, STEPS, [20.0, 90.0])
        write_run(tmp_path, "s", "Alpha-v0", "b_dqn", seed, STEPS, [20.0, 30.0])
    report = build_report(tmp_path, reps=100)
    assert any(n.startswith("the normalised aggregates and profiles are not over the same tasks for every "
                            "variant: b_dqn lacks Beta-v0") for n in report.notes)
    write_run(tmp_path, "s", "Beta-v0", "b_dqn", 0, STEPS, [20.0, 30.0])
    assert not any("not over the same tasks" in n for n in build_report(tmp_path, reps=100).notes)


def test_a_task_whose_random_and_reference_scores_are_equal_is_said_so(tmp_path):
    write_suite_record(tmp_path, "s", {"Alpha-v0": (0.0, 100.0), "Beta-v0": (10.0, 10.0)})
    for task in ("Alpha-v0", "Beta-v0"):
        write_run(tmp_path, "s", task, "dqn", 0, STEPS, [20.0, 50.0])
    report = build_report(tmp_path, reps=100)
    assert set(report.tables["aggregate"]["tasks"]) == {1}
    assert any(n.startswith("Beta-v0: its random and reference scores are equal (10)") for n in report.notes)
    assert not any("no random and reference score for Beta-v0" in n for n in report.notes)


CHROMIUM = next((c for c in ("chromium", "chromium-browser", "google-chrome") if shutil.which(c)), None)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_the_html_page_renders_in_headless_chromium(report, tmp_path):
    import matplotlib.image

    write_report(report, tmp_path / "report", ("html",))
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1280,2000",
                    (tmp_path / "report" / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=False)
    pixels = matplotlib.image.imread(shot)[..., :3]
    ink = (pixels.min(axis=2) < 0.9).mean()           # share of pixels that are not near white
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert ink > 0.02 and colours > 100, (ink, colours)


def test_cli_report_writes_the_files_and_bad_input_is_one_line(folder, tmp_path):
    r = run_qbench("report", folder, "--out", tmp_path / "rep", "--formats", "md,csv", "--reps", "200")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rep" / "report.md").exists() and not (tmp_path / "rep" / "report.html").exists()
    assert "note: Beta-v0 / dqn_x: 1 run(s) diverged" in r.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, message in [
        ((tmp_path / "missing",), "does not exist"),
        ((empty,), "no run with evaluations"),
        ((folder, "--formats", "md,pdf"), "valid formats: md, html, tex, csv"),
        ((folder, "--suite", "nosuch"), "unknown suite 'nosuch'"),
        ((folder, "--confidence", "95"), "between 0 and 1"),
    ]:
        r = run_qbench("report", *args, "--out", tmp_path / "never")
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "never").exists()


def test_load_results_keeps_the_overestimation_columns(folder):
    df = load_results(folder)
    logged = df.dropna(subset=["q_start_mean"])
    assert set(logged["variant"]) == {"dqn_y"} and len(logged) == 8


def test_atari_games_are_human_normalised_when_the_suite_gives_no_scores(tmp_path):
    for seed, final in enumerate([30.5, 1.7]):          # Breakout: random 1.7, human 30.5
        write_run(tmp_path, "atari", "Breakout", "dqn", seed, STEPS, [0.0, final], env_id="ALE/Breakout-v5")
    report = build_report(tmp_path, reps=100)
    assert report.scoring["Breakout"].reference_score == 30.5
    assert row(report.tables["aggregate"], variant="dqn", metric="mean")["point"] == pytest.approx(0.5)


def test_runs_of_one_variant_with_different_budgets_are_flagged(tmp_path):
    write_run(tmp_path, "a", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0])
    write_run(tmp_path, "b", "Gamma-v0", "dqn", 0, [1000, 5000], [1.0, 3.0])
    report = build_report(tmp_path, reps=100)
    assert any("runs with different budgets are pooled (2,000, 5,000 env steps)" in n for n in report.notes)


def test_a_seed_that_appears_in_two_runs_is_flagged_and_others_are_not(tmp_path, folder):
    write_run(tmp_path, "a", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0])
    write_run(tmp_path, "b", "Gamma-v0", "dqn", 0, STEPS, [1.0, 3.0])
    write_run(tmp_path, "b", "Gamma-v0", "dqn", 1, STEPS, [1.0, 3.0])
    flagged = [n for n in build_report(tmp_path, reps=100).notes if "more than one run" in n]
    assert len(flagged) == 1 and flagged[0].startswith("Gamma-v0 / dqn: seed(s) 0 appear in more than one run")
    assert not any("more than one run" in n for n in build_report(folder, reps=100).notes)


def test_curve_bands_use_scipys_trimmed_mean_on_every_replicate():
    from scipy.stats import trim_mean

    from qbench.analysis.bootstrap import bootstrap_iqm_over_seeds

    curves = np.random.default_rng(1).normal(size=(7, 4))      # 7 seeds: int(7 / 4) = 1 cut from each end
    point, lower, upper = bootstrap_iqm_over_seeds(curves, np.random.default_rng(2), 50, 0.9)
    np.testing.assert_allclose(point, trim_mean(curves, 0.25, axis=0))
    draws = np.random.default_rng(2).integers(0, 7, size=(50, 7))
    replicates = np.array([trim_mean(curves[d], 0.25, axis=0) for d in draws])
    np.testing.assert_allclose(lower, np.percentile(replicates, 5, axis=0))
    np.testing.assert_allclose(upper, np.percentile(replicates, 95, axis=0))
