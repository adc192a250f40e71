"""Checkpoint I/O of one seed: the loop state and the parts' state in one atomically written file, the replay as
chunks written as they fill; reading one back (or refusing a damaged one, which is set aside, never deleted).

Each part saves and restores itself: the per-seed parts bundle(k) and unbundle(k, checkpoint) their own state
(Behaviour: the seed's agent stream and action noise; SeedEnvs: the env, replayable from its episode's reset seed
and actions); the learner's networks and optimiser are stacked over the seeds, so a checkpoint holds seed k's
slice of learner.state_dict() and a restore stacks the seeds' slices back; the replay buffer writes and reloads
its own chunks (ReplayBuffer.chunk, load_chunks)."""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from qbench.jobs import Job
from qbench.replay.buffer import ReplayBuffer
from qbench.store import CHECKPOINT, CHECKPOINT_REPLAY, RunDir, atomic_write_bytes

if TYPE_CHECKING:
    from qbench.training.bookkeeping import LoopState


CHECKPOINT_FORMAT = 2   # 2: one seed's slice of a seed-axis batch, env restored by replaying its episode's actions


def save_checkpoint(run: RunDir, job: Job, buffer: ReplayBuffer, seed_index: int, st: LoopState,
                    parts: dict[str, Any]) -> None:
    """Write the seed's transitions added since its last checkpoint as one more replay chunk, then the checkpoint
    that lists the chunks still needed (atomically: it is the commit point), then delete chunks no longer listed.
    The cost of a checkpoint is bounded by what was added since the last one, not by the buffer's size."""
    folder = run.path / CHECKPOINT_REPLAY
    chunk = buffer.chunk(st.replay_chunks[-1]["end"] if st.replay_chunks else 0, seed_index)
    name = f"{chunk['start']:012d}-{chunk['end']:012d}.npz"
    data = io.BytesIO()
    np.savez(data, **chunk)
    atomic_write_bytes(folder / name, data.getvalue())
    st.replay_chunks = [*(c for c in st.replay_chunks if not buffer.chunk_is_obsolete(c["end"])),
                        {"file": name, "start": chunk["start"], "end": chunk["end"]}]
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "job_hash": job.hash, "loop": dataclasses.asdict(st),
                "buffer": buffer.counters(), **parts}, buf)
    atomic_write_bytes(run.path / CHECKPOINT, buf.getvalue())
    listed = {c["file"] for c in st.replay_chunks}
    for path in folder.glob("*.npz"):
        if path.name not in listed:
            path.unlink(missing_ok=True)


class DamagedCheckpointError(RuntimeError):
    """A checkpoint (or one of its replay chunks) that cannot be read back."""


def load_checkpoint(run: RunDir, job: Job) -> dict[str, Any] | None:
    """The run's checkpoint if it belongs to this very job (same hash), else None. A damaged checkpoint, or one in
    a format this code cannot resume, raises DamagedCheckpointError naming the cause."""
    path = run.path / CHECKPOINT
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=False)
        if not isinstance(state, dict):
            raise TypeError("not a qbench checkpoint")
    except Exception as exc:   # noqa: BLE001 - torch raises many kinds for a torn or foreign file
        raise DamagedCheckpointError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from None
    if state.get("job_hash") != job.hash:
        return None
    if state.get("format", 1) != CHECKPOINT_FORMAT:
        raise DamagedCheckpointError(f"{path} was written by an older qbench (checkpoint format "
                                     f"{state.get('format', 1)}, this one reads {CHECKPOINT_FORMAT}) and cannot "
                                     "be resumed")
    chunks = []
    for c in state["loop"].get("replay_chunks", []):
        chunk_path = run.path / CHECKPOINT_REPLAY / c["file"]
        try:
            with np.load(chunk_path) as arrays:
                chunks.append({k: arrays[k] for k in arrays.files})
        except Exception as exc:   # noqa: BLE001
            raise DamagedCheckpointError(f"replay chunk {chunk_path} of {path} cannot be read "
                                         f"({type(exc).__name__}: {exc})") from None
    state["buffer_chunks"] = chunks
    return state


def set_aside_damaged_checkpoint(run: RunDir) -> Path:
    """Move a damaged checkpoint (and its replay chunks) aside under a new name, never deleting it."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = run.path / f"damaged-checkpoint-{stamp}"
    n = 1
    while aside.exists():
        n += 1
        aside = run.path / f"damaged-checkpoint-{stamp}-{n}"
    aside.mkdir()
    for name in (CHECKPOINT, CHECKPOINT_REPLAY):
        if (run.path / name).exists():
            (run.path / name).rename(aside / name)
    return aside
