"""Expanding a suite into jobs, and where each job's run directory lives. Pure: writes nothing."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

from qbench.config import MAX_SEED, MAX_SEEDS, ConfigError, config_hash, parse_assignment
from qbench.jobs import Job, build_job
from qbench.store import ERROR, SUMMARY
from qbench.suites import Suite

ONLY_KEYS = ("variant", "task", "seed")


def parse_only(texts: list[str] | None) -> dict[str, frozenset[str]]:
    """``--only KEY=VALUE`` filters: values of one key are alternatives (or comma-separated); keys combine."""
    only: dict[str, set[str]] = {}
    for text in texts or []:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or key not in ONLY_KEYS or not value.strip():
            raise ConfigError(f"--only '{text}' must be KEY=VALUE with KEY one of {', '.join(ONLY_KEYS)}")
        only.setdefault(key, set()).update(v.strip() for v in value.split(",") if v.strip())
    return {k: frozenset(v) for k, v in only.items()}


def parse_overrides(texts: list[str] | None) -> dict[str, Any]:
    """``--set key=value`` overrides: the command-line layer, applied after everything in the suite file."""
    return dict(parse_assignment(text) for text in texts or [])


def expand(suite: Suite, seeds: int | None = None, only: dict[str, frozenset[str]] | None = None,
           overrides: dict[str, Any] | None = None, first_seed: int = 0) -> list[Job]:
    """Every (task, variant, seed) job of the suite, resolved and validated, in file order.

    ``seeds`` replaces the suite's seed count; ``first_seed`` shifts the seeds (first_seed .. first_seed + count - 1,
    so that a suite can be run again on seeds it has never seen); ``only`` keeps the jobs whose variant,
    task and seed match; ``overrides`` is the command-line layer. Raises ConfigError (naming the file and the
    task entry) for any job that cannot be built, so nothing starts unless everything is valid.
    """
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise ConfigError(f"--seeds must be a positive integer, got {seeds!r}")
    if seeds is not None and seeds > MAX_SEEDS:
        raise ConfigError(f"--seeds must be at most {MAX_SEEDS:,}, got {seeds:,}")
    if isinstance(first_seed, bool) or not isinstance(first_seed, int) or not 0 <= first_seed <= MAX_SEED - MAX_SEEDS:
        raise ConfigError(f"--first-seed must be an integer in 0..{MAX_SEED - MAX_SEEDS:,}, got {first_seed!r}")
    only = only or {}

    def seeds_of(entry) -> range:   # --seeds, else the task's own count, else the suite's
        return range(first_seed, first_seed + (seeds if seeds is not None else entry.seeds or suite.seeds))
    _check_only_matches(suite, range(first_seed, first_seed + max(len(seeds_of(e)) for e in suite.entries)), only)
    jobs: list[Job] = []
    seen: set[str] = set()
    for entry in suite.entries:
        if "task" in only and entry.name not in only["task"]:
            continue
        for variant in entry.variants:
            if "variant" in only and variant not in only["variant"]:
                continue
            where = f"{entry.source}: tasks.{entry.name} (variant '{variant}')"
            tuned = entry.tuned.get(variant)
            try:
                # Seeds share everything but the seed, so one resolution (and one env probe) serves them all.
                first = build_job(variant, entry.name, 0, *entry.layers, tuned.settings if tuned else {},
                                  overrides or {}, extra_variants=suite.custom_variants,
                                  extra_tasks=suite.custom_tasks)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - e.g. env_kwargs the environment refuses: a user mistake
                first_line = (str(exc).strip().splitlines() or [""])[0]
                raise ConfigError(f"{where}: cannot build the environment: {type(exc).__name__}: "
                                  f"{first_line}") from None
            if tuned is not None:
                first = dataclasses.replace(first, tuned_from=tuned.note)
                _check_untuned_seeds(suite, entry.name, variant, seeds_of(entry), tuned.note["tuning_seeds"])
            for seed in seeds_of(entry):
                if "seed" in only and str(seed) not in only["seed"]:
                    continue
                job = dataclasses.replace(first, seed=seed)
                if job.hash not in seen:
                    seen.add(job.hash)
                    jobs.append(job)
    return jobs


def _check_untuned_seeds(suite: Suite, task: str, variant: str, seeds: range, tuning_seeds: list[int]) -> None:
    """Results are never reported on the seeds their settings were tuned on."""
    overlap = sorted(set(seeds) & set(tuning_seeds))
    if overlap:
        from qbench.tuning import seeds_text
        raise ConfigError(f"suite '{suite.name}': {task} {variant} would run seeds {seeds_text(seeds)}, and its "
                          f"tuned settings were tuned on seeds {seeds_text(tuning_seeds)} (both hold "
                          f"{', '.join(map(str, overlap))}); report on seeds the tuning did not see")


def _check_only_matches(suite: Suite, seed_list: range, only: dict[str, frozenset[str]]) -> None:
    """A filter value that matches nothing is a typo, not an empty run."""
    present = {"task": {e.name for e in suite.entries},
               "variant": {v for e in suite.entries for v in e.variants},
               "seed": {str(s) for s in seed_list}}
    for key, values in only.items():
        missing = sorted(values - present[key])
        if missing:
            raise ConfigError(f"--only {key}={','.join(missing)} matches no job of suite '{suite.name}'; "
                              f"{key}s in it: {', '.join(sorted(present[key], key=_natural))}")


def _natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _component(name: str) -> str:
    """A task or variant name as one safe path component (module:Class names hold a colon)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def run_path(results_dir: Path, suite_name: str, job: Job) -> Path:
    """results/<suite>/<task>/<variant>/seed<k>-<jobhash>: the hash names the resolved config, so a changed
    setting is a new job in a new directory and never mixes with old rows."""
    return (Path(results_dir) / _component(suite_name) / _component(job.task.name) / _component(job.variant)
            / f"seed{job.seed}-{job.hash}")


def job_state(path: Path) -> str:
    """complete (summary.json), failed (error.json, no summary), partial (started, not finished) or new."""
    if (path / SUMMARY).exists():
        return "complete"
    if (path / ERROR).exists():
        return "failed"
    return "partial" if path.exists() else "new"


# --- seed batches: the seeds of one (variant, task, config) train together in one process

def batch_key(job: Job) -> tuple[str, str, str]:
    """Jobs with the same key differ only in their seed: (variant, task name, hash of everything but the seed,
    that is the resolved config, the env id and the env kwargs)."""
    return (job.variant, job.task.name, config_hash({**job.to_dict(), "seed": None}))


def check_seed_batch(seed_batch: int | None) -> None:
    if seed_batch is not None and (isinstance(seed_batch, bool) or not isinstance(seed_batch, int)
                                   or seed_batch < 1):
        raise ConfigError(f"--seed-batch must be a positive integer, got {seed_batch}")


def replay_bytes_estimate(job: Job) -> float:
    """Bytes one seed's replay buffer will allocate, from its config alone (no env is made): Atari stores one
    screen_size^2 frame per transition (qbench/replay/frames.py), MinAtar obs and next obs of at most 10x10x10 bytes
    each; vector tasks are small enough to ignore (0)."""
    c = job.config
    if job.task.family == "atari":
        return c.buffer_size * (c.screen_size ** 2 + 20)
    if job.task.family == "minatar":
        return c.buffer_size * (2 * 1000 + 20)
    return 0.0


# The least a replay buffer holds per transition and seed, and the least its largest single array (seeds x
# capacity x ...) holds: vector tasks (qbench/replay/buffer.py) store obs and next obs (float32, at least one number
# each), the action (at least 4 bytes), the reward (float64, the array floor), two flags and mu(a|s); Atari
# (qbench/replay/frames.py) one screen_size^2 frame (the array floor) and about 20 bytes more; MinAtar obs and next
# obs of at least 10x10x4 bytes (Breakout's 4 channels, the fewest) each.
MIN_VECTOR_BYTES = (4 + 4 + 4 + 8 + 1 + 1 + 4, 8)
MIN_MINATAR_BYTES = (2 * 400 + 20, 400)


def replay_floor_bytes(job: Job) -> tuple[int, int]:
    """(bytes per transition, bytes per transition of the largest array) that one seed's replay holds at least."""
    if job.task.family == "atari":
        frame = job.config.screen_size ** 2
        return frame + 20, frame
    return MIN_MINATAR_BYTES if job.task.family == "minatar" else MIN_VECTOR_BYTES


def check_replay_allocates(job: Job, seeds_per_process: int) -> None:
    """Refuse a buffer_size that cannot work on this machine, by two floors: the transitions the run will store
    (buffer_size or total_env_steps, whichever is smaller) need more than its memory and swap; or the buffer's
    largest array is larger than memory and swap, which Linux refuses to allocate unless it is set to overcommit
    always. A run either lets through may still run short of memory; one refused could never run."""
    c = job.config
    k = seeds_per_process
    per_transition, per_array_transition = replay_floor_bytes(job)
    stored = per_transition * min(c.buffer_size, c.total_env_steps) * k
    array = per_array_transition * c.buffer_size * k
    have = memory_bytes_total()
    seeds = f" ({k} seeds in one process)" if k > 1 else ""
    if stored > have:
        raise ConfigError(f"the {min(c.buffer_size, c.total_env_steps):,} transitions a run of buffer_size "
                          f"{c.buffer_size:,} stores need at least {_gib(stored)}{seeds}; this machine has "
                          f"{_gib(have)} of memory and swap: set a smaller buffer_size")
    if array > have and not overcommits_always():
        raise ConfigError(f"buffer_size {c.buffer_size:,} needs a replay array of at least {_gib(array)}{seeds}, "
                          f"larger than this machine's {_gib(have)} of memory and swap, so it cannot be "
                          "allocated: set a smaller buffer_size")


def check_networks_fit(config, spaces) -> None:
    """Refuse networks that cannot be built on this machine: one seed's parameters, with their gradients, the
    optimiser's state and the target copies (parts/sizes.py), need more than its memory and swap."""
    from qbench.parts.sizes import network_bytes

    parameters, need = network_bytes(config, spaces)
    have = memory_bytes_total()
    if need > have:
        raise ConfigError(f"hidden_sizes {config.hidden_sizes} make networks of {parameters:,} parameters a seed, "
                          f"which need at least {_gib(need)} with their gradients, optimiser state and target "
                          f"copies; this machine has {_gib(have)} of memory and swap: set smaller hidden_sizes")


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2 ** 30:,.1f} GiB"


def overcommits_always() -> bool:
    """Linux set to grant any allocation (vm.overcommit_memory = 1): an array larger than memory is then given,
    and only the pages touched count."""
    try:
        return Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1"
    except OSError:
        return False


@functools.cache
def memory_bytes_total() -> float:
    """Memory and swap this machine has (MemTotal + SwapTotal), or inf where /proc/meminfo is not there."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return sum(float(fields[k].split()[0]) * 1024 for k in ("MemTotal", "SwapTotal") if k in fields)
    except (OSError, ValueError):
        return math.inf


def memory_bytes_available() -> float:
    """Memory this machine can still give (MemAvailable), or inf where /proc/meminfo is not there."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return math.inf


def memory_cap(jobs: list[Job], slots: int, memory_bytes: float | None) -> int | None:
    """The most seeds a batch may hold so that every slot's batch fits in 70% of the memory left (Atari's 1M
    replay is 7 GB a seed: 5 seeds a batch would not fit this machine); None when memory does not bind."""
    per_seed = max((replay_bytes_estimate(j) for j in jobs), default=0.0)
    budget = 0.7 * (memory_bytes_available() if memory_bytes is None else memory_bytes) / max(slots, 1)
    if per_seed == 0 or not math.isfinite(budget):
        return None
    return max(1, int(budget // per_seed))


def make_batches(jobs: list[Job], seed_batch: int | None = None, slots: int = 1,
                 memory_bytes: float | None = None) -> list[list[Job]]:
    """Group jobs into batches that train together: a batch holds jobs of one ``batch_key`` only (never two
    configs), in the order given; groups in the order of their first job.

    ``seed_batch`` K: at most K jobs a batch (each group cut into runs of K, the last shorter). None: a whole group
    a batch, but when that makes fewer batches than ``slots`` (the backend's workers), groups are cut into near-equal
    parts (the largest batch first) until every slot has a batch or every batch is one job: 8 seeds on 2 workers
    are 2 batches of 4. Either way a batch never holds more seeds than their replay buffers fit in memory
    (memory_cap; memory_bytes: what to count as available, default this machine's).
    """
    check_seed_batch(seed_batch)
    groups: dict[tuple[str, str, str], list[Job]] = {}
    for job in jobs:
        groups.setdefault(batch_key(job), []).append(job)
    sizes = [len(g) for g in groups.values()]
    cap = memory_cap(jobs, slots, memory_bytes)
    if cap is not None and max(sizes, default=0) > cap and (seed_batch is None or seed_batch > cap):
        seed_batch = cap
    if seed_batch is not None:
        parts = [math.ceil(n / seed_batch) for n in sizes]
    else:
        parts = [1] * len(sizes)
        while sum(parts) < slots:
            # the group whose batches are largest now, among those that can still be cut
            splittable = [i for i, n in enumerate(sizes) if parts[i] < n]
            if not splittable:
                break
            i = max(splittable, key=lambda i: (math.ceil(sizes[i] / parts[i]), -i))
            parts[i] += 1
    batches: list[list[Job]] = []
    for group, n_parts in zip(groups.values(), parts, strict=True):
        if seed_batch is not None:
            batches.extend(group[i:i + seed_batch] for i in range(0, len(group), seed_batch))
        else:   # n_parts near-equal runs, the longer ones first
            base, extra = divmod(len(group), n_parts)
            start = 0
            for k in range(n_parts):
                end = start + base + (k < extra)
                batches.append(group[start:end])
                start = end
    return batches


def estimated_cost(batch: list[Job]) -> float:
    """A rough cost of training a batch, in multiply-adds, only to start the longest batches first (longest
    processing time first: a long batch started last would leave every other worker idle at the end). Per seed:
    every gradient step's forward and backward passes plus the target's (a sampling maximiser evaluates Q on
    population x iterations or random_samples_target actions per state), every env step's action; per batch: a
    fixed cost per gradient step and per env step for the Python around the kernels."""
    c = batch[0].config
    widths = list(c.hidden_sizes)
    macs = sum(a * b for a, b in itertools.pairwise(widths)) + 8 * sum(widths)
    target_rows = {"random": c.random_samples_target, "cem": c.cem_population * c.cem_iterations,
                   "actor": 3}.get(c.maximiser, 1)
    act_rows = {"random": c.random_samples_act, "cem": c.cem_population * c.cem_iterations}.get(c.maximiser, 1)
    updates = max(0, c.total_env_steps - c.warmup_env_steps) / c.env_steps_per_update * c.grad_steps_per_update
    per_seed = updates * c.batch_size * macs * (3 + target_rows) + c.total_env_steps * macs * act_rows
    return len(batch) * per_seed + updates * 45e6 + c.total_env_steps * 5e6


SEED_LIST_FORMS = "a seed (3), a range (0-7), a list (0,2,5) or both (0-3,8)"


def parse_seed_list(text: str) -> list[int]:
    """``--seeds`` of qbench train: '3', '0-7', '0,2,5', '0-3,8' -> the seeds in the order written. A seed twice,
    a range written high-low, a negative or a word is refused in one line naming the valid forms."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise ConfigError(f"--seeds '{text}' is not a seed list; give {SEED_LIST_FORMS}, seeds >= 0")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ConfigError(f"--seeds '{text}': range {part} runs backwards; write it low-high ({high}-{low})")
        if len(seeds) + high - low + 1 > MAX_SEEDS:
            raise ConfigError(f"--seeds '{text}' names {len(seeds) + high - low + 1:,} seeds or more; at most "
                              f"{MAX_SEEDS:,} train in one command")
        seeds.extend(range(low, high + 1))
    twice = sorted(s for s, n in Counter(seeds).items() if n > 1)
    if twice:
        raise ConfigError(f"--seeds '{text}' names seed {', '.join(map(str, twice))} more than once; give "
                          f"{SEED_LIST_FORMS}")
    return seeds
