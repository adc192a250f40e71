"""What a runner shows: a rich bar on a terminal, plain lines otherwise, and the end-of-run summary."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from rich.markup import escape

from qbench.jobs import Job
from qbench.runner.run import Outcome, Reporter


def job_label(job: Job) -> str:
    return f"{job.task.name} {job.variant} seed {job.seed}"


def error_line(error: dict[str, Any]) -> str:
    message = (error.get("message") or "").strip().splitlines()
    kind = error.get("error", "failed")
    kind = "env fault (the env's, not the variant's)" if kind == "env" else kind
    return f"{kind}: {error.get('type', '')}: {message[0] if message else ''}".strip()


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-:--:--"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Tally:
    """Counts and an ETA. Jobs differ in cost (a Pendulum step with a sampling maximiser costs many CartPole
    steps), so a remaining job is estimated by the mean wall time of finished jobs of the same (task, variant),
    else by the mean wall time per env step of all finished jobs; the sum is shared by the slots. Seeds trained
    together in one batch each count for the batch's wall time over its size."""

    def __init__(self, total_jobs: int, to_run: list[Job], slots: int = 1):
        self.total_jobs = total_jobs
        self.complete = total_jobs - len(to_run)   # already complete before this sitting
        self.failed = 0
        self.running = 0
        self.elsewhere = 0
        self.slots = max(slots, 1)
        self.remaining = {j.hash: j for j in to_run}
        self.work_total = sum(j.config.total_env_steps for j in to_run)
        self.work_done = 0
        self.walls: dict[tuple[str, str], list[float]] = defaultdict(list)   # (task, variant) -> wall_s
        self.steps_timed = 0   # env steps of the jobs in walls

    def add(self, outcome: Outcome) -> None:
        job = outcome.job
        self.remaining.pop(job.hash, None)
        self.work_done += job.config.total_env_steps
        if outcome.status == "done":   # a job's share of its slot: seeds trained together share the wall time
            self.walls[(job.task.name, job.variant)].append(outcome.wall_s / max(outcome.batch, 1))
            self.steps_timed += job.config.total_env_steps
        if outcome.status == "failed":
            self.failed += 1
        else:
            self.complete += 1

    def eta_s(self) -> float:
        if not self.steps_timed:
            return math.inf
        per_step_s = sum(sum(ws) for ws in self.walls.values()) / self.steps_timed
        total_s = 0.0
        for job in self.remaining.values():
            same = self.walls.get((job.task.name, job.variant))
            total_s += statistics.fmean(same) if same else per_step_s * job.config.total_env_steps
        return total_s / self.slots

    @property
    def finished(self) -> int:
        return self.complete + self.failed

    def line(self) -> str:
        return (f"{self.complete}/{self.total_jobs} done, {self.running} running, {self.failed} failed"
                + (f", {self.elsewhere} running elsewhere" if self.elsewhere else ""))


class PlainReporter(Reporter):
    """One line per finished job, for logs and pipes."""

    def __init__(self, title: str, describe: str):
        self.title, self.describe = title, describe
        self.tally: Tally | None = None

    def start(self, total_jobs: int, to_run: list[Job], slots: int) -> None:
        self.tally = Tally(total_jobs, to_run, slots)
        print(f"{self.title}: {total_jobs} jobs, {total_jobs - len(to_run)} already complete, "
              f"{len(to_run)} to run "
              f"on {self.describe} ({slots} at a time)", flush=True)

    def update(self, running: int, waiting_elsewhere: int) -> None:
        self.tally.running, self.tally.elsewhere = running, waiting_elsewhere

    def finished(self, outcome: Outcome) -> None:
        self.tally.add(outcome)
        n = f"[{self.tally.finished}/{self.tally.total_jobs}]"
        if outcome.status == "failed":
            where = " (elsewhere)" if outcome.elsewhere else ""
            print(f"{n} FAILED{where} {job_label(outcome.job)}: {error_line(outcome.error)} "
                  f"({outcome.path / 'error.json'})", flush=True)
        elif outcome.status == "done":
            print(f"{n} done {job_label(outcome.job)}: final return "
                  f"{outcome.summary.get('final_return_mean', float('nan')):.2f} ({outcome.wall_s:.1f} s"
                  f"{f', {outcome.batch} seeds together' if outcome.batch > 1 else ''}); "
                  f"ETA {format_duration(self.tally.eta_s())}", flush=True)
        else:
            print(f"{n} complete elsewhere {job_label(outcome.job)}", flush=True)


class RichReporter(Reporter):
    """A live bar: jobs done, running, failed, and an ETA from the env steps of the jobs finished so far."""

    def __init__(self, console, title: str, describe: str):
        self.console, self.title, self.describe = console, title, describe
        self.tally: Tally | None = None
        self.bar = None

    def start(self, total_jobs: int, to_run: list[Job], slots: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.tally = Tally(total_jobs, to_run, slots)
        self.console.print(f"[bold]{escape(self.title)}[/]: {total_jobs} jobs, "
                           f"{total_jobs - len(to_run)} already complete, "
                           f"{len(to_run)} to run on {self.describe} ({slots} at a time)")
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[jobs]}"),
                            TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"), console=self.console)
        self.bar.start()
        self.handle = self.bar.add_task(self.title, total=max(self.tally.work_total, 1),
                                        jobs=self.tally.line(),
                                        eta="-:--:--")

    def _refresh(self) -> None:
        self.bar.update(self.handle, completed=self.tally.work_done, jobs=self.tally.line(),
                        eta=format_duration(self.tally.eta_s()))

    def update(self, running: int, waiting_elsewhere: int) -> None:
        self.tally.running, self.tally.elsewhere = running, waiting_elsewhere
        self._refresh()

    def finished(self, outcome: Outcome) -> None:
        self.tally.add(outcome)
        if outcome.status == "failed":
            self.bar.console.print(f"[red]FAILED[/] {escape(job_label(outcome.job))}: "
                                   f"{escape(error_line(outcome.error))}")
        self._refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def print_table(console, title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Every table qbench prints goes through here. On a terminal, a rich table whose cells wrap but are never cut.
    Otherwise (a pipe, a file, a log) plain full-width rows for grep, cut and awk: the title as a '# ' line, then
    a header line of column names, then one line per row, fields separated by tabs."""
    if console.is_terminal:
        from rich.table import Table
        from rich.text import Text
        table = Table(title=Text(title, style="table.title"))
        for col in columns:
            table.add_column(col, overflow="fold")   # a long name is folded onto the next line, never cut
        for row in rows:
            table.add_row(*(Text(str(x)) for x in row))   # Text: a '[' in a value is not rich markup
        console.print(table)
        return
    lines = [f"# {title}"] + ["\t".join(_plain_field(x) for x in row) for row in [columns, *rows]]
    print("\n".join(lines), flush=True)


def _plain_field(value: Any) -> str:
    return " ".join(str(value).split()) if any(c in str(value) for c in "\t\n\r") else str(value)


def summary_rows(outcomes: list[Outcome]) -> list[list[str]]:
    """Per (task, variant): seeds complete and failed, and the final return over the complete seeds."""
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.job.task.name, o.job.variant)].append(o)
    rows = []
    for (task, variant), group in groups.items():
        finals = [o.summary["final_return_mean"] for o in group
                  if o.status != "failed" and "final_return_mean" in o.summary]
        failed = sum(o.status == "failed" for o in group)
        spread = f" +- {_stdev(finals):.1f}" if len(finals) > 1 else ""
        rows.append([task, variant, f"{len(group) - failed}/{len(group)}", str(failed),
                     f"{statistics.fmean(finals):.1f}{spread}" if finals else "-"])
    return rows


def _stdev(values: list[float]) -> float:
    """Sample standard deviation; nan if a value is nan (statistics.stdev raises on a nan)."""
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
