"""Seeds of one (variant, task, config) trained together: the grouping into batches, qbench run --seed-batch,
qbench train --seeds, and a diverged seed inside a batch."""

import json
import textwrap

import pytest

from qbench import cli
from qbench.cli import train as cli_train
from qbench.config import ConfigError
from qbench.runner import expand
from qbench.runner.plan import batch_key, make_batches, parse_seed_list
from qbench.suites import load_suite
from tests.harness import complete_dirs, results_without_wall_time, run_dirs, run_qbench

# --- grouping jobs into batches (pure)

TWO_CONFIGS = """
    seeds = 8
    [budget]
    total_env_steps = 200
    [tasks."CartPole-v1"]
    variants = ["dqn", "double_dqn"]
    [tasks.slow]
    env_id = "CartPole-v1"
    variants = ["dqn"]
    settings = { lr = 0.01 }
"""


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """3 groups of 8 seeds: dqn and double_dqn on CartPole-v1, and dqn with another lr on the same env."""
    suite = tmp_path_factory.mktemp("suite") / "two.toml"
    suite.write_text(textwrap.dedent(TWO_CONFIGS))
    return expand(load_suite(suite))


def _check_batches(batches, jobs):
    flat = [j for b in batches for j in b]
    assert sorted(j.hash for j in flat) == sorted(j.hash for j in jobs)   # every job once
    for batch in batches:
        assert batch and len({batch_key(j) for j in batch}) == 1           # one config a batch
        assert len({j.seed for j in batch}) == len(batch)


def test_batches_never_mix_configs_and_respect_seed_batch(jobs):
    assert len(jobs) == 24 and len({batch_key(j) for j in jobs}) == 3
    for k, sizes in [(1, [1] * 24), (3, [3, 3, 2] * 3), (8, [8] * 3), (100, [8] * 3)]:
        batches = make_batches(jobs, seed_batch=k, slots=16)   # an explicit K is kept, whatever the slots
        _check_batches(batches, jobs)
        assert [len(b) for b in batches] == sizes
    lr = {round(b[0].config.lr, 6) for b in make_batches(jobs, 8)}
    assert len(lr) == 2   # the suite's lr override is another config even though task name and env match


def test_default_is_a_whole_group_a_batch_split_so_that_every_slot_has_work(jobs):
    one_group = [j for j in jobs if j.variant == "double_dqn"]
    assert [len(b) for b in make_batches(one_group, None, 1)] == [8]
    assert [len(b) for b in make_batches(one_group, None, 2)] == [4, 4]
    assert [[j.seed for j in b] for b in make_batches(one_group, None, 3)] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert [len(b) for b in make_batches(one_group, None, 20)] == [1] * 8      # never more batches than jobs
    assert [len(b) for b in make_batches(jobs, None, 2)] == [8, 8, 8]          # 3 groups already fill 2 slots
    batches = make_batches(jobs, None, 4)
    _check_batches(batches, jobs)
    assert len(batches) == 4 and sorted(len(b) for b in batches) == [4, 4, 8, 8]
    batches = make_batches(jobs, None, 6)
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4, 4]
    assert make_batches([], None, 4) == []


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_seed_batch_must_be_a_positive_integer(jobs, bad):
    with pytest.raises(ConfigError, match="--seed-batch must be a positive integer"):
        make_batches(jobs, bad, 1)


# --- --seeds of qbench train

@pytest.mark.parametrize("text,seeds", [
    ("3", [3]), ("0-7", list(range(8))), ("0,2,5", [0, 2, 5]), ("0-3,8", [0, 1, 2, 3, 8]),
    (" 1 - 2 , 4 ", [1, 2, 4]), ("5-5", [5]), ("9,1", [9, 1]),
])
def test_seed_lists_in_every_valid_form(text, seeds):
    assert parse_seed_list(text) == seeds


@pytest.mark.parametrize("text,fragment", [
    ("", "is not a seed list; give a seed (3), a range (0-7), a list (0,2,5) or both (0-3,8)"),
    ("x", "is not a seed list"), ("-1", "is not a seed list"), ("1.5", "is not a seed list"),
    ("0-", "is not a seed list"), ("1,,2", "is not a seed list"), ("0-3-5", "is not a seed list"),
    ("5-2", "range 5-2 runs backwards; write it low-high (2-5)"),
    ("0-3,2", "names seed 2 more than once"),
    ("0-99999999", "'0-99999999' names 100,000,000 seeds or more; at most 100,000 train in one command"),
    ("0-50000,60000-110000", "names 100,002 seeds or more"),   # refused before any list is built
])
def test_bad_seed_lists_are_one_line_naming_the_valid_forms(text, fragment, tmp_path, capsys):
    with pytest.raises(ConfigError) as info:
        parse_seed_list(text)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    code = cli.main(["train", "dqn", "CartPole-v1", "--seeds", text, "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("qbench: error: --seeds") and fragment in err
    assert not (tmp_path / "runs").exists()


def test_at_most_max_seeds_in_a_list_or_a_suite(tmp_path):
    from qbench.config import MAX_SEEDS
    assert parse_seed_list(f"0-{MAX_SEEDS - 1}") == list(range(MAX_SEEDS))
    with pytest.raises(ConfigError, match="--seeds must be at most 100,000, got 100,001"):
        expand(load_suite("smoke"), seeds=MAX_SEEDS + 1)
    path = tmp_path / "many.toml"
    path.write_text(f'seeds = {MAX_SEEDS + 1}\nvariants = ["dqn"]\n[tasks."CartPole-v1"]\n')
    with pytest.raises(ConfigError, match="seeds: must be at most 100,000 seeds, got 100,001"):
        load_suite(path)


def test_seeds_and_seed_are_mutually_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "dqn", "CartPole-v1", "--seeds", "0-1", "--seed", "3", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "argument --seed: not allowed with argument --seeds" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,fragment", [
    (["run", "smoke", "--seed-batch", "0"], "--seed-batch must be a positive integer, got 0"),
    (["run", "smoke", "--seed-batch", "x", "--dry-run"], "--seed-batch must be a positive integer, got x"),
    (["sanity", "--seed-batch", "-2", "--dry-run"], "--seed-batch must be a positive integer, got -2"),
])
def test_bad_seed_batch_is_one_line_exit_2_and_writes_nothing(args, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = cli.main(args)
    err = capsys.readouterr().err
    assert code == 2 and err == f"qbench: error: {fragment}\n"
    assert list(tmp_path.iterdir()) == []


def test_train_dry_run_with_seeds_shows_the_settings_once_and_a_row_per_seed(tmp_path, capsys):
    out = tmp_path / "runs"
    assert cli.main(["train", "dqn", "CartPole-v1", "--seeds", "0-2,5", "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert text.count("# ") == 2 and "dqn on CartPole-v1, 4 seeds (0, 1, 2, 5)" in text
    rows = [line.split("\t") for line in text.splitlines() if line.split("\t")[0] in {"0", "1", "2", "5"}]
    assert [(r[0], r[2], r[3]) for r in rows] == [(str(s), str(out / f"seed{s}"), "new run") for s in (0, 1, 2, 5)]
    assert not out.exists()


# --- end to end: qbench run --seed-batch, qbench train --seeds, a diverged seed in a batch

TINY_SUITE = """
    seeds = 3
    [budget]
    total_env_steps = 300
    eval_interval_env_steps = 150
    eval_episodes = 2
    [settings]
    hidden_sizes = [16]
    warmup_env_steps = 100
    env_steps_per_update = 2
    log_interval_env_steps = 100
    [tasks."CartPole-v1"]
    variants = ["dqn", "double_dqn"]
"""


def test_run_with_seed_batches_writes_every_seed_and_matches_one_seed_a_batch(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(textwrap.dedent(TINY_SUITE))
    runs = {}
    for k in (1, 2):
        results = tmp_path / f"k{k}"
        r = run_qbench("run", suite, "--results", results, "--workers", "2", "--seed-batch", k)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "6 jobs: 6 ran now, 0 already complete, 0 failed" in r.stdout
        assert len(complete_dirs(results)) == 6 and complete_dirs(results) == run_dirs(results)
        for d in run_dirs(results):
            assert json.loads((d / "runner.json").read_text())["attempts"] == 1
        runs[k] = results_without_wall_time(results)
    assert runs[2] == runs[1]
    assert len(runs[1]) == 6 and all(len(rows) == 2 for rows in runs[1].values())


TINY_TRAIN = ["--steps", "300", "--set", "eval_interval_env_steps=150", "--set", "eval_episodes=2",
              "--set", "warmup_env_steps=100", "--set", "hidden_sizes=[16]"]


def test_train_seeds_writes_one_complete_run_directory_per_seed(tmp_path):
    out = tmp_path / "runs"
    r = run_qbench("train", "dqn", "CartPole-v1", "--seeds", "0-1", "--out", out, *TINY_TRAIN)
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["seed0", "seed1"]
    for seed in (0, 1):
        d = out / f"seed{seed}"
        assert json.loads((d / "config.json").read_text())["seed"] == seed
        summary = json.loads((d / "summary.json").read_text())
        assert f"seed={seed} env_steps=300 return_mean=" in r.stdout   # plain progress lines name the seed
        assert f"seed {seed}: final return {summary['final_return_mean']:.1f}" in r.stdout
    # a seed trained in the batch equals the same seed trained alone
    alone = tmp_path / "alone" / "seed1"
    single = run_qbench("train", "dqn", "CartPole-v1", "--seed", "1", "--out", alone, *TINY_TRAIN)
    assert single.returncode == 0, single.stdout + single.stderr
    assert results_without_wall_time(out)["seed1"] == results_without_wall_time(alone.parent)["seed1"]
    # run again: both seeds are complete and skipped, nothing rewritten
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = run_qbench("train", "dqn", "CartPole-v1", "--seeds", "0-1", "--out", out, *TINY_TRAIN)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already holds this job, complete") == 2
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


DIVERGING_TASK = "tests.failing_envs:EvenSeedHugeRewardEnv"   # finite, huge rewards: the variant diverges


def _diverging_seeds(seeds):
    """Which of the seeds draw an even training-env seed (the engine's env stream), so that they diverge."""
    from qbench.engine import stream_seed
    return {s for s in seeds if stream_seed(s, "env") % 2 == 0}


def test_a_diverged_seed_in_a_batch_is_failed_and_the_others_complete(tmp_path):
    seeds = [2, 3, 4, 5]
    diverging = _diverging_seeds(seeds)
    assert diverging and diverging != set(seeds), "pick seeds where some diverge and some do not"
    suite = tmp_path / "nan.toml"
    suite.write_text(textwrap.dedent(f"""
        seeds = 6
        [budget]
        total_env_steps = 200
        eval_interval_env_steps = 100
        eval_episodes = 1
        [settings]
        hidden_sizes = [16]
        warmup_env_steps = 50
        env_steps_per_update = 4
        [tasks.nan_even]
        env_id = "{DIVERGING_TASK}"
        variants = ["dqn"]
    """))
    results = tmp_path / "results"
    r = run_qbench("run", suite, "--results", results, "--workers", "1", "--seed-batch", "4",
                   "--only", "seed=2,3,4,5")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"4 jobs: {4 - len(diverging)} ran now, 0 already complete, {len(diverging)} failed" in r.stdout
    for d in run_dirs(results):
        seed = json.loads((d / "config.json").read_text())["seed"]
        if seed in diverging:
            error = json.loads((d / "error.json").read_text())
            assert error["error"] == "diverged" and error["type"] == "DivergedError" and "TD loss" in error["message"]
            assert not (d / "summary.json").exists()
            assert f"FAILED nan_even dqn seed {seed}: diverged" in r.stdout
        else:
            assert (d / "summary.json").exists() and not (d / "error.json").exists()
            assert json.loads((d / "summary.json").read_text())["final_return_mean"] == 20.0

    # qbench train --seeds: the diverged seed is said on stderr, the others complete, exit code 1
    out = tmp_path / "train"
    t = run_qbench("train", "dqn", DIVERGING_TASK, "--seeds", "2-5", "--out", out, "--steps", "200",
                   "--set", "eval_interval_env_steps=100", "--set", "eval_episodes=1", "--set", "hidden_sizes=[16]",
                   "--set", "warmup_env_steps=50")
    assert t.returncode == 1, t.stdout + t.stderr
    for seed in seeds:
        if seed in diverging:
            assert f"qbench: seed {seed} diverged: TD loss" in t.stderr
            assert f"seed={seed} env_steps=" in t.stdout and "diverged: TD loss" in t.stdout   # said as it happens
            assert json.loads((out / f"seed{seed}" / "error.json").read_text())["error"] == "diverged"
        else:
            assert (out / f"seed{seed}" / "summary.json").exists() and f"seed {seed}: final return" in t.stdout


def test_the_longest_batches_start_first():
    """Longest processing time first: a CEM batch (Q on population x iterations actions per target) and a longer
    budget cost more than a DQN batch, and more seeds cost more than fewer."""
    from qbench.jobs import build_job
    from qbench.runner.plan import estimated_cost

    small = {"total_env_steps": 1000, "warmup_env_steps": 100}
    dqn = [build_job("dqn", "CartPole-v1", s, small) for s in range(2)]
    longer = [build_job("dqn", "CartPole-v1", s, {**small, "total_env_steps": 4000}) for s in range(2)]
    cem = [build_job("cem_q", "Pendulum-v1", s, {**small, "hidden_sizes": [256, 256]}) for s in range(2)]
    assert estimated_cost(cem) > estimated_cost(dqn)
    assert estimated_cost(longer) > estimated_cost(dqn) > estimated_cost(dqn[:1])


# --- replay buffers that cannot fit the machine

GIB = 2 ** 30


@pytest.mark.parametrize("overcommit_always", [False, True])
def test_a_buffer_size_beyond_the_machine_is_one_line_exit_2_and_writes_nothing(overcommit_always, tmp_path,
                                                                                monkeypatch, capsys):
    """On a machine of 1 GiB: 10M transitions store at least 26 bytes each (248 MiB, fits); a buffer of 200M
    has a rewards array of 8 x 200M bytes = 1.49 GiB, which is not allocated unless Linux overcommits always;
    400M transitions stored (a run that long) need 9.7 GiB, refused either way; 5 seeds of 10M stored too (1.2 GiB)."""
    from qbench.runner import plan
    monkeypatch.setattr(plan, "memory_bytes_total", lambda: 1.0 * GIB)
    monkeypatch.setattr(plan, "overcommits_always", lambda: overcommit_always)
    base = ["train", "dqn", "CartPole-v1", "--dry-run", "--out", str(tmp_path / "run")]
    assert cli.main([*base, "--set", "buffer_size=10000000", "--set", "total_env_steps=10000000"]) == 0
    capsys.readouterr()
    cases = [(["--set", "buffer_size=200000000"], None if overcommit_always else
              "buffer_size 200,000,000 needs a replay array of at least 1.5 GiB, larger than this machine's 1.0 GiB"),
             (["--set", "buffer_size=400000000", "--set", "total_env_steps=400000000"],
              "the 400,000,000 transitions a run of buffer_size 400,000,000 stores need at least 9.7 GiB"),
             (["--set", "buffer_size=10000000", "--set", "total_env_steps=10000000", "--seeds", "0-4"],
              "need at least 1.2 GiB (5 seeds in one process); this machine has 1.0 GiB")]
    for extra, fragment in cases:
        code = cli.main([*base, *extra])
        err = capsys.readouterr().err
        if fragment is None:
            assert code == 0, err
        else:
            assert code == 2 and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "run").exists()


def test_running_out_of_memory_while_training_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.46 TiB for an array with shape (1, 100000000000, 4)")
    monkeypatch.setattr(cli_train, "_train_with_progress", no_memory)
    code = cli.main(["train", "dqn", "CartPole-v1", "--steps", "300", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and err == ("qbench: out of memory: Unable to allocate 1.46 TiB for an array with shape (1, "
                                 "100000000000, 4); a smaller buffer_size, or fewer seeds in one process, may fit\n")


def test_train_checks_again_under_the_lock_that_the_run_is_not_complete(tmp_path, monkeypatch, capsys):
    """Another process finished the run between this one's first look and its lock: it says so and trains
    nothing (training again would clean the finished run's directory)."""
    looks = iter(["new", "complete"])
    monkeypatch.setattr(cli_train, "_train_dir_state", lambda path, job: next(looks))

    def must_not_train(*args, **kwargs):
        raise AssertionError("trained a run that was complete")
    monkeypatch.setattr(cli_train, "_train_with_progress", must_not_train)
    assert cli.main(["train", "dqn", "CartPole-v1", "--steps", "300", "--out", str(tmp_path / "run")]) == 0
    assert "already holds this job, complete" in capsys.readouterr().out
