"""Loggers researchers already watch (issue 29): ``--log tensorboard`` and ``--log wandb`` stream the rows qbench
writes to evaluations.csv and diagnostics.csv, one logger run per seed, with the run's resolved config as its
hyperparameters.

A logger only listens: it is fed the rows after they are in the CSVs and feeds nothing back, so a run with and
without one writes the same CSVs. The CSVs stay the record and a logger is a view of them, rebuilt at every start of
a seed: a resumed seed's logger first gets the rows of its checkpoint (the rows its CSVs are rewritten to), then
the new ones. TensorBoard: the seed's old event files are replaced; W&B: each start is a new W&B run of the same
name. Either way a logger shows what the CSVs hold, never an attempt's rows twice.

A logger that fails (a full disk, W&B's service gone) is said in one line on stderr and switched off for that seed
for the rest of the process; training and the CSVs go on.

One interface, ``RunLogger`` (``log_row``, ``close``; opened per run directory), two implementations; the training
code sees only ``SeedLoggers.listen``, a progress callback.
"""

from __future__ import annotations

import importlib
import json
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from qbench.config import ConfigError

ROW_KINDS = ("diagnostics", "evaluation")   # the progress events that carry a CSV row (Bookkeeper.emit)
TENSORBOARD_DIR = "tensorboard"            # a seed's event files: <run dir>/tensorboard/
WANDB_PROJECT = "qbench"


@dataclass(frozen=True)
class LoggerKind:
    module: str             # imported to check that the logger can run
    extra: str              # pip install 'qbench[<extra>]'
    min_version: tuple[int, ...] = ()


# W&B 0.19.10 is the first with wandb.init(reinit="create_new"): several W&B runs open at once in one process,
# one per seed of a batch.
LOGGERS = {"tensorboard": LoggerKind("tensorboard", "tensorboard"),
           "wandb": LoggerKind("wandb", "wandb", (0, 19, 10))}


def _version_tuple(text: str) -> tuple[int, ...]:
    """The numbers of a version, each part's leading digits: "0.19.10" -> (0, 19, 10), "1.0.0rc1" -> (1, 0, 0)."""
    return tuple(int(re.match(r"\d*", piece).group() or 0) for piece in text.split(".")[:3])


def require(name: str) -> None:
    """A ConfigError (one line, naming the extra to install) when logger ``name`` cannot run here."""
    kind = LOGGERS[name]
    try:
        importlib.import_module(kind.module)
    except ImportError:
        raise ConfigError(f"--log {name} needs the {kind.module} package, not installed here: "
                          f"pip install 'qbench[{kind.extra}]'") from None
    if kind.min_version:
        try:
            found = metadata.version(kind.module)
        except metadata.PackageNotFoundError:
            return
        if _version_tuple(found) < kind.min_version:
            wanted = ".".join(map(str, kind.min_version))
            raise ConfigError(f"--log {name} needs {kind.module}>={wanted} (found {found}): "
                              f"pip install --upgrade 'qbench[{kind.extra}]'")


def parse_loggers(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """--log's value (a name, or names separated by commas) -> the loggers' names, in order, each once. An unknown
    name, or a logger whose package is missing, is a ConfigError: said before anything is written."""
    if text is None:
        return ()
    pieces = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(p.strip() for p in pieces if p.strip()))
    valid = ", ".join(LOGGERS)
    if not names:
        raise ConfigError(f"--log needs a logger; valid loggers: {valid}")
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(f"unknown logger '{name}' for --log; valid loggers: {valid} (or several, a,b)")
    for name in names:
        require(name)
    return names


def hyperparameters(job: Mapping[str, Any]) -> dict[str, Any]:
    """A job's resolved config (Job.to_dict, as config.json holds it), flat: every setting, then the job's names
    (variant, task, env_id, env_kwargs, seed)."""
    flat = dict(job["config"])
    flat.update({key: value for key, value in job.items() if key != "config"})
    return flat


def scalars(row: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The columns of a CSV row a chart can show: numbers other than env_steps (the step). NaN is left out: in the
    CSVs it means "no value yet" (no update, no finished episode, no actor), which a chart shows as a gap."""
    out = []
    for column, value in row.items():
        if column == "env_steps" or not isinstance(value, numbers.Real):
            continue
        number = float(value)
        if not math.isnan(number):
            out.append((column, number))
    return out


class RunLogger(Protocol):
    """One seed's logger run, opened on its run directory."""

    def log_row(self, kind: str, env_steps: int, row: Mapping[str, Any]) -> None:
        """kind: "diagnostics" or "evaluation"; row: the CSV row, as written."""

    def close(self) -> None: ...


def _hparam_value(value: Any) -> bool | int | float | str:
    """TensorBoard's hparams hold numbers, strings and booleans: anything else (a list, None) as its JSON text."""
    return value if isinstance(value, bool | int | float | str) else json.dumps(value)


class TensorBoardLogger:
    """One TensorBoard run per seed: event files in <run dir>/tensorboard/ (so `tensorboard --logdir results/`
    shows every run), scalars `<kind>/<column>` at step = env_steps, the resolved config as hparams (the HParams
    tab, with evaluation/return_mean as its metric) and as a text summary `config` (config.json's JSON)."""

    def __init__(self, run_path: Path, job: Mapping[str, Any]):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        folder = Path(run_path) / TENSORBOARD_DIR
        for old in folder.glob("events.out.tfevents.*"):   # rebuilt from the CSVs' rows: see the module's doc
            old.unlink()
        self.writer = SummaryWriter(log_dir=str(folder))
        # Into this run's own event file: SummaryWriter.add_hparams would open a second run beside it.
        file_writer = self.writer._get_file_writer()
        flat = {key: _hparam_value(value) for key, value in hyperparameters(job).items()}
        for summary in hparams(flat, {"evaluation/return_mean": float("nan")}):
            file_writer.add_summary(summary)
        text = json.dumps(dict(job), indent=2)
        self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))   # a code block

    def log_row(self, kind: str, env_steps: int, row: Mapping[str, Any]) -> None:
        for column, value in scalars(row):
            self.writer.add_scalar(f"{kind}/{column}", value, env_steps)

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """One W&B run per seed, offline unless WANDB_MODE says otherwise (`wandb sync <run dir>/wandb/offline-run-*`
    uploads it), in project qbench (or WANDB_PROJECT), named <variant>/<task>/seed<k> and grouped by
    <variant>/<task>; the resolved config as its config; `<kind>/<column>` at step = env_steps."""

    def __init__(self, run_path: Path, job: Mapping[str, Any]):
        import wandb

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or WANDB_PROJECT,
            mode=None if os.environ.get("WANDB_MODE") else "offline",
            dir=str(run_path), name=f"{job['variant']}/{job['task']}/seed{job['seed']}",
            group=f"{job['variant']}/{job['task']}", config=hyperparameters(job),
            reinit="create_new",   # the seeds of a batch are W&B runs open side by side
            # console off: W&B would capture this process's output, which every seed of the batch shares
            settings=wandb.Settings(console="off", silent=True))

    def log_row(self, kind: str, env_steps: int, row: Mapping[str, Any]) -> None:
        self.run.log({f"{kind}/{column}": value for column, value in scalars(row)}, step=env_steps)

    def close(self) -> None:
        self.run.finish()


OPENERS: dict[str, Callable[[Path, Mapping[str, Any]], RunLogger]] = {
    "tensorboard": TensorBoardLogger, "wandb": WandbLogger}


def _say_failure(name: str, seed: int, doing: str, exc: BaseException) -> None:
    what = (str(exc).strip().splitlines() or [""])[0]
    print(f"qbench: warning: the {name} logger of seed {seed} failed {doing} ({type(exc).__name__}: {what}); it is "
          "off for this seed from here, training and its CSVs go on", file=sys.stderr, flush=True)


class _Guarded:
    """A logger whose failure is said once and switches it off: a logger never stops training or loses a row."""

    def __init__(self, name: str, seed: int, run_path: Path, job: Mapping[str, Any]):
        self.name, self.seed = name, seed
        self.logger: RunLogger | None = None
        try:
            self.logger = OPENERS[name](run_path, job)
        except Exception as exc:  # noqa: BLE001 - a logger's failure is said, never the run's
            _say_failure(name, seed, "to start", exc)

    def log_row(self, kind: str, env_steps: int, row: Mapping[str, Any]) -> None:
        if self.logger is None:
            return
        try:
            self.logger.log_row(kind, env_steps, row)
        except Exception as exc:  # noqa: BLE001
            _say_failure(self.name, self.seed, f"at env step {env_steps}", exc)
            self._drop()

    def close(self) -> None:
        if self.logger is None:
            return
        try:
            self.logger.close()
        except Exception as exc:  # noqa: BLE001
            _say_failure(self.name, self.seed, "to close", exc)
        self.logger = None

    def _drop(self) -> None:
        logger, self.logger = self.logger, None
        try:
            logger.close()
        except Exception:  # noqa: BLE001, S110 - already said; what it holds so far is kept if it can be
            pass


Row = tuple[str, int, Mapping[str, Any]]   # (kind, env_steps, the CSV row)


class SeedLoggers:
    """The loggers of one batch's seeds. For each seed: its loggers are opened on its run directory and given its
    earlier rows (those of the checkpoint it resumes from, in the order they were written); ``listen`` passes on the
    rows of the progress events as they come; ``close`` flushes and closes them. No logger names: nothing at all."""

    def __init__(self, names: Sequence[str], jobs: Sequence[Mapping[str, Any]], run_paths: Sequence[Path],
                 earlier: Sequence[Sequence[Row]] | None = None):
        self.by_seed: dict[int, list[_Guarded]] = {}
        earlier = earlier if earlier is not None else [()] * len(jobs)
        for job, path, rows in zip(jobs, run_paths, earlier, strict=True):
            loggers = [_Guarded(name, job["seed"], Path(path), job) for name in names]
            for kind, env_steps, row in rows:
                for logger in loggers:
                    logger.log_row(kind, env_steps, row)
            self.by_seed[job["seed"]] = loggers

    def listen(self, progress: Callable[[int, dict[str, Any]], None] | None
               ) -> Callable[[int, dict[str, Any]], None] | None:
        """``progress`` with the loggers fed first (a row is in the CSV before its event comes, and a callback that
        raises, an interrupt, must not keep it from the loggers)."""
        if not any(self.by_seed.values()):
            return progress

        def log_then_progress(env_steps: int, info: dict[str, Any]) -> None:
            for logger in self.by_seed.get(info.get("seed"), ()):
                for kind in ROW_KINDS:
                    if kind in info:
                        logger.log_row(kind, env_steps, info[kind])
            if progress is not None:
                progress(env_steps, info)
        return log_then_progress

    def close(self) -> None:
        for loggers in self.by_seed.values():
            for logger in loggers:
                logger.close()
