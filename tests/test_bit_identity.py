"""Issue 26: moving code moves no number. Short runs of every variant on every path of the engine (vector, tabular,
continuous, n-step trace corrections, pixels, a seed batch through the CLI, a batch interrupted and resumed) give
evaluations.csv, diagnostics.csv (less wall-clock columns) and summary.json values bit for bit equal to those
recorded in tests/fixtures/bit_identity/ (how to record them: the top of record.py there)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "bit_identity"
_spec = importlib.util.spec_from_file_location("bit_identity_record", FIXTURES / "record.py")
record = importlib.util.module_from_spec(_spec)
sys.modules["bit_identity_record"] = record
_spec.loader.exec_module(record)

CASES = record.cases()


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_every_variant_and_path_has_a_fixture():
    from qbench.config import VARIANTS
    covered = {case["variant"] for case in CASES.values()}
    assert covered == set(VARIANTS), f"variants without a bit-identity case: {set(VARIANTS) - covered}"
    corrections = {case["settings"].get("nstep_correction") for case in CASES.values()} | {
        {"nstep_cut_dqn": "cut", "nstep_is_dqn": "importance_sampling", "retrace_dqn": "retrace",
         "tree_backup_dqn": "tree_backup"}.get(case["variant"]) for case in CASES.values()}
    assert {"cut", "importance_sampling", "retrace", "tree_backup"} <= corrections
    assert {case["how"] for case in CASES.values()} == {"batch", "cli", "resumed"}
    for name in CASES:
        assert (FIXTURES / f"{name}.json").exists(), f"no fixture for {name}: run record.py {name}"


@pytest.mark.parametrize("name", list(CASES))
def test_the_numbers_equal_the_recorded_ones_bit_for_bit(name, tmp_path):
    case = CASES[name]
    if not record.available(case):
        pytest.skip(f"{case['needs']} is not installed")
    fixture = recorded(name)
    if fixture["environment"] != record.environment():
        pytest.skip(f"recorded in {fixture['environment']}, this is {record.environment()}: float arithmetic may "
                    "differ in the last bit; re-record at the reference commit (tests/fixtures/bit_identity/record.py)")
    numbers = record.run_case(case, tmp_path)
    assert numbers.keys() == fixture["seeds"].keys()
    for seed, expected in fixture["seeds"].items():
        for what in ("evaluations.csv", "diagnostics.csv", "summary.json"):
            assert numbers[seed][what] == expected[what], f"{name}, seed {seed}: {what} differs from the fixture"
    if "same_as" in case:   # a resumed run equals the uninterrupted one, bit for bit
        assert fixture["seeds"] == recorded(case["same_as"])["seeds"]
