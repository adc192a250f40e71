"""qbench report RESULTS --reference REFDIR: the user's runs beside the reference's in every table, each side
scored by its own suite, and the direct comparison per (task, variant). Synthetic run directories, no training:
four seeds per (task, variant) whose finals give means and IQMs by hand (the IQM of four values is the mean of the
middle two)."""

import math

import pandas as pd
import pytest

from qbench import cli
from qbench.analysis.report import build_report
from qbench.analysis.studies.core import thresholds_display
from qbench.analysis.synthetic import write_run, write_suite_record

STEPS = [100, 200]
# side -> (task, variant) -> the final return of seeds 0..3
MINE = {("T-v0", "dqn"): [60.0, 70.0, 80.0, 130.0],        # mean 85, IQM 75
        ("T-v0", "my_dqn"): [61.0, 71.0, 81.0, 91.0],       # a custom variant: mean = IQM = 76
        ("W-v0", "dqn"): [1.0, 2.0, 3.0, 4.0],              # below every reference final: P = 0
        ("Solo-v0", "dqn"): [5.0, 6.0, 7.0, 8.0]}           # a task the reference lacks
REFERENCE = {("T-v0", "dqn"): [10.0, 20.0, 30.0, 40.0],     # below every final of mine: P = 1
             ("T-v0", "double_dqn"): [100.0, 200.0, 300.0, 400.0],
             ("W-v0", "dqn"): [10.0, 20.0, 30.0, 40.0],
             ("U-v0", "dqn"): [1.0, 2.0, 3.0, 4.0]}         # a task the user did not run: left out


def _write(folder, runs, reference_score, thresholds):
    write_suite_record(folder, "classic", {"T-v0": (0.0, reference_score)}, thresholds)
    for (task, variant), finals in runs.items():
        for seed, final in enumerate(finals):
            write_run(folder, "classic", task, variant, seed, STEPS, [0.0, final])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    # Both sides ran a suite named classic, with different scores and thresholds for T-v0: each side's apply to
    # its own runs only.
    _write(root / "mine", MINE, 100.0, {"T-v0": {"dqn": 65.0, "my_dqn": 80.0}})
    _write(root / "reference", REFERENCE, 200.0, {"T-v0": {"dqn": 30.0}})
    return root / "mine", root / "reference"


@pytest.fixture(scope="module")
def report(folders):
    mine, reference = folders
    return build_report(mine, reference=reference, reps=200)


def test_per_task_holds_each_side_labelled_with_the_hand_computed_means_and_iqms(report):
    table = report.tables["per_task"]
    got = {(r.task, r.variant): (r.seeds, r.mean, r.iqm) for r in table.itertuples(index=False)}
    assert got == {
        ("T-v0", "dqn (theirs)"): (4, 85.0, 75.0),
        ("T-v0", "my_dqn (theirs)"): (4, 76.0, 76.0),
        ("T-v0", "dqn (reference)"): (4, 25.0, 25.0),
        ("T-v0", "double_dqn (reference)"): (4, 250.0, 250.0),
        ("W-v0", "dqn (theirs)"): (4, 2.5, 2.5),
        ("W-v0", "dqn (reference)"): (4, 25.0, 25.0),
        ("Solo-v0", "dqn (theirs)"): (4, 6.5, 6.5),
    }
    # every run of both sides, and none of the reference's task U-v0
    assert len(report.tables["finals"]) == 4 * 7
    assert set(report.tables["finals"]["task"]) == {"T-v0", "W-v0", "Solo-v0"}


def test_a_custom_variant_of_theirs_is_compared_with_every_reference_variant(report):
    improvement = report.tables["improvement"]
    pairs = set(zip(improvement["x"], improvement["y"]))
    assert {("my_dqn (theirs)", "dqn (reference)"), ("my_dqn (theirs)", "double_dqn (reference)"),
            ("dqn (reference)", "my_dqn (theirs)")} <= pairs
    row = improvement[(improvement["x"] == "my_dqn (theirs)") & (improvement["y"] == "dqn (reference)")].iloc[0]
    assert row["point"] == 1.0 and row["tasks"] == 1
    # 61..91 against 100..400: 91 > nothing, so 0 of 16
    row = improvement[(improvement["x"] == "my_dqn (theirs)") & (improvement["y"] == "double_dqn (reference)")]
    assert row["point"].iloc[0] == 0.0
    assert "my_dqn (theirs)" in set(report.tables["aggregate"]["variant"])


def test_each_side_is_held_to_its_own_thresholds(report):
    assert report.scoring["T-v0"].thresholds == {"dqn (theirs)": 65.0, "my_dqn (theirs)": 80.0,
                                                 "dqn (reference)": 30.0}
    shown = {r["variant"]: (r["threshold"], r["seeds at or above"]) for _, r in thresholds_display(report).iterrows()}
    assert shown == {"dqn (theirs)": (">= 65", "3/4"),          # 70, 80, 130
                     "my_dqn (theirs)": (">= 80", "2/4"),       # 81, 91
                     "dqn (reference)": (">= 30", "2/4")}       # 30, 40


def test_each_side_is_normalised_by_its_own_suite(report):
    aggregate = report.tables["aggregate"]
    iqm = aggregate[aggregate["metric"] == "IQM"].set_index("variant")["point"]
    # T-v0 is the only normalisable task: theirs by 100 (0.6 0.7 0.8 1.3), the reference's by 200
    assert iqm["dqn (theirs)"] == pytest.approx(0.75)
    assert iqm["dqn (reference)"] == pytest.approx(0.125)
    assert iqm["double_dqn (reference)"] == pytest.approx(1.25)
    assert any(n.startswith("T-v0: your suite and the reference's score it differently") for n in report.notes)


def test_versus_reference_gives_each_sides_iqm_and_p_theirs_better(report):
    table = report.tables["versus_reference"]
    rows = {(r.task, r.variant): r for r in table.itertuples(index=False)}
    assert set(rows) == {("T-v0", "dqn"), ("W-v0", "dqn")}   # only the pairs both ran: not my_dqn, not Solo-v0
    t, w = rows["T-v0", "dqn"], rows["W-v0", "dqn"]
    assert (t.theirs_iqm, t.reference_iqm, t.theirs_seeds, t.reference_seeds) == (75.0, 25.0, 4, 4)
    assert (w.theirs_iqm, w.reference_iqm) == (2.5, 25.0)
    # every final of theirs above every final of the reference's, and the reverse: the CI cannot move either
    assert (t.p_theirs_better, t.p_lower, t.p_upper) == (1.0, 1.0, 1.0)
    assert (w.p_theirs_better, w.p_lower, w.p_upper) == (0.0, 0.0, 0.0)
    # the improvement table's number for the same pair on the same task
    improvement = report.tables["improvement"]
    same = improvement[(improvement["x"] == "dqn (theirs)") & (improvement["y"] == "dqn (reference)")].iloc[0]
    assert same["point"] == pytest.approx((1.0 + 0.0) / 2)   # averaged over T-v0 and W-v0
    shown = report.sections()[0]
    assert shown.title == "Your runs against the reference"
    assert shown.table.iloc[0]["P(theirs > reference) [95% CI]"] == "1.00 [1.00, 1.00]"


def test_notes_name_the_tasks_one_side_lacks(report, folders):
    mine, reference = folders
    assert f"the reference '{reference}' has no run of Solo-v0: your runs of it stand alone" in report.notes
    assert f"tasks of the reference that '{mine}' did not run are left out: U-v0" in report.notes
    assert report.source == f"{mine} beside the reference {reference}"


def test_the_cli_writes_the_comparison_to_results_report(folders, capsys):
    mine, reference = folders
    assert cli.main(["report", str(mine), "--reference", str(reference), "--formats", "csv", "--reps", "50"]) == 0
    versus = pd.read_csv(mine / "report" / "csv" / "versus_reference.csv")
    assert list(zip(versus["task"], versus["variant"])) == [("T-v0", "dqn"), ("W-v0", "dqn")]
    per_task = pd.read_csv(mine / "report" / "csv" / "per_task.csv")
    assert "my_dqn (theirs)" in set(per_task["variant"]) and "double_dqn (reference)" in set(per_task["variant"])
    assert not (reference / "report").exists()


def _one_line_error(capsys, argv) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("qbench: error: ")
    return err


def test_a_missing_or_file_reference_is_one_line(folders, tmp_path, capsys):
    mine, reference = folders
    out = ["--out", str(tmp_path / "rep")]
    err = _one_line_error(capsys, ["report", str(mine), "--reference", str(tmp_path / "nope"), *out])
    assert f"--reference: results folder '{tmp_path / 'nope'}' does not exist" in err
    suite_file = reference / "classic" / "suite.json"
    err = _one_line_error(capsys, ["report", str(mine), "--reference", str(suite_file), *out])
    assert f"'{suite_file}' is a file, not a results folder" in err
    assert not (tmp_path / "rep").exists()


def test_folders_that_share_no_task_or_overlap_are_one_line(folders, tmp_path, capsys):
    mine, reference = folders
    other = tmp_path / "other"
    write_run(other, "classic", "Z-v0", "dqn", 0, STEPS, [0.0, 1.0])
    err = _one_line_error(capsys, ["report", str(other), "--reference", str(reference), "--out",
                                   str(tmp_path / "rep")])
    assert (f"'{other}' and reference folder '{reference}' share no task: '{other}' has Z-v0; "
            f"'{reference}' has T-v0, U-v0, W-v0") in err
    err = _one_line_error(capsys, ["report", str(mine.parent), "--reference", str(reference), "--out",
                                   str(tmp_path / "rep")])
    assert "overlap" in err


def test_a_report_without_a_reference_has_no_versus_table(folders):
    mine, _ = folders
    report = build_report(mine, reps=20)
    assert "versus_reference" not in report.tables
    assert {v for v in report.tables["per_task"]["variant"]} == {"dqn", "my_dqn"}
    assert not math.isnan(report.tables["per_task"]["iqm"].iloc[0])
