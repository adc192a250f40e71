"""The divergence watch: which seeds to stop because their Q diverged, and which to flag because their Q went
far past any return the task can pay (flagged and counted in the report, never stopped or removed for it).

The rule, in one sentence: a seed is stopped when its loss, gradient or largest |Q| on a sampled batch is not
finite, or when that |Q| exceeds ``STOP_FACTOR`` (1000) value scales; it is flagged the first time |Q| exceeds
``WARN_FACTOR`` (5) value scales; one value scale is max(r_max, 1) / (1 - gamma) (the largest discounted
return the rewards seen so far allow), with the longest episode in place of 1 / (1 - gamma) when gamma is 1.

Why these numbers (the committed runs in results/benchmarks, 213 distinct runs, 186 completed with a |Q|
trace):

- No completed run reached 10 value scales: the largest is 9.82 (CartPole-v1 nstep_cut_dqn seed 4, |Q| 981.8
  at env step 7,000, back to 141 by the end, final return 500). The old watch (10 scales, stop) stopped 14
  distinct runs at 10.1 to 14.8 scales (|Q| 1,009 to 1,478); four of them (huber_dqn seeds 0 and 4, online_q
  seeds 0 and 4 on CartPole) had completed before the watch existed, with finite values, at 492, 86, 421 and
  422. So runs do come back from beyond 10 scales, and how far beyond they went is not recorded. 1000 scales
  is 102 times the largest completed run's peak and 68 times the largest |Q| any committed run ever logged
  (14.8 scales, at a stop).
- Divergence grows geometrically, so a level 100 times the old one costs a few rounds (7 doublings):
  huber_dqn's runaway seed (Q(s0) about 1.9e8 on CartPole, loss finite) passes 1e5 = 1000 scales at 1/1900 of
  where it ended. Recovering excursions grow just as geometrically on the way up (x1.3 to x3.2 per 1,000 env
  steps for five log rows in a row: 32, 104, 217, 386, 490, 982, then down to 141), so a growth-rate rule
  could not tell them apart early; a level alone is enough, and simpler.
- Warning at 5 scales: |Q| five times the largest return the task can pay. 11 of the 186 completed runs cross
  it (all importance sampling, cut traces or online_q, the variants the reports discuss as unstable),
  including the 9.82 run above, which is flagged and kept; every run the old watch stopped crosses it (at the
  latest at its stop).
- r_max is floored at 1 reward unit: a freshly initialised network already predicts |Q| of order 1 whatever
  the rewards, so with tiny or no rewards a bound in r_max alone would flag the initialisation; with rewards
  that are all 0 (Baird's star, Tsitsiklis and Van Roy's two states) the true Q is 0 and the watch still stops
  the growth (the old watch never watched r_max = 0 or gamma = 1).

Units: |Q| and the levels are in return units (the task's rewards, as the learner sees them, i.e. after any
clipping); a "value scale" is dimensionless (|Q| over one scale). Every array is (K,), one entry per seed of a
batch, so one call per round of gradient steps watches all seeds at once; the state between rounds is the
small ``WatchState`` and nothing else.

In the training loop, once per round of gradient steps (``Bookkeeper.watch_divergence`` in
qbench/training/bookkeeping.py)::

    verdict = watch_round(state, q_abs_max, reward_abs_max, gamma, env_steps, non_finite, alive,
                          longest_episode_steps, warn_factor, stop_factor)   # longest read only when gamma is 1
    state = verdict.state
    for k in np.flatnonzero(verdict.warned_now): ...   # say so; seed_record(state, k) goes into summary.json
    for k in np.flatnonzero(verdict.stopped_now): ...  # error.json "diverged", the seed masked out of the batch
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

WARN_FACTOR = 5.0        # value scales: flag the seed (first env step and peak), never stop it
STOP_FACTOR = 1000.0     # value scales: stop the seed as diverged (102x the largest completed run's 9.82)
REWARD_FLOOR = 1.0       # reward units: r_max counts as at least this (a fresh network's |Q| is of order 1)


@dataclasses.dataclass(frozen=True)
class WatchState:
    """What the watch remembers between rounds, per seed (K,). Never changed in place: ``watch_round``
    returns a new one."""

    peak_q_abs: np.ndarray             # largest finite |Q| on a sampled batch (return units; 0 before any)
    peak_value_scales: np.ndarray      # largest |Q| / value scale (dimensionless)
    first_warned_env_step: np.ndarray  # int64: env step of the round |Q| first passed the warn level, or -1
    stopped_env_step: np.ndarray       # int64: env step of the round the seed was stopped; -1 while it is not
    stopped_non_finite: np.ndarray     # bool: stopped for a NaN or infinite value (else: past the stop level)

    @property
    def warned(self) -> np.ndarray:
        return self.first_warned_env_step >= 0

    @property
    def stopped(self) -> np.ndarray:
        return self.stopped_env_step >= 0


@dataclasses.dataclass(frozen=True)
class RoundVerdict:
    """One round's outcome for K seeds: the state to keep, who was flagged or stopped in this round, and the
    levels they were judged against (return units, for the messages)."""

    state: WatchState
    warned_now: np.ndarray        # bool: passed the warn level for the first time in this round
    stopped_now: np.ndarray       # bool: stopped in this round (non-finite, or past the stop level)
    non_finite_now: np.ndarray    # bool: of those stopped now, the ones stopped for a NaN or infinite value
    warn_level: np.ndarray        # |Q| in return units
    stop_level: np.ndarray        # |Q| in return units


@dataclasses.dataclass(frozen=True)
class TraceVerdict:
    """The rule replayed over one seed's recorded |Q| per round (``judge_trace``): round indices are 0-based
    positions in the trace, None when it never happened."""

    stopped_round: int | None
    stopped_non_finite: bool
    warned_round: int | None
    peak_q_abs: float
    peak_value_scales: float


def new_state(k_seeds: int) -> WatchState:
    """The state before the first round: nothing seen, nobody flagged or stopped."""
    return WatchState(peak_q_abs=np.zeros(k_seeds), peak_value_scales=np.zeros(k_seeds),
                      first_warned_env_step=np.full(k_seeds, -1, dtype=np.int64),
                      stopped_env_step=np.full(k_seeds, -1, dtype=np.int64),
                      stopped_non_finite=np.zeros(k_seeds, dtype=bool))


def value_scale(reward_abs_max, gamma: float, longest_episode_steps=None) -> np.ndarray:
    """(K,) one value scale in return units: max(r_max, REWARD_FLOOR) times the horizon, 1 / (1 - gamma) for
    gamma < 1 (no discounted return can exceed r_max / (1 - gamma)), else the longest episode (steps) the seed
    has seen or the task's step limit (an undiscounted return is at most r_max a step). gamma 1 without
    ``longest_episode_steps`` is refused: there is no bound to scale by."""
    r_max = np.asarray(reward_abs_max, dtype=np.float64)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if gamma < 1.0:
        horizon_steps = np.float64(1.0 / (1.0 - gamma))
    else:
        if longest_episode_steps is None:
            raise ValueError("gamma is 1: pass longest_episode_steps (the longest episode seen, or the "
                             "task's step limit) to scale the divergence watch")
        horizon_steps = np.maximum(np.asarray(longest_episode_steps, dtype=np.float64), 1.0)
    return np.maximum(np.nan_to_num(r_max, nan=0.0), REWARD_FLOOR) * horizon_steps


def levels(reward_abs_max, gamma: float, longest_episode_steps=None, warn_factor: float = WARN_FACTOR,
           stop_factor: float = STOP_FACTOR) -> tuple[np.ndarray, np.ndarray]:
    """(warn level, stop level), each (K,) |Q| in return units. stop_factor inf switches the level stop off
    (NaN and infinite values still stop a seed)."""
    if not 0.0 < warn_factor <= stop_factor or warn_factor == np.inf:
        raise ValueError(f"need 0 < warn_factor <= stop_factor and warn_factor finite, got {warn_factor} "
                         f"and {stop_factor}")
    scale = value_scale(reward_abs_max, gamma, longest_episode_steps)
    return warn_factor * scale, stop_factor * scale


def watch_round(state: WatchState, q_abs_max, reward_abs_max, gamma: float, env_step: int, non_finite=None,
                alive=None, longest_episode_steps=None, warn_factor: float = WARN_FACTOR,
                stop_factor: float = STOP_FACTOR) -> RoundVerdict:
    """Judge one round of gradient steps for K seeds; pure (``state`` is not changed).

    q_abs_max: (K,) the largest |Q| predicted on a sampled batch (in this round, or since the last log row:
    the rule only compares levels, so either works); non_finite: (K,) True where the loss or gradient norm
    went NaN or infinite (None: only q_abs_max is checked); reward_abs_max: (K,) r_max, the largest |reward|
    the learner has seen; alive: (K,) the seeds to judge (default: every seed not stopped yet; a stopped seed
    is never judged again). A seed is flagged at most once (its first env step kept); its peak follows every
    finite |Q|."""
    q_abs = np.abs(np.asarray(q_abs_max, dtype=np.float64))
    k_seeds = len(state.peak_q_abs)
    if q_abs.shape != (k_seeds,):
        raise ValueError(f"q_abs_max has shape {q_abs.shape}, the state watches {k_seeds} seeds")
    judged = ~state.stopped if alive is None else np.asarray(alive, dtype=bool) & ~state.stopped
    bad = ~np.isfinite(q_abs)
    if non_finite is not None:
        bad |= np.asarray(non_finite, dtype=bool)
    warn_level, stop_level = levels(np.broadcast_to(reward_abs_max, (k_seeds,)), gamma,
                                    longest_episode_steps, warn_factor, stop_factor)
    finite_q = np.where(bad, 0.0, q_abs)
    scales = finite_q * warn_factor / warn_level   # |Q| in value scales

    non_finite_now = judged & bad
    stopped_now = non_finite_now | (judged & (finite_q > stop_level))
    warned_now = judged & ~state.warned & (finite_q > warn_level)
    new = WatchState(
        peak_q_abs=np.where(judged, np.maximum(state.peak_q_abs, finite_q), state.peak_q_abs),
        peak_value_scales=np.where(judged, np.maximum(state.peak_value_scales, scales),
                                   state.peak_value_scales),
        first_warned_env_step=np.where(warned_now, env_step, state.first_warned_env_step),
        stopped_env_step=np.where(stopped_now, env_step, state.stopped_env_step),
        stopped_non_finite=state.stopped_non_finite | non_finite_now)
    return RoundVerdict(state=new, warned_now=warned_now, stopped_now=stopped_now,
                        non_finite_now=non_finite_now, warn_level=warn_level, stop_level=stop_level)


def judge_trace(q_abs_per_round: Sequence[float], reward_abs_max, gamma: float, env_steps=None,
                longest_episode_steps=None, warn_factor: float = WARN_FACTOR,
                stop_factor: float = STOP_FACTOR) -> TraceVerdict:
    """Replay the rule over one seed's recorded |Q| per round (e.g. the q_abs_max column of a diagnostics.csv,
    a row standing for a round), with r_max a number or one per round. Ends at the round that stops it."""
    q = list(q_abs_per_round)
    r_max = np.broadcast_to(np.asarray(reward_abs_max, dtype=np.float64), (len(q),))
    steps = range(len(q)) if env_steps is None else list(env_steps)
    state = new_state(1)
    warned_round = None
    for i, (q_i, step) in enumerate(zip(q, steps, strict=True)):
        verdict = watch_round(state, [q_i], r_max[i:i + 1], gamma, int(step),
                              longest_episode_steps=longest_episode_steps, warn_factor=warn_factor,
                              stop_factor=stop_factor)
        state = verdict.state
        if verdict.warned_now[0]:
            warned_round = i
        if verdict.stopped_now[0]:
            return TraceVerdict(i, bool(verdict.non_finite_now[0]), warned_round,
                                float(state.peak_q_abs[0]), float(state.peak_value_scales[0]))
    return TraceVerdict(None, False, warned_round, float(state.peak_q_abs[0]),
                        float(state.peak_value_scales[0]))


def seed_record(state: WatchState, k: int) -> dict:
    """Seed k's watch as plain JSON values: for summary.json (the report counts flagged seeds from it) and
    for checkpoints (``state_from_records`` reads it back)."""
    warned_at, stopped_at = int(state.first_warned_env_step[k]), int(state.stopped_env_step[k])
    return {"peak_q_abs": float(state.peak_q_abs[k]), "peak_value_scales": float(state.peak_value_scales[k]),
            "first_warned_env_step": warned_at if warned_at >= 0 else None,
            "stopped_env_step": stopped_at if stopped_at >= 0 else None,
            "stopped_non_finite": bool(state.stopped_non_finite[k])}


def state_from_records(records: Sequence[dict]) -> WatchState:
    """The state of K seeds from their ``seed_record``s (a resumed batch)."""
    def steps(key: str) -> np.ndarray:
        return np.array([-1 if r.get(key) is None else int(r[key]) for r in records], dtype=np.int64)

    def numbers(key: str) -> np.ndarray:
        return np.array([float(r.get(key, 0.0)) for r in records])

    return WatchState(peak_q_abs=numbers("peak_q_abs"), peak_value_scales=numbers("peak_value_scales"),
                      first_warned_env_step=steps("first_warned_env_step"),
                      stopped_env_step=steps("stopped_env_step"),
                      stopped_non_finite=np.array([bool(r.get("stopped_non_finite")) for r in records]))


def describe(verdict: RoundVerdict, k: int, q_abs_max: float, reward_abs_max: float, gamma: float,
             warn_factor: float = WARN_FACTOR, stop_factor: float = STOP_FACTOR) -> str:
    """A line for error.json (seed k stopped in this round) or for the warning (seed k flagged in it)."""
    if verdict.non_finite_now[k]:
        return f"|Q|, the TD loss or the gradient norm became NaN or infinite (|Q| {q_abs_max:.4g})"
    stopped = bool(verdict.stopped_now[k])
    which, factor = ("stop", stop_factor) if stopped else ("warning", warn_factor)
    level = verdict.stop_level[k] if stopped else verdict.warn_level[k]
    floor = ", floored at 1" if reward_abs_max < REWARD_FLOOR else ""
    horizon = "1 / (1 - gamma)" if gamma < 1.0 else "the longest episode"
    return (f"|Q| reached {q_abs_max:.4g} on a sampled batch, above the divergence {which} level "
            f"{factor:g} x max(r_max, 1) x {horizon} = {level:.4g} (r_max = {reward_abs_max:.4g}{floor}: "
            f"the largest |reward| seen; gamma = {gamma:g})")
