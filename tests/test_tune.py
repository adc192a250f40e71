"""qbench tune (issue 29): every variant gets the same number of trials, tuning seeds never overlap reporting seeds,
a killed tune resumes without repeating or losing trials, tuned settings round-trip into a suite, bad search spaces
are one-line errors, and the objective is what it says. Tiny runs only: CartPole-v1, 300 env steps, [8] units."""

import json
import sqlite3
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from qbench.config import ConfigError
from qbench.loading import load_runs
from qbench.runner import expand
from qbench.runner import tune as tune_runner
from qbench.store import CHECKPOINT, SUMMARY
from qbench.suites import load_suite
from qbench.tuning import load_tune_file, objective_value, read_tuned_file, tuned_path
from tests.harness import run_qbench

REPO = Path(__file__).resolve().parents[1]

TINY_SUITE = """
description = "tiny: 300 env steps of CartPole, [8] units"
seeds = 2
variants = ["dqn", "double_dqn"]
[budget]
eval_episodes = 1
[settings]
hidden_sizes = [8]
log_interval_env_steps = 100
checkpoint_interval_env_steps = 100
[tasks."CartPole-v1"]
budget = { total_env_steps = 300, eval_interval_env_steps = 100 }
settings = { warmup_env_steps = 50, buffer_size = 1000, env_steps_per_update = 4, grad_steps_per_update = 1 }
"""

SPACE = """
[space]
lr = { low = 1e-4, high = 1e-2, log = true }
target_period_grad_steps = [10, 50]
eps_decay_fraction = { low = 0.05, high = 0.5 }
"""


def write_tune_file(folder: Path, trials: int = 3, extra: str = "", space: str = SPACE,
                    seeds: str = '"100-101"', name: str = "tune.toml") -> Path:
    (folder / "tiny.toml").write_text(TINY_SUITE)
    path = folder / name
    path.write_text(f'suite = "{folder / "tiny.toml"}"\ntrials = {trials}\ntuning_seeds = {seeds}\n'
                    f'objective = "auc"\nsampler_seed = 0\nstartup_trials = 1\n{extra}\n{space}')
    return path


def counted_per_study(storage: Path) -> dict[str, dict[str, int]]:
    """Trials per study and state, read from the SQLite file itself (not through Optuna)."""
    with sqlite3.connect(storage) as db:
        rows = db.execute("SELECT s.study_name, t.state, COUNT(*) FROM trials t JOIN studies s "
                          "ON t.study_id = s.study_id GROUP BY s.study_name, t.state").fetchall()
    out: dict[str, dict[str, int]] = {}
    for study, state, n in rows:
        out.setdefault(study, {})[state] = n
    return out


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One tiny tuning of dqn and double_dqn on CartPole-v1, 3 trials each, median pruning."""
    folder = tmp_path_factory.mktemp("tune")
    spec = load_tune_file(write_tune_file(folder, extra='pruning = "median"'))
    outcome = tune_runner.run_tuning(spec, folder / "results", workers=1, say=lambda *a, **k: None)
    return folder, spec, outcome


def test_every_variant_gets_exactly_the_declared_number_of_trials(tuned):
    _, spec, outcome = tuned
    counts = counted_per_study(outcome.folder / tune_runner.STORAGE)
    assert set(counts) == {"CartPole-v1/dqn", "CartPole-v1/double_dqn"}
    for study, states in counts.items():
        assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == spec.trials == 3, (study, states)
        assert states.get("RUNNING", 0) == 0
    assert not outcome.problems
    for task, variant in spec.pairs:
        assert tuned_path(outcome.folder / "tuned", task, variant).is_file()
    summary = (outcome.folder / "summary.md").read_text()
    assert "| CartPole-v1 | dqn |" in summary and "| CartPole-v1 | double_dqn |" in summary


def test_each_evaluation_is_reported_as_its_mean_over_seeds_and_the_value_is_the_objective(tuned):
    outcome = tuned[2]
    storage = tune_runner.make_storage(tune_runner.storage_url(outcome.folder))
    study = optuna.load_study(study_name="CartPole-v1/dqn", storage=storage)
    trial = next(t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    runs = sorted(Path(trial.user_attrs["trial_dir"]).glob("seed*"))
    assert [r.name.split("-")[0] for r in runs] == ["seed100", "seed101"]
    rows = {}
    for run in runs:
        lines = (run / "evaluations.csv").read_text().splitlines()
        header = lines[0].split(",")
        rows[run.name] = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
        rows[run.name] = [{"env_steps": int(r["env_steps"]), "return_mean": float(r["return_mean"])}
                          for r in rows[run.name]]
    steps = [r["env_steps"] for r in next(iter(rows.values()))]
    assert steps == [100, 200, 300]
    expected = {s: sum(next(r["return_mean"] for r in seed_rows if r["env_steps"] == s) for seed_rows in rows.values())
                / len(rows) for s in steps}
    assert trial.intermediate_values == pytest.approx(expected)
    assert trial.value == pytest.approx(objective_value("auc", rows))


def test_tuning_seeds_that_overlap_the_reporting_seeds_are_refused_in_one_line(tmp_path):
    path = write_tune_file(tmp_path, seeds="[1, 100]")
    with pytest.raises(ConfigError) as err:
        load_tune_file(path)
    message = str(err.value)
    assert "\n" not in message
    assert "tuning_seeds 1,100" in message and "reporting seeds 0,1" in message
    # the command: exit 2, one line, nothing written
    result = run_qbench("tune", path, "--results", tmp_path / "results", "--workers", "1")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "overlap the reporting seeds" in result.stderr
    assert not (tmp_path / "results").exists()


def test_a_killed_tune_resumes_without_repeating_or_losing_completed_trials(tmp_path, monkeypatch):
    extra = 'variants = ["dqn"]'
    spec = load_tune_file(write_tune_file(tmp_path, trials=2, extra=extra))
    results = tmp_path / "results"
    quiet = {"say": lambda *a, **k: None}
    tune_runner.run_tuning(spec, results, workers=1, **quiet)
    storage = tune_runner.make_storage(tune_runner.storage_url(tune_runner.tune_folder(results, spec.name)))
    before = optuna.load_study(study_name="CartPole-v1/dqn", storage=storage).trials
    assert [(t.number, t.state.name) for t in before] == [(0, "COMPLETE"), (1, "COMPLETE")]

    # The third trial is killed in the middle of its training: KeyboardInterrupt at its second evaluation.
    from qbench.training import rundir
    real_run_batch = rundir.run_batch

    def killed_run_batch(jobs, runs, command=None, progress=None, log=()):
        def interrupt(env_steps, info):
            progress(env_steps, info)
            if "evaluation" in info and env_steps >= 200:
                raise KeyboardInterrupt
        return real_run_batch(jobs, runs, command, interrupt, log)

    monkeypatch.setattr(rundir, "run_batch", killed_run_batch)
    spec4 = load_tune_file(write_tune_file(tmp_path, trials=4, extra=extra))
    with pytest.raises(KeyboardInterrupt):
        tune_runner.run_tuning(spec4, results, workers=1, **quiet)
    monkeypatch.setattr(rundir, "run_batch", real_run_batch)
    assert counted_per_study(tune_runner.tune_folder(results, spec.name) / tune_runner.STORAGE)[
        "CartPole-v1/dqn"] == {"COMPLETE": 2, "RUNNING": 1}

    outcome = tune_runner.run_tuning(spec4, results, workers=1, **quiet)
    after = optuna.load_study(study_name="CartPole-v1/dqn", storage=storage).trials
    for old, new in zip(before, after[:2], strict=True):   # kept as they were
        assert (new.number, new.state, new.params, new.value) == (old.number, old.state, old.params, old.value)
    killed = after[2]
    assert killed.state.name == "FAIL" and killed.user_attrs["interrupted"] is True
    retried = [t for t in after if t.user_attrs.get("retry_of") == 2]
    assert len(retried) == 1 and retried[0].params == killed.params   # retried once, with the same settings
    counted = [t for t in after if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(counted) == 4 and len(after) == 5
    assert not outcome.problems
    # the killed trial's runs stay unfinished; nothing else was run twice
    assert not list(Path(killed.user_attrs["trial_dir"]).glob(f"seed*/{SUMMARY}"))
    assert json.loads((Path(killed.user_attrs["trial_dir"]) / "trial.json").read_text())["state"] == "FAIL"


def test_the_tuned_files_round_trip_into_a_suite(tuned):
    folder, _, outcome = tuned
    storage = tune_runner.make_storage(tune_runner.storage_url(outcome.folder))
    suite_path = folder / "tiny_tuned.toml"
    suite_path.write_text(f'include = ["tiny"]\nseeds = 2\ntuned = "{outcome.folder / "tuned"}"\n')
    base = {j.variant: j for j in expand(load_suite(suite_path.parent / "tiny.toml"))}
    jobs = expand(load_suite(suite_path))
    assert [(j.variant, j.seed) for j in jobs] == [("dqn", 0), ("dqn", 1), ("double_dqn", 0), ("double_dqn", 1)]
    for job in jobs:
        study = optuna.load_study(study_name=f"CartPole-v1/{job.variant}", storage=storage)
        best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
        config, untuned = job.config.to_dict(), base[job.variant].config.to_dict()
        for name, value in best.params.items():   # exactly the best trial's settings
            assert config[name] == value
        assert {k: v for k, v in config.items() if k not in best.params} == \
               {k: v for k, v in untuned.items() if k not in best.params}
        note = job.to_dict()["tuned_from"]
        assert note["trials"] == 3 and note["tuning_seeds"] == [100, 101] and note["objective"] == "auc"
    # reporting on the tuning seeds is refused
    with pytest.raises(ConfigError, match="tuned on seeds 100,101"):
        expand(load_suite(suite_path), first_seed=100)
    # a variant without tuned settings is refused: no comparison of tuned with untuned variants
    lonely = folder / "lonely"
    (lonely / "CartPole-v1").mkdir(parents=True)
    (lonely / "CartPole-v1" / "dqn.toml").write_text(tuned_path(outcome.folder / "tuned", "CartPole-v1",
                                                                "dqn").read_text())
    suite_path.write_text(f'include = ["tiny"]\nseeds = 2\ntuned = "{lonely}"\n')
    with pytest.raises(ConfigError, match="no tuned settings for CartPole-v1 double_dqn"):
        load_suite(suite_path)
    # and so are variants tuned with different budgets
    other = tuned_path(outcome.folder / "tuned", "CartPole-v1", "double_dqn").read_text()
    (lonely / "CartPole-v1" / "double_dqn.toml").write_text(other.replace("trials = 3", "trials = 30"))
    with pytest.raises(ConfigError, match="different budgets"):
        load_suite(suite_path)
    note = read_tuned_file(tuned_path(outcome.folder / "tuned", "CartPole-v1", "dqn"), "CartPole-v1", "dqn", "x")
    assert set(note.settings) == {"lr", "target_period_grad_steps", "eps_decay_fraction"}


@pytest.mark.parametrize(("space", "expected"), [
    ("lrr = { low = 1e-4, high = 1e-2 }", "unknown setting 'lrr' (did you mean 'lr'?)"),
    ("eps_decay_fraction = { low = 0.1, high = 1.5 }", "setting 'eps_decay_fraction' must be <= 1.0, got 1.5"),
    ("lr = { low = 0.0, high = 1e-2 }", "setting 'lr' must be > 0.0, got 0.0"),
    ("eps_end = { low = 0.0, high = 0.5, log = true }", "a log range needs low > 0, got 0"),
    ("batch_size = { low = 0, high = 64, log = true }", "setting 'batch_size' must be >= 1, got 0"),
    ("loss = [\"mse\", \"hubber\"]", "setting 'loss' has no choice 'hubber'"),
    ("lr = { low = 1e-2, high = 1e-4 }", "low (0.01) must be below high (0.0001)"),
    ("batch_size = { low = 16.5, high = 64 }", "low and high must be integers"),
    ("total_env_steps = { low = 100, high = 1000 }", "cannot be searched"),
    ("lr = { low = 1e-4, high = 1e-2, logg = true }", "unknown key 'space.lr.logg'"),
])
def test_a_bad_search_space_is_a_one_line_error(tmp_path, space, expected):
    path = write_tune_file(tmp_path, space=f"[space]\n{space}\n")
    with pytest.raises(ConfigError) as err:
        load_tune_file(path)
    message = str(err.value)
    assert "\n" not in message
    assert expected in message
    assert "space." in message   # names the key


def test_the_objective_of_hand_made_rows_is_the_hand_computed_value():
    rows = {0: [{"env_steps": 300, "return_mean": 60.0}, {"env_steps": 100, "return_mean": 10.0},
                {"env_steps": 200, "return_mean": 20.0}],
            1: [{"env_steps": 100, "return_mean": 0.0}, {"env_steps": 200, "return_mean": 40.0},
                {"env_steps": 300, "return_mean": 20.0}]}
    assert objective_value("final_return", rows) == pytest.approx((60 + 20) / 2)
    assert objective_value("auc", rows) == pytest.approx(((10 + 20 + 60) / 3 + (0 + 40 + 20) / 3) / 2)
    with pytest.raises(ConfigError, match="unknown objective"):
        objective_value("best", rows)


def test_a_pruned_trial_counts_and_its_runs_stay_unfinished_and_marked(tmp_path, monkeypatch):
    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    monkeypatch.setattr(tune_runner, "make_pruner", lambda pruning, startup: AlwaysPrune())
    spec = load_tune_file(write_tune_file(tmp_path, trials=2, extra='variants = ["dqn"]\npruning = "median"'))
    outcome = tune_runner.run_tuning(spec, tmp_path / "results", workers=1, say=lambda *a, **k: None)
    assert counted_per_study(outcome.folder / tune_runner.STORAGE) == {"CartPole-v1/dqn": {"PRUNED": 2}}
    runs = sorted((outcome.folder / "trials").rglob("seed*-*"))
    assert len(runs) == 4
    for run in runs:
        record = json.loads((run / "pruned.json").read_text())
        assert record["reason"] == "pruned" and record["env_steps"] == 100
        assert not (run / SUMMARY).exists() and not (run / CHECKPOINT).exists()
    assert set(load_runs(outcome.folder / "trials")["status"]) == {"unfinished"}
    assert any("no trial completed" in p for p in outcome.problems)   # no tuned settings from pruned trials
    assert not (outcome.folder / "tuned").exists()


def test_the_example_tuning_file_dry_runs_and_writes_nothing(tmp_path):
    result = run_qbench("tune", REPO / "suites" / "tuning" / "classic_example.toml", "--dry-run",
                        "--results", tmp_path / "results")
    assert result.returncode == 0, result.stderr
    assert "26 (task, variant), 8 trials each" in result.stdout   # 2 tasks x classic's 13 variants
    assert "tuning seeds: 100-102" in result.stdout and "lr: float 0.0001 .. 0.003 (log)" in result.stdout
    assert not (tmp_path / "results").exists()
