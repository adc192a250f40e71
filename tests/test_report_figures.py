"""The report's figures read at a glance (issue 14): a runaway seed neither moves the overestimation nor flattens
its panel, legends are outside the axes and readable, variants stay apart, the probability-of-improvement matrix
does not mix variants that share no task, x ticks sit on the evaluation grid, coinciding curves say so."""

import numpy as np
import pandas as pd
import pytest

from qbench.analysis import plots
from qbench.analysis.render import write_report
from qbench.analysis.report import build_report
from qbench.analysis.studies import plots_core, plots_overestimation
from qbench.analysis.synthetic import write_run, write_suite_record

STEPS = [1000, 2000, 3000]
MEASURED = [20.0, 40.0, 60.0]                      # discounted return measured from s_0, every seed
OVER = {"huber_dqn": [10.0, 14.0, 20.0, 25.0, 31.0], "dqn": [-5.0, 0.0, 3.0, 8.0, 12.0]}   # Q - measured, per seed
RUNAWAY = 2e8


def write_overestimation_folder(results, runaway: bool):
    """Five seeds of two variants; huber_dqn's seed 4 predicts Q(s_0) = 2e8 if ``runaway`` (its loss finite, so
    the run is complete, not diverged)."""
    write_suite_record(results, "toy", {"CartPole-v1": (0.0, 500.0)})
    for variant, overs in OVER.items():
        for seed, over in enumerate(overs):
            q = [m + over * (i + 1) / 3 for i, m in enumerate(MEASURED)]
            if runaway and variant == "huber_dqn" and seed == 4:
                q = [m + RUNAWAY * (i + 1) / 3 for i, m in enumerate(MEASURED)]
            write_run(results, "toy", "CartPole-v1", variant, seed, STEPS, [100.0, 200.0, 300.0], q_start=q,
                      discounted=MEASURED)
    return results


def overestimation_of(report, variant):
    table = report.tables["overestimation"]
    return table[table["variant"] == variant].sort_values("env_steps")


def test_a_runaway_seed_moves_the_overestimation_by_no_more_than_the_spread_of_the_others(tmp_path):
    calm = build_report(write_overestimation_folder(tmp_path / "calm", runaway=False), reps=300)
    wild = build_report(write_overestimation_folder(tmp_path / "wild", runaway=True), reps=300)
    others = np.array([[o * (i + 1) / 3 for i in range(len(STEPS))] for o in OVER["huber_dqn"][:4]])  # seeds 0-3
    spread = others.max(axis=0) - others.min(axis=0)
    moved = np.abs(overestimation_of(wild, "huber_dqn")["overestimation"].to_numpy()
                   - overestimation_of(calm, "huber_dqn")["overestimation"].to_numpy())
    assert (moved <= spread).all(), (moved, spread)
    # the table says which statistic it is, with its CI over seeds and the seeds' extremes
    wild_rows = overestimation_of(wild, "huber_dqn")
    assert set(wild.tables["overestimation"]["statistic"]) == {"IQM over seeds"}
    assert (wild_rows["overestimation_lower"] <= wild_rows["overestimation"]).all()
    assert (wild_rows["overestimation"] <= wild_rows["overestimation_upper"]).all()
    assert wild_rows["overestimation_max"].iloc[-1] == pytest.approx(RUNAWAY)
    assert (wild_rows["seeds"] == 5).all()
    # the figure's axis stays within the range of the other seeds (of both variants), not at 2e8 / 5 = 4e7
    fig = plots_overestimation.overestimation(wild.tables["overestimation"])
    low, high = fig.axes[0].get_ylim()
    rest = [o * (i + 1) / 3 for v, overs in OVER.items() for s, o in enumerate(overs)
            if (v, s) != ("huber_dqn", 4) for i in range(len(STEPS))] + [0.0]
    lo, hi = min(rest), max(rest)
    assert lo - 0.35 * (hi - lo) <= low < high <= hi + 0.35 * (hi - lo), (low, high, lo, hi)
    # and the seed beyond it is marked and named under the panel
    assert "huber_dqn (2e+08)" in fig.axes[0].get_xlabel() and "above the axis" in fig.axes[0].get_xlabel()


def test_the_overestimation_csv_carries_the_statistic_and_its_ci(tmp_path):
    report = build_report(write_overestimation_folder(tmp_path / "results", runaway=True), reps=200)
    write_report(report, tmp_path / "out", ("csv",))
    back = pd.read_csv(tmp_path / "out" / "csv" / "overestimation.csv")
    assert {"statistic", "overestimation", "overestimation_lower", "overestimation_upper", "seeds"} <= set(back)
    assert set(back["statistic"]) == {"IQM over seeds"}
    assert back["overestimation"].max() < 1e3         # 38,748,483 with the mean over seeds


def test_overestimation_limits_fit_the_iqm_curves_and_zero():
    table = pd.DataFrame({"task": "T", "variant": "v", "env_steps": [1, 2], "overestimation": [10.0, 20.0],
                          "overestimation_lower": [5.0, -1e9], "overestimation_upper": [15.0, 1e9]})
    low, high = plots_overestimation.overestimation_limits(table)
    # curves and 0 span 0..20; a band reaches at most a quarter of that beyond, then a 5% margin
    assert (low, high) == pytest.approx((-5.0 - 1.5, 25.0 + 1.5))


def curves(tasks_variants, steps):
    rows = []
    for task, variants in tasks_variants.items():
        for k, variant in enumerate(variants):
            for i, s in enumerate(steps):
                value = 10.0 * i + k
                rows.append({"task": task, "variant": variant, "env_steps": s, "iqm": value, "lower": value - 1,
                             "upper": value + 1, "seeds": 5, "diverged": 0})
    return pd.DataFrame(rows)


def legends_of(fig):
    fig.canvas.draw()
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


@pytest.mark.parametrize("figure", [plots_core.learning_curves, plots_overestimation.overestimation],
                         ids=["learning_curves", "overestimation"])
def test_one_readable_legend_outside_the_axes(figure):
    table = curves({"A-v1": [f"variant{i}" for i in range(7)], "B-v1": [f"variant{i}" for i in range(7)]},
                   [100, 200, 300])
    if figure is plots_overestimation.overestimation:
        table = table.rename(columns={"iqm": "overestimation", "lower": "overestimation_lower",
                                      "upper": "overestimation_upper"})
    fig = figure(table)
    legends = legends_of(fig)
    assert len(legends) == 1
    legend = legends[0]
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 9
    assert len(legend.get_texts()) == 7      # shared by the two panels: each variant once
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent()), "the legend covers a panel"
    assert box.x1 <= fig.bbox.x1 + 1 and box.y0 >= -1        # and is inside the figure


def test_eleven_variants_stay_apart_and_keep_their_style_in_every_figure():
    discrete = [f"d{i}" for i in range(7)]
    continuous = [f"c{i}" for i in range(4)]
    tasks = {**{v: frozenset({"CartPole-v1"}) for v in discrete}, **{v: frozenset({"Pendulum-v1"}) for v in continuous}}
    styles = plots.variant_styles(tasks, tasks)
    assert len({(s.colour, s.dashes, s.marker) for s in styles.values()}) == 11
    assert len({styles[v].marker for v in styles}) == 11
    for group in (discrete, continuous):       # variants drawn in one panel have their own colours
        assert len({styles[v].colour for v in group}) == len(group)
    everything = plots.variant_styles([f"v{i}" for i in range(10)])
    assert len({s.colour for s in everything.values()}) == 10
    assert plots.variant_groups(tasks) == [discrete, continuous]


def test_the_improvement_matrix_is_one_per_group_of_variants_sharing_tasks_with_not_compared_cells_marked():
    # dqn and cem_q share Alpha, cem_q and naf share Beta: dqn against naf is not compared; ddpg ran Gamma alone
    # with td3, another group
    pairs = [("dqn", "cem_q", 0.7), ("cem_q", "naf", 0.4), ("ddpg", "td3", 0.5)]
    rows = []
    for x, y, p in pairs:
        rows += [{"x": x, "y": y, "tasks": 1, "point": p, "lower": p - 0.1, "upper": p + 0.1},
                 {"x": y, "y": x, "tasks": 1, "point": 1 - p, "lower": 0.9 - p, "upper": 1.1 - p}]
    improvement = pd.DataFrame(rows)
    tasks = {"dqn": frozenset({"Alpha"}), "cem_q": frozenset({"Alpha", "Beta"}), "naf": frozenset({"Beta"}),
             "ddpg": frozenset({"Gamma"}), "td3": frozenset({"Gamma"})}
    for fig in (plots_core.improvement_heatmap(improvement), plots_core.improvement_heatmap(improvement, tasks)):
        matrices = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert len(matrices) == 2
        labels = [[t.get_text() for t in ax.get_yticklabels()] for ax in matrices]
        assert labels == [["cem_q", "dqn", "naf"], ["ddpg", "td3"]]
        texts = [t.get_text() for t in matrices[0].texts]
        assert texts.count("n/a") == 2                  # dqn against naf and naf against dqn
        assert "0.50" not in texts and "n/a" not in [t.get_text() for t in matrices[1].texts]
    assert [ax.get_title() for ax in matrices] == ["Alpha, Beta", "Gamma"]   # with the tasks: named


def tick_values(fig, panel=0):
    fig.canvas.draw()
    ax = fig.axes[panel]
    low, high = ax.get_xlim()
    shown = [(t, label.get_text()) for t, label in zip(ax.get_xticks(), ax.get_xticklabels()) if low <= t <= high]
    return [t for t, _ in shown], [label for _, label in shown]


def test_x_ticks_on_the_evaluation_grid_or_on_round_numbers():
    fig = plots_core.learning_curves(curves({"A-v1": ["dqn"]}, [300, 600]))
    ticks, labels = tick_values(fig)
    assert ticks == [300, 600] and labels == ["300", "600"]
    fig = plots_core.learning_curves(curves({"A-v1": ["dqn"]}, list(range(5000, 50001, 5000))))
    ticks, labels = tick_values(fig)
    assert len(ticks) >= 3
    step = np.diff(ticks)[0]
    mantissa = step / 10 ** np.floor(np.log10(step))
    assert np.allclose(np.diff(ticks), step) and min(abs(mantissa - m) for m in (1, 2, 2.5, 5, 10)) < 1e-9
    assert all(t % step == 0 for t in ticks)
    assert all(label.endswith("k") for label in labels)


def test_coinciding_curves_say_so_in_the_legend():
    table = curves({"A-v1": ["dqn", "double_dqn", "nstep_dqn"]}, [300, 600])
    same = table["variant"] == "double_dqn"
    table.loc[same, ["iqm", "lower", "upper"]] = table.loc[table["variant"] == "dqn",
                                                           ["iqm", "lower", "upper"]].to_numpy()
    fig = plots_core.learning_curves(table)
    labels = [t.get_text() for t in legends_of(fig)[0].get_texts()]
    assert "dqn (= double_dqn; n=5)" in labels and "double_dqn (= dqn; n=5)" in labels
    assert "nstep_dqn (n=5)" in labels
    nearly = table.copy()
    nearly.loc[same, "iqm"] += 1e-4
    labels = [t.get_text() for t in legends_of(plots_core.learning_curves(nearly))[0].get_texts()]
    assert "dqn (≈ double_dqn; n=5)" in labels
