"""Results folders read back: one row per run directory (load_runs), per evaluation (load_results) and per
training episode (load_episodes), whatever state each run is in; pandas only, never torch. Writing is
qbench.store's."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbench.config import MAX_SEED, Config, ConfigError, frames_per_env_step
from qbench.store import (
    CONFIG,
    EPISODES,
    ERROR,
    EVALUATIONS,
    LOCK,
    METADATA,
    RUNNER,
    SUMMARY,
)
from qbench.tuning import budget_text

RESULT_COLUMNS = ("suite", "task", "variant", "seed", "env_steps", "return_mean", "return_std", "return_min",
                  "return_max", "n_episodes", "grad_steps", "wall_s", "complete", "failed", "attempts", "env_id",
                  "job_hash", "run_dir", "status", "code_version")
RUN_COLUMNS = ("suite", "task", "variant", "seed", "env_id", "status", "evaluations", "env_steps", "last_return",
               "attempts", "code_version", "attempt_code_versions", "job_hash", "problems", "run_dir",
               "divergence_warned", "peak_value_scales", "divergence_warn_factor", "tuned")
# The divergence watch's record of a run (summary.json, or error.json of a run it stopped), as load_runs and
# load_results give it: flagged (nullable boolean), peak |Q| in value scales, and the warning level it ran with.
WATCH_COLUMNS = ("divergence_warned", "peak_value_scales", "divergence_warn_factor")
WATCH = "divergence_watch"   # the key of that record in summary.json and error.json
# Any one of these files makes a directory a run directory (a job that died before writing its config still has
# its lock and runner.json).
RUN_FILES = (CONFIG, EVALUATIONS, SUMMARY, ERROR, RUNNER, LOCK)
RUN_STATES = ("complete", "diverged", "crashed", "env", "unfinished", "damaged")
# The states in which a run stopped on an error of its own (the variant diverged, or its code broke): load_results'
# ``failed``. An env fault (status env: the environment misbehaved) is not the run's failure.
FAILED_STATES = ("diverged", "crashed")
UNKNOWN = "?"   # task or variant of a run directory whose config.json cannot be read and whose path says nothing


@dataclass(frozen=True)
class CsvRows:
    """What ``read_csv_rows`` made of a file: its intact rows, a note on a dropped half-written last line, and
    why the whole file cannot be used (then ``rows`` is empty)."""

    rows: Any            # pandas DataFrame
    dropped: str | None = None
    error: str | None = None


# What a column of a CSV file must hold, by name (``read_csv_rows``): any number; a finite number; or env steps, a
# count the engine writes as an integer (digits only) that is non-negative and rises strictly from row to row.
NUMBER, FINITE, STEPS = "number", "finite number", "env steps"
# evaluations.csv, by name: what every reader of a run needs. The engine writes env_steps as an int and every return
# as a float (repr: with a '.' or an exponent), so a header whose names are swapped with the values left in their
# old order puts a float under env_steps and is caught whichever columns it swaps with env_steps.
EVALUATION_COLUMNS = {"env_steps": STEPS, "return_mean": FINITE}
# episodes.csv, by name: env_steps rise strictly (one env step ends at most one episode of a seed).
EPISODE_FILE_COLUMNS = {"episode": NUMBER, "env_steps": STEPS, "return": FINITE, "length": NUMBER}
RETURN_BOUNDS = ("return_min", "return_max")   # checked where the header has them: min <= mean <= max
_DIGITS = re.compile(r"[0-9]+")
_MAX_INT64 = 2 ** 63 - 1   # env steps are read as int64


def read_csv_rows(path: Path, required: tuple[str, ...] | dict[str, str] = EVALUATION_COLUMNS) -> CsvRows:
    """The rows of a CSV file appended a line at a time (``append_csv_row``), read defensively, its columns by
    name. ``required``: the columns it must have, each with what it must hold (``NUMBER``, ``FINITE`` or
    ``STEPS``; a tuple of names: each a ``NUMBER``); default: evaluations.csv's (``EVALUATION_COLUMNS``).

    A last line without its newline, or with fewer or more fields than the header, is what a writer killed
    mid-line leaves: it is dropped and said in ``dropped``. Anything else that is wrong (not UTF-8 text, NUL
    bytes, a header without the ``required`` columns or naming one twice, a short or long line before the last, a
    required value that is not what its column holds) makes the whole file unusable: ``error`` says why, naming
    the file, the line and the column, and no row is returned. A missing or empty file has no rows and no
    problem."""
    import pandas as pd

    kinds = dict.fromkeys(required, NUMBER) if isinstance(required, tuple) else dict(required)
    path = Path(path)
    name = path.name
    empty = pd.DataFrame()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return CsvRows(empty)
    except OSError as exc:
        return CsvRows(empty, error=f"{name} cannot be read ({exc.strerror or exc})")
    if not data:
        return CsvRows(empty)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return CsvRows(empty, error=f"{name} is not UTF-8 text (byte {exc.start})")
    if "\x00" in text:
        return CsvRows(empty, error=f"{name} holds NUL bytes (a torn write)")
    lines = text.split("\n")
    dropped = None
    if lines[-1] == "":
        lines.pop()
    else:
        lines.pop()
        dropped = f"the last line of {name} has no newline (a writer stopped mid-line): dropped"
    if not lines:
        return CsvRows(empty, dropped)
    try:
        parsed = list(csv.reader(lines, strict=True))
    except csv.Error as exc:
        return CsvRows(empty, error=f"{name} is not CSV ({exc})")
    header, body = parsed[0], parsed[1:]
    missing = [c for c in kinds if c not in header]
    if missing:
        return CsvRows(empty, error=f"{name} has no {' and '.join(missing)} column in its header line")
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        return CsvRows(empty, error=f"the header line of {name} names {', '.join(twice)} more than once")
    bad = [i for i, fields in enumerate(body) if len(fields) != len(header)]
    if bad == [len(body) - 1] and dropped is None:
        dropped = (f"the last line of {name} has {len(body[-1])} of {len(header)} fields (a writer stopped "
                   "mid-line): dropped")
        body.pop()
    elif bad:
        line = bad[0] + 2
        return CsvRows(empty, error=f"line {line} of {name} has {len(body[bad[0]])} fields, its header "
                                    f"{len(header)}")
    error = _steps_problem(header, body, [c for c, kind in kinds.items() if kind == STEPS], name)
    if error:
        return CsvRows(empty, error=error)
    rows = pd.read_csv(io.StringIO("\n".join(lines[:len(body) + 1]) + "\n"))
    for column, kind in kinds.items():
        values = pd.to_numeric(rows[column], errors="coerce")
        wrong = values.isna() | (values.abs() == math.inf if kind == FINITE else False)
        if wrong.any():
            i = int(wrong.to_numpy().argmax())
            what = "is not a number" if pd.isna(values.iloc[i]) else f"{values.iloc[i]} is not a finite number"
            return CsvRows(empty, error=f"line {i + 2} of {name}: {column} {what}")
        rows[column] = values.astype("int64") if kind == STEPS else values
    return CsvRows(rows, dropped)


def _steps_problem(header: list[str], body: list[list[str]], columns: list[str], name: str) -> str | None:
    """Why a column of env steps in ``body`` (the fields of each line after the header) is not one (digits
    only, rising strictly), naming the first line that breaks it (counted from 1, the header's); None if none."""
    for column in columns:
        at, previous = header.index(column), -1
        for i, fields in enumerate(body):
            field, line = fields[at], i + 2
            if not _DIGITS.fullmatch(field) or int(field) > _MAX_INT64:
                return (f"line {line} of {name}: {column} {field!r} is not a whole number of env steps (a header "
                        "whose names do not match its columns?)")
            if int(field) <= previous:
                return (f"line {line} of {name}: {column} {int(field)} does not rise (line {line - 1} has "
                        f"{previous}): env steps rise strictly from one row to the next")
            previous = int(field)
    return None


def read_evaluations(path: Path) -> CsvRows:
    """evaluations.csv read by ``read_csv_rows`` with its columns' types (``EVALUATION_COLUMNS``), and where its
    header has ``return_min`` and ``return_max``, each row's return_mean between them (a header whose names were
    swapped with the values left in their old order breaks that)."""
    read = read_csv_rows(path, EVALUATION_COLUMNS)
    rows = read.rows
    if read.error or rows.empty or not set(RETURN_BOUNDS) <= set(rows.columns):
        return read
    import pandas as pd

    low, high = (pd.to_numeric(rows[c], errors="coerce").to_numpy(float) for c in RETURN_BOUNDS)
    mean = rows["return_mean"].to_numpy(float)
    # the mean of equal returns can differ from them in its last bits
    slack = 1e-9 * (abs(mean) + 1.0)
    outside = (low > mean + slack) | (mean - slack > high)   # a bound that is not a number checks nothing
    if outside.any():
        i = int(outside.argmax())
        return CsvRows(pd.DataFrame(), error=(
            f"line {i + 2} of {Path(path).name}: return_mean {float(mean[i])!r} is not between return_min "
            f"{float(low[i])!r} and return_max {float(high[i])!r} (a header whose names do not match its "
            "columns?)"))
    return read


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(the file's JSON value, None), or (None, why it cannot be read); a missing file is (None, None)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")), None
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).split("\n")[0]
        return None, f"{Path(path).name} cannot be read ({reason})"


def _read_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the file's JSON object, None), or (None, why it cannot be used: unreadable, or JSON that is not an
    object, such as ``[]``); a missing file is (None, None)."""
    record, error = _read_json(path)
    if error is None and record is not None and not isinstance(record, dict):
        return None, f"{Path(path).name} is not a JSON object (it holds a {type(record).__name__})"
    return record, error


def _summary_problems(summary: dict[str, Any], rows: Any) -> list[str]:
    """What in a summary.json makes its run unusable: a final return that is not a finite number, or a final return
    or env step count that is not its evaluations.csv's last row (the engine writes both from that row). Every
    summary qbench ever wrote holds final_return_mean; env_steps, which older ones lack, is checked where present."""
    problems = []
    if "final_return_mean" not in summary:
        problems.append(f"{SUMMARY} has no final_return_mean")
    else:
        final = _json_number(summary["final_return_mean"])
        last = float(rows["return_mean"].iloc[-1])
        if final is None or not math.isfinite(final):
            problems.append(f"{SUMMARY}: final_return_mean {summary['final_return_mean']!r} is not a finite number")
        elif not math.isclose(final, last, rel_tol=1e-9, abs_tol=1e-12):   # CSV text round trip: last bits
            problems.append(f"{SUMMARY}: final_return_mean {final!r} is not the return_mean of the last row of "
                            f"{EVALUATIONS} ({last!r})")
    if "env_steps" in summary:
        steps, last_steps = summary["env_steps"], int(rows["env_steps"].iloc[-1])
        if _json_number(steps) != last_steps:
            problems.append(f"{SUMMARY}: env_steps {steps!r} is not the env_steps of the last row of {EVALUATIONS} "
                            f"({last_steps})")
    return problems


def code_version(record: dict[str, Any]) -> str:
    """The code that wrote a record (runner.json, one of its attempts, or metadata.json): its git commit (with
    '-dirty' when the checkout had uncommitted changes, which this cannot tell apart), else 'qbench <version>',
    else '' when it says neither."""
    commit = record.get("git_commit")
    if isinstance(commit, str) and commit and commit != "unknown":
        return commit
    versions = record.get("versions")
    version = record.get("qbench_version") or (versions.get("qbench") if isinstance(versions, dict) else None)
    return f"qbench {version}" if isinstance(version, str) and version and version != "unknown" else ""


def _json_number(value: Any) -> float | None:
    """A JSON number as a float (NaN and infinities included); None for anything else (bools, strings, ...)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def divergence_record(record: Any, name: str) -> tuple[Any, float, str | None]:
    """(flagged, peak value scales, problem) from the ``divergence_watch`` of a summary.json or error.json
    (``record``, the file's JSON value; ``name``, the file, for the problem).

    flagged: True when the watch recorded a ``first_warned_env_step`` (|Q| passed the run's warning level), False
    when it recorded none, pandas.NA when unknown: no record (a run written before the watch recorded one, a
    crash, a file that cannot be read) or a damaged one. Peak: ``peak_value_scales``, NaN when unknown. A record
    that is not what the watch writes (not an object, a step that is not a non-negative integer, a peak that is
    not a non-negative number) gives unknown for the damaged part and a problem to say; it never makes the run
    damaged: its evaluations are whole."""
    import pandas as pd

    if not isinstance(record, dict) or WATCH not in record:
        return pd.NA, math.nan, None
    watch = record[WATCH]
    if not isinstance(watch, dict):
        return pd.NA, math.nan, (f"{name}: its {WATCH} is not a record ({type(watch).__name__}): whether the run "
                                 "passed the divergence warning level is unknown (counted as not flagged)")
    wrong = []
    step = watch.get("first_warned_env_step")
    if step is None:
        flagged = False
    elif isinstance(step, int) and not isinstance(step, bool) and step >= 0:
        flagged = True
    else:
        flagged = pd.NA
        wrong.append(f"first_warned_env_step {step!r} is not a non-negative integer or null")
    peak = _json_number(watch.get("peak_value_scales"))
    if peak is None or peak < 0:
        if "peak_value_scales" in watch:
            wrong.append(f"peak_value_scales {watch['peak_value_scales']!r} is not a non-negative number")
        peak = math.nan
    problem = None
    if wrong:
        problem = (f"{name}: {WATCH}: " + "; ".join(wrong)
                   + (": whether the run passed the divergence warning level is unknown (counted as not flagged)"
                      if flagged is pd.NA else ": its peak is unknown"))
    return flagged, peak, problem


def divergence_warn_factor(job: dict[str, Any] | None) -> float:
    """The warning level (value scales) a job's divergence watch ran with: config.json's
    ``config.divergence_warn_factor``; NaN when not recorded (a run written before the setting existed)."""
    config = job.get("config") if isinstance(job, dict) else None
    factor = _json_number(config.get("divergence_warn_factor")) if isinstance(config, dict) else None
    return math.nan if factor is None else factor


def _identity_from_path(run_dir: Path) -> dict[str, Any]:
    """task, variant and seed from results/<suite>/<task>/<variant>/seed<k>-<hash>, for a run without a config."""
    match = re.match(r"seed(\d+)-", run_dir.name)
    if match and len(run_dir.parts) >= 3 and int(match.group(1)) <= MAX_SEED:
        return {"task": run_dir.parent.parent.name, "variant": run_dir.parent.name, "seed": int(match.group(1))}
    return {"task": UNKNOWN, "variant": UNKNOWN, "seed": None}


def _read_run(run_dir: Path) -> tuple[dict[str, Any], Any]:
    """One run directory: its row of ``load_runs`` and its intact evaluation rows as read (None without a usable
    config, whose rows cannot be attributed to a job)."""
    from qbench.config import config_hash

    damage: list[str] = []      # problems that make the run unusable for statistics
    notes: list[str] = []       # problems worth saying that leave its state as it is
    job, error = _read_record(run_dir / CONFIG)
    if error is None and job is not None and not {"task", "variant", "seed"} <= set(job):
        error = f"{CONFIG} has no task, variant and seed"
    elif error is None and job is not None and not (
            isinstance(job["task"], str) and isinstance(job["variant"], str)
            and isinstance(job["seed"], int) and not isinstance(job["seed"], bool) and 0 <= job["seed"] <= MAX_SEED):
        error = f"{CONFIG}: task and variant must be names and seed an integer in 0..{MAX_SEED}"
    if error:
        damage.append(error)
        job = None
    runner, error = _read_record(run_dir / RUNNER)
    if error:
        notes.append(f"{error}: suite, attempts and code version unknown")
    runner = runner or {}
    metadata, error = _read_record(run_dir / METADATA)
    if error:
        notes.append(error)
    metadata = metadata or {}
    evaluations = read_evaluations(run_dir / EVALUATIONS)
    if evaluations.error:
        damage.append(evaluations.error)
    rows = evaluations.rows
    failure = ""
    complete = (run_dir / SUMMARY).exists()
    watch_record, watch_file = None, SUMMARY   # the file holding the run's divergence watch record
    if complete:
        watch_record, error = _read_record(run_dir / SUMMARY)
        if error:
            damage.append(error)
        if evaluations.dropped:
            damage.append(f"it has {SUMMARY}, but {evaluations.dropped}; a run whose {EVALUATIONS} lost a line is "
                          "never counted complete")
        elif rows.empty and not evaluations.error:
            damage.append(f"{SUMMARY} says complete, but there is no evaluation")
        elif watch_record is not None and not rows.empty:
            damage += _summary_problems(watch_record, rows)
    else:
        if evaluations.dropped:
            notes.append(evaluations.dropped)
        if (run_dir / ERROR).exists():
            record, error = _read_record(run_dir / ERROR)
            if error:
                damage.append(f"{error}: whether it diverged, crashed or met an env fault is unknown")
            else:
                kind = record.get("error")
                failure = kind if kind in ("diverged", "env") else "crashed"
                watch_record, watch_file = record, ERROR
    if (run_dir / EPISODES).exists():   # the per-episode rows of tasks that record info keys
        episodes = read_csv_rows(run_dir / EPISODES, EPISODE_FILE_COLUMNS)
        if episodes.error:
            damage.append(episodes.error)
        elif episodes.dropped:
            notes.append(episodes.dropped)
    warned, peak_value_scales, error = divergence_record(watch_record, watch_file)
    if error:
        notes.append(error)
    if job is None and not (run_dir / CONFIG).exists() and (complete or not rows.empty):
        damage.append(f"no {CONFIG} beside its results")
    status = "damaged" if damage else "complete" if complete else failure or "unfinished"

    identity = ({"task": job["task"], "variant": job["variant"], "seed": int(job["seed"])} if job is not None
                else _identity_from_path(run_dir))
    try:
        attempts = int(runner.get("attempts", 1))
    except (TypeError, ValueError):
        attempts = 1
    history = runner.get("attempt_history") if isinstance(runner.get("attempt_history"), list) else []
    versions = [code_version(a) for a in history if isinstance(a, dict)]
    info = {"suite": str(runner.get("suite", "")), **identity,
            "env_id": (job.get("env_id", job["task"]) if job is not None else ""), "status": status,
            "evaluations": len(rows), "env_steps": float(rows["env_steps"].iloc[-1]) if len(rows) else math.nan,
            "last_return": float(rows["return_mean"].iloc[-1]) if len(rows) else math.nan,
            "attempts": attempts, "code_version": code_version(runner) or code_version(metadata),
            "attempt_code_versions": ", ".join(dict.fromkeys(v for v in versions if v)),
            "job_hash": config_hash(job) if job is not None else "", "problems": "; ".join(damage + notes),
            "run_dir": str(run_dir), "frames_per_env_step": recorded_frames_per_env_step(job),
            "divergence_warned": warned, "peak_value_scales": peak_value_scales,
            "divergence_warn_factor": divergence_warn_factor(job),
            # whether qbench tune chose its settings, and with what budget (config.json's tuned_from)
            "tuned": budget_text(job.get("tuned_from")) if job is not None else ""}
    if job is None or rows.empty:
        return info, None
    rows = rows.sort_values("env_steps", kind="stable")
    info["env_steps"] = float(rows["env_steps"].iloc[-1])
    info["last_return"] = float(rows["return_mean"].iloc[-1])
    return info, rows


def recorded_frames_per_env_step(job: dict[str, Any] | None) -> float:
    """Emulator frames per env step of a run's config.json record, by config.frames_per_env_step's rule (NaN when
    the rule needs the record's frame_skip and it is not a number)."""
    env_id = str(job.get("env_id", "")) if isinstance(job, dict) else ""
    if frames_per_env_step(env_id, 2) == 1:   # the rule does not read frame_skip for this env
        return 1.0
    config = job.get("config") if isinstance(job.get("config"), dict) else {}
    try:
        return float(frames_per_env_step(env_id, float(config.get("frame_skip", Config().frame_skip))))
    except (TypeError, ValueError):
        return math.nan


def results_folder(path: str | Path) -> Path:
    """``path`` as a results folder to read; a ``ConfigError`` with the line ``qbench report`` prints when it does
    not exist or is a file (reading either would find no run, and say nothing of the mistyped path)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"'{path}' is a file, not a results folder; give the folder that holds the runs "
                          "(e.g. results/smoke)")
    if not path.is_dir():
        raise ConfigError(f"results folder '{path}' does not exist")
    return path


def run_directories(path: str | Path) -> list[Path]:
    """Every run directory under ``path`` (a results folder: ``results_folder``): each directory holding one of
    ``RUN_FILES``, sorted."""
    path = results_folder(path)
    found = set()
    for root, _dirs, files in os.walk(path):
        if any(name in RUN_FILES for name in files):
            found.add(Path(root))
    return sorted(found)


def load_runs_and_results(path: str | Path = "results"):
    """``(load_runs(path), load_results(path))`` from one pass over the files."""
    import pandas as pd

    infos, frames, owners = [], [], []
    for run_dir in run_directories(path):
        info, rows = _read_run(run_dir)
        infos.append(info)
        if rows is not None:
            frames.append(rows)
            owners.append(info)
    runs = pd.DataFrame(infos, columns=list(RUN_COLUMNS))
    runs["seed"] = runs["seed"].astype("Int64")
    runs["evaluations"] = runs["evaluations"].astype(int)
    runs["attempts"] = runs["attempts"].astype(int)
    runs["divergence_warned"] = runs["divergence_warned"].astype("boolean")
    runs[["peak_value_scales", "divergence_warn_factor"]] = runs[["peak_value_scales",
                                                                  "divergence_warn_factor"]].astype(float)
    if not frames:
        return runs, pd.DataFrame({c: pd.Series(dtype=object) for c in RESULT_COLUMNS})
    df = pd.concat(frames, ignore_index=True)
    # The columns of the run, repeated over its rows: one array per column (assigning them run by run costs more
    # than reading the files).
    counts = [len(f) for f in frames]
    per_run = {c: [o[c] for o in owners] for c in ("suite", "task", "variant", "seed", "env_id", "attempts",
                                                   "job_hash", "run_dir", "status", "code_version")}
    per_run["complete"] = [o["status"] == "complete" for o in owners]
    per_run["failed"] = [o["status"] in FAILED_STATES for o in owners]
    for column, values in per_run.items():
        df[column] = pd.Series(values).repeat(counts).to_numpy()
    df["frames"] = df["env_steps"] * pd.Series([o["frames_per_env_step"] for o in owners]).repeat(counts).to_numpy()
    for column in WATCH_COLUMNS:
        values = pd.Series([o[column] for o in owners],
                           dtype="boolean" if column == "divergence_warned" else float).repeat(counts)
        df[column] = values.reset_index(drop=True).array
    extra = [c for c in df.columns if c not in RESULT_COLUMNS]
    return runs, df[[*RESULT_COLUMNS, *extra]]


def load_runs(path: str | Path = "results"):
    """Every run directory under ``path`` as one pandas DataFrame, one row per run, whether or not it has any
    evaluation: a run that died before its first evaluation, or whose files are damaged, is a row here too.

    A run directory is any directory holding one of ``RUN_FILES`` (config.json, evaluations.csv, summary.json,
    error.json, runner.json, lock). Columns:

    - ``suite``, ``task``, ``variant``, ``seed``, ``env_id``: the job (task, variant and seed from the path
      results/<suite>/<task>/<variant>/seed<k>-<hash> when config.json cannot be read, else ``?`` and <NA>)
    - ``status``: ``complete`` (summary.json, and its files whole), ``diverged`` or ``crashed`` (error.json),
      ``env`` (error.json with ``"error": "env"``: the environment misbehaved, e.g. a NaN reward or an
      observation of the wrong shape; not an outcome of the variant, so never counted as its divergence or
      failure), ``unfinished`` (neither: running, killed, or died before writing anything else) or ``damaged``
      (a file it needs cannot be used: config.json, evaluations.csv, summary.json or error.json unreadable or,
      for the JSON files, not an object; an evaluations.csv whose columns are not what its header names, by
      ``read_evaluations``' rules: env_steps whole, non-negative and rising, returns finite numbers; a
      summary.json whose final return is not finite or not its evaluations' last; or summary.json beside an
      evaluations.csv that lost its last line, or beside no evaluation). A damaged run is never complete.
    - ``evaluations``: its intact evaluation rows; ``env_steps``, ``last_return``: the last of them (NaN if none)
    - ``attempts``: how many times a runner started the job
    - ``code_version``: the code of its latest attempt: runner.json's ``git_commit`` (else ``qbench_version``,
      as 'qbench X'), else metadata.json's ``git_commit`` (else its qbench version); '' if none is recorded
    - ``attempt_code_versions``: the distinct code versions of its attempts in runner.json's
      ``attempt_history``, comma-separated (more than one: its rows come from different code)
    - ``job_hash``: the hash of its config ('' when unreadable); ``problems``: what is wrong with its files,
      '; '-separated ('' for none); ``run_dir``: its path
    - ``divergence_warned``: the divergence watch flagged the run (its |Q| passed ``divergence_warn_factor``
      value scales; flagged runs run on and count like any other): True or False from summary.json's
      ``divergence_watch`` (error.json's for a run the watch stopped), a nullable boolean that is <NA> when
      unknown: a run written before the watch recorded itself, a crashed or unfinished run, or a record that is
      damaged (said in ``problems``, without making the run damaged). Count flagged runs with
      ``divergence_warned.fillna(False)``.
    - ``peak_value_scales``: the largest |Q| the watch saw, in value scales (NaN when unknown);
      ``divergence_warn_factor``: the warning level the run's config set (NaN when its config.json predates it)

    A ``path`` that does not exist, or is a file, raises ``qbench.config.ConfigError`` (``results_folder``).
    """
    return load_runs_and_results(path)[0]


def load_results(path: str | Path = "results"):
    """Every evaluation of every run under ``path`` as one tidy pandas DataFrame, one row per evaluation.

    A run is any directory holding ``config.json`` (written by ``qbench run`` or ``qbench train``). Columns:

    - ``suite``: the suite that ran the job (from runner.json; empty for ``qbench train`` runs)
    - ``task``, ``variant``, ``seed``, ``env_id``: the job
    - ``env_steps``: env steps of training at the evaluation (for ALE tasks agent steps, each ``frame_skip``
      emulator frames); ``frames``: emulator frames by then (env_steps x frame_skip for ALE tasks, env_steps
      for every other task)
    - ``return_mean``, ``return_std``, ``return_min``, ``return_max``: greedy returns over ``n_episodes`` episodes
    - ``grad_steps``: gradient steps taken by then; ``wall_s``: seconds of training so far, summed over the
      attempts of a resumed run (time between attempts is not counted)
    - ``complete``: the run has its summary.json and its files are whole (``status`` complete); ``failed``: it
      stopped on an error of its own, error.json and no summary (``status`` diverged or crashed; an env fault,
      ``status`` env, is not the run's failure)
    - ``attempts``: how many times a runner started the job (1 for a run that was never interrupted)
    - ``job_hash``: the hash of the resolved config that names the run directory; ``run_dir``: its path
    - ``status``: complete, diverged, crashed, env, unfinished or damaged (see ``load_runs``)
    - ``code_version``: the git commit (else qbench version) of the code that ran the run's latest attempt
    - after the columns above, ``frames``, the run's ``divergence_warned``, ``peak_value_scales`` and
      ``divergence_warn_factor`` (see ``load_runs``), and any other column its evaluations.csv holds

    Rows of incomplete runs are included (filter on ``complete``); normalised scores are computed at analysis
    time from the suite's random and reference scores, never stored. Only intact rows are here: a half-written
    last line is dropped, a damaged evaluations.csv or config.json gives no rows. Runs without any row (died
    before their first evaluation, or damaged) are not in this frame: ``load_runs`` has one row per run
    directory, with what is wrong with each. A ``path`` that does not exist, or is a file, raises
    ``qbench.config.ConfigError``.
    """
    return load_runs_and_results(path)[1]


EPISODE_COLUMNS = ("suite", "task", "variant", "seed", "status", "complete", "run_dir", "episode", "env_steps",
                   "return", "length")


def load_episodes(path: str | Path = "results"):
    """Every training episode recorded under ``path`` as one pandas DataFrame, one row per episode: the runs of
    tasks that name info keys to record (``Task.episode_info``; e.g. the maximisation-bias MDP's ``left``)
    write ``episodes.csv`` beside ``evaluations.csv``. Columns: the run's ``suite, task, variant, seed, status,
    complete, run_dir`` (as in ``load_runs``), then ``episode`` (1-based, in the order the run's episodes
    ended), ``env_steps`` (env steps of training when it ended), ``return`` (undiscounted, as the env gave it),
    ``length`` (steps), and one column per recorded info key (the last value the env gave it in the episode, at
    any step, its reset included; empty where the env never gave it in that episode). A half-written last line is dropped. A ``path`` that does not exist,
    or is a file, raises ``qbench.config.ConfigError``."""
    import pandas as pd

    frames = []
    for run_dir in run_directories(path):
        if not (run_dir / EPISODES).exists():
            continue
        info, _ = _read_run(run_dir)
        rows = read_csv_rows(run_dir / EPISODES, EPISODE_FILE_COLUMNS).rows
        if rows.empty or info["task"] == UNKNOWN:
            continue
        for column in ("suite", "task", "variant", "seed", "status", "run_dir"):
            rows[column] = info[column]
        rows["complete"] = info["status"] == "complete"
        frames.append(rows)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EPISODE_COLUMNS})
    df = pd.concat(frames, ignore_index=True)
    extra = [c for c in df.columns if c not in EPISODE_COLUMNS]
    return df[[*EPISODE_COLUMNS, *extra]]


