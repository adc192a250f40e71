"""Suite files: a TOML file read into a validated ``Suite`` before any job starts.

A suite is named (``smoke``) or given as a path to a ``.toml`` file. A name is looked up first in ``./suites/`` (the
user's own suites, in the working directory), then among the shipped suites (the source tree's top-level
``suites/``, installed into a wheel as package data, so a wheel has them too).

Everything a suite file may hold is listed in the ``*_KEYS`` tables below; any other key is an error that
names the file and the key path. Values are read with ``tomllib`` (never evaluated) and every setting is
checked with ``coerce_setting``. The full schema is documented in docs/suites.md ("Suite files").

Settings of one job resolve in this order (later wins): engine defaults -> the task's tuned settings -> the
variant -> the suite's ``[budget]`` and ``[settings]`` -> the task entry's ``budget`` and ``settings`` -> the
(task, variant)'s settings from qbench tune (the suite's ``tuned`` folder) -> the command line (``--set``). The
last four are handed to ``build_job`` as override layers.

This module reads files and builds data; it imports neither torch nor the engine.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from qbench.config import MAX_SEEDS, VARIANTS, ConfigError, Variant, choices_line, coerce_setting, unknown
from qbench.envs.tasks import TASKS, Task, get_task


def _shipped_suites_dir() -> Path:
    """The shipped suite files: the top-level suites/ folder of the source tree (a checkout, an editable
    install), which a wheel installs as the package data qbench/shipped_suites (pyproject.toml maps it)."""
    installed = Path(__file__).resolve().parent / "shipped_suites"
    return installed if installed.is_dir() else (Path(__file__).resolve().parent.parent / "suites").resolve()


SUITES_DIR = _shipped_suites_dir()
# The user's own suites: a folder in the working directory, looked in before the shipped ones.
USER_SUITES_DIR = Path("suites")


def suite_folders() -> tuple[Path, ...]:
    """Where suite names are looked up, in order: ./suites/ (the user's), then the shipped ones. In the source
    tree's root ./suites/ IS the shipped folder: it is then looked in once, as the shipped one."""
    if USER_SUITES_DIR.resolve() == SUITES_DIR:
        return (SUITES_DIR,)
    return (USER_SUITES_DIR, SUITES_DIR)

# The evaluation protocol and run length; kept apart from other settings so a reader finds them in one place.
BUDGET_KEYS = ("total_env_steps", "eval_interval_env_steps", "eval_episodes")

TOP_KEYS = {
    "description": "what the suite is for",
    "seeds": "number of seeds per (variant, task): seeds 0 .. seeds-1",
    "min_passing_seeds": "pass rule: a (variant, task) passes when this many seeds reach its threshold",
    "include": "other suites (names without .toml: next to this file, else shipped) whose tasks join this one",
    "variants": "variants run on every task that does not list its own",
    "budget": "suite-wide budget: " + ", ".join(BUDGET_KEYS),
    "settings": "suite-wide setting overrides (qbench list settings)",
    "tasks": "one table per task: [tasks.<name>]",
    "custom_variants": "variants defined in this file: [custom_variants.<name>]",
    "tuned": "a folder of tuned settings written by qbench tune (<task>/<variant>.toml, relative to this file): "
             "every (task, variant) runs with its own, applied after the task's settings",
}
TASK_KEYS = {
    "description": "what the task is",
    "env_id": "defines a new task: a registered Gymnasium id or module:Class",
    "env_kwargs": "keyword arguments for the environment (new tasks only)",
    "tuned_settings": "a new task's tuned settings, applied before the variant like a built-in task's",
    "variants": "the variants run on this task (default: the suite's variants)",
    "seeds": "this task's number of seeds (default: the suite's seeds)",
    "min_passing_seeds": "this task's pass rule: seeds that must reach the threshold (default: the suite's)",
    "episode_info": "a new task's info keys recorded per training episode into episodes.csv (new tasks only)",
    "budget": "this task's budget: " + ", ".join(BUDGET_KEYS),
    "settings": "this task's setting overrides, applied after the variant and the suite's settings",
    "random_score": "score of a uniformly random policy, for normalisation",
    "reference_score": "a reference score (solved / expert), for normalisation",
    "thresholds": "pass thresholds on the final evaluation return, one per variant",
}
VARIANT_KEYS = {
    "description": "what the variant is",
    "base": "a variant whose settings this one starts from (default: the engine defaults)",
    "settings": "the settings that make up the variant",
}


@dataclass(frozen=True)
class TaskEntry:
    """One task of a suite with what to run on it and how to judge it."""

    name: str
    variants: tuple[str, ...]
    layers: tuple[dict[str, Any], ...]   # override layers after the variant: suite-wide, then this task's
    source: str                          # the file that defines the entry, for error messages
    random_score: float | None = None
    reference_score: float | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    seeds: int | None = None             # this task's own seed count (None: the suite's)
    min_passing_seeds: int | None = None  # this task's own pass rule (None: the suite's)
    # variant -> its tuned settings (qbench.tuning.Tuned), from the suite's ``tuned`` folder: a layer after
    # ``layers``, and a note (config.json's tuned_from) on every job
    tuned: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    seeds: int
    min_passing_seeds: int | None
    entries: tuple[TaskEntry, ...]
    custom_variants: dict[str, Variant]
    custom_tasks: dict[str, Task]

    def entry(self, task: str) -> TaskEntry:
        return next(e for e in self.entries if e.name == task)

    def rule(self, task: str) -> tuple[int | None, int]:
        """(k, n): the task passes a variant when k of its n seeds reach the threshold (k None: no rule)."""
        entry = self.entry(task)
        return (entry.min_passing_seeds or self.min_passing_seeds, entry.seeds or self.seeds)


# --- small checks, each raising a one-line ConfigError that names the file and the key path

def _fail(source: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {message}" if key else f"{source}: {message}")


def _check_keys(source: str, prefix: str, table: dict[str, Any], valid: dict[str, str]) -> None:
    for key in table:
        if key not in valid:
            path = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"{source}: unknown key '{path}'; valid keys: {choices_line(valid)}")


def _table(source: str, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, key, f"must be a table, got {value!r}")
    return value


def _string(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(source, key, f"must be a non-empty string, got {value!r}")
    return value


def _number(source: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(source, key, f"must be a finite number, got {value!r}")
    return float(value)


def _positive_int(source: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _fail(source, key, f"must be a positive integer, got {value!r}")
    return value


def _seed_count(source: str, key: str, value: Any) -> int:
    count = _positive_int(source, key, value)
    if count > MAX_SEEDS:
        raise _fail(source, key, f"must be at most {MAX_SEEDS:,} seeds, got {count:,}")
    return count


def _names(source: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _fail(source, key, f"must be a non-empty list of names, got {value!r}")
    if len(set(value)) != len(value):
        raise _fail(source, key, "lists a name twice")
    return tuple(value)


def _settings(source: str, key: str, value: Any, *, allow_budget: bool = False) -> dict[str, Any]:
    out = {}
    for name, raw in _table(source, key, value).items():
        if name in BUDGET_KEYS and not allow_budget:
            raise _fail(source, f"{key}.{name}", f"'{name}' belongs in the budget table, not in settings")
        try:
            out[name] = coerce_setting(name, raw)
        except ConfigError as exc:
            raise _fail(source, f"{key}.{name}", str(exc)) from None
    return out


def _budget(source: str, key: str, value: Any) -> dict[str, Any]:
    table = _table(source, key, value)
    _check_keys(source, key, table, dict.fromkeys(BUDGET_KEYS, ""))
    return _settings(source, key, table, allow_budget=True)


# --- the file

def find_suite(name_or_path: str) -> Path:
    """A path to a .toml file, or the name of a suite in ./suites/ (the user's, first) or among the shipped ones."""
    candidate = Path(name_or_path)
    names = list_suites()
    valid = f"valid suites: {choices_line(names)}; or a path to a suite .toml file"
    if candidate.suffix == ".toml":
        if candidate.is_dir():
            raise ConfigError(f"suite file '{name_or_path}' is a folder, not a .toml file")
        if not candidate.is_file():
            raise ConfigError(f"suite file '{name_or_path}' does not exist")
        return candidate
    if "/" not in name_or_path and name_or_path not in ("", ".", ".."):
        for folder in suite_folders():
            if (folder / f"{name_or_path}.toml").is_file():
                return folder / f"{name_or_path}.toml"
    if candidate.is_dir():
        raise ConfigError(f"'{name_or_path}' is a folder, not a suite; {valid}")
    if candidate.exists():
        raise ConfigError(f"'{name_or_path}' is not a suite file (a suite is a .toml file); {valid}")
    if candidate.suffix or "/" in name_or_path:
        raise ConfigError(f"'{name_or_path}' is neither a suite name nor a .toml file; {valid}")
    raise unknown("suite", name_or_path, names)


def list_suites() -> list[str]:
    """The names of the user's suites (./suites/) and the shipped ones."""
    names: set[str] = set()
    for folder in suite_folders():
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.toml"))
    return sorted(names)


def _display(path: Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_toml(path: Path) -> dict[str, Any]:
    source = _display(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:   # TOML is UTF-8; tomllib lets the decoder's error through
        raise ConfigError(f"{source}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                          "a suite file is TOML, which is UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None


def load_suite(name_or_path: str | Path) -> Suite:
    """Read and validate a suite file (and the suites it includes). Raises ConfigError naming file and key."""
    path = find_suite(str(name_or_path)) if not isinstance(name_or_path, Path) else name_or_path
    if not path.is_file():
        raise ConfigError(f"suite file '{path}' does not exist")
    return _load(path, chain=())


def _load(path: Path, chain: tuple[Path, ...]) -> Suite:
    source = _display(path)
    if path.resolve() in chain:
        raise ConfigError(f"{source}: include: suites include each other in a cycle")
    doc = _read_toml(path)
    _check_keys(source, "", doc, TOP_KEYS)

    description = _string(source, "description", doc["description"]) if "description" in doc else ""
    if "seeds" not in doc:
        raise ConfigError(f"{source}: missing key 'seeds' (the number of seeds per variant and task)")
    seeds = _seed_count(source, "seeds", doc["seeds"])
    min_passing = doc.get("min_passing_seeds")
    if min_passing is not None:
        min_passing = _positive_int(source, "min_passing_seeds", min_passing)
        if min_passing > seeds:
            raise _fail(source, "min_passing_seeds", f"{min_passing} exceeds seeds ({seeds})")

    custom_variants = _custom_variants(source, _table(source, "custom_variants",
                                                      doc.get("custom_variants", {})))
    entries: list[TaskEntry] = []
    custom_tasks: dict[str, Task] = {}
    for included in _names(source, "include", doc["include"]) if "include" in doc else ():
        # Next to this file first, then the shipped suites: a user's suite may build on 'classic'.
        child_path = path.parent / f"{included}.toml"
        if not child_path.is_file():
            child_path = SUITES_DIR / f"{included}.toml"
        if not child_path.is_file():
            siblings = sorted({p.stem for folder in (path.parent, SUITES_DIR) for p in folder.glob("*.toml")}
                              - {path.stem})
            raise _fail(source, "include", str(unknown("suite", included, siblings)))
        child = _load(child_path, (*chain, path.resolve()))
        entries.extend(child.entries)
        for table, extra, what in ((custom_variants, child.custom_variants, "variant"),
                                   (custom_tasks, child.custom_tasks, "task")):
            for name, value in extra.items():
                if name in table and table[name] != value:
                    raise _fail(source, "include", f"{what} '{name}' is defined differently in two files")
                table[name] = value

    variant_names = {**VARIANTS, **custom_variants}
    default_variants = _names(source, "variants", doc["variants"]) if "variants" in doc else ()
    for v in default_variants:
        if v not in variant_names:
            raise _fail(source, "variants", str(unknown("variant", v, variant_names)))
    suite_layer = {**_budget(source, "budget", doc.get("budget", {})),
                   **_settings(source, "settings", doc.get("settings", {}))}

    tasks = _table(source, "tasks", doc.get("tasks", {}))
    for task_name, raw in tasks.items():
        entry, task = _task_entry(source, task_name, raw, default_variants, variant_names, suite_layer)
        if task is not None:
            custom_tasks[task_name] = task
        entries.append(entry)
    if not entries:
        raise _fail(source, "tasks", "the suite has no tasks; add a [tasks.<name>] table or an include")
    if "tuned" in doc:
        entries = _with_tuned(source, path, _string(source, "tuned", doc["tuned"]), entries)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise _fail(source, "tasks", f"task {', '.join(twice)} appears in more than one included suite")
    suite = Suite(path.stem, path, description, seeds, min_passing, tuple(entries), custom_variants, custom_tasks)
    for e in (e for e in entries if e.thresholds):
        k, n = suite.rule(e.name)
        if k is None:
            raise _fail(source, "min_passing_seeds", f"missing: the thresholds of {e.name} need a pass rule (seeds "
                        "that pass), here or in its task table")
        if k > n:
            where = "min_passing_seeds" if e.min_passing_seeds is None else f"tasks.{e.name}.min_passing_seeds"
            raise _fail(source, where, f"{k} exceeds the {n} seeds of {e.name}")
    return suite


def _with_tuned(source: str, path: Path, folder_text: str, entries: list[TaskEntry]) -> list[TaskEntry]:
    """Every entry with the tuned settings of each of its variants, from the folder qbench tune wrote (relative
    to the suite file). A (task, variant) without a tuned file, or variants of one task tuned with different
    budgets, seeds or objectives, are refused: the point of tuning is an equal budget for every variant."""
    from qbench.tuning import budget_text, read_tuned_file, tuned_path

    folder = Path(folder_text).expanduser()
    folder = folder if folder.is_absolute() else path.parent / folder
    if not folder.is_dir():
        raise _fail(source, "tuned", f"'{folder_text}' is not a folder (resolved to {folder}); give the tuned/ "
                    "folder that qbench tune wrote, relative to this suite file")
    out = []
    for entry in entries:
        missing = [v for v in entry.variants if not tuned_path(folder, entry.name, v).is_file()]
        if missing:
            raise _fail(source, "tuned", f"no tuned settings for {entry.name} {', '.join(missing)} in {folder} "
                        f"(expected {tuned_path(folder, entry.name, missing[0])}); tune every variant the suite "
                        "runs, with one budget")
        tuned = {v: read_tuned_file(tuned_path(folder, entry.name, v), entry.name, v, source)
                 for v in entry.variants}
        budgets = {v: (t.note["trials"], tuple(t.note["tuning_seeds"]), t.note["objective"], t.note["pruning"])
                   for v, t in tuned.items()}
        if len(set(budgets.values())) > 1:
            shown = "; ".join(f"{v}: {budget_text(tuned[v].note)}" for v in budgets)
            raise _fail(source, "tuned", f"the variants of {entry.name} were tuned with different budgets ({shown}); "
                        "an equal-budget comparison needs one")
        out.append(dataclasses.replace(entry, tuned=tuned))
    return out


def _custom_variants(source: str, table: dict[str, Any]) -> dict[str, Variant]:
    out: dict[str, Variant] = {}
    for name, raw in table.items():
        key = f"custom_variants.{name}"
        if name in VARIANTS:
            raise _fail(source, key, f"'{name}' is a built-in variant; give yours another name")
        raw = _table(source, key, raw)
        _check_keys(source, key, raw, VARIANT_KEYS)
        base: dict[str, Any] = {}
        if "base" in raw:
            base_name = _string(source, f"{key}.base", raw["base"])
            if base_name not in VARIANTS:
                raise _fail(source, f"{key}.base", str(unknown("variant", base_name, VARIANTS)))
            base = VARIANTS[base_name].settings
        own = _settings(source, f"{key}.settings", raw.get("settings", {}), allow_budget=True)
        settings = {**base, **own}
        description = _string(source, f"{key}.description", raw.get("description", f"defined in {source}"))
        out[name] = Variant(name, description, settings)
    return out


def _task_entry(source: str, name: str, raw: Any, default_variants: tuple[str, ...], variant_names: dict,
                suite_layer: dict[str, Any]) -> tuple[TaskEntry, Task | None]:
    key = f"tasks.{name}"
    raw = _table(source, key, raw)
    _check_keys(source, key, raw, TASK_KEYS)
    task = None
    if "env_id" in raw:
        if name in TASKS:
            raise _fail(source, f"{key}.env_id", f"'{name}' is a built-in task with tuned settings; drop "
                        "env_id to use it, or give your task another name")
        env_kwargs = _table(source, f"{key}.env_kwargs", raw.get("env_kwargs", {}))
        env_id = _string(source, f"{key}.env_id", raw["env_id"])
        if ":" not in env_id and env_id not in gym.registry:
            close = difflib.get_close_matches(env_id, list(gym.registry), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise _fail(source, f"{key}.env_id", f"'{env_id}' is not a registered Gymnasium id{hint}; give a "
                        "registered id or module:Class")
        task = Task(name, env_id,
                    raw.get("description", f"defined in {source}"),
                    _settings(source, f"{key}.tuned_settings", raw.get("tuned_settings", {}),
                              allow_budget=True),
                    dict(env_kwargs),
                    episode_info=(_names(source, f"{key}.episode_info", raw["episode_info"])
                                  if "episode_info" in raw else ()))
    else:
        for only_new in ("env_kwargs", "tuned_settings", "episode_info"):
            if only_new in raw:
                raise _fail(source, f"{key}.{only_new}", "only a new task (one with env_id) takes this key")
        try:
            get_task(name)
        except ConfigError as exc:
            raise _fail(source, key, str(exc)) from None
    if "description" in raw:
        _string(source, f"{key}.description", raw["description"])

    variants = _names(source, f"{key}.variants", raw["variants"]) if "variants" in raw else default_variants
    if not variants:
        raise _fail(source, key, "no variants: list them in this task's variants or in the suite's variants")
    for v in variants:
        if v not in variant_names:
            raise _fail(source, f"{key}.variants", str(unknown("variant", v, variant_names)))

    task_layer = {**_budget(source, f"{key}.budget", raw.get("budget", {})),
                  **_settings(source, f"{key}.settings", raw.get("settings", {}))}
    scores = {k: _number(source, f"{key}.{k}", raw[k])
              for k in ("random_score", "reference_score") if k in raw}
    if len(scores) == 2 and scores["random_score"] == scores["reference_score"]:
        raise _fail(source, f"{key}.reference_score", "equals random_score: normalising would divide by 0")
    thresholds = {}
    for v, value in _table(source, f"{key}.thresholds", raw.get("thresholds", {})).items():
        if v not in variants:
            raise _fail(source, f"{key}.thresholds.{v}", f"variant '{v}' is not run on this task; variants "
                        f"here: {', '.join(variants)}")
        thresholds[v] = _number(source, f"{key}.thresholds.{v}", value)
    own_seeds = _seed_count(source, f"{key}.seeds", raw["seeds"]) if "seeds" in raw else None
    own_passing = (_positive_int(source, f"{key}.min_passing_seeds", raw["min_passing_seeds"])
                   if "min_passing_seeds" in raw else None)
    entry = TaskEntry(name, variants, (suite_layer, task_layer), source, scores.get("random_score"),
                      scores.get("reference_score"), thresholds, own_seeds, own_passing)
    return entry, task
