"""Tuning files and tuned-settings files (issue 29): what ``qbench tune`` reads and writes, validated as data.

A tuning file (TOML, read with ``tomllib``, never evaluated) names a suite (or tasks and variants), a search space
over the settings of ``qbench list settings``, a budget of ``trials`` per (variant, task) that is the same for
every variant, tuning seeds disjoint from the reporting seeds, an objective, a sampler seed and a pruning rule.
``load_tune_file`` checks all of it, and builds every (variant, task)'s job at the corners of the space, before
anything runs; every mistake is a one-line ``ConfigError``.

A tuned-settings file (``<results>/tune/<name>/tuned/<task>/<variant>.toml``) holds the best trial's settings and
what produced them; a suite takes a folder of them with ``tuned = "<folder>"`` (qbench.suites) and
``read_tuned_file`` reads each one back.

The objective is a pure function of evaluation rows (``objective_value``). This module does not import Optuna
(qbench.runner.tune does) nor torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbench.config import MAX_SEED, SETTINGS, ConfigError, choices_line, coerce_setting, unknown

OBJECTIVES = {
    "final_return": "mean over the tuning seeds of the final greedy evaluation's return",
    "auc": "mean over the tuning seeds of the mean evaluation return along the learning curve (every evaluation "
           "row, equally weighted)",
}
PRUNINGS = {
    "none": "every trial trains to the end",
    "median": "Optuna's MedianPruner: a trial stops when its mean-over-seeds evaluation return falls below the "
              "median of earlier trials at the same env step (after startup_trials trials)",
    "successive_halving": "Optuna's SuccessiveHalvingPruner (asynchronous successive halving, steps = env steps)",
}
# Settings whose values fix the budget and the evaluation protocol: the same for every trial, never searched.
UNSEARCHABLE = ("total_env_steps", "eval_interval_env_steps", "eval_episodes", "device", "torch_threads")

TUNE_KEYS = {
    "description": "what the tuning is for",
    "suite": "the suite to tune (a name, or a path to a .toml file, found as qbench run finds suites)",
    "tasks": "the tasks to tune (with suite: a subset of its tasks; without: required)",
    "variants": "the variants to tune (with suite: a subset of its variants; without: required)",
    "reporting_seeds": "without suite: the seeds the results will be reported on (a list, or '0-4')",
    "trials": "the budget: trials per (variant, task), the same for every variant",
    "tuning_seeds": "the seeds each trial trains (a list, or '100-102'); disjoint from the reporting seeds",
    "objective": "what a trial maximises: " + ", ".join(OBJECTIVES),
    "sampler_seed": "seed of the TPE sampler (default 0)",
    "startup_trials": "random trials before TPE models the results, and trials before the median pruner prunes "
                      "(default: trials // 3, at least 1, at most 10)",
    "pruning": "pruning on intermediate evaluations: " + ", ".join(PRUNINGS) + " (default none)",
    "space": "the search space: [space] with one entry per setting",
}
RANGE_KEYS = ("low", "high", "log")

TUNED_DIR = "tuned"
TUNED_FILE_KEYS = ("task", "variant", "settings", "trials", "tuning_seeds", "objective")


# --- the search space

@dataclass(frozen=True)
class Dimension:
    """One searched setting: a float or int range (``log``: sampled uniformly in log space) or a list of choices."""

    name: str
    kind: str                          # "float", "int" or "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def to_data(self) -> Any:
        """The entry as a tuning file writes it."""
        if self.kind == "choice":
            return list(self.choices)
        return {"low": self.low, "high": self.high, **({"log": True} if self.log else {})}

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(_show(c) for c in self.choices)
        return f"{self.kind} {_show(self.low)} .. {_show(self.high)}" + (" (log)" if self.log else "")


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, str)) else f"{value:g}" if isinstance(value, float) \
        else str(value).lower() if isinstance(value, bool) else str(value)


def parse_space(source: str, table: Any) -> tuple[Dimension, ...]:
    """The [space] table -> its dimensions, each checked against the setting's type, choices and bounds."""
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{source}: space: must be a table with one entry per searched setting, e.g. "
                          "lr = { low = 1e-4, high = 1e-2, log = true }")
    return tuple(_dimension(source, name, raw) for name, raw in table.items())


def _dimension(source: str, name: str, raw: Any) -> Dimension:
    key = f"space.{name}"
    if name not in SETTINGS:
        raise ConfigError(f"{source}: {key}: {unknown('setting', name, SETTINGS)}")
    if name in UNSEARCHABLE:
        raise ConfigError(f"{source}: {key}: '{name}' is part of the budget and protocol, the same for every trial; "
                          "it cannot be searched")
    kind = SETTINGS[name].type

    def check(value: Any, what: str) -> Any:
        try:
            return coerce_setting(name, value)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {key}: {what}: {exc}") from None

    if isinstance(raw, dict) and set(raw) == {"choices"}:
        raw = raw["choices"]
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{source}: {key}: the list of choices is empty")
        choices = tuple(check(v, f"choice {_show(v)}") for v in raw)
        if len({json.dumps(c) for c in choices}) != len(choices):
            raise ConfigError(f"{source}: {key}: a choice appears twice")
        return Dimension(name, "choice", choices=choices)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {key}: must be a range {{ low = .., high = .., log = true }} or a list of "
                          f"choices, got {raw!r}")
    for k in raw:
        if k not in RANGE_KEYS:
            raise ConfigError(f"{source}: unknown key '{key}.{k}'; valid keys: {', '.join(RANGE_KEYS)} (or a list "
                              "of choices)")
    if kind not in ("int", "float"):
        raise ConfigError(f"{source}: {key}: '{name}' is a {kind} setting; a range needs a number setting (give a "
                          "list of choices)")
    for k in ("low", "high"):
        if k not in raw:
            raise ConfigError(f"{source}: {key}: the range needs '{k}'")
    if kind == "int" and not all(isinstance(raw[k], int) and not isinstance(raw[k], bool) for k in ("low", "high")):
        raise ConfigError(f"{source}: {key}: '{name}' is an int setting; low and high must be integers, got "
                          f"{raw['low']!r} and {raw['high']!r}")
    low, high = check(raw["low"], "low"), check(raw["high"], "high")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{source}: {key}.log: must be true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"{source}: {key}: low ({_show(low)}) must be below high ({_show(high)})")
    if log and low <= 0:
        raise ConfigError(f"{source}: {key}: a log range needs low > 0, got {_show(low)}")
    return Dimension(name, kind, low=low, high=high, log=log)


def corner_settings(space: tuple[Dimension, ...]) -> list[dict[str, Any]]:
    """The space's corners that the plan builds jobs at: every setting at its low end (first choice), then at its
    high end (last choice); each choice once more beside the first setting's choices, so that a choice that no
    variant takes is found before anything runs."""
    low = {d.name: d.low if d.kind != "choice" else d.choices[0] for d in space}
    high = {d.name: d.high if d.kind != "choice" else d.choices[-1] for d in space}
    corners = [low, high]
    for d in space:
        if d.kind == "choice":
            corners += [{**low, d.name: c} for c in d.choices[1:-1]]
    return corners


# --- the objective

def objective_value(kind: str, rows_by_seed: dict[int, list[dict[str, Any]]]) -> float:
    """The objective of one trial from its evaluation rows, per seed (dicts with env_steps and return_mean):
    final_return, the mean over seeds of the last row's return; auc, the mean over seeds of the mean return over
    the rows (the area under the learning curve over its length, the evaluations being equally spaced)."""
    if kind not in OBJECTIVES:
        raise unknown("objective", kind, OBJECTIVES)
    if not rows_by_seed or any(not rows for rows in rows_by_seed.values()):
        raise ValueError("every tuning seed needs at least one evaluation row")
    per_seed = []
    for rows in rows_by_seed.values():
        ordered = sorted(rows, key=lambda r: r["env_steps"])
        returns = [float(r["return_mean"]) for r in ordered]
        per_seed.append(returns[-1] if kind == "final_return" else sum(returns) / len(returns))
    return sum(per_seed) / len(per_seed)


# --- seeds

def parse_seeds(source: str, key: str, value: Any) -> tuple[int, ...]:
    """A list of seeds, or a text '100-102' / '0,2,5'; each seed once, within 0..MAX_SEED."""
    from qbench.runner.plan import parse_seed_list

    if isinstance(value, str):
        try:
            seeds = parse_seed_list(value)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {key}: {str(exc).replace('--seeds', 'seeds')}") from None
    elif isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        seeds = list(value)
    else:
        raise ConfigError(f"{source}: {key}: must be a list of seeds or a text like '100-102', got {value!r}")
    if any(not 0 <= s <= MAX_SEED for s in seeds):
        raise ConfigError(f"{source}: {key}: seeds must lie in 0..{MAX_SEED}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{source}: {key}: names a seed twice")
    return tuple(seeds)


def seeds_text(seeds: Any) -> str:
    """Seeds as short text: 100-102, or 0,2,5."""
    seeds = sorted(int(s) for s in seeds)
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


# --- the tuning file

@dataclass(frozen=True)
class TuneSpec:
    """A validated tuning file."""

    path: Path
    name: str                               # the folder under <results>/tune/: the suite's name, else the file's
    suite: Any                              # qbench.suites.Suite (the tuned tasks' settings and variants)
    pairs: tuple[tuple[str, str], ...]      # (task, variant), in the suite's order
    space: tuple[Dimension, ...]
    trials: int
    tuning_seeds: tuple[int, ...]
    objective: str
    sampler_seed: int
    startup_trials: int
    pruning: str
    reporting_seeds: dict[str, tuple[int, ...]]   # task -> the seeds its results are reported on
    description: str = ""

    def fingerprint(self) -> dict[str, Any]:
        """Everything a study's trials depend on but the budget: a resumed study must have been started with it."""
        return {"space": {d.name: d.to_data() for d in self.space}, "tuning_seeds": list(self.tuning_seeds),
                "objective": self.objective, "sampler_seed": self.sampler_seed,
                "startup_trials": self.startup_trials, "pruning": self.pruning}


def _read(path: Path) -> dict[str, Any]:
    from qbench.suites import _display

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{_display(path)}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{_display(path)}: not UTF-8 text; a tuning file is TOML, which is UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{_display(path)}: cannot read: {exc.strerror}") from None


def _int(source: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{source}: {key}: must be an integer >= {minimum}, got {value!r}")
    return value


def _choice(source: str, key: str, value: Any, valid: dict[str, str]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ConfigError(f"{source}: {key}: {value!r} is not one of {choices_line(valid)}")
    return value


def load_tune_file(path: str | Path) -> TuneSpec:
    """Read and validate a tuning file, its suite and every (variant, task)'s jobs at the corners of its space.
    Raises a one-line ConfigError; writes nothing."""
    from qbench.suites import Suite, TaskEntry, _display, _names, load_suite

    path = Path(path)
    if path.suffix != ".toml":
        raise ConfigError(f"tuning file '{path}' must be a .toml file")
    if not path.is_file():
        raise ConfigError(f"tuning file '{path}' does not exist" if not path.exists()
                          else f"tuning file '{path}' is not a file")
    source = _display(path)
    doc = _read(path)
    for key in doc:
        if key not in TUNE_KEYS:
            raise ConfigError(f"{source}: unknown key '{key}'; valid keys: {choices_line(TUNE_KEYS)}")
    for key in ("trials", "tuning_seeds", "objective", "space"):
        if key not in doc:
            raise ConfigError(f"{source}: missing key '{key}' ({TUNE_KEYS[key]})")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{source}: description: must be a string")
    trials = _int(source, "trials", doc["trials"], 1)
    tuning_seeds = parse_seeds(source, "tuning_seeds", doc["tuning_seeds"])
    objective = _choice(source, "objective", doc["objective"], OBJECTIVES)
    pruning = _choice(source, "pruning", doc.get("pruning", "none"), PRUNINGS)
    sampler_seed = _int(source, "sampler_seed", doc.get("sampler_seed", 0), 0)
    startup = _int(source, "startup_trials", doc.get("startup_trials", min(10, max(1, trials // 3))), 0)
    space = parse_space(source, doc["space"])
    tasks = _names(source, "tasks", doc["tasks"]) if "tasks" in doc else None
    variants = _names(source, "variants", doc["variants"]) if "variants" in doc else None

    if "suite" in doc:
        if "reporting_seeds" in doc:
            raise ConfigError(f"{source}: reporting_seeds: the suite's seeds are the reporting seeds; drop this key")
        suite_arg = doc["suite"]
        if not isinstance(suite_arg, str) or not suite_arg:
            raise ConfigError(f"{source}: suite: must be a suite name or a path to a .toml file, got {suite_arg!r}")
        try:
            suite = load_suite(suite_arg)
        except ConfigError as exc:
            raise ConfigError(f"{source}: suite: {exc}") from None
        if any(e.tuned for e in suite.entries):
            raise ConfigError(f"{source}: suite: suite '{suite.name}' already runs tuned settings (its 'tuned' "
                              "key); tune the suite without them")
        name = suite.name
        reporting = {e.name: tuple(range(e.seeds or suite.seeds)) for e in suite.entries}
    else:
        for key in ("tasks", "variants", "reporting_seeds"):
            if key not in doc:
                raise ConfigError(f"{source}: missing key '{key}': without a suite, the tuning file names the "
                                  "tasks, the variants and the reporting seeds")
        seeds = parse_seeds(source, "reporting_seeds", doc["reporting_seeds"])
        entries = tuple(TaskEntry(t, tuple(variants), ({}, {}), source) for t in tasks)
        suite = Suite(path.stem, path, description, len(seeds), None, entries, {}, {})
        name = path.stem
        reporting = {t: seeds for t in tasks}

    entries = list(suite.entries)
    if tasks is not None and "suite" in doc:
        present = [e.name for e in entries]
        for t in tasks:
            if t not in present:
                raise ConfigError(f"{source}: tasks: {unknown('task', t, present)} (the tasks of suite "
                                  f"'{suite.name}')")
        entries = [e for e in entries if e.name in tasks]
    if variants is not None and "suite" in doc:
        present = {v for e in entries for v in e.variants}
        for v in variants:
            if v not in present:
                raise ConfigError(f"{source}: variants: {unknown('variant', v, present)} (the variants run on the "
                                  "tuned tasks)")
    pairs = tuple((e.name, v) for e in entries for v in e.variants if variants is None or v in variants)
    if not pairs:
        raise ConfigError(f"{source}: no (task, variant) pair to tune")
    reporting = {e.name: reporting[e.name] for e in entries}

    for task, seeds in reporting.items():
        overlap = sorted(set(tuning_seeds) & set(seeds))
        if overlap:
            where = f"suite '{suite.name}'" if "suite" in doc else "reporting_seeds"
            raise ConfigError(f"{source}: tuning_seeds {seeds_text(tuning_seeds)} overlap the reporting seeds "
                              f"{seeds_text(seeds)} of {task} ({where}) in seed {', '.join(map(str, overlap))}; "
                              "tune on seeds the results are not reported on")
    spec = TuneSpec(path, name, suite, pairs, space, trials, tuning_seeds, objective, sampler_seed, startup,
                    pruning, reporting, description)
    for task, variant in pairs:
        for corner in corner_settings(space):
            trial_jobs(spec, task, variant, corner, where=source)
    return spec


def trial_jobs(spec: TuneSpec, task: str, variant: str, settings: dict[str, Any], where: str = ""):
    """The jobs of one trial: the tuning seeds of (variant, task) with the suite's layers and then the trial's
    settings (the layer a suite with ``tuned`` puts in the same place). ConfigError names the pair."""
    from qbench.jobs import build_job
    from qbench.runner.plan import check_replay_allocates

    entry = spec.suite.entry(task)
    try:
        first = build_job(variant, task, spec.tuning_seeds[0], *entry.layers, settings,
                          extra_variants=spec.suite.custom_variants, extra_tasks=spec.suite.custom_tasks)
        check_replay_allocates(first, len(spec.tuning_seeds))
    except ConfigError as exc:
        shown = ", ".join(f"{k} = {_show(v)}" for k, v in settings.items())
        raise ConfigError(f"{where or spec.path}: {task} {variant} with {shown}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. an environment that cannot be made: a user mistake
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"{where or spec.path}: {task} {variant}: cannot build the environment: "
                          f"{type(exc).__name__}: {first_line}") from None
    return [dataclasses.replace(first, seed=s) for s in spec.tuning_seeds]


# --- tuned-settings files

def component(name: str) -> str:
    """A task or variant name as one safe path component (as run directories name them)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def tuned_path(folder: Path, task: str, variant: str) -> Path:
    return Path(folder) / component(task) / f"{component(variant)}.toml"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """A value as TOML text (strings, booleans, numbers, lists and tables of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def tuned_text(record: dict[str, Any], tables: dict[str, dict[str, Any]], header: str) -> str:
    """A tuned-settings file: comment lines, the top-level keys, then one [table] per entry of ``tables``."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"{_toml_key(k)} = {toml_value(v)}" for k, v in record.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]"] + [f"{_toml_key(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Tuned:
    """A (task, variant)'s tuned settings, and the note its jobs carry (config.json's tuned_from)."""

    settings: dict[str, Any]
    note: dict[str, Any]


def read_tuned_file(path: Path, task: str, variant: str, source: str) -> Tuned:
    """A tuned-settings file written by qbench tune, for (task, variant): settings checked, note kept."""
    where = f"{source}: tuned: {path}"
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not a TOML tuned-settings file ({type(exc).__name__})") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror}") from None
    for key in TUNED_FILE_KEYS:
        if key not in doc:
            raise ConfigError(f"{where}: missing key '{key}'; a tuned-settings file is written by qbench tune")
    if doc["task"] != task or doc["variant"] != variant:
        raise ConfigError(f"{where}: holds the settings of {doc['task']} {doc['variant']}, not of {task} {variant}")
    if not isinstance(doc["settings"], dict):
        raise ConfigError(f"{where}: settings: must be a table")
    settings = {}
    for key, value in doc["settings"].items():
        try:
            settings[key] = coerce_setting(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: settings.{key}: {exc}") from None
    trials = _int(where, "trials", doc["trials"], 1)
    seeds = parse_seeds(where, "tuning_seeds", doc["tuning_seeds"])
    objective = _choice(where, "objective", doc["objective"], OBJECTIVES)
    study = doc.get("study", {}) if isinstance(doc.get("study"), dict) else {}
    note = {"trials": trials, "tuning_seeds": list(seeds), "objective": objective,
            "pruning": str(doc.get("pruning", "none")), "settings": sorted(settings),
            "best_value": doc.get("best_value"), "best_trial": doc.get("best_trial"),
            "complete": study.get("complete"), "pruned": study.get("pruned"), "failed": study.get("failed")}
    return Tuned(settings, note)


def budget_text(note: dict[str, Any] | None) -> str:
    """A tuned_from note as the report's ``tuned`` column says it; 'no' without one."""
    if not isinstance(note, dict):
        return "no"
    try:
        pruned = f", {note['pruning']} pruning" if note.get("pruning", "none") != "none" else ""
        return (f"{int(note['trials'])} trials on seeds {seeds_text(note['tuning_seeds'])} "
                f"({note['objective']}{pruned})")
    except (KeyError, TypeError, ValueError):
        return "yes (budget unreadable)"
