"""The engine's public names, from their homes in qbench/training/ (loop.py holds the training loop; see
qbench/training/__init__.py for the rest). Kept so that code written against qbench.engine goes on working; new
code imports from qbench.training.<module>."""

from qbench.parts.targets import bootstrap_value, td_targets, value_target
from qbench.training.behaviour import Behaviour
from qbench.training.bookkeeping import (
    TRAIN_RETURN_WINDOW,
    Bookkeeper,
    DivergedError,
    LoopState,
    UpdateStats,
    frame_counts,
    peak_rss_mb,
)
from qbench.training.build import (
    Learner,
    MeanQ,
    build_maximisers,
    build_optimiser,
    build_q,
    learner_rewards,
    make_buffer,
    resolve_device,
)
from qbench.training.checkpoint import (
    CHECKPOINT_FORMAT,
    DamagedCheckpointError,
    load_checkpoint,
    save_checkpoint,
    set_aside_damaged_checkpoint,
)
from qbench.training.evaluation import (
    TAIL_WEIGHT,
    Evaluation,
    KnownDynamics,
    episode_horizon,
    evaluate,
    known_dynamics,
    visited_returns,
)
from qbench.training.loop import td_step_loss, trace_length, train, train_batch
from qbench.training.rundir import run_batch, run_job
from qbench.training.seeding import STREAMS, derived_seed, stream_seed, stream_sequence, torch_generators

__all__ = [
    "CHECKPOINT_FORMAT", "STREAMS", "TAIL_WEIGHT", "TRAIN_RETURN_WINDOW", "Behaviour", "Bookkeeper",
    "DamagedCheckpointError", "DivergedError", "Evaluation", "KnownDynamics", "Learner", "LoopState", "MeanQ",
    "UpdateStats", "bootstrap_value", "build_maximisers", "build_optimiser", "build_q", "derived_seed",
    "episode_horizon", "evaluate", "frame_counts", "known_dynamics", "learner_rewards", "load_checkpoint",
    "make_buffer", "peak_rss_mb", "resolve_device", "run_batch", "run_job", "save_checkpoint",
    "set_aside_damaged_checkpoint", "stream_seed", "stream_sequence", "td_step_loss", "td_targets",
    "torch_generators", "trace_length", "train", "train_batch", "value_target", "visited_returns",
]
