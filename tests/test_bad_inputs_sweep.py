"""benchmarks/bad_inputs_sweep.py's classifier: hand-made results of each class, for each expectation. Pure: no
subprocess, no file."""

import importlib.util
import json
import signal
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bad_inputs_sweep.py"
_spec = importlib.util.spec_from_file_location("bad_inputs_sweep", SCRIPT)
sweep = importlib.util.module_from_spec(_spec)
sys.modules["bad_inputs_sweep"] = sweep
_spec.loader.exec_module(sweep)

Expect, classify = sweep.Expect, sweep.classify
ERROR, ENV, OK = Expect("error"), Expect("env_fault"), Expect("ok")
RUN = "results/s/CartPole-v1/dqn/seed1-abc"
TRACE = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n    f()\n"
         "ValueError: cannot reshape array of size 3 into shape (2,)\n")


def reader(**record):
    return sweep.READER_MARK + json.dumps({"raised": None, **record}) + "\n"


@pytest.mark.parametrize("expect, code, out, err, errors, runaway, cls", [
    # error: one line and a non-zero exit is clean
    (ERROR, 2, "", "qbench: error: unknown variant 'nodqn'\n", [], None, "clean"),
    (ERROR, 2, "qbench: error: unknown variant 'nodqn'\n", "", [], None, "clean"),
    (ERROR, 1, "", TRACE, [], None, "traceback"),
    (ERROR, 0, "final return 9.0\n", "", [], None, "silent"),
    (ERROR, 2, "", "usage: qbench train\nqbench: error: bad\n", [], None, "other"),
    (ERROR, 1, "", "", [], None, "other"),
    (ERROR, None, "", "", [], None, "runaway"),
    (ERROR, -signal.SIGXCPU, "", "", [], None, "runaway"),
    (ERROR, -signal.SIGKILL, "", "", [], None, "runaway"),
    (ERROR, 1, "", "qbench: out of memory: an allocation failed\n", [], None, "runaway"),
    (ERROR, 1, "", TRACE.replace("ValueError", "MemoryError"), [], None, "runaway"),   # memory before traceback
    (ERROR, 2, "", "qbench: error: x\n", [], "40 CPU s, at or over the 30 s limit", "runaway"),
    (ERROR, -signal.SIGSEGV, "", "", [], None, "traceback"),
    # ok
    (OK, 0, "final return 9.0\n", "", [], None, "clean"),
    (OK, 2, "", "qbench: error: refused\n", [], None, "other"),
    (OK, 1, "", TRACE, [], None, "traceback"),
    (OK, 0, "", "", [{"error": "crashed"}], None, "other"),
    # env_fault
    (ENV, 1, "", "qbench: seed 0: the env failed: NaN reward\n", [{"error": "env", "message": "NaN reward"}], None,
     "clean"),
    (ENV, 1, "", "qbench: run diverged\n", [{"error": "diverged"}], None, "misattributed"),
    (ENV, 1, "FAILED x: RuntimeError\n", "", [{"error": "crashed"}], None, "misattributed"),
    (ENV, 1, "", "", [None], None, "misattributed"),                       # an error.json that is not JSON
    (ENV, 1, "", TRACE, [], None, "traceback"),
    (ENV, 1, "", TRACE, [{"error": "diverged"}], None, "traceback"),       # the traceback comes first
    (ENV, 0, "final return nan\n", "", [], None, "silent"),
    (ENV, 0, "", "", [{"error": "env"}], None, "silent"),                  # recorded, yet exit 0
    (Expect("env_fault", count=2), 1, "", "", [{"error": "env"}], None, "silent"),   # one seed trained through
    (ENV, 1, "", "qbench: error: x\n", [], None, "other"),                 # failed, but no record
    (ENV, None, "", "", [], "still running after 3600 s", "runaway"),
    # named (report)
    (Expect("named", target=RUN), 0, f"note: {RUN}: damaged, left out\nreport of 1 runs written\n", "", [], None,
     "clean"),
    (Expect("named", target=RUN), 0, "report of 2 runs written to rep\n", "", [], None, "silent"),
    (Expect("named", target=RUN), 2, "", f"qbench: error: no run with evaluations under '{RUN}'\n", [], None,
     "other"),
    (Expect("named", target=RUN), 1, "", TRACE, [], None, "traceback"),
])
def test_each_class(expect, code, out, err, errors, runaway, cls):
    verdict = classify(expect, code, out, err, errors, runaway)
    assert verdict.cls == cls, verdict
    assert verdict.reason


DAMAGED = Expect("reader_damaged", target=RUN)


@pytest.mark.parametrize("expect, record, cls", [
    (Expect("reader_missing", target="nothere"),
     {"raised": {"type": "FileNotFoundError", "message": "results folder 'nothere' does not exist"}}, "clean"),
    (Expect("reader_missing", target="nothere"), {"rows": 0}, "silent"),
    (Expect("reader_missing", target="nothere"), {"raised": {"type": "KeyError", "message": "'run_dir'"}},
     "traceback"),
    (Expect("reader_missing", target="nothere"), {"raised": {"type": "ValueError", "message": "no folder"}},
     "other"),
    (DAMAGED, {"function": "load_runs", "target_status": "damaged", "target_rows": 1}, "clean"),
    (DAMAGED, {"function": "load_runs", "target_status": "complete", "target_rows": 1}, "silent"),
    (DAMAGED, {"function": "load_runs", "raised": {"type": "KeyError", "message": "'task'"}}, "traceback"),
    (DAMAGED, {"function": "load_results", "target_rows": 0, "target_status": "damaged"}, "clean"),
    (DAMAGED, {"function": "load_results", "target_rows": 2, "target_rows_not_damaged": 2,
               "target_statuses": ["complete"], "target_status": "complete"}, "silent"),
    (DAMAGED, {"function": "load_episodes", "target_rows": 0, "target_status": "complete",
               "target_problems": ""}, "silent"),
    (DAMAGED, {"function": "load_episodes", "target_rows": 0, "target_status": "complete",
               "target_problems": "episodes.csv is not CSV"}, "clean"),
    (Expect("reader_status", target=RUN, status="crashed"),
     {"function": "load_runs", "target_status": "crashed"}, "clean"),
    (Expect("reader_status", target=RUN, status="crashed"),
     {"function": "load_runs", "target_status": "complete"}, "silent"),
    (Expect("reader_status", target=RUN, status="unfinished"),
     {"function": "load_runs", "target_status": "damaged"}, "other"),
    (Expect("reader_status", target=RUN, status="unfinished"),
     {"function": "load_results", "target_complete_rows": 2}, "silent"),
])
def test_readers(expect, record, cls):
    verdict = classify(expect, 0, reader(**record), "")
    assert verdict.cls == cls, verdict


def test_a_reader_case_without_its_record_or_with_a_traceback():
    assert classify(DAMAGED, 1, "", "ModuleNotFoundError: qbench\n").cls == "other"
    assert classify(DAMAGED, 1, "", TRACE).cls == "traceback"


def test_an_unknown_expectation_is_refused():
    with pytest.raises(ValueError, match="unknown expectation"):
        Expect("maybe")


def test_the_cases_are_many_named_once_and_expect_known_things():
    cases = sweep.all_cases()
    assert len(cases) >= 150 and len({c.id for c in cases}) == len(cases)
    assert {c.category for c in cases} == set(sweep.CATEGORIES)
    assert all(c.expect.kind in sweep.EXPECTATIONS for c in cases)
