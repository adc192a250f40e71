"""Pixel tasks end to end: MinAtar (and Atari, where ale-py is installed) through the engine, the image encoders
with the seed axis, and checkpoint + resume of a pixel job."""

from __future__ import annotations

import pandas as pd
import pytest

from qbench.engine import run_batch
from qbench.jobs import build_job
from qbench.store import CHECKPOINT, RunDir
from tests.test_seed_axis import Interrupt, interrupt_after_checkpoint, rows

pytest.importorskip("minatar")

MINATAR_TINY = {"total_env_steps": 1_200, "warmup_env_steps": 300, "eval_interval_env_steps": 600,
                "eval_episodes": 2, "buffer_size": 2_000, "checkpoint_interval_env_steps": 350,
                "log_interval_env_steps": 300, "target_period_grad_steps": 100, "eps_decay_fraction": 0.5}


@pytest.mark.parametrize("variant", ["dqn", "double_dqn"])
def test_a_killed_minatar_batch_resumes_to_the_uninterrupted_numbers(variant, tmp_path):
    """MinAtar keeps its own random stream (sticky actions, spawns): each episode is reset with a seed of its own,
    so a checkpoint mid-episode is restored by replaying the episode from that seed."""
    seeds = [0, 3]
    jobs = [build_job(variant, "MinAtar/Breakout-v1", s, MINATAR_TINY) for s in seeds]
    straight = run_batch(jobs, [RunDir(tmp_path / "straight" / str(s)) for s in seeds])
    cut = [RunDir(tmp_path / "cut" / str(s)) for s in seeds]
    with pytest.raises(Interrupt):
        run_batch(jobs, cut, progress=interrupt_after_checkpoint(2))
    assert all((run.path / CHECKPOINT).exists() and not run.complete for run in cut)
    resumed = run_batch(jobs, cut)
    for s, a, b in zip(seeds, straight, resumed, strict=True):
        for name in ("evaluations.csv", "diagnostics.csv"):
            pd.testing.assert_frame_equal(rows(tmp_path / "straight" / str(s), name),
                                          rows(tmp_path / "cut" / str(s), name))
        assert (a["final_return_mean"], a["episodes"]) == (b["final_return_mean"], b["episodes"])
        assert a["episodes"] > 5   # several episodes: later resets, seeded from the episode counter, were replayed
