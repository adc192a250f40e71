"""The divergence watch's flag in the report: a run whose |Q| passed the warning level is loaded as flagged, counted
in ``warned`` (runs and per-task tables, every format) and named in a note, and changes no statistic; a summary.json
without the record, or with a damaged one, still loads."""

import json
import math

import pandas as pd
import pytest

from qbench.analysis.render import write_report
from qbench.analysis.report import build_report
from qbench.analysis.studies.core import per_task_display
from qbench.analysis.synthetic import watch_record, write_run, write_suite_record
from qbench.loading import load_results, load_runs, load_runs_and_results
from tests.test_report import row

STEPS = [1000, 2000]
FINALS = {("Alpha-v1", "dqn_x"): [10.0, 20.0, 30.0, 40.0], ("Alpha-v1", "dqn_y"): [20.0, 30.0, 50.0, 60.0]}
WARN = {"divergence_warn_factor": 5.0}
FLAGGED = watch_record(9.82, first_warned_env_step=1000)
STATISTICS = ("aggregate", "improvement", "profiles", "curves", "overestimation", "cost")
WATCH_COLUMNS = ["divergence_warned", "peak_value_scales", "divergence_warn_factor"]


def write_folder(results, flag_seed=None):
    """Two variants of one task, every run with the watch's record; ``flag_seed`` of dqn_x flagged."""
    write_suite_record(results, "toy", {"Alpha-v1": (0.0, 100.0)})
    for (task, variant), finals in FINALS.items():
        for seed, final in enumerate(finals):
            flagged = variant == "dqn_x" and seed == flag_seed
            write_run(results, "toy", task, variant, seed, STEPS, [final / 2, final], config=WARN,
                      divergence_watch=FLAGGED if flagged else watch_record(1.5 + seed / 10))


@pytest.fixture
def flagged(tmp_path):
    write_folder(tmp_path / "flagged", flag_seed=0)
    return tmp_path / "flagged"


@pytest.fixture
def unflagged(tmp_path):
    write_folder(tmp_path / "unflagged")
    return tmp_path / "unflagged"


def watch_note(report, prefix):
    found = [n for n in report.notes if n.startswith(prefix) and "divergence warning level" in n]
    assert len(found) <= 1
    return found[0] if found else None


def test_a_flagged_run_loads_as_flagged_with_its_peak(flagged):
    runs = load_runs(flagged).set_index(["variant", "seed"])
    assert str(runs["divergence_warned"].dtype) == "boolean"
    assert bool(runs.loc[("dqn_x", 0), "divergence_warned"]) is True
    assert runs.loc[("dqn_x", 0), "peak_value_scales"] == pytest.approx(9.82)
    assert runs.loc[("dqn_x", 0), "divergence_warn_factor"] == 5.0
    assert not runs.drop(("dqn_x", 0))["divergence_warned"].any()
    assert runs.loc[("dqn_y", 3), "peak_value_scales"] == pytest.approx(1.8)
    assert (runs["status"] == "complete").all() and not runs["problems"].astype(bool).any()
    results = load_results(flagged)      # the run's columns repeated over its evaluation rows
    rows = results[(results["variant"] == "dqn_x") & (results["seed"] == 0)]
    assert len(rows) == 2 and rows["divergence_warned"].all() and (rows["peak_value_scales"] == 9.82).all()
    assert results["divergence_warned"].sum() == 2


def test_the_flagged_run_is_counted_in_warned_and_named_in_a_note(flagged):
    report = build_report(flagged, reps=200)
    runs, per_task = report.tables["runs"], report.tables["per_task"]
    assert row(runs, variant="dqn_x")["warned"] == 1 and row(runs, variant="dqn_y")["warned"] == 0
    assert (row(runs, variant="dqn_x")["complete"], row(runs, variant="dqn_x")["in_statistics"]) == (4, 4)
    assert row(per_task, variant="dqn_x")[["seeds", "warned"]].tolist() == [4, 1]
    assert row(per_task, variant="dqn_y")["warned"] == 0
    note = watch_note(report, "Alpha-v1 / dqn_x:")
    assert note == ("Alpha-v1 / dqn_x: 1 run(s) passed the divergence warning level (|Q| above 5 value scales; "
                    "peak 9.8 scales, seed(s) 0): flagged, not stopped; they count like every other run")
    assert watch_note(report, "Alpha-v1 / dqn_y:") is None
    assert not any("no usable divergence watch record" in n for n in report.notes)   # every run has one
    seeds = per_task_display(report).set_index("variant")["seeds"]
    assert (seeds["dqn_x"], seeds["dqn_y"]) == ("4 (1 flagged)", "4")


def test_a_flagged_run_changes_no_statistic(flagged, unflagged):
    a, b = build_report(flagged, reps=300, seed=2), build_report(unflagged, reps=300, seed=2)
    x = row(a.tables["per_task"], variant="dqn_x")
    assert (x["mean"], x["iqm"]) == (25.0, 25.0)
    pd.testing.assert_frame_equal(a.tables["per_task"].drop(columns="warned"),
                                  b.tables["per_task"].drop(columns="warned"))
    pd.testing.assert_frame_equal(a.tables["runs"].drop(columns="warned"), b.tables["runs"].drop(columns="warned"))
    for name in STATISTICS:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name], obj=name)
    keep = [c for c in a.tables["finals"].columns if c not in ("run_dir", *WATCH_COLUMNS)]
    pd.testing.assert_frame_equal(a.tables["finals"][keep], b.tables["finals"][keep])
    assert [n for n in a.notes if "divergence warning level" not in n] == b.notes


def test_every_format_shows_the_warned_count_and_the_note(flagged, tmp_path):
    report = build_report(flagged, reps=100)
    write_report(report, tmp_path / "out", ("md", "html", "tex", "csv"))
    runs = pd.read_csv(tmp_path / "out" / "csv" / "runs.csv").set_index("variant")
    assert runs.loc["dqn_x", "warned"] == 1 and runs.loc["dqn_y", "warned"] == 0
    per_task = pd.read_csv(tmp_path / "out" / "csv" / "per_task.csv").set_index("variant")
    assert per_task.loc["dqn_x", "warned"] == 1 and per_task.loc["dqn_y", "warned"] == 0
    md = (tmp_path / "out" / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| task") and "in_statistics" in line)
    assert "warned" in [c.strip() for c in header.split("|")]
    assert "4 (1 flagged)" in md and "passed the divergence warning level" in md
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<th" in page and ">warned<" in page and "4 (1 flagged)" in page and "seed(s) 0): flagged" in page
    tex = (tmp_path / "out" / "tables.tex").read_text()
    assert "warned" in tex and "4 (1 flagged)" in tex


def test_a_summary_without_the_record_loads_as_unknown_and_counts_as_not_flagged(tmp_path):
    write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0])        # no divergence_watch key
    write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 1, STEPS, [1.0, 3.0], divergence_watch=watch_record(2.0))
    runs = load_runs(tmp_path).set_index("seed")
    assert runs.loc[0, "divergence_warned"] is pd.NA and math.isnan(runs.loc[0, "peak_value_scales"])
    assert bool(runs.loc[1, "divergence_warned"]) is False
    assert math.isnan(runs.loc[0, "divergence_warn_factor"])     # its config predates the setting
    assert not runs["problems"].astype(bool).any() and (runs["status"] == "complete").all()
    report = build_report(tmp_path, reps=100)
    assert row(report.tables["runs"], variant="dqn")["warned"] == 0
    assert row(report.tables["per_task"], variant="dqn")[["seeds", "warned"]].tolist() == [2, 0]
    assert any(n.startswith("1 of 2 complete or diverged run(s) have no usable divergence watch record")
               for n in report.notes)


@pytest.mark.parametrize("damaged, flagged, peak", [
    ("garbage", pd.NA, math.nan),                                    # not a record at all
    (["a", 1], pd.NA, math.nan),
    ({**FLAGGED, "first_warned_env_step": "soon"}, pd.NA, 9.82),     # a step that is not an integer
    ({**FLAGGED, "first_warned_env_step": True}, pd.NA, 9.82),
    ({**FLAGGED, "first_warned_env_step": -3}, pd.NA, 9.82),
    ({**FLAGGED, "peak_value_scales": "big"}, True, math.nan),       # flagged, peak unknown
    ({**FLAGGED, "peak_value_scales": None}, True, math.nan),
])
def test_a_damaged_record_does_not_break_loading(tmp_path, damaged, flagged, peak):
    write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0], divergence_watch=damaged)
    write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 1, STEPS, [1.0, 3.0], divergence_watch=FLAGGED)
    runs, results = load_runs_and_results(tmp_path)
    runs = runs.set_index("seed")
    assert (runs["status"] == "complete").all() and len(results) == 4     # a note, never damage
    assert runs.loc[0, "divergence_warned"] is flagged or bool(runs.loc[0, "divergence_warned"]) is flagged
    assert runs.loc[0, "peak_value_scales"] == pytest.approx(peak, nan_ok=True)
    assert "summary.json: its divergence_watch" in runs.loc[0, "problems"] \
        or "summary.json: divergence_watch:" in runs.loc[0, "problems"]
    report = build_report(tmp_path, reps=100)
    warned = 2 if flagged is True else 1
    assert row(report.tables["runs"], variant="dqn")["warned"] == warned
    assert row(report.tables["per_task"], variant="dqn")[["seeds", "mean"]].tolist() == [2, 2.5]
    assert any("summary.json" in n and "divergence_watch" in n for n in report.notes)
    assert f"{warned} run(s) passed the divergence warning level" in watch_note(report, "Gamma-v0 / dqn:")


def test_a_summary_json_that_is_not_an_object_damages_its_run_without_a_flag(tmp_path):
    # issue 27: a summary that is not an object says nothing the report can trust, its final return included
    path = write_run(tmp_path, "adhoc", "Gamma-v0", "dqn", 0, STEPS, [1.0, 2.0])
    (path / "summary.json").write_text(json.dumps([1, 2]))
    runs = load_runs(tmp_path)
    assert runs["divergence_warned"].iloc[0] is pd.NA and runs["status"].iloc[0] == "damaged"
    assert runs["problems"].iloc[0] == "summary.json is not a JSON object (it holds a list)"


def test_a_flagged_run_the_watch_later_stopped_is_counted_once_as_diverged_and_flagged(tmp_path):
    write_suite_record(tmp_path, "toy", {"Alpha-v1": (0.0, 100.0)})
    for seed in range(2):
        write_run(tmp_path, "toy", "Alpha-v1", "dqn", seed, STEPS, [20.0, 40.0], config=WARN,
                  divergence_watch=watch_record(1.0))
    stopped = watch_record(1200.0, first_warned_env_step=1500, stopped_env_step=1800)
    write_run(tmp_path, "toy", "Alpha-v1", "dqn", 2, STEPS[:1], [7.0], state="diverged", config=WARN,
              divergence_watch=stopped)
    runs = load_runs(tmp_path).set_index("seed")
    assert runs.loc[2, "status"] == "diverged" and bool(runs.loc[2, "divergence_warned"]) is True
    assert runs.loc[2, "peak_value_scales"] == 1200.0
    report = build_report(tmp_path, reps=100)
    counts = row(report.tables["runs"], variant="dqn")
    assert (counts["complete"], counts["diverged"], counts["warned"], counts["in_statistics"]) == (2, 1, 1, 3)
    assert row(report.tables["per_task"], variant="dqn")[["seeds", "diverged", "warned"]].tolist() == [3, 1, 1]
    assert row(report.tables["diverged_runs"], variant="dqn")[["nan_or_inf", "bound"]].tolist() == [0, 1]
    note = watch_note(report, "Alpha-v1 / dqn:")
    assert "peak 1,200.0 scales, seed(s) 2" in note and "1 of them diverged, counted as diverged runs are" in note
    seeds = per_task_display(report).set_index("variant")["seeds"]
    assert seeds["dqn"] == "3 (1 diverged, 1 flagged)"


def test_a_report_of_a_load_results_frame_counts_the_flag_too(flagged):
    report = build_report(load_results(flagged), reps=100)
    assert row(report.tables["runs"], variant="dqn_x")["warned"] == 1
    assert watch_note(report, "Alpha-v1 / dqn_x:") is not None
