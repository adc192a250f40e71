"""Issue 27 acceptance: a sweep of bad inputs and damaged files, each classed by what the product did with it.

    nice -n 19 python benchmarks/bad_inputs_sweep.py [--out DIR] [--only CATEGORY ...] [--match TEXT] [--list]
        [--workers 2] [--cpu-limit 30] [--wall-limit 3600] [--memory-gib 3] [--template DIR] [--keep]

Categories: train (the `qbench train` command line), suite (`qbench run` and `qbench sanity` on bad suite files and
options), report (`qbench report` on damaged results folders), readers (`qbench.loading.load_runs`, `load_results`,
`load_episodes` on the same damage), envs (`module:Class` tasks whose env misbehaves: NaN or infinite rewards and
observations, wrong shapes and types, the old step and reset API, exceptions). Every case declares what a correct
product does:

    error           a non-zero exit with exactly one non-empty line of output (stderr and stdout together), no
                    traceback
    ok              a valid (if odd) input: exit 0, no traceback, no error.json
    env_fault       the seed stops with an error.json whose "error" is "env" (not "diverged", not "crashed"), the
                    command exits non-zero, no traceback
    named           `qbench report` exits 0 and names the damaged run's path (or the damaged file's) in its output
    reader_damaged  the reader returns, the damaged run's status is "damaged" (load_runs) and none of its rows
                    counts as undamaged (load_results, load_episodes)
    reader_status   the reader returns and the run has the status it should have (crashed, unfinished)
    reader_missing  the reader raises a clear error (FileNotFoundError, NotADirectoryError, ValueError) naming the path

and the result is classed (``classify``, a pure function of the expectation, exit code, output and error.json
records) as one of

    clean           what a correct product does
    traceback       a Python traceback (or a death by a signal other than the limits'), or a reader raising on a
                    damaged folder
    misattributed   an env fault recorded as the variant's (error.json "diverged" or "crashed")
    silent          exit 0 (or a reader's success) where an error was expected, or damage read as a whole run
    runaway         the CPU-time or wall-clock limit, or the memory limit (RLIMIT_AS), was hit
    other           none of the above, yet not what was expected: an error in several lines (a usage dump, warnings)
                    or none, a valid input refused, an env fault with no error.json

Every case runs in a fresh temporary directory (nothing in the repository is written) with this checkout's qbench
(`sys.executable -m qbench`, PYTHONPATH = the repository root and the folder of the misbehaving envs), at most
`--workers` (at most 2) at a time, at nice 19, under RLIMIT_AS (`--memory-gib`) and RLIMIT_CPU (`--cpu-limit` CPU
seconds per process; on a machine whose cores are busy a CPU-time limit, unlike a wall-clock one, does not fire on a
starved but sane case) and a wall-clock limit (`--wall-limit`, for a case that blocks). Damaged results folders are
copies of a template, two seeds of dqn on CartPole-v1 (200 env steps, a [16] net) that `qbench run` writes once at
the start (or `--template DIR`, a folder holding such a results folder from an earlier sweep: `--keep` keeps one).

Writes DIR/sweep.md (a table per category and the totals) and DIR/sweep.json (every case: command, expected, exit
code, first lines of output, error.json records, class and why), rewritten after every case, so an interrupted
sweep leaves what it did. Default DIR: results/benchmarks/issue27_sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "results" / "benchmarks" / "issue27_sweep"
CATEGORIES = ("train", "suite", "report", "readers", "envs")
CLASSES = ("clean", "traceback", "misattributed", "silent", "runaway", "other")
EXPECTATIONS = ("error", "ok", "env_fault", "named", "reader_damaged", "reader_status", "reader_missing")
TRACEBACK = "Traceback (most recent call last)"
# What a process says when it hits the memory limit (Python, the product's own message, torch's allocator, C++).
MEMORY_SIGNS = ("MemoryError", "out of memory", "Cannot allocate memory", "can't allocate memory", "bad_alloc")
READER_MARK = "READER "
# What a reader may raise for a path that is not a results folder: a clear error, not a crash of its own.
CLEAR_READER_ERRORS = ("FileNotFoundError", "NotADirectoryError", "ValueError", "OSError", "IsADirectoryError",
                       "ConfigError")   # ConfigError: the one-line error the CLI prints for the same path


# --- the classifier: a pure function -------------------------------------------------------------------------

@dataclass(frozen=True)
class Expect:
    """What a correct product does with a case (see the module docstring): ``kind`` one of EXPECTATIONS;
    ``target`` the path a report must name, the damaged run directory a reader must flag, or the path a reader
    must name in its error; ``status`` the run status reader_status wants; ``count`` the seeds an env fault
    must stop."""

    kind: str
    target: str = ""
    status: str = ""
    count: int = 1

    def __post_init__(self):
        if self.kind not in EXPECTATIONS:
            raise ValueError(f"unknown expectation {self.kind!r}; known: {', '.join(EXPECTATIONS)}")

    def words(self) -> str:
        extra = {"named": f" ({self.target})", "reader_status": f" ({self.status})",
                 "env_fault": f" ({self.count} seeds)" if self.count > 1 else ""}.get(self.kind, "")
        return self.kind + extra


class Verdict(NamedTuple):
    cls: str
    reason: str


def _lines(text: str) -> list[str]:
    return [line for line in (text or "").splitlines() if line.strip()]


def first_line(stdout: str, stderr: str) -> str:
    """The line a user reads first about a failure: stderr's first, else stdout's."""
    lines = _lines(stderr) or _lines(stdout)
    return lines[0].strip() if lines else ""


def reader_line(stdout: str) -> str:
    """What a reader case's record says, in a line: what the reader raised, or the target run's status and
    problems."""
    marked = [line for line in _lines(stdout) if line.startswith(READER_MARK)]
    if not marked:
        return first_line(stdout, "")
    rec = json.loads(marked[-1][len(READER_MARK):])
    if rec.get("raised"):
        return f"raised {rec['raised']['type']}: {rec['raised']['message']}"
    if "target_status" not in rec:
        return f"returned {rec.get('rows', 0)} rows"
    return (f"{rec.get('target_rows', 0)} rows of the run ({', '.join(rec.get('target_statuses', [])) or '-'}); "
            f"load_runs: {rec.get('target_status')}: {rec.get('target_problems') or 'no problem'}")


def _error_kind(record: Any) -> str:
    if isinstance(record, dict):
        return str(record.get("error"))
    return "unreadable"


def classify(expect: Expect, returncode: int | None, stdout: str, stderr: str,
             errors: Sequence[Any] = (), runaway: str | None = None) -> Verdict:
    """The class of one result: ``returncode`` (None: it never exited; negative: killed by that signal),
    ``stdout``/``stderr`` as printed, ``errors`` the error.json records the command wrote (parsed JSON, or None for
    a file that is not JSON), ``runaway`` the limit the runner saw it hit (CPU time, wall clock), if any."""
    text = f"{stdout}\n{stderr}"
    if runaway:
        return Verdict("runaway", runaway)
    if returncode is None:
        return Verdict("runaway", "it never exited (timed out)")
    if returncode in (-signal.SIGKILL, -signal.SIGXCPU):
        return Verdict("runaway", f"killed by {signal.Signals(-returncode).name} (a limit)")
    memory = next((sign for sign in MEMORY_SIGNS if sign in text), None)
    if memory:
        return Verdict("runaway", f"the memory limit was hit ({memory!r} in its output"
                                  + (", in a traceback)" if TRACEBACK in text else ")"))
    if TRACEBACK in text:
        tail = [line.strip() for line in _lines(stderr or stdout) if not line.startswith(" ")]
        return Verdict("traceback", f"a traceback, ending {tail[-1] if tail else '?'!r}")
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return Verdict("traceback", f"died by signal {name}")
    if expect.kind.startswith("reader_"):
        return _classify_reader(expect, stdout)
    kinds = [_error_kind(e) for e in errors]
    if expect.kind == "error":
        if returncode == 0:
            return Verdict("silent", "exit 0: the bad input was accepted")
        lines = _lines(stdout) + _lines(stderr)
        if len(lines) == 1:
            return Verdict("clean", f"exit {returncode}, one line")
        return Verdict("other", f"exit {returncode} with {len(lines)} lines of output, not one")
    if expect.kind == "ok":
        if returncode != 0:
            return Verdict("other", f"a valid input failed: exit {returncode}")
        if kinds:
            return Verdict("other", f"exit 0, but error.json says {kinds[0]!r}")
        return Verdict("clean", "exit 0")
    if expect.kind == "env_fault":
        wrong = [k for k in kinds if k != "env"]
        if wrong:
            return Verdict("misattributed", f"error.json says {wrong[0]!r}, not 'env'")
        if len(kinds) < expect.count:
            if returncode == 0 and not kinds:
                return Verdict("silent", "exit 0 and no error.json: it trained through the env's fault")
            if not kinds:
                return Verdict("other", f"exit {returncode} without an error.json")
            return Verdict("silent", f"{len(kinds)} of {expect.count} seeds stopped: the others trained through "
                                     "the fault")
        if returncode == 0:
            return Verdict("silent", "error.json says 'env', but the command exited 0")
        return Verdict("clean", f"exit {returncode}, error.json says 'env'")
    if expect.kind == "named":
        if returncode != 0:
            return Verdict("other", f"exit {returncode}: the report was not written")
        if expect.target not in text:
            return Verdict("silent", "exit 0 and the damaged path is not named")
        return Verdict("clean", "exit 0, the damaged path named")
    raise ValueError(f"unknown expectation {expect.kind!r}")


def _classify_reader(expect: Expect, stdout: str) -> Verdict:
    """A reader case prints one READER line: what the reader returned (or raised) about the target run."""
    marked = [line for line in _lines(stdout) if line.startswith(READER_MARK)]
    if not marked:
        return Verdict("other", "the reader script printed no record")
    rec = json.loads(marked[-1][len(READER_MARK):])
    raised = rec.get("raised")
    if expect.kind == "reader_missing":
        if raised is None:
            return Verdict("silent", f"returned {rec.get('rows', 0)} rows for a path that is not a results folder")
        what = f"{raised['type']}: {raised['message']}"
        if raised["type"] not in CLEAR_READER_ERRORS:
            return Verdict("traceback", f"raised {what}")
        if expect.target not in raised["message"]:
            return Verdict("other", f"raised {what}, without naming the path")
        return Verdict("clean", f"raised {raised['type']} naming the path")
    if raised is not None:
        return Verdict("traceback", f"raised {raised['type']}: {raised['message']}")
    function, status = rec.get("function"), rec.get("target_status")
    problems = rec.get("target_problems") or ""
    if expect.kind == "reader_damaged":
        if function == "load_runs":
            if status == "damaged":
                return Verdict("clean", "status damaged")
            return Verdict("silent", f"status {status!r} for a damaged run")
        if rec.get("target_rows_not_damaged", 0):
            return Verdict("silent", f"{rec['target_rows_not_damaged']} of its rows with status "
                                     f"{', '.join(rec.get('target_statuses', []))}")
        if function == "load_episodes" and status != "damaged" and "episodes.csv" not in problems:
            return Verdict("silent", f"no row, and load_runs says {status!r} without a word on episodes.csv")
        return Verdict("clean", "no undamaged row of the damaged run")
    if expect.kind == "reader_status":
        if function == "load_runs":
            if status == expect.status:
                return Verdict("clean", f"status {status}")
            if status == "complete":
                return Verdict("silent", f"status complete, not {expect.status}")
            return Verdict("other", f"status {status!r}, not {expect.status}")
        if expect.status != "complete" and rec.get("target_complete_rows", 0):
            return Verdict("silent", f"{rec['target_complete_rows']} rows counted complete")
        return Verdict("clean", "no row counted complete")
    raise ValueError(f"unknown expectation {expect.kind!r}")


# --- cases ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One bad input: ``argv`` for ``qbench`` (or, for readers, ``("--reader", FUNCTION, PATH)``), run in a fresh
    directory after ``setup(dir)``; ``{A}`` and ``{B}`` in argv and the expectation's target stand for the
    template's healthy and damaged run directories (relative to the case's directory)."""

    category: str
    name: str
    argv: tuple[str, ...]
    expect: Expect
    what: str
    setup: Callable[[Path], None] | None = field(default=None, compare=False)
    skip: str = ""

    @property
    def id(self) -> str:
        return f"{self.category}/{self.name}"


# The context every case may use, set before the worker pool forks: the template results folder, the folder of the
# misbehaving envs, and the template's run directories.
CTX: dict[str, Any] = {}

BAD_ENVS = '''"""Envs that misbehave, for benchmarks/bad_inputs_sweep.py (written to a temporary folder on PYTHONPATH)."""
import gymnasium as gym
import numpy as np


class Good(gym.Env):
    """20-step episodes of two float observations and two actions; the others break one thing."""
    observation_space = gym.spaces.Box(-10.0, 10.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)
    length = 20

    def __init__(self):
        self.t = 0
        self.total = 0
        self.resets = 0

    def obs(self):
        return np.full(2, 0.1 * self.t, dtype=np.float32)

    def reward(self):
        return 1.0

    def info(self):
        return {}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.resets += 1
        return self.obs(), {}

    def step(self, action):
        self.t += 1
        self.total += 1
        return self.obs(), self.reward(), False, self.t >= self.length, self.info()


class NaNReward(Good):
    def reward(self):
        return float("nan")


class LateNaNReward(Good):
    def reward(self):
        return float("nan") if self.total > 120 else 1.0


class InfReward(Good):
    def reward(self):
        return float("inf")


class NoneReward(Good):
    def reward(self):
        return None


class StringReward(Good):
    def reward(self):
        return "high"


class VectorReward(Good):
    def reward(self):
        return np.array([1.0, 2.0])


class NaNObsStep(Good):
    def obs(self):
        return np.full(2, np.nan if self.t >= 5 else 0.1, dtype=np.float32)


class InfObsStep(Good):
    def obs(self):
        return np.full(2, np.inf if self.t >= 5 else 0.1, dtype=np.float32)


class NaNObsReset(Good):
    def obs(self):
        return np.full(2, np.nan if self.t == 0 else 0.1, dtype=np.float32)


class ShapeAtReset(Good):
    def obs(self):
        return np.zeros(3 if self.t == 0 else 2, dtype=np.float32)


class ShapeAtStep(Good):
    def obs(self):
        return np.zeros(3 if self.t >= 5 else 2, dtype=np.float32)


class StringObs(Good):
    def obs(self):
        return np.array(["left", "right"]) if self.t >= 5 else np.zeros(2, dtype=np.float32)


class DictObs(Good):
    def obs(self):
        return {"x": 0.0, "y": 0.0} if self.t >= 5 else np.zeros(2, dtype=np.float32)


class OldStepAPI(Good):
    def step(self, action):
        self.t += 1
        return self.obs(), 1.0, self.t >= self.length, {}


class OldResetAPI(Good):
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.obs()   # no info: a 2-vector unpacks as (obs, info) = (0.0, 0.0)


class StepRaises(Good):
    def step(self, action):
        if self.total >= 30:
            raise RuntimeError("StepRaises broke on purpose")
        return super().step(action)


class ResetRaises(Good):
    def reset(self, *, seed=None, options=None):
        raise RuntimeError("ResetRaises broke on purpose")


class LateResetRaises(Good):
    def reset(self, *, seed=None, options=None):
        if self.resets >= 3:
            raise RuntimeError("LateResetRaises broke on purpose")
        return super().reset(seed=seed, options=options)


class NeverEnds(Good):
    """No episode ends: valid (a greedy evaluation is capped by eval_max_episode_steps)."""
    def step(self, action):
        self.t += 1
        self.total += 1
        return self.obs() * 0.0, 1.0, False, False, {}


class InfoFirstStepOnly(Good):
    """The info key a suite records per episode comes at an episode's first step only: valid, recorded empty."""
    def info(self):
        return {"is_success": True} if self.t == 1 else {}


class BoxNaNReward(NaNReward):
    action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)


class InfActionBounds(Good):
    action_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)


class DictSpace(Good):
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)})


class MultiDiscreteActions(Good):
    action_space = gym.spaces.MultiDiscrete([2, 2])


class InitRaises(Good):
    def __init__(self):
        raise RuntimeError("InitRaises broke on purpose")


class NotAnEnv:
    pass


def returns_none():
    return None


CONSTANT = 3
'''

BAD_IMPORT = 'raise RuntimeError("qbench_bad_import fails on import, on purpose")\n'

# A tiny run: 200 env steps, a [16] net, learning after 50 steps, one 1-episode evaluation every 100 steps.
TINY_NET = ("--set", "hidden_sizes=[16]")
TINY_EVAL = ("--set", "warmup_env_steps=50", "--set", "eval_interval_env_steps=100", "--set", "eval_episodes=1")
TINY = ("--steps", "200", *TINY_NET, *TINY_EVAL)

SUITE = """description = "bad-inputs sweep"
seeds = 1
min_passing_seeds = 1

[budget]
total_env_steps = 200
eval_interval_env_steps = 100
eval_episodes = 1

[settings]
hidden_sizes = [16]
warmup_env_steps = 50

[tasks."CartPole-v1"]
variants = ["dqn"]
random_score = 20.0
reference_score = 500.0
thresholds = { dqn = 5.0 }
"""

TEMPLATE_SUITE = """description = "bad-inputs sweep template: two healthy runs to damage"
seeds = 2

[budget]
total_env_steps = 200
eval_interval_env_steps = 100
eval_episodes = 1

[settings]
hidden_sizes = [16]
warmup_env_steps = 50
log_interval_env_steps = 100

[tasks.cartpole_ep]
env_id = "CartPole-v1"
episode_info = ["is_success"]
variants = ["dqn"]
random_score = 20.0
reference_score = 500.0
"""


# setups: small functions of the case's directory ---------------------------------------------------------------

def write(rel: str, content: str | bytes) -> Callable[[Path], None]:
    def do(root: Path) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return do


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def do(root: Path) -> None:
        for setup in setups:
            setup(root)
    return do


def suite_with(text: str, rel: str = "s.toml") -> Callable[[Path], None]:
    return write(rel, text)


def suite_edit(old: str, new: str) -> str:
    if old not in SUITE:
        raise ValueError(f"{old!r} is not in the base suite")
    return SUITE.replace(old, new, 1)


def copy_template(root: Path) -> None:
    shutil.copytree(CTX["template"], root / "results")


def damaged(action: Callable[[Path], None], which: str = "B") -> Callable[[Path], None]:
    """Copy the template, then damage run ``which`` (B: the second seed; A: the first) with ``action(run_dir)``."""
    def do(root: Path) -> None:
        copy_template(root)
        action(root / CTX[which])
    return do


def only(*keep: str) -> Callable[[Path], None]:
    """Remove every file of the run but ``keep``."""
    def do(run: Path) -> None:
        for path in run.iterdir():
            if path.name not in keep:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    return do


def put(name: str, content: str | bytes) -> Callable[[Path], None]:
    def do(run: Path) -> None:
        (run / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return do


def remove(name: str) -> Callable[[Path], None]:
    def do(run: Path) -> None:
        (run / name).unlink()
    return do


def cut(name: str, keep: float) -> Callable[[Path], None]:
    """Truncate a file to a fraction of its bytes, mid-token."""
    def do(run: Path) -> None:
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[:max(1, int(len(data) * keep))])
    return do


def edit_json(name: str, change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def do(run: Path) -> None:
        value = json.loads((run / name).read_text())
        (run / name).write_text(json.dumps(change(value)))
    return do


def edit_csv(name: str, change: Callable[[list[list[str]]], list[list[str]]]) -> Callable[[Path], None]:
    """Rewrite a CSV's rows (the header first) through ``change``; every line keeps its newline."""
    def do(run: Path) -> None:
        rows = [line.split(",") for line in (run / name).read_text().splitlines()]
        (run / name).write_text("".join(",".join(r) + "\n" for r in change(rows)))
    return do


def set_column(column: str, value: str, row: int = -1) -> Callable[[list[list[str]]], list[list[str]]]:
    def change(rows: list[list[str]]) -> list[list[str]]:
        i = rows[0].index(column)
        rows[row if row >= 0 else len(rows) + row][i] = value
        return rows
    return change


def swap_header(a: str, b: str) -> Callable[[list[list[str]]], list[list[str]]]:
    def change(rows: list[list[str]]) -> list[list[str]]:
        i, j = rows[0].index(a), rows[0].index(b)
        rows[0][i], rows[0][j] = b, a
        return rows
    return change


def drop_column(column: str) -> Callable[[list[list[str]]], list[list[str]]]:
    def change(rows: list[list[str]]) -> list[list[str]]:
        i = rows[0].index(column)
        return [r[:i] + r[i + 1:] for r in rows]
    return change


def repeat_last_row(rows: list[list[str]]) -> list[list[str]]:
    return [*rows, rows[-1]]


def reverse_rows(rows: list[list[str]]) -> list[list[str]]:
    return [rows[0], *reversed(rows[1:])]


def crashed_only(run: Path) -> None:
    only()(run)
    put("error.json", json.dumps({"error": "crashed", "type": "RuntimeError", "message": "boom"}))(run)


GARBAGE = bytes(range(256)) * 4


# the cases --------------------------------------------------------------------------------------------------

def train_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name, args, what, expect=None, setup=None, skip="", tiny=True):
        """The case's own options come after the tiny run's, so that a bad --set is not overridden (--steps comes
        after every --set whatever the order: it is left out where the case sets total_env_steps)."""
        n = next((i for i, a in enumerate(args) if a.startswith("--")), len(args))
        own_steps = "--steps" in args or any(a.startswith("total_env_steps=") for a in args)
        base = (*TINY_NET, *(() if own_steps else ("--steps", "200")), *(TINY_EVAL if tiny else ()))
        argv = ("train", *args[:n], *base, *args[n:], *(() if "--out" in args else ("--out", "run")))
        cases.append(Case("train", name, argv, expect or Expect("error"), what, setup, skip))

    dqn_cp = ("dqn", "CartPole-v1")
    # variants and tasks
    add("unknown-variant", ("nodqn", "CartPole-v1"), "a variant that does not exist")
    add("empty-variant", ("", "CartPole-v1"), "an empty variant name")
    add("variant-zero-width", ("dqn\u200b", "CartPole-v1"), "a variant name with a zero-width space")
    add("unknown-task", ("dqn", "CartPoel-v1"), "a misspelt task")
    add("task-no-class", ("dqn", "qbench_bad_envs:"), "module:Class without the class")
    add("task-missing-module", ("dqn", "no_such_module_27:Env"), "a module that does not exist")
    add("task-missing-class", ("dqn", "qbench_bad_envs:NoSuchEnv"), "a class the module does not have")
    add("task-not-env-class", ("dqn", "qbench_bad_envs:NotAnEnv"), "a class that is not a gymnasium.Env")
    add("task-factory-none", ("dqn", "qbench_bad_envs:returns_none"), "a factory that returns None")
    add("task-import-fails", ("dqn", "qbench_bad_import:Env"), "a module that raises on import")
    add("task-init-raises", ("dqn", "qbench_bad_envs:InitRaises"), "an env whose constructor raises")
    add("task-dict-obs", ("dqn", "qbench_bad_envs:DictSpace"), "a Dict observation space")
    add("task-multidiscrete", ("dqn", "qbench_bad_envs:MultiDiscreteActions"), "MultiDiscrete actions")
    add("task-inf-action-bounds", ("ddpg", "qbench_bad_envs:InfActionBounds"), "Box actions with infinite bounds")
    add("dqn-on-box-actions", ("dqn", "Pendulum-v1"), "a discrete variant on Box actions")
    add("ddpg-on-discrete", ("ddpg", "CartPole-v1"), "a Box-action variant on Discrete actions")
    # --set keys, values, types
    for name, setting, what in [
        ("set-unknown-key", "learning_rate=1e-3", "an unknown setting"),
        ("set-no-equals", "lr", "--set without '='"),
        ("set-no-key", "=5", "--set without a key"),
        ("set-string-for-float", "lr=fast", "a word for a float"),
        ("set-negative-lr", "lr=-1", "a negative learning rate"),
        ("set-zero-lr", "lr=0", "a zero learning rate"),
        ("set-nan-lr", "lr=nan", "NaN learning rate"),
        ("set-negative-gamma", "gamma=-0.1", "gamma below 0"),
        ("set-zero-batch", "batch_size=0", "batch size 0"),
        ("set-bool-batch", "batch_size=true", "a bool for an int"),
        ("set-huge-batch", "batch_size=1e100", "batch size 1e100"),
        ("set-astronomic-buffer", "buffer_size=1000000000000000", "a replay of 1e15 transitions"),
        ("set-empty-hidden", "hidden_sizes=[]", "no hidden layer list"),
        ("set-scalar-hidden", "hidden_sizes=16", "a number for a list"),
        ("set-unclosed-list", "hidden_sizes=[16,16", "an unclosed list"),
        ("set-oversize-network", "hidden_sizes=[1000000000]", "a layer of 1e9 units (~100 GB with Adam)"),
        ("set-choice-typo", "exploration=boltzman", "a misspelt choice"),
        ("set-zero-total-steps", "total_env_steps=0", "zero env steps via --set"),
        ("set-total-steps-beyond-int64", "total_env_steps=99999999999999999999999",
         "env steps beyond a 64-bit integer"),
        ("set-zero-checkpoint-interval", "checkpoint_interval_env_steps=0", "checkpoints every 0 steps"),
        ("set-device-cuda", "device=cuda", "device cuda on a machine without a GPU"),
    ]:
        add(name, (*dqn_cp, "--set", setting), what)
    add("set-conflict-double-no-target", (*dqn_cp, "--set", "target=double", "--set", "target_update=none"),
        "the double target without a target network")
    add("set-conflict-nstep-buffer", (*dqn_cp, "--set", "n_step=100", "--set", "buffer_size=10",
                                      "--set", "batch_size=4"), "n_step longer than the buffer")
    # --steps and seeds
    for name, args, what in [
        ("steps-zero", ("--steps", "0"), "--steps 0"),
        ("steps-word", ("--steps", "many"), "--steps many"),
        ("steps-float", ("--steps", "1e3"), "--steps 1e3"),
        ("steps-beyond-int64", ("--steps", "99999999999999999999999"), "--steps beyond a 64-bit integer"),
        ("seed-word", ("--seed", "one"), "--seed one"),
        ("seed-beyond-int64", ("--seed", "18446744073709551616"), "--seed 2**64"),
        ("seeds-empty", ("--seeds", ""), "--seeds ''"),
        ("seeds-backwards", ("--seeds", "3-1"), "--seeds 3-1"),
        ("seeds-twice", ("--seeds", "0,0"), "--seeds 0,0"),
        ("seeds-too-many", ("--seeds", "0-200000"), "--seeds 0-200000"),
        ("seeds-all-in-one-process", ("--seeds", "0-99999"), "100,000 seeds in one process"),
        ("seed-and-seeds", ("--seed", "1", "--seeds", "0-1"), "--seed and --seeds together"),
    ]:
        add(name, (*dqn_cp, *args), what, tiny=False)
    # command-line shape
    add("missing-task", ("dqn",), "no task", tiny=False)
    add("extra-positional", (*dqn_cp, "extra"), "an extra positional argument")
    add("unknown-flag", (*dqn_cp, "--stepz", "5"), "a misspelt flag")
    # output paths
    add("out-proc", (*dqn_cp, "--out", "/proc/qbench27"), "--out under /proc")
    add("out-sys", (*dqn_cp, "--out", "/sys/qbench27"), "--out under /sys")
    add("out-under-file", (*dqn_cp, "--out", "afile/run"), "--out below a file", setup=write("afile", "x\n"))
    add("out-is-file", (*dqn_cp, "--out", "afile"), "--out is a file", setup=write("afile", "x\n"))
    add("out-read-only", (*dqn_cp, "--out", "ro/run"), "--out in a read-only folder",
        setup=lambda root: ((root / "ro").mkdir(), (root / "ro").chmod(0o555)),
        skip="running as root: permissions do not stop root" if os.geteuid() == 0 else "")
    add("out-foreign-files", (*dqn_cp, "--out", "mine"), "--out a folder holding files that are not a run",
        setup=write("mine/notes.txt", "my notes\n"))
    add("out-other-job", (*dqn_cp, "--out", "{B}"), "--out the run directory of another job (the template's)",
        setup=copy_template)
    add("seeds-out-is-file", (*dqn_cp, "--seeds", "0-1", "--out", "afile"), "--seeds with --out a file",
        setup=write("afile", "x\n"))
    # valid, if odd: a correct product runs them
    add("ok-one-step", (*dqn_cp, "--steps", "1"), "--steps 1 (valid)", Expect("ok"), tiny=False)
    add("ok-dry-run", (*dqn_cp, "--dry-run"), "--dry-run (valid)", Expect("ok"))
    return cases


def suite_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name, text, what, extra=(), expect=None, setup=None, command="run", target="s.toml"):
        setups = [suite_with(text)] if text is not None else []
        if setup is not None:
            setups.append(setup)
        argv = (command, *((target,) if command == "run" else ()), "--workers", "1", *extra)
        if "--results" not in extra:
            argv = (*argv, "--results", "results")
        cases.append(Case("suite", name, argv, expect or Expect("error"), what, both(*setups) if setups else None))

    e = suite_edit
    add("toml-syntax", SUITE + "[budget\n", "a TOML syntax error")
    add("not-utf8", None, "a suite file of binary garbage", setup=write("s.toml", GARBAGE))
    add("empty-file", "", "an empty suite file")
    add("missing-seeds", e("seeds = 1\n", ""), "no seeds")
    add("seeds-word", e("seeds = 1", 'seeds = "two"'), "seeds = \"two\"")
    add("seeds-zero", e("seeds = 1", "seeds = 0"), "seeds = 0")
    add("seeds-huge", e("seeds = 1", "seeds = 1000000000"), "a billion seeds")
    add("unknown-top-key", SUITE + "seedz = 2\n", "an unknown top-level key")
    add("budget-unknown-key", e("eval_episodes = 1", "eval_episodes = 1\ntotal_steps = 100"),
        "an unknown budget key")
    add("budget-negative-steps", e("total_env_steps = 200", "total_env_steps = -1"), "a negative budget")
    add("budget-not-table", e("[budget]\ntotal_env_steps = 200\neval_interval_env_steps = 100\neval_episodes = 1\n",
                              "budget = 5\n"), "budget = 5, not a table")
    add("settings-unknown-key", e("warmup_env_steps = 50", "warmup_env_steps = 50\nlearning_rate = 1e-3"),
        "an unknown setting")
    add("settings-nan", e("warmup_env_steps = 50", "warmup_env_steps = 50\nlr = nan"), "lr = nan")
    add("settings-inf", e("warmup_env_steps = 50", "warmup_env_steps = 50\nlr = inf"), "lr = inf")
    add("settings-oversize-network", e("hidden_sizes = [16]", "hidden_sizes = [1000000000]"),
        "a layer of 1e9 units")
    add("settings-astronomic-buffer", e("warmup_env_steps = 50", "warmup_env_steps = 50\nbuffer_size = 1e15"),
        "a replay of 1e15 transitions")
    add("variants-empty-list", e('variants = ["dqn"]', "variants = []"), "a task with an empty variant list")
    add("variants-unknown", e('variants = ["dqn"]', 'variants = ["nodqn"]'), "an unknown variant")
    add("variant-misfit", e('variants = ["dqn"]', 'variants = ["ddpg"]'), "ddpg on CartPole-v1")
    add("no-tasks", SUITE.split("[tasks.")[0], "a suite without tasks")
    add("task-unknown", e('[tasks."CartPole-v1"]', '[tasks."CartPoel-v1"]'), "an unknown task")
    add("task-unknown-key", e("random_score = 20.0", "random_score = 20.0\nrandom_scor = 1.0"),
        "an unknown task key")
    add("task-passing-above-seeds", e("random_score = 20.0", "random_score = 20.0\nmin_passing_seeds = 5"),
        "min_passing_seeds above the task's seeds")
    add("threshold-word", e("thresholds = { dqn = 5.0 }", 'thresholds = { dqn = "high" }'), "a word threshold")
    add("threshold-unknown-variant", e("thresholds = { dqn = 5.0 }", "thresholds = { nodqn = 5.0 }"),
        "a threshold for a variant the task does not run")
    add("reference-score-nan", e("reference_score = 500.0", "reference_score = nan"), "a NaN reference score")
    add("custom-variant-bad-base", SUITE + '[custom_variants.mine]\nbase = "nodqn"\n', "a custom variant on "
        "an unknown base")
    add("include-missing", 'include = ["no_such_suite_27"]\n' + SUITE, "an include that does not exist")
    add("include-self", 'include = ["s"]\n' + SUITE, "a suite that includes itself")
    add("env-kwargs-unknown", e("random_score = 20.0", "random_score = 20.0\nenv_kwargs = { bogus = 1 }"),
        "env_kwargs the env does not take")
    add("new-task-missing-module", SUITE + '[tasks.mine]\nenv_id = "no_such_module_27:Env"\n',
        "a new task whose module does not exist")
    add("episode-info-string", SUITE + '[tasks.mine]\nenv_id = "CartPole-v1"\nepisode_info = "is_success"\n',
        "episode_info a string, not a list")
    add("suite-missing", None, "a suite file that does not exist", target="nothere.toml")
    add("suite-is-folder", None, "a suite path that is a folder", setup=lambda root: (root / "d.toml").mkdir(),
        target="d.toml")
    add("suite-not-toml", SUITE, "a suite without the .toml suffix", setup=write("s.txt", SUITE), target="s.txt")
    # options
    add("only-unknown-variant", SUITE, "--only a variant the suite lacks", ("--only", "variant=nodqn"))
    add("only-unknown-key", SUITE, "--only with an unknown key", ("--only", "colour=red"))
    add("only-seed-word", SUITE, "--only seed=one", ("--only", "seed=one"))
    add("workers-zero", SUITE, "--workers 0", ("--workers", "0"))
    add("workers-word", SUITE, "--workers two", ("--workers", "two"))
    add("seed-batch-zero", SUITE, "--seed-batch 0", ("--seed-batch", "0"))
    add("option-seeds-zero", SUITE, "--seeds 0", ("--seeds", "0"))
    add("first-seed-negative", SUITE, "--first-seed -1", ("--first-seed", "-1"))
    add("ray-address-local", SUITE, "--ray-address without --backend ray", ("--ray-address", "10.0.0.5:6379"))
    add("set-bad-value", SUITE, "--set lr=-1", ("--set", "lr=-1"))
    add("results-is-file", SUITE, "--results a file", ("--results", "afile"), setup=write("afile", "x\n"))
    add("results-under-file", SUITE, "--results below a file", ("--results", "afile/r"),
        setup=write("afile", "x\n"))
    add("results-proc", SUITE, "--results under /proc", ("--results", "/proc/qbench27"))
    add("run-dir-is-file", SUITE, "a file where a job's run directory goes",
        setup=write("results/s/CartPole-v1", "x\n"))
    # qbench sanity reads ./suites/sanity.toml when there is one
    for name, text, what in [
        ("sanity-toml-syntax", SUITE + "[budget\n", "a local sanity.toml with a syntax error"),
        ("sanity-threshold-unknown-variant", e("thresholds = { dqn = 5.0 }", "thresholds = { nodqn = 5.0 }"),
         "a local sanity.toml with a threshold for a variant it does not run"),
    ]:
        add(name, None, what, command="sanity", setup=write("suites/sanity.toml", text))
    add("sanity-only-unknown", None, "sanity --only variant=nodqn", ("--only", "variant=nodqn"), command="sanity")
    add("sanity-workers-zero", None, "sanity --workers 0", ("--workers", "0"), command="sanity")
    add("sanity-results-proc", None, "sanity --results under /proc", ("--results", "/proc/qbench27"),
        command="sanity")
    add("ok-dry-run", SUITE, "--dry-run of a valid suite", ("--dry-run",), Expect("ok"))
    return cases


def report_cases() -> list[Case]:
    cases: list[Case] = []
    report = ("report", "results", "--out", "rep", "--reps", "50")

    def add(name, action, what, target="{B}", which="B"):
        cases.append(Case("report", name, report, Expect("named", target=target), what, damaged(action, which)))

    for name, action, what in DAMAGE:
        if name in REPORTED_DAMAGE:
            add(name, action, what)
    add("crashed-only-error-json", crashed_only, "a crashed run: only error.json")
    add("unfinished-config-only", only("config.json"), "an unfinished run: only config.json")
    add("metadata-garbage", put("metadata.json", GARBAGE), "metadata.json of garbage")
    add("suite-record-garbage", lambda run: (run.parents[2] / "suite.json").write_bytes(GARBAGE),
        "the suite's suite.json of garbage", target="results/template/suite.json")
    errors = [
        ("nonexistent", ("report", "nothere"), "a results folder that does not exist", None),
        ("a-file", ("report", "afile"), "a file, not a folder", write("afile", "x\n")),
        ("empty-folder", ("report", "empty"), "an empty folder", lambda root: (root / "empty").mkdir()),
        ("only-damaged-runs", report, "a folder whose only runs are damaged",
         both(copy_template, lambda root: [(root / CTX[w] / "config.json").unlink() for w in "AB"])),
        ("out-proc", ("report", "results", "--out", "/proc/qbench27"), "--out under /proc", copy_template),
        ("out-is-file", ("report", "results", "--out", "afile"), "--out a file",
         both(copy_template, write("afile", "x\n"))),
        ("formats-unknown", ("report", "results", "--formats", "pdf"), "--formats pdf", copy_template),
        ("reps-zero", ("report", "results", "--reps", "0"), "--reps 0", copy_template),
        ("confidence-above-one", ("report", "results", "--confidence", "1.5"), "--confidence 1.5", copy_template),
        ("suite-unknown", ("report", "results", "--suite", "no_such_suite_27"), "--suite that does not exist",
         copy_template),
    ]
    for name, argv, what, setup in errors:
        cases.append(Case("report", name, argv, Expect("error"), what, setup))
    return cases


# Damage to run B of the template: (name, action on the run directory, what). Shared by report and readers.
DAMAGE: list[tuple[str, Callable[[Path], None], str]] = [
    ("config-missing", remove("config.json"), "config.json missing"),
    ("config-truncated", cut("config.json", 0.5), "config.json cut in half"),
    ("config-garbage", put("config.json", GARBAGE), "config.json of binary garbage"),
    ("config-list", put("config.json", "[]"), "config.json = []"),
    ("config-empty-object", put("config.json", "{}"), "config.json = {}"),
    ("config-seed-word", edit_json("config.json", lambda c: {**c, "seed": "zero"}), "config.json seed = \"zero\""),
    ("summary-list", put("summary.json", "[]"), "summary.json = []"),
    ("summary-empty-object", put("summary.json", "{}"), "summary.json = {}"),
    ("summary-inf-return", edit_json("summary.json", lambda s: {**s, "final_return_mean": float("inf")}),
     "summary.json final_return_mean = Infinity"),
    ("summary-nan-return", edit_json("summary.json", lambda s: {**s, "final_return_mean": float("nan")}),
     "summary.json final_return_mean = NaN"),
    ("summary-truncated", cut("summary.json", 0.5), "summary.json cut in half"),
    ("evaluations-swapped-header", edit_csv("evaluations.csv", swap_header("env_steps", "return_mean")),
     "evaluations.csv with env_steps and return_mean swapped in its header"),
    ("evaluations-no-return-column", edit_csv("evaluations.csv", drop_column("return_mean")),
     "evaluations.csv without its return_mean column"),
    ("evaluations-non-numeric", edit_csv("evaluations.csv", set_column("return_mean", "abc")),
     "evaluations.csv with a return_mean 'abc'"),
    ("evaluations-empty", put("evaluations.csv", ""), "evaluations.csv empty (0 bytes) beside summary.json"),
    ("evaluations-header-only", edit_csv("evaluations.csv", lambda rows: rows[:1]),
     "evaluations.csv with its header alone"),
    ("evaluations-inf-return", edit_csv("evaluations.csv", set_column("return_mean", "inf")),
     "evaluations.csv with return_mean inf"),
    ("evaluations-nan-return", edit_csv("evaluations.csv", set_column("return_mean", "nan")),
     "evaluations.csv with return_mean nan"),
    ("evaluations-negative-steps", edit_csv("evaluations.csv", set_column("env_steps", "-200")),
     "evaluations.csv with env_steps -200"),
    ("evaluations-duplicate-row", edit_csv("evaluations.csv", repeat_last_row),
     "evaluations.csv with its last row twice"),
    ("evaluations-garbage", put("evaluations.csv", GARBAGE), "evaluations.csv of binary garbage"),
    ("evaluations-missing", remove("evaluations.csv"), "evaluations.csv missing beside summary.json"),
    ("error-json-garbage", both(remove("summary.json"), put("error.json", GARBAGE)),
     "error.json of garbage (no summary)"),
    ("error-json-list", both(remove("summary.json"), put("error.json", "[]")), "error.json = [] (no summary)"),
]


# The damage a report is run on (a report draws every figure: the readers see all of DAMAGE, more cheaply).
REPORTED_DAMAGE = {"config-missing", "config-truncated", "config-garbage", "config-list", "summary-list",
                   "summary-empty-object", "summary-inf-return", "evaluations-swapped-header",
                   "evaluations-no-return-column", "evaluations-non-numeric", "evaluations-empty",
                   "evaluations-inf-return", "evaluations-nan-return", "evaluations-garbage", "error-json-garbage"}


READER_SCRIPT = r'''
import json, os, sys
function, path, target = sys.argv[1], sys.argv[2], sys.argv[3]
import qbench.loading as loading
record = {"function": function, "raised": None}
try:
    frame = getattr(loading, function)(path)
except Exception as exc:
    lines = str(exc).strip().splitlines()
    record["raised"] = {"type": type(exc).__name__, "message": lines[0] if lines else ""}
    print("READER " + json.dumps(record))
    sys.exit(0)
def norm(p):
    return os.path.normpath(str(p))
record["rows"] = int(len(frame))
if target:
    mine = frame[frame["run_dir"].map(norm) == norm(target)] if "run_dir" in frame.columns else frame.iloc[:0]
    record["target_rows"] = int(len(mine))
    statuses = [str(s) for s in mine["status"]] if "status" in mine.columns else []
    record["target_statuses"] = sorted(set(statuses))
    record["target_rows_not_damaged"] = sum(s != "damaged" for s in statuses)
    record["target_complete_rows"] = int(mine["complete"].astype(bool).sum()) if "complete" in mine.columns else 0
    runs = frame if function == "load_runs" else loading.load_runs(path)
    run = runs[runs["run_dir"].map(norm) == norm(target)]
    record["target_status"] = str(run["status"].iloc[0]) if len(run) else None
    record["target_problems"] = str(run["problems"].iloc[0]) if len(run) else None
print("READER " + json.dumps(record))
'''

READERS = ("load_runs", "load_results", "load_episodes")


def reader_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name, function, expect, what, setup, path="results", target="{B}"):
        cases.append(Case("readers", f"{function}-{name}", ("--reader", function, path, target), expect, what, setup))

    for function in READERS:
        add("nonexistent", function, Expect("reader_missing", target="nothere"), "a path that does not exist",
            None, path="nothere", target="")
        add("a-file", function, Expect("reader_missing", target="afile"), "a file, not a folder",
            write("afile", "x\n"), path="afile", target="")
    readable = {"config-missing", "config-garbage", "config-list", "summary-empty-object", "summary-inf-return",
                "evaluations-swapped-header", "evaluations-non-numeric", "evaluations-inf-return",
                "evaluations-nan-return", "evaluations-negative-steps", "evaluations-duplicate-row",
                "error-json-garbage"}
    for name, action, what in DAMAGE:
        if name not in readable:
            continue
        for function in ("load_runs", "load_results"):
            add(name, function, Expect("reader_damaged", target="{B}"), what, damaged(action))
    for function in ("load_runs", "load_results"):
        add("crashed-only-error-json", function, Expect("reader_status", target="{B}", status="crashed"),
            "a crashed run: only error.json", damaged(crashed_only))
        add("unfinished-config-only", function, Expect("reader_status", target="{B}", status="unfinished"),
            "an unfinished run: only config.json", damaged(only("config.json")))
    for name, action, what in [
        ("episodes-garbage", put("episodes.csv", GARBAGE), "episodes.csv of binary garbage"),
        ("episodes-no-header", edit_csv("episodes.csv", lambda rows: rows[1:]), "episodes.csv without its header"),
        ("episodes-non-numeric", edit_csv("episodes.csv", set_column("env_steps", "abc")),
         "episodes.csv with env_steps 'abc'"),
        ("episodes-inf-return", edit_csv("episodes.csv", set_column("return", "inf")),
         "episodes.csv with a return of inf"),
        ("episodes-short-middle-line", edit_csv("episodes.csv", lambda rows: [*rows[:2], rows[2][:2], *rows[3:]]),
         "episodes.csv with a short line in the middle"),
    ]:
        add(name, "load_episodes", Expect("reader_damaged", target="{B}"), what, damaged(action))
    add("config-missing", "load_episodes", Expect("reader_damaged", target="{B}"), "config.json missing",
        damaged(remove("config.json")))
    return cases


def env_cases() -> list[Case]:
    cases: list[Case] = []

    def add(name, env, what, expect=None, variant="dqn", extra=(), via="train"):
        task = f"qbench_bad_envs:{env}"
        if via == "train":
            argv = ("train", variant, task, *TINY, *extra, "--out", "run")
            setup = None
        else:   # qbench run on a suite whose task is the env
            text = SUITE.replace('[tasks."CartPole-v1"]', f'[tasks."{task}"]').replace("thresholds = { dqn = 5.0 }\n",
                                                                                    "")
            argv = ("run", "s.toml", "--workers", "1", "--results", "results")
            setup = suite_with(text)
        cases.append(Case("envs", name, argv, expect or Expect("env_fault"), what, setup))

    for env, what in [
        ("NaNReward", "every reward NaN"),
        ("LateNaNReward", "rewards turn NaN after 120 steps"),
        ("InfReward", "every reward infinite"),
        ("NoneReward", "a reward of None"),
        ("StringReward", "a reward of 'high'"),
        ("VectorReward", "a reward that is a 2-vector"),
        ("NaNObsStep", "observations turn NaN at step 5"),
        ("InfObsStep", "observations turn infinite at step 5"),
        ("NaNObsReset", "a NaN observation at reset"),
        ("ShapeAtReset", "a 3-vector at reset for a (2,) space"),
        ("ShapeAtStep", "a 3-vector from step 5 for a (2,) space"),
        ("StringObs", "an array of strings as observation"),
        ("DictObs", "a dict as observation"),
        ("OldStepAPI", "the old 4-tuple step (obs, reward, done, info)"),
        ("OldResetAPI", "the old reset (obs alone, no info)"),
        ("StepRaises", "step raises after 30 steps"),
        ("ResetRaises", "reset raises"),
        ("LateResetRaises", "reset raises at the third reset"),
    ]:
        add(env, env, what)
    add("NaNReward-two-seeds", "NaNReward", "every reward NaN, two seeds together", Expect("env_fault", count=2),
        extra=("--seeds", "0-1"))
    add("BoxNaNReward-ddpg", "BoxNaNReward", "every reward NaN, Box actions (ddpg)", variant="ddpg")
    for env, what in [("NaNReward", "every reward NaN"), ("NaNObsStep", "observations turn NaN at step 5"),
                      ("ShapeAtStep", "a 3-vector from step 5"), ("StepRaises", "step raises after 30 steps"),
                      ("ResetRaises", "reset raises")]:
        add(f"run-{env}", env, f"qbench run: {what}", via="run")
    add("ok-NeverEnds", "NeverEnds", "episodes that never end (valid: evaluation is capped)", Expect("ok"),
        extra=("--set", "eval_max_episode_steps=50"))
    text = (SUITE.replace('[tasks."CartPole-v1"]', "[tasks.firststep]\nenv_id = \"qbench_bad_envs:InfoFirstStepOnly\""
                          "\nepisode_info = [\"is_success\"]").replace("thresholds = { dqn = 5.0 }\n", ""))
    cases.append(Case("envs", "ok-info-at-first-step-only", ("run", "s.toml", "--workers", "1", "--results", "results"),
                      Expect("ok"), "an episode_info key given at an episode's first step only (valid: recorded "
                      "empty)", suite_with(text)))
    return cases


def all_cases() -> list[Case]:
    cases = [*train_cases(), *suite_cases(), *report_cases(), *reader_cases(), *env_cases()]
    ids = [c.id for c in cases]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"case ids used twice: {twice}")
    return cases


# --- running ---------------------------------------------------------------------------------------------------

def child_env() -> dict[str, str]:
    paths = (str(REPO), str(CTX.get("helpers", "")), os.environ.get("PYTHONPATH"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env.pop("COLUMNS", None)
    return env


def resolve(text: str) -> str:
    return text.replace("{A}", CTX.get("A", "{A}")).replace("{B}", CTX.get("B", "{B}"))


def command_of(case: Case) -> tuple[list[str], str]:
    """(the argv to run, the command as a user would type it)."""
    argv = [resolve(a) for a in case.argv]
    if argv[0] == "--reader":
        function, path, target = argv[1:]
        shown = f"python -c 'import qbench.loading as l; l.{function}(\"{path}\")'"
        return [sys.executable, "-c", READER_SCRIPT, function, path, target], shown
    return [sys.executable, "-m", "qbench", *argv], shlex.join(["qbench", *argv])


def _limits(memory_bytes: int, cpu_s: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    return apply


def _error_records(root: Path, before: set[Path]) -> list[Any]:
    records = []
    for path in sorted(set(root.rglob("error.json")) - before):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            records.append(None)
    return records


def run_case(case: Case) -> dict[str, Any]:
    expect = Expect(case.expect.kind, resolve(case.expect.target), case.expect.status, case.expect.count)
    argv, shown = command_of(case)
    record: dict[str, Any] = {"id": case.id, "category": case.category, "name": case.name, "what": case.what,
                              "command": shown, "expected": expect.words(), "expect": asdict(expect)}
    if case.skip:
        return {**record, "class": "skipped", "reason": case.skip}
    root = Path(tempfile.mkdtemp(prefix=case.name[:40] + "-", dir=CTX["scratch"]))
    try:
        if case.setup is not None:
            case.setup(root)
        before = set(root.rglob("error.json"))
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=root, env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True,
                                # a pool worker runs no thread of its own: preexec_fn is safe here
                                preexec_fn=_limits(CTX["memory_bytes"], CTX["cpu_limit"]))  # noqa: PLW1509
        runaway = None
        try:
            stdout, stderr = proc.communicate(timeout=CTX["wall_limit"])
        except subprocess.TimeoutExpired:
            runaway = f"still running after {CTX['wall_limit']} s of wall-clock time"
            _kill_group(proc.pid)
            stdout, stderr = proc.communicate()
        _kill_group(proc.pid)   # what it left running (a runner's workers)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
        if runaway is None and cpu >= CTX["cpu_limit"]:
            runaway = f"{cpu:.0f} CPU s, at or over the {CTX['cpu_limit']} s limit"
        errors = _error_records(root, before)
        verdict = classify(expect, proc.returncode, stdout, stderr, errors, runaway)
        shown_line = reader_line(stdout) if case.category == "readers" else first_line(stdout, stderr)
        record.update({"exit_code": proc.returncode, "first_line": shown_line,
                       "first_stderr_line": (_lines(stderr) or [""])[0].strip(),
                       "first_stdout_line": (_lines(stdout) or [""])[0].strip(),
                       "output_lines": len(_lines(stdout)) + len(_lines(stderr)),
                       "error_json": [_error_kind(e) for e in errors], "class": verdict.cls,
                       "reason": verdict.reason, "cpu_s": round(cpu, 2), "wall_s": round(wall, 1)})
        if verdict.cls != "clean":   # enough of the output to see what happened
            record["stderr_tail"] = _lines(stderr)[-6:]
            record["stdout_tail"] = _lines(stdout)[-4:]
        return record
    except Exception as exc:  # noqa: BLE001 - a broken case (a bug of this script) is said, not fatal
        return {**record, "class": "broken", "reason": f"the sweep's own setup failed: {type(exc).__name__}: {exc}"}
    finally:
        if not CTX.get("keep"):
            shutil.rmtree(root, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run_index(i: int) -> dict[str, Any]:
    return run_case(CTX["cases"][i])


def build_template(scratch: Path) -> Path:
    """A results folder with two healthy runs (dqn on a CartPole task that records episodes.csv), by qbench run."""
    folder = scratch / "template"
    folder.mkdir()
    (folder / "template.toml").write_text(TEMPLATE_SUITE)
    print("building the template results folder (qbench run, 2 seeds of 200 env steps)", flush=True)
    r = subprocess.run([sys.executable, "-m", "qbench", "run", "template.toml", "--results", "results",
                        "--workers", "1"], cwd=folder, env=child_env(), capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"the template run failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return folder / "results"


def template_runs(results: Path) -> tuple[str, str]:
    """The template's two run directories as 'results/...' paths (seed 0, seed 1)."""
    runs = sorted(p.parent for p in results.rglob("summary.json"))
    seeds = {re.match(r"seed(\d+)-", p.name).group(1): p for p in runs}
    if set(seeds) != {"0", "1"} or not all((seeds[s] / "episodes.csv").exists() for s in seeds):
        raise SystemExit(f"{results} is not a sweep template: it needs two complete runs, seeds 0 and 1, each "
                         "with episodes.csv")
    return tuple(str(Path("results") / seeds[s].relative_to(results)) for s in ("0", "1"))


# --- output ----------------------------------------------------------------------------------------------------

def git_describe() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def totals(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for r in records:
        row = table.setdefault(r["category"], dict.fromkeys((*CLASSES, "skipped", "broken"), 0))
        row[r["class"]] = row.get(r["class"], 0) + 1
    return table


def _cell(text: str, width: int = 110) -> str:
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[:width - 1] + "…"


def markdown(records: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    by_category = totals(records)
    title = f"# Issue 27: a sweep of bad inputs and damaged files ({meta['cases_done']} of {meta['cases']} cases)"
    setting = (f"Commit {meta['commit']}, {meta['started']} to {meta['updated']}; limits per process: "
               f"{meta['cpu_limit']} CPU s, {meta['wall_limit']} s wall, {meta['memory_gib']} GiB address space; "
               f"`{meta['command']}`.")
    legend = ("Classes: **clean** (what a correct product does), **traceback** (a Python traceback, a death by a "
              "signal, or a reader raising on a damaged folder), **misattributed** (an env fault recorded as the "
              "variant's: diverged or crashed), **silent** (success where an error was expected, or damage read as "
              "a whole run), **runaway** (a CPU, wall-clock or memory limit hit), **other** (none of these, yet "
              "not what was expected: an error of several lines, a valid input refused, an env fault without an "
              "error.json). What each case expects: benchmarks/bad_inputs_sweep.py.")
    again = [f"Swept again with `{u['command']}` at commit {u['commit']}, {u['at']}: {', '.join(u['cases'])}."
             for u in meta.get("updates", [])]
    lines = [title, "", setting, *(["", *again] if again else []), "", legend, "", "## Totals", "",
             "| category | cases | " + " | ".join(CLASSES) + " | skipped |",
             "|---|---:|" + "---:|" * (len(CLASSES) + 1)]
    columns = (*CLASSES, "skipped")
    for category in CATEGORIES:
        if category in by_category:
            row = by_category[category]
            lines.append(f"| {category} | {sum(row.values())} | " + " | ".join(str(row[c]) for c in columns) + " |")
    all_rows = {c: sum(row.get(c, 0) for row in by_category.values()) for c in (*columns, "broken")}
    lines.append(f"| **all** | **{sum(all_rows.values())}** | "
                 + " | ".join(f"**{all_rows[c]}**" for c in columns) + " |")
    if all_rows["broken"]:
        lines += ["", f"{all_rows['broken']} case(s) could not be set up (a bug of the sweep): see sweep.json."]
    for category in CATEGORIES:
        mine = [r for r in records if r["category"] == category]
        if not mine:
            continue
        header = "| case | bad input | expected | exit | class | why | first line of output |"
        lines += ["", f"## {category}", "", header, "|---|---|---|---:|---|---|---|"]
        for r in sorted(mine, key=lambda r: r["name"]):
            lines.append(f"| {r['name']} | {_cell(r['what'], 60)} | {r['expected']} | {r.get('exit_code', '')} | "
                         f"{r['class']} | {_cell(r.get('reason', ''), 70)} | {_cell(r.get('first_line', ''))} |")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "cases_done": len(records), "updated": datetime.now(UTC).isoformat(timespec="seconds"),
            "totals": totals(records)}
    ordered = sorted(records, key=lambda r: (CATEGORIES.index(r["category"]), r["name"]))
    for name, text in (("sweep.json", json.dumps({**meta, "records": ordered}, indent=1) + "\n"),
                       ("sweep.md", markdown(ordered, meta))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)


# --- main ------------------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where sweep.md and sweep.json go (default "
                   f"{DEFAULT_OUT.relative_to(REPO)})")
    p.add_argument("--only", action="append", choices=CATEGORIES, help="this category only (repeatable)")
    p.add_argument("--match", action="append", help="only cases whose id contains this text (repeatable: any)")
    p.add_argument("--list", action="store_true", help="list the cases (id, expected, bad input) and exit")
    p.add_argument("--workers", type=int, default=2, choices=(1, 2), help="cases at once (at most 2; default 2)")
    p.add_argument("--cpu-limit", type=int, default=30, help="CPU seconds per process (RLIMIT_CPU; default 30)")
    p.add_argument("--wall-limit", type=int, default=3600, help="wall-clock seconds per case (default 3600)")
    p.add_argument("--memory-gib", type=float, default=3.0, help="address space per process (RLIMIT_AS, GiB; "
                   "default 3)")
    p.add_argument("--template", default=None, help="a results folder of an earlier sweep's template (--keep "
                   "prints it), instead of building one")
    p.add_argument("--update", action="store_true", help="keep the records of DIR/sweep.json and replace those of "
                   "the cases run now (a few cases swept again, e.g. after a fix to them)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (template and case folders)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cases = [c for c in all_cases() if (not args.only or c.category in args.only)
             and (not args.match or any(m in c.id for m in args.match))]
    if args.list:
        for c in cases:
            print(f"{c.id}\t{c.expect.words()}\t{c.what}\t{shlex.join(c.argv)}" + (f"\t(skipped: {c.skip})"
                                                                                    if c.skip else ""))
        counts = {cat: sum(c.category == cat for c in cases) for cat in CATEGORIES}
        print(f"# {len(cases)} cases: " + ", ".join(f"{cat} {n}" for cat, n in counts.items() if n))
        return 0
    if not cases:
        print("no case matches", file=sys.stderr)
        return 2
    if os.nice(0) < 19:
        os.nice(19 - os.nice(0))   # every case inherits nice 19
    scratch = Path(tempfile.mkdtemp(prefix="qbench-sweep27-"))
    CTX.update(scratch=scratch, keep=args.keep, cpu_limit=args.cpu_limit, wall_limit=args.wall_limit,
               memory_bytes=int(args.memory_gib * 2 ** 30))
    helpers = scratch / "helpers"
    helpers.mkdir()
    (helpers / "qbench_bad_envs.py").write_text(BAD_ENVS)
    (helpers / "qbench_bad_import.py").write_text(BAD_IMPORT)
    CTX["helpers"] = helpers
    needs_template = any("{" in "".join(c.argv) + c.expect.target or c.category in ("report", "readers")
                         for c in cases)
    if needs_template:
        CTX["template"] = Path(args.template).resolve() if args.template else build_template(scratch)
        CTX["A"], CTX["B"] = template_runs(CTX["template"])
    CTX["cases"] = cases
    out = Path(args.out)
    meta = {"commit": git_describe(), "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": shlex.join(["python", "benchmarks/bad_inputs_sweep.py", *(argv or sys.argv[1:])]),
            "cases": len(cases), "cpu_limit": args.cpu_limit, "wall_limit": args.wall_limit,
            "memory_gib": args.memory_gib, "workers": args.workers, "python": sys.version.split()[0]}
    print(f"{len(cases)} cases, {args.workers} at a time, nice {os.nice(0)}; scratch {scratch}", flush=True)
    records: list[dict[str, Any]] = []
    if args.update and (out / "sweep.json").exists():
        earlier = json.loads((out / "sweep.json").read_text())
        now, known = {c.id for c in cases}, {c.id for c in all_cases()}
        records = [r for r in earlier["records"] if r["id"] not in now and r["id"] in known]
        meta = {**{k: v for k, v in earlier.items() if k not in ("records", "totals", "updated", "cases_done")},
                "cases": len(records) + len(cases),
                "updates": [*earlier.get("updates", []), {"commit": meta["commit"], "at": meta["started"],
                                                          "command": meta["command"], "cases": sorted(now)}]}
    import multiprocessing
    with multiprocessing.get_context("fork").Pool(args.workers, maxtasksperchild=1) as pool:
        for record in pool.imap_unordered(_run_index, range(len(cases))):
            records.append(record)
            print(f"[{len(records)}/{meta['cases']}] {record['class']:<13} {record['id']}: {record.get('reason', '')}"
                  f" ({record.get('wall_s', 0)} s)", flush=True)
            write_outputs(out, records, meta)
    write_outputs(out, records, meta)
    print(Path(out / "sweep.md").read_text().split("\n## ")[1], flush=True)
    if args.keep:
        print(f"kept {scratch} (template: {CTX.get('template')})")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
