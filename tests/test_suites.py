"""Suite files: loading, validation (one-line errors naming file and key), expansion, override order."""

import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from qbench import cli
from qbench.analysis.scoring import atari_scoring
from qbench.config import ConfigError
from qbench.runner import expand, parse_only, run_path
from qbench.suites import SUITES_DIR, find_suite, list_suites, load_suite
from tests.harness import REPO, run_qbench

SHIPPED = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def write_suite(tmp_path: Path, text: str, name: str = "mine") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_issue_suites_ship():
    assert {"smoke", "sanity", "classic", "continuous", "mujoco", "full"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_suite_validates_and_expands(name):
    suite = load_suite(SUITES_DIR / f"{name}.toml")
    jobs = expand(suite)   # builds every job: settings, consistency and action-space fit are all checked
    assert len(jobs) == sum(len(e.variants) * (e.seeds or suite.seeds) for e in suite.entries)
    assert len({j.hash for j in jobs}) == len(jobs)
    unscored_games = {"ALE/Defender-v5", "ALE/Surround-v5"}   # atari_human_random.csv has no human score for them
    for entry in suite.entries:   # every shipped task can be normalised
        if entry.name.startswith("ALE/") and entry.random_score is None:   # human-normalised by the report
            assert (entry.name in atari_scoring({entry.name: entry.name})) != (entry.name in unscored_games)
            continue
        assert entry.random_score is not None and entry.reference_score is not None, (name, entry.name)


def test_smoke_expands_in_file_order_with_its_budget_and_settings(tmp_path):
    suite = load_suite(SUITES_DIR / "smoke.toml")
    jobs = expand(suite)
    assert [(j.task.name, j.variant, j.seed) for j in jobs][:4] == [
        ("CartPole-v1", "dqn", 0), ("CartPole-v1", "dqn", 1), ("CartPole-v1", "double_dqn", 0),
        ("CartPole-v1", "double_dqn", 1)]
    cartpole = jobs[0].config
    budget = (cartpole.total_env_steps, cartpole.eval_interval_env_steps, cartpole.eval_episodes)
    assert budget == (600, 300, 2)
    assert cartpole.hidden_sizes == [32, 32] and cartpole.warmup_env_steps == 200
    assert cartpole.lr == 2.3e-3   # the task's tuned settings still apply where the suite is silent
    path = run_path(tmp_path, suite.name, jobs[0])
    assert path == tmp_path / "smoke" / "CartPole-v1" / "dqn" / f"seed0-{jobs[0].hash}"


def test_sanity_pairs_discrete_variants_with_cartpole_and_continuous_with_pendulum():
    suite = load_suite(SUITES_DIR / "sanity.toml")
    assert suite.rule("CartPole-v1") == (3, 6) and suite.rule("Pendulum-v1") == (3, 5)
    cartpole, pendulum = suite.entry("CartPole-v1"), suite.entry("Pendulum-v1")
    assert {"dqn", "double_dqn", "nstep_dqn", "huber_dqn", "double_nstep_huber_dqn", "online_q",
            "fitted_q"} == set(cartpole.variants)
    assert {"random_q", "cem_q", "naf", "ddpg"} == set(pendulum.variants)
    assert all(cartpole.thresholds[v] == 475 for v in ("dqn", "double_dqn", "nstep_dqn", "huber_dqn",
                                                      "double_nstep_huber_dqn"))
    assert pendulum.thresholds == {"ddpg": -200, "naf": -200, "cem_q": -200, "random_q": -300}


def test_resolution_order_task_variant_suite_task_entry_command_line(tmp_path):
    path = write_suite(tmp_path, """
        seeds = 1
        variants = ["slow_dqn"]
        settings = { lr = 5e-4, gamma = 0.95 }

        [custom_variants.slow_dqn]
        base = "double_dqn"
        settings = { lr = 1e-4, batch_size = 32, tau = 0.01 }

        [tasks."CartPole-v1"]
        settings = { gamma = 0.9, eps_end = 0.2 }
    """)
    suite = load_suite(path)

    def config(**cli):
        (job,) = expand(suite, overrides=cli)
        return job.config
    cfg = config()
    assert cfg.target == "double"          # the custom variant starts from its base
    assert cfg.batch_size == 32            # variant over the task's tuned 64
    assert cfg.tau == 0.01                 # variant over the engine default
    assert cfg.lr == 5e-4                  # suite settings over the variant
    assert cfg.gamma == 0.9                # task entry over the suite
    assert cfg.eps_end == 0.2              # task entry over the task's tuned 0.04
    assert cfg.target_period_grad_steps == 32   # the task's tuned settings where nothing overrides them
    assert config(gamma=0.5).gamma == 0.5  # the command line over everything


def test_a_new_task_needs_no_python_and_its_tuned_settings_come_before_the_variant(tmp_path):
    path = write_suite(tmp_path, """
        seeds = 2
        [tasks.bounded]
        env_id = "tests.bounds_env:BoundsCheckingEnv"
        variants = ["naf"]
        tuned_settings = { hidden_sizes = [8], gamma = 0.9 }
        budget = { total_env_steps = 100 }

        [tasks.long_cartpole]
        env_id = "CartPole-v1"
        env_kwargs = { max_episode_steps = 50 }
        variants = ["online_q"]
        tuned_settings = { batch_size = 16, buffer_size = 1000 }
    """)
    suite = load_suite(path)
    jobs = expand(suite)
    assert [j.task.name for j in jobs] == ["bounded", "bounded", "long_cartpole", "long_cartpole"]
    assert jobs[0].config.gamma == 0.9 and jobs[0].config.total_env_steps == 100   # the new task's tuned settings
    assert jobs[0].config.hidden_sizes == [100, 100]   # naf's own network, over the task's [8]: the variant wins
    online = jobs[2]
    assert online.task.env_kwargs == {"max_episode_steps": 50}
    assert online.config.batch_size == 1 and online.config.buffer_size == 1   # online_q is its settings


def test_include_takes_the_included_entries_and_this_files_seeds(tmp_path):
    write_suite(tmp_path, """
        seeds = 5
        variants = ["dqn"]
        settings = { lr = 1e-4 }
        [tasks."CartPole-v1"]
    """, name="part")
    path = write_suite(tmp_path, """
        seeds = 2
        include = ["part"]
        [tasks."Acrobot-v1"]
        variants = ["double_dqn"]
    """)
    suite = load_suite(path)
    jobs = expand(suite)
    assert [(j.task.name, j.variant, j.seed) for j in jobs] == [
        ("CartPole-v1", "dqn", 0), ("CartPole-v1", "dqn", 1), ("Acrobot-v1", "double_dqn", 0),
        ("Acrobot-v1", "double_dqn", 1)]
    # included settings stay with their tasks
    assert jobs[0].config.lr == 1e-4 and jobs[2].config.lr == 6.3e-4


def test_a_users_suite_may_include_a_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    write_suite(tmp_path / "suites", """
        seeds = 1
        min_passing_seeds = 1
        include = ["smoke"]
        [tasks."Acrobot-v1"]
        variants = ["dqn"]
    """)
    assert find_suite("mine") == Path("suites") / "mine.toml" and "mine" in list_suites()
    suite = load_suite("mine")
    assert [e.name for e in suite.entries] == ["CartPole-v1", "Pendulum-v1", "Acrobot-v1"]


def test_a_suite_in_the_working_directory_is_found_before_a_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "suites").mkdir()
    write_suite(tmp_path / "suites", 'seeds = 1\nvariants = ["dqn"]\n[tasks."CartPole-v1"]\n', name="smoke")
    assert find_suite("smoke") == Path("suites") / "smoke.toml" and load_suite("smoke").seeds == 1


def test_the_shipped_suites_are_package_data_and_a_wheel_has_them(tmp_path):
    """A wheel install (not editable) finds every shipped suite with no suites/ folder in sight."""
    assert SUITES_DIR == REPO / "suites"   # the design card's top-level folder, in a checkout
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for folder in ("qbench", "suites"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("qbench-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {Path(n).stem for n in zf.namelist() if n.startswith("qbench/shipped_suites/") and n.endswith(".toml")}
        assert shipped == set(SHIPPED)
        zf.extractall(tmp_path / "site")
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    code = ("import qbench, qbench.suites as s; print(qbench.__file__); print(s.find_suite('smoke').resolve()); "
            "print(','.join(s.list_suites()))")
    r = subprocess.run([sys.executable, "-c", code], cwd=empty, check=False, env={"PATH": "/usr/bin:/bin",
                       "PYTHONPATH": str(tmp_path / "site")}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    module, smoke, names = r.stdout.splitlines()
    site = (tmp_path / "site").resolve()
    assert Path(module).resolve().is_relative_to(site)
    assert Path(smoke) == site / "qbench" / "shipped_suites" / "smoke.toml"
    assert names.split(",") == SHIPPED


def test_pyproject_lists_every_package_of_the_source_tree():
    """The packages are listed (a find cannot see the mapped suites/ folder): a new subpackage missing from the
    list would be missing from the wheel."""
    import tomllib

    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "qbench").rglob("__init__.py")}
    assert set(listed) == found | {"qbench.shipped_suites"}
    assert len(listed) == len(set(listed))


def test_in_the_source_tree_root_the_shipped_suites_are_listed_once_as_shipped(monkeypatch):
    monkeypatch.chdir(REPO)
    assert list_suites() == SHIPPED
    assert find_suite("smoke").resolve() == SUITES_DIR / "smoke.toml"
    r = run_qbench("list", "suites", cwd=REPO)
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.split()[:1] in ([n] for n in SHIPPED)]
    assert [row[0] for row in rows] == SHIPPED and {row[1] for row in rows} == {"shipped"}


def test_full_holds_every_task_of_classic_continuous_and_mujoco():
    full = {e.name for e in load_suite(SUITES_DIR / "full.toml").entries}
    parts = {e.name for name in ("classic", "continuous", "mujoco")
             for e in load_suite(SUITES_DIR / f"{name}.toml")
             .entries}
    assert full == parts and len(full) == 10


def test_seeds_and_only_select_jobs():
    suite = load_suite(SUITES_DIR / "smoke.toml")
    jobs = expand(suite, seeds=3, only=parse_only(["task=Pendulum-v1", "variant=naf,ddpg", "seed=2"]))
    assert sorted((j.variant, j.seed) for j in jobs) == [("ddpg", 2), ("naf", 2)]
    with pytest.raises(ConfigError, match="--only variant=dqm matches no job"):
        expand(suite, only=parse_only(["variant=dqm"]))
    with pytest.raises(ConfigError, match="KEY one of variant, task, seed"):
        parse_only(["colour=red"])
    with pytest.raises(ConfigError, match="--seeds must be a positive integer"):
        expand(suite, seeds=0)


def test_first_seed_shifts_every_seed_and_keeps_the_count_and_the_settings():
    suite = load_suite(SUITES_DIR / "smoke.toml")
    base = expand(suite, seeds=2)
    shifted = expand(suite, seeds=2, first_seed=300)
    assert [(j.task.name, j.variant, j.seed) for j in shifted] == [(j.task.name, j.variant, j.seed + 300)
                                                                   for j in base]
    assert all(a.config == b.config and a.hash != b.hash for a, b in zip(base, shifted))
    # --only seed= names the shifted seeds, and a seed outside them is a typo with the valid ones listed
    assert {j.seed for j in expand(suite, seeds=2, first_seed=300, only=parse_only(["seed=301"]))} == {301}
    with pytest.raises(ConfigError, match="--only seed=1 matches no job of suite 'smoke'; seeds in it: 300, 301"):
        expand(suite, seeds=2, first_seed=300, only=parse_only(["seed=1"]))
    with pytest.raises(ConfigError, match="--first-seed must be an integer in 0.."):
        expand(suite, first_seed=-1)


# --- malformed files: one line naming the file and the key, exit 2, nothing written

MALFORMED = [
    ("bad TOML", "seeds = \n", "mine.toml: invalid TOML"),
    ("not UTF-8", b"\xff\xfeseeds = 1\n", "mine.toml: not UTF-8 text (byte 0xff at offset 0)"),
    ("unknown top key", 'seedz = 2\nseeds = 1\n[tasks."CartPole-v1"]\nvariants = ["dqn"]\n',
     "mine.toml: unknown key 'seedz'; valid keys: budget, custom_variants"),
    ("unknown task key", 'seeds = 1\n[tasks."CartPole-v1"]\nvariants = ["dqn"]\nbudjet = {}\n',
     "mine.toml: unknown key 'tasks.CartPole-v1.budjet'; valid keys:"),
    ("unknown budget key", 'seeds = 1\nbudget = { steps = 5 }\n[tasks."CartPole-v1"]\nvariants = ["dqn"]\n',
     ("mine.toml: unknown key 'budget.steps'; valid keys: eval_episodes, eval_interval_env_steps, "
      "total_env_steps")),
    ("unknown variant", 'seeds = 1\nvariants = ["dqm"]\n[tasks."CartPole-v1"]\n',
     "mine.toml: variants: unknown variant 'dqm' (did you mean 'dqn'?)"),
    ("unknown task variant", 'seeds = 1\n[tasks."CartPole-v1"]\nvariants = ["dqn", "nope"]\n',
     "mine.toml: tasks.CartPole-v1.variants: unknown variant 'nope'"),
    ("unknown task", 'seeds = 1\nvariants = ["dqn"]\n[tasks."CartPol-v1"]\n',
     "mine.toml: tasks.CartPol-v1: unknown task 'CartPol-v1'"),
    ("negative seeds", 'seeds = -1\nvariants = ["dqn"]\n[tasks."CartPole-v1"]\n',
     "mine.toml: seeds: must be a positive integer, got -1"),
    ("missing seeds", 'variants = ["dqn"]\n[tasks."CartPole-v1"]\n', "mine.toml: missing key 'seeds'"),
    ("zero budget", ('seeds = 1\nvariants = ["dqn"]\n[tasks."CartPole-v1"]\n'
                     'budget = { total_env_steps = 0 }\n'),
     "mine.toml: tasks.CartPole-v1.budget.total_env_steps: setting 'total_env_steps' must be >= 1, got 0"),
    ("bad setting", 'seeds = 1\nvariants = ["dqn"]\nsettings = { lr = -1 }\n[tasks."CartPole-v1"]\n',
     "mine.toml: settings.lr: setting 'lr' must be > 0.0"),
    ("budget in settings", ('seeds = 1\nvariants = ["dqn"]\nsettings = { total_env_steps = 5 }\n'
                            '[tasks."CartPole-v1"]\n'),
     "mine.toml: settings.total_env_steps: 'total_env_steps' belongs in the budget table"),
    ("variant misfit", 'seeds = 1\nvariants = ["dqn"]\n[tasks."Pendulum-v1"]\n',
     "mine.toml: tasks.Pendulum-v1 (variant 'dqn'): variant 'dqn' needs a Discrete action space"),
    ("inconsistent parts", ('seeds = 1\nvariants = ["double_dqn"]\nsettings = { target_update = "none" }\n'
                            '[tasks."CartPole-v1"]\n'),
     "mine.toml: tasks.CartPole-v1 (variant 'double_dqn'): target 'double' needs"),
    ("threshold of a variant not run", ('seeds = 2\nmin_passing_seeds = 1\n[tasks."CartPole-v1"]\n'
                                        'variants = ["dqn"]\nthresholds = { ddpg = 1 }\n'),
     "mine.toml: tasks.CartPole-v1.thresholds.ddpg: variant"),
    ("too many passing seeds", ('seeds = 2\nmin_passing_seeds = 3\nvariants = ["dqn"]\n'
                                '[tasks."CartPole-v1"]\n'),
     "mine.toml: min_passing_seeds: 3 exceeds seeds (2)"),
    ("too many passing seeds for a task", ('seeds = 5\nmin_passing_seeds = 4\n[tasks."CartPole-v1"]\n'
                                           'variants = ["dqn"]\nseeds = 3\nthresholds = { dqn = 1 }\n'),
     "mine.toml: min_passing_seeds: 4 exceeds the 3 seeds of CartPole-v1"),
    ("a task's own rule too strict", ('seeds = 5\nmin_passing_seeds = 4\n[tasks."CartPole-v1"]\n'
                                      'variants = ["dqn"]\nmin_passing_seeds = 6\nthresholds = { dqn = 1 }\n'),
     "mine.toml: tasks.CartPole-v1.min_passing_seeds: 6 exceeds the 5 seeds of CartPole-v1"),
    ("thresholds without any rule", ('seeds = 5\n[tasks."CartPole-v1"]\n'
                                     'variants = ["dqn"]\nthresholds = { dqn = 1 }\n'),
     "mine.toml: min_passing_seeds: missing: the thresholds of CartPole-v1 need a pass rule"),
    ("custom variant shadows", ('seeds = 1\nvariants = ["dqn"]\n[custom_variants.dqn]\n'
                                '[tasks."CartPole-v1"]\n'),
     "mine.toml: custom_variants.dqn: 'dqn' is a built-in variant"),
    ("missing include", 'seeds = 1\ninclude = ["nothere"]\n', "mine.toml: include: unknown suite 'nothere'"),
    ("unknown env id", 'seeds = 1\nvariants = ["dqn"]\n[tasks.mine]\nenv_id = "CartPol-v1"\n',
     ("mine.toml: tasks.mine.env_id: 'CartPol-v1' is not a registered Gymnasium id "
      "(did you mean 'CartPole-v1'?)")),
    ("env kwargs refused", ('seeds = 1\nvariants = ["dqn"]\n[tasks.mine]\nenv_id = "CartPole-v1"\n'
                            'env_kwargs = { colour = "red" }\n'),
     "mine.toml: tasks.mine (variant 'dqn'): cannot build the environment: TypeError:"),
    ("bad env class", 'seeds = 1\nvariants = ["dqn"]\n[tasks.mine]\nenv_id = "no_such_module:Env"\n',
     "mine.toml: tasks.mine (variant 'dqn'): cannot load environment class 'no_such_module:Env'"),
]


@pytest.mark.parametrize("case,text,fragment", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_suite_is_one_line_exit_2_and_writes_nothing(case, text, fragment, tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    results = tmp_path / "results"
    code = cli.main(["run", str(path), "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]
    assert str(path) in lines[0] or "mine.toml" in lines[0]
    assert not results.exists()


def test_malformed_suite_end_to_end_in_a_subprocess(tmp_path):
    path = write_suite(tmp_path, 'seeds = 2\nvariants = ["dqn"]\n[tasks."CartPole-v1"]\nbudjet = 3\n')
    r = run_qbench("run", path, "--results", tmp_path / "results")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "unknown key 'tasks.CartPole-v1.budjet'" in r.stderr and not (tmp_path / "results").exists()


@pytest.mark.parametrize("args,fragment", [
    (["run", "smok"], "unknown suite 'smok' (did you mean 'smoke'?)"),
    (["run", "smoke", "--workers", "0"], "--workers must be a positive integer"),
    (["run", "smoke", "--only", "variant=dqm"], "--only variant=dqm matches no job of suite 'smoke'"),
    (["run", "smoke", "--only", "task=CartPole-v1", "--only", "variant=naf"],
     "no job of suite 'smoke' matches"),
    (["run", "smoke", "--set", "lrr=1"], "unknown setting 'lrr'"),
    (["run", "smoke", "--seeds", "0"], "--seeds must be a positive integer"),
    (["run", "smoke", "--ray-address", "x:1"], "--ray-address needs --backend ray"),
    (["run", "smoke", "--ray-address", "x:1", "--dry-run"], "--ray-address needs --backend ray"),
    (["run", "smoke", "--workers", "0", "--dry-run"], "--workers must be a positive integer"),
    (["sanity", "--ray-address", "x:1", "--dry-run"], "--ray-address needs --backend ray"),
    (["run", "notes.txt"], "'notes.txt' is neither a suite name nor a .toml file; valid suites: atari-smoke, atari100k, atari57, classic,"),
    (["run", "README.md"], "'README.md' is not a suite file (a suite is a .toml file); valid suites:"),
    (["run", "qbench"], "'qbench' is a folder, not a suite; valid suites:"),
    (["run", "nothere.toml"], "suite file 'nothere.toml' does not exist"),
    (["run", "qbench/data"], "'qbench/data' is a folder, not a suite"),
])
def test_run_command_mistakes_are_one_line_exit_2(args, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    results = tmp_path / "results"
    code = cli.main([*args, "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not results.exists()


def test_dry_run_lists_jobs_and_writes_nothing(tmp_path, capsys):
    results = tmp_path / "results"
    assert cli.main(["run", "smoke", "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "8 jobs (dry run" in out and len(re.findall(r"\snew$", out, re.MULTILINE)) == 8
    assert not results.exists()


def test_list_suites_shows_every_shipped_suite(capsys):
    assert cli.main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SHIPPED) and "invalid" not in out


def test_the_docs_suite_example_is_a_valid_suite(tmp_path):
    page = (Path(__file__).resolve().parents[1] / "docs" / "suites.md").read_text()
    example = page.split("## Suite files", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    suite = load_suite(write_suite(tmp_path, example))
    jobs = expand(suite)
    assert {(j.task.name, j.variant) for j in jobs} == {("CartPole-v1", "dqn"), ("short_cartpole", "dqn"),
                                                        ("short_cartpole", "my_dqn")}
    assert len(jobs) == 5 + 2 * 20   # CartPole-v1 at the suite's 5 seeds, short_cartpole at its own 20


def test_the_readme_tour_suite_is_a_valid_suite(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("**Add a variant, in TOML**", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    jobs = expand(load_suite(write_suite(tmp_path, example)))
    assert sorted({(j.task.name, j.variant) for j in jobs}) == [("CartPole-v1", "dqn"),
                                                                ("CartPole-v1", "polyak_double_dqn")]
    mine = next(j for j in jobs if j.variant == "polyak_double_dqn").config
    assert (mine.target, mine.target_update, mine.tau) == ("double", "polyak", 0.01)
    assert len(jobs) == 2 * 5


def test_a_new_task_names_its_episode_info_and_any_task_its_own_seeds(tmp_path):
    suite = load_suite(write_suite(tmp_path, """
        seeds = 2
        variants = ["tabular_q"]
        [tasks.bias]
        env_id = "qbench/MaximisationBias-v0"
        episode_info = ["left"]
        seeds = 3
        [tasks."FrozenLake-v1"]
    """))
    assert suite.custom_tasks["bias"].episode_info == ("left",)
    jobs = expand(suite)
    assert sorted((j.task.name, j.seed) for j in jobs) == [("FrozenLake-v1", 0), ("FrozenLake-v1", 1),
                                                          ("bias", 0), ("bias", 1), ("bias", 2)]
    with pytest.raises(ConfigError, match=r"tasks.FrozenLake-v1.episode_info: only a new task"):
        load_suite(write_suite(tmp_path, """
            seeds = 1
            variants = ["dqn"]
            [tasks."FrozenLake-v1"]
            episode_info = ["x"]
        """, "bad"))
