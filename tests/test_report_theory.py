"""qbench report's Theory section and the overestimation tables along visited states, by hand on synthetic run
directories: the Wilson interval, the maximisation-bias left fractions, the distance to Q*, the overestimation at
the last shared step, the contraction of Q-value iteration, and which folders get a Theory section at all."""

import pandas as pd
import pytest

from qbench.analysis.render import write_report
from qbench.analysis.report import build_report
from qbench.analysis.scoring import final_scores
from qbench.analysis.studies.overestimation import overestimation_final_table, overestimation_visited_table
from qbench.analysis.studies.theory import (
    maximisation_bias_summary,
    maximisation_bias_table,
    q_distance_table,
    wilson_interval,
)
from qbench.analysis.synthetic import write_run
from qbench.config import config_hash
from qbench.loading import load_results
from qbench.store import ERROR, RUNNER, RunDir, atomic_write_json

BIAS = "qbench/MaximisationBias-v0"


def write_theory_run(results, task, variant, seed, rows, *, gamma=0.9, env_id=None, episodes=None,
                     state="complete", message="synthetic"):
    """A run directory as the engine writes it: ``rows`` the evaluations (env_steps, return_mean and any logged
    column), ``episodes`` its episodes.csv rows; config.json records ``gamma``."""
    job = {"variant": variant, "task": task, "env_id": env_id or task, "env_kwargs": {}, "seed": seed,
           "config": {"gamma": gamma}}
    path = results / "toy" / task.replace("/", "_") / variant / f"seed{seed}-{config_hash(job)}"
    run = RunDir(path)
    run.write_config(job)
    atomic_write_json(path / RUNNER, {"suite": "toy", "attempts": 1})
    run.write_evaluations([{"return_std": 0.0, "return_min": r["return_mean"], "return_max": r["return_mean"],
                           "n_episodes": 10, "grad_steps": 1, "wall_s": 1.0, **r} for r in rows])
    if episodes is not None:
        run.write_episodes(episodes)
    if state == "complete":
        run.write_summary({"variant": variant, "task": task, "seed": seed, "env_steps": rows[-1]["env_steps"],
                           "final_return_mean": rows[-1]["return_mean"], "wall_s": 1.0, "steps_per_s": 100.0})
    else:
        atomic_write_json(path / ERROR, {"error": state, "message": message})
    return path


def test_wilson_interval_of_7_in_10_by_hand():
    # z = 1.959964, z^2 = 3.841459; centre = (0.7 + z^2/20) / (1 + z^2/10) = 0.892073 / 1.384146 = 0.644494;
    # half = z / 1.384146 * sqrt(0.21/10 + z^2/400) = 1.415999 * sqrt(0.0306037) = 0.247714 (six figures each)
    lower, upper = wilson_interval(7, 10, 0.95)
    assert lower == pytest.approx(0.396780, abs=1e-5) and upper == pytest.approx(0.892208, abs=1e-5)
    # none of 20: the interval starts at 0 and is not empty, [0, z^2 / (n + z^2)] = [0, 3.841459 / 23.841459]
    lower, upper = wilson_interval(0, 20, 0.95)
    assert lower == pytest.approx(0.0, abs=1e-12) and upper == pytest.approx(0.161124, abs=1e-5)


def episodes_frame():
    """Three complete runs of dqn on the bias task (the last has 2 episodes), one unfinished run (left out), and
    a task that records no left."""
    lefts = {("a", True): [1, 1, 0], ("b", True): [1, 0, 0], ("c", True): [0, 1], ("d", False): [1, 1, 1]}
    rows = [{"task": BIAS, "variant": "dqn", "run_dir": run, "complete": complete, "episode": i + 1, "left": left}
            for (run, complete), values in lefts.items() for i, left in enumerate(values)]
    rows.append({"task": "Other-v0", "variant": "dqn", "run_dir": "e", "complete": True, "episode": 1,
                 "left": None})
    return pd.DataFrame(rows)


def test_maximisation_bias_left_fractions_per_episode_over_the_runs_that_have_it():
    table = maximisation_bias_table(episodes_frame())
    assert list(table.columns) == ["task", "variant", "episode", "left_fraction", "runs", "lower", "upper"]
    assert set(table["task"]) == {BIAS}
    # episode 3 is left out: one run has only 2 (a late episode samples the runs that finish more of them)
    assert table["episode"].tolist() == [1, 2]
    assert table["left_fraction"].tolist() == pytest.approx([2 / 3, 2 / 3])
    assert table["runs"].tolist() == [3, 3]
    # 2 of 3: z^2 = 3.841459; centre = (2/3 + z^2/6) / (1 + z^2/3) = 1.306910 / 2.280486 = 0.573084;
    # half = z / 2.280486 * sqrt((2/9)/3 + z^2/36) = 0.859450 * sqrt(0.180781) = 0.365426
    assert table["lower"].iloc[0] == pytest.approx(0.207658, abs=1e-5)
    assert table["upper"].iloc[0] == pytest.approx(0.938510, abs=1e-5)
    summary = maximisation_bias_summary(episodes_frame(), table).iloc[0]
    assert (summary["runs"], summary["peak_episode"]) == (3, 1)
    assert summary["peak_left_fraction"] == pytest.approx(2 / 3)
    # every run has episodes 1-2: runs a, b, c go left 2, 1, 1 times of 2
    assert (summary["final_first_episode"], summary["final_last_episode"]) == (1, 2)
    assert summary["final_left_fraction"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)


def test_q_distance_is_the_mean_over_complete_seeds_at_the_shared_steps(tmp_path):
    errors = [[4.0, 2.0], [2.0, 1.0], [6.0, 6.0]]
    for seed, (first, last) in enumerate(errors):
        write_theory_run(tmp_path, "FrozenLake-v1", "dqn", seed, [
            {"env_steps": 100, "return_mean": 0.0, "q_error_max": first, "q_error_mean": first / 2,
             "greedy_value": 0.1 * seed, "optimal_value": 0.59},
            {"env_steps": 200, "return_mean": 1.0, "q_error_max": last, "q_error_mean": last / 2,
             "greedy_value": 0.2 * seed, "optimal_value": 0.59}])
    write_theory_run(tmp_path, "FrozenLake-v1", "dqn", 3, [
        {"env_steps": 100, "return_mean": 0.0, "q_error_max": 1e6, "q_error_mean": 1e6, "greedy_value": 0.0,
         "optimal_value": 0.59}], state="crashed")
    write_run(tmp_path, "toy", "CartPole-v1", "dqn", 0, [100], [10.0])     # no known dynamics, no columns
    df = load_results(tmp_path)
    table = q_distance_table(df, final_scores(df), seed=0, reps=200, confidence=0.95)
    assert set(table["task"]) == {"FrozenLake-v1"} and (table["statistic"] == "mean over seeds").all()
    assert table["env_steps"].tolist() == [100, 200] and (table["seeds"] == 3).all()
    assert table["q_error_max"].tolist() == pytest.approx([4.0, 3.0])
    assert table["q_error_mean"].tolist() == pytest.approx([2.0, 1.5])
    assert table["greedy_value"].tolist() == pytest.approx([0.1, 0.2])
    assert table["optimal_value"].tolist() == pytest.approx([0.59, 0.59])
    # the bootstrap of a mean of 2, 1, 6 lies between the smallest and largest seed
    last = table.iloc[1]
    assert 1.0 <= last["q_error_max_lower"] < 3.0 < last["q_error_max_upper"] <= 6.0


def overestimation_folder(results):
    """Three complete seeds; seed 2 stops at 200 env steps, so 200 is the last step all three share. At 200:
    Q(s0) 10, 12, 14 against a return of 8 (differences 2, 4, 6); along visited states Q 5, 5, 8 against 4
    (differences 1, 1, 4). At 300 (seeds 0 and 1 only) the numbers are far off, so picking it shows."""
    def row(steps, q0, q_visited):
        return {"env_steps": steps, "return_mean": 1.0, "q_start_mean": q0, "discounted_return_mean": 8.0,
                "q_visited_mean": q_visited, "discounted_return_visited_mean": 4.0, "visited_states": 3}

    for seed, (q0, qv) in enumerate([(10.0, 5.0), (12.0, 5.0), (14.0, 8.0)]):
        rows = [row(100, 8.0, 4.0), row(200, q0, qv)] + ([row(300, 100.0, 100.0)] if seed < 2 else [])
        write_theory_run(results, "CartPole-v1", "dqn", seed, rows)
    return results


def test_overestimation_final_is_at_the_last_step_every_complete_run_shares(tmp_path):
    df = load_results(overestimation_folder(tmp_path))
    finals = final_scores(df)
    final = overestimation_final_table(df, finals, seed=0, reps=300, confidence=0.95)
    assert len(final) == 1
    r = final.iloc[0]
    assert (r["task"], r["variant"], r["env_steps"]) == ("CartPole-v1", "dqn", 200)
    # IQM of three values cuts int(3 / 4) = 0 from each end: their mean
    assert (r["start_q"], r["start_return"], r["start_overestimation"], r["start_seeds"]) == (12.0, 8.0, 4.0, 3)
    assert (r["visited_q"], r["visited_return"], r["visited_overestimation"], r["visited_seeds"]) == (6.0, 4.0,
                                                                                                     2.0, 3)
    assert r["visited_states"] == 3.0
    assert 2.0 <= r["start_lower"] <= 4.0 <= r["start_upper"] <= 6.0
    visited = overestimation_visited_table(df, finals, seed=0, reps=300, confidence=0.95)
    assert visited["env_steps"].tolist() == [100, 200]
    assert visited["overestimation_visited"].tolist() == pytest.approx([0.0, 2.0])
    assert visited["q_visited_mean"].tolist() == pytest.approx([4.0, 6.0])


def theory_folder(results):
    """The maximisation-bias task (known dynamics) for dqn at gamma 0.9 and double_dqn at gamma 1, 4 seeds each,
    with per-episode left; one dqn run diverged on the Q bound, another on a NaN loss."""
    for variant, gamma in (("dqn", 0.9), ("double_dqn", 1.0)):
        for seed in range(4):
            went_left = [1, 1, 0, 0] if variant == "dqn" else [0, 1, 0, 0]
            episodes = [{"episode": i + 1, "env_steps": 2 * (i + 1), "return": 0.0, "length": 2,
                         "left": went_left[i] if seed < 2 else 0} for i in range(4)]
            write_theory_run(results, BIAS, variant, seed, [
                {"env_steps": 50, "return_mean": 0.0, "q_error_max": 0.5, "q_error_mean": 0.25,
                 "greedy_value": -0.09 * gamma, "optimal_value": 0.0, "q_visited_mean": 0.1,
                 "discounted_return_visited_mean": 0.0, "visited_states": 1}], gamma=gamma, episodes=episodes)
    write_theory_run(results, BIAS, "dqn", 7, [{"env_steps": 50, "return_mean": 0.0}], state="diverged",
                     message="Q exceeded the divergence bound 1000 at 40 env steps")
    write_theory_run(results, BIAS, "dqn", 8, [{"env_steps": 50, "return_mean": 0.0}], state="diverged",
                     message="loss is nan at 30 env steps")
    return results


def test_a_folder_with_theory_data_renders_a_theory_section_and_its_csv_files(tmp_path):
    results = theory_folder(tmp_path / "results")
    report = build_report(results, reps=200)
    t = report.tables
    bias = t["maximisation_bias"]
    dqn = bias[bias["variant"] == "dqn"]
    assert dqn["left_fraction"].tolist() == pytest.approx([0.5, 0.5, 0.0, 0.0]) and (dqn["runs"] == 4).all()
    # Q-value iteration on the bias MDP from Q = 0: Q*(B, .) = -0.1 and Q*(A, left) = -0.1 gamma, so the error is
    # 0.1, then 0.1 gamma (B exact, A-left still 0), then 0: ratios gamma and 0 (1 and 0 at gamma 1).
    contraction = t["contraction"].set_index("task")
    # the results' task at each gamma its runs used, then Gymnasium's toy text MDPs every Theory section shows
    assert sorted(contraction.index) == sorted([f"{BIAS} (gamma 0.9)", f"{BIAS} (gamma 1)"] + [
        f"{env} (gamma {g})" for env in ("FrozenLake-v1", "CliffWalking-v1", "Taxi-v4") for g in (0.9, 0.99)])
    assert (contraction["max_ratio"] <= contraction["bound"] + 1e-12).all()
    at_09 = contraction.loc[f"{BIAS} (gamma 0.9)"]
    assert (at_09["first_error"], at_09["bound"]) == (pytest.approx(0.1), 0.9)
    assert at_09["max_ratio"] == pytest.approx(0.9) and at_09["mean_ratio"] == pytest.approx(0.45)
    assert contraction.loc[f"{BIAS} (gamma 1)", "max_ratio"] == pytest.approx(1.0)
    diverged = t["diverged_runs"].iloc[0]
    assert (diverged["variant"], diverged["diverged"], diverged["nan_or_inf"], diverged["bound"]) == ("dqn", 2, 1, 1)
    growth = t["divergence_summary"].set_index("method")
    # Tsitsiklis and Van Roy: w_k = (6 gamma / 5)^k w_0, 1.08 per iteration at gamma 0.9
    assert growth.loc["fitted_gamma_0.9", "growth_factor"] == pytest.approx(1.08)

    out = tmp_path / "out"
    write_report(report, out)
    md = (out / "report.md").read_text()
    assert "## Theory" in md and "### Maximisation bias" in md and "### Contraction of Q-value iteration" in md
    assert "### Divergence counterexamples" in md and "## Diverged runs" in md
    assert "peaks at 50.0% (episode 1)" in md and "is 25.0% over episodes 1–4 (4 runs)" in md
    assert "largest error ratio between sweeps is 0.9000 (mean 0.4500) over 3 sweeps, within the bound 0.9000" in md
    assert "by a factor 1.0800 per iteration (analytical 1.0800)" in md
    assert "## Overestimation along visited states" in md and "## Overestimation at the last evaluation" in md
    for name in ("maximisation_bias", "q_distance", "greedy_value", "contraction", "divergence",
                 "overestimation_visited"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    written = pd.read_csv(out / "csv" / "maximisation_bias.csv")
    assert list(written.columns) == ["task", "variant", "episode", "left_fraction", "runs", "lower", "upper"]
    assert len(written) == 8
    assert sorted(p.stem for p in (out / "csv").iterdir()) == sorted(report.tables)
    assert "Theory" in (out / "report.html").read_text() and "Maximisation bias" in (out / "tables.tex").read_text()


def test_a_folder_without_theory_data_has_no_theory_section(tmp_path):
    for seed in range(2):
        write_run(tmp_path / "results", "toy", "CartPole-v1", "dqn", seed, [100, 200], [10.0, 20.0],
                  q_start=[5.0, 6.0], discounted=[4.0, 4.0])
    report = build_report(tmp_path / "results", reps=100)
    for name in ("maximisation_bias", "q_distance", "contraction", "divergence", "overestimation_visited"):
        assert report.tables[name].empty, name
    final = report.tables["overestimation_final"].iloc[0]    # from s0 only: the runs predate the visited columns
    assert (final["start_overestimation"], final["visited_seeds"]) == (2.0, 0)
    write_report(report, tmp_path / "out", ("md", "csv"))
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Theory" not in md and "Maximisation bias" not in md and "## Overestimation along" not in md
    assert "## Overestimation at the last evaluation" in md
    assert sorted(p.name for p in (tmp_path / "out" / "figures").iterdir()) == ["learning_curves.png",
                                                                                "overestimation.png"]
    assert list(pd.read_csv(tmp_path / "out" / "csv" / "maximisation_bias.csv").columns) == [
        "task", "variant", "episode", "left_fraction", "runs", "lower", "upper"]


def test_a_known_dynamics_task_whose_env_cannot_be_made_is_named_and_left_out_of_the_contraction(tmp_path):
    write_theory_run(tmp_path, "Gone-v0", "dqn", 0, [{"env_steps": 100, "return_mean": 0.0, "q_error_max": 3.0}],
                     env_id="qbench/NoSuchMDP-v0")
    report = build_report(tmp_path, reps=100)
    assert not any(report.tables["contraction"]["task"].str.startswith("Gone-v0"))
    assert report.tables["q_distance"]["q_error_max"].tolist() == [3.0]
    assert any(n.startswith("Gone-v0: its env cannot be made here (NameNotFound") for n in report.notes)
    assert not report.tables["divergence"].empty      # the Theory section is there, for the distance to Q*
