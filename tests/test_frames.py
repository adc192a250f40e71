"""FrameReplayBuffer against a naive ReplayBuffer fed the same full frame stacks."""

import io

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import FrameStackObservation

from qbench.replay.buffer import ReplayBuffer
from qbench.replay.frames import FrameReplayBuffer
from tests.reference_nstep import returns_of, traced_of

G = 0.9
S = 4
HW = (6, 7)


class Stacker:
    """What FrameStackObservation(env, S, padding_type="reset") makes of a stream of frames."""

    def __init__(self, size):
        self.size = size

    def reset(self, frame):
        self.stack = np.repeat(frame[None], self.size, axis=0)
        return self.stack.copy()

    def step(self, frame):
        self.stack = np.concatenate([self.stack[1:], frame[None]])
        return self.stack.copy()


# per seed: probabilities of (termination, truncation, life loss) at each step; seed 2's episodes are long, so that
# the ring's oldest transitions are often mid-episode once it wraps
EVENTS = ((0.07, 0.06, 0.08), (0.15, 0.03, 0.05), (0.01, 0.01, 0.02))


def stream(steps, seeds=3, seed=0):
    """Transitions of `seeds` fake frame-stacking envs, all seeds stepped together. Each step is a dict of the
    add() arguments with the seed axis first, plus since: steps since the env episode's start (a model of which
    stacks can be rebuilt). Every 29th step of a seed a termination, every 31st a life loss, coincides with a time
    limit (the env episode ends either way)."""
    rng = np.random.default_rng(seed)
    stackers = [Stacker(S) for _ in range(seeds)]
    obs = [st.reset(rng.integers(0, 256, HW, dtype=np.uint8)) for st in stackers]
    since = [0] * seeds
    out = []
    for t in range(steps):
        step = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated", "life_lost",
                                "since", "behaviour_prob")}
        for k in range(seeds):
            next_obs = stackers[k].step(rng.integers(0, 256, HW, dtype=np.uint8))
            p_term, p_trunc, p_life = EVENTS[k]
            u = rng.random()
            terminated = u < p_term or (t + k) % 29 == 28
            truncated = p_term <= u < p_term + p_trunc or (t + k) % 29 == 28 or (t + k) % 31 == 30
            life_lost = p_term + p_trunc <= u < p_term + p_trunc + p_life or (t + k) % 31 == 30
            terminated |= life_lost   # the caller passes terminated for a life loss
            for key, value in (("obs", obs[k]), ("action", rng.integers(0, 2)), ("reward", rng.normal()),
                               ("next_obs", next_obs), ("terminated", terminated), ("truncated", truncated),
                               ("life_lost", life_lost), ("since", since[k]),
                               ("behaviour_prob", rng.uniform(0.2, 1.0))):
                step[key].append(value)
            if (terminated or truncated) and not (life_lost and not truncated):
                obs[k], since[k] = stackers[k].reset(rng.integers(0, 256, HW, dtype=np.uint8)), 0
            else:
                obs[k], since[k] = next_obs, since[k] + 1
        out.append({key: np.array(v) for key, v in step.items()})
    return out


def add(buffers, steps):
    for step in steps:
        for b in buffers:
            b.add(step["obs"], step["action"], step["reward"], step["next_obs"], step["terminated"],
                  step["truncated"], step["life_lost"], behaviour_prob=step["behaviour_prob"])


def pair(capacity, n_step, seeds=3):
    return (ReplayBuffer(seeds, capacity, (S, *HW), (), np.int64, n_step, G),
            FrameReplayBuffer(seeds, capacity, (S, *HW), (), np.int64, n_step, G))


def model_valid(steps, capacity):
    """(K, capacity): slots holding a transition whose stack's frames are all still stored, from the stream."""
    total = len(steps)
    oldest = max(0, total - capacity)
    since = np.stack([s["since"] for s in steps], axis=1)   # (K, total)
    valid = np.zeros((since.shape[0], capacity), dtype=bool)
    for g in range(oldest, total):
        valid[:, g % capacity] = g - np.minimum(since[:, g], S - 1) >= oldest
    return valid


def greedy_hash(states):
    """A deterministic greedy policy over stacks (K, N, S, H, W) -> (K, N): a hash of each stack."""
    flat = states.reshape(*states.shape[:2], -1).astype(np.int64)
    return (flat * np.arange(1, flat.shape[-1] + 1)).sum(axis=-1) % 7 % 2


def q_pi_hash(states):
    """A deterministic (Q, pi) over stacks (K, N, S, H, W) -> (K, N, 2) each, for trace corrections."""
    flat = states.reshape(*states.shape[:2], -1).astype(np.float64)
    q = np.stack([flat[..., ::5].mean(axis=-1), flat[..., 1::7].mean(axis=-1)], axis=-1) / 64.0
    first = 1.0 / (1.0 + np.exp(q[..., 0] - q[..., 1]))
    return q, np.stack([first, 1.0 - first], axis=-1)


def returns(buffer, idx, greedy_fn=None):
    """The n-step returns of the windows at idx, cut by greedy_fn's actions when given (qbench.parts.targets)."""
    return returns_of(buffer.gather(idx), buffer.gamma, greedy_fn)


def traced(buffer, idx, kind):
    """The traced targets of the windows at idx under q_pi_hash, lambda 0.9 (qbench.parts.targets)."""
    return traced_of(buffer.gather(idx), kind, q_pi_hash, buffer.gamma, 0.9)


def continued(steps, capacity):
    """(K, capacity): slots holding a life loss after which the env episode went on (not truncated)."""
    out = np.zeros((len(steps[0]["obs"]), capacity), dtype=bool)
    for g in range(max(0, len(steps) - capacity), len(steps)):
        out[:, g % capacity] = steps[g]["life_lost"] & ~steps[g]["truncated"]
    return out


def assert_same_batches(naive, frames, valid, greedy_fn=None, life_lost=None):
    """Gather every slot (invalid ones too: they must not fail) and compare on the valid ones. Returns the
    numbers of compared bootstraps and of terminated windows. life_lost (K, capacity), the slots of life losses
    after which the episode went on: their windows' bootstrap state is exact although their discount is 0."""
    idx = np.tile(np.arange(naive.capacity), (naive.seeds, 1))
    a, b = returns(naive, idx, greedy_fn), returns(frames, idx, greedy_fn)
    assert b.obs.dtype == b.bootstrap_obs.dtype == np.uint8
    assert b.obs.shape == b.bootstrap_obs.shape == a.obs.shape
    assert b.reward_n.dtype == b.discount_n.dtype == np.float32 and b.actions.dtype == a.actions.dtype
    assert np.array_equal(a.obs[valid], b.obs[valid].astype(np.float32))
    for field in ("actions", "reward_n", "discount_n", "lengths"):
        assert np.array_equal(getattr(a, field)[valid], getattr(b, field)[valid]), field
    # a terminated window's bootstrap state is multiplied by discount 0: FrameReplayBuffer gives some finite stack
    bootstraps = valid & (a.discount_n != 0)
    if life_lost is not None:
        last = (idx + a.lengths - 1) % naive.capacity
        bootstraps |= valid & np.take_along_axis(life_lost, last, axis=1)
    assert np.array_equal(a.bootstrap_obs[bootstraps], b.bootstrap_obs[bootstraps].astype(np.float32))
    if greedy_fn is None:   # a trace correction reads the next state of every step of the window and mu there
        for kind in ("retrace", "importance_sampling"):
            ta, tb = traced(naive, idx, kind), traced(frames, idx, kind)
            assert np.array_equal(ta.target[valid], tb.target[valid]), kind
            assert np.array_equal(ta.trace_mass[valid], tb.trace_mass[valid]), kind
            assert np.isfinite(ta.target[valid]).all()
    return int(bootstraps.sum()), int((valid & (a.discount_n == 0)).sum())


def test_the_fake_stacker_is_what_frame_stack_observation_does():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (20, *HW), dtype=np.uint8)
    ends = {2, 8, 10}   # episodes of 2, 6, 2 steps (shorter than the stack: padding inside the window) then more

    class FrameEnv(gym.Env):
        observation_space = gym.spaces.Box(0, 255, HW, np.uint8)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = getattr(self, "t", -1) + 1
            return frames[self.t], {}

        def step(self, action):
            self.t += 1
            return frames[self.t], 0.0, self.t in ends, False, {}

    env = FrameStackObservation(FrameEnv(), S, padding_type="reset")
    fake = Stacker(S)
    obs, _ = env.reset(seed=0)
    t = 0
    assert np.array_equal(obs, fake.reset(frames[t]))
    while t < 18:
        obs, _, terminated, _, _ = env.step(0)
        t += 1
        assert np.array_equal(obs, fake.step(frames[t]))
        if terminated:
            obs, _ = env.reset()
            t += 1
            assert np.array_equal(obs, fake.reset(frames[t]))


@pytest.mark.parametrize("n_step", [1, 3, 5])
def test_gathers_equal_the_naive_buffer_through_boundaries_and_wrap_around(n_step):
    capacity = 23
    steps = stream(150)
    naive, frames = pair(capacity, n_step)
    bootstraps = terminated = cut = 0
    for t in range(0, len(steps), 5):
        add([naive, frames], steps[t:t + 5])
        valid = model_valid(steps[:t + 5], capacity)
        assert np.array_equal(frames.valid_slots(), valid)
        for greedy_fn in (None, greedy_hash):
            counts = assert_same_batches(naive, frames, valid, greedy_fn, continued(steps[:t + 5], capacity))
            bootstraps, terminated = bootstraps + counts[0], terminated + counts[1]
        if n_step > 1:
            idx = np.tile(np.arange(capacity), (3, 1))
            cut += int((returns(frames, idx, greedy_hash).lengths < frames.gather(idx).lengths)[valid].sum())
    assert frames.total_added > 4 * capacity and (~frames.valid_slots()).any()   # wrapped, with lost stacks
    assert bootstraps > 100 and terminated > 20
    assert n_step == 1 or cut > 50   # the cut-trace path changed windows, identically in both buffers
    kinds = {key: np.stack([s[key] for s in steps]) for key in ("terminated", "truncated", "life_lost")}
    assert (kinds["life_lost"] & ~kinds["truncated"]).sum() > 10 and (kinds["truncated"] & ~kinds["terminated"]).sum() > 10
    assert (kinds["terminated"] & ~kinds["life_lost"] & ~kinds["truncated"]).sum() > 10
    assert (kinds["life_lost"] & kinds["truncated"]).any() and (kinds["terminated"] & kinds["truncated"]).sum() > 3
    # the side table holds exactly the stored truncated, not terminated, transitions' final frames
    kept = 0
    for k in range(3):
        expected = {g for g in range(len(steps) - capacity, len(steps))
                    if kinds["truncated"][g, k] and not kinds["terminated"][g, k]}
        assert set(frames.truncated_frames[k]) == expected
        for g in expected:
            assert np.array_equal(frames.truncated_frames[k][g], steps[g]["next_obs"][k, -1])
        kept += len(expected)
    assert kept > 0


def test_windows_reach_the_newest_transition_and_its_kept_next_frame():
    naive, frames = pair(50, 3, seeds=2)
    steps = stream(9, seeds=2, seed=5)
    add([naive, frames], steps)
    idx = np.array([[8, 7], [8, 6]])
    a, b = returns(naive, idx), returns(frames, idx)
    ok = a.discount_n != 0
    assert ok.any()
    assert np.array_equal(a.bootstrap_obs[ok], b.bootstrap_obs[ok].astype(np.float32))
    assert np.array_equal(b.bootstrap_obs[0, 0], steps[8]["next_obs"][0])


def test_sample_never_draws_a_stack_that_cannot_be_rebuilt():
    capacity = 13
    steps = stream(120, seed=1)
    naive, frames = pair(capacity, 3)
    add([naive, frames], steps[:capacity - 2])
    # before wrapping every slot is valid: the same slots as ReplayBuffer.sample, from the same generators
    a = returns_of(naive.sample(64, [np.random.default_rng(s) for s in (1, 2, 3)]), G)
    b = returns_of(frames.sample(64, [np.random.default_rng(s) for s in (1, 2, 3)]), G)
    assert np.array_equal(a.obs, b.obs.astype(np.float32)) and np.array_equal(a.reward_n, b.reward_n)
    assert np.array_equal(frames.sample_indices(64, [np.random.default_rng(s) for s in (1, 2, 3)]),
                          [np.random.default_rng(s).integers(0, capacity - 2, size=64) for s in (1, 2, 3)])
    lost = 0
    for t in range(capacity - 2, len(steps)):
        add([naive, frames], steps[t:t + 1])
        valid = model_valid(steps[:t + 1], capacity)
        lost += int((~valid).sum())
        rngs = [np.random.default_rng([t, k]) for k in range(3)]
        idx = frames.sample_indices(400, rngs)
        assert valid[np.arange(3)[:, None], idx].all()
        for k in range(3):   # uniform over the valid slots: with 400 draws out of <= 13, each one comes up
            assert set(idx[k].tolist()) == set(np.flatnonzero(valid[k]).tolist())
        # identical generators, identical batches
        one = returns_of(frames.sample(16, [np.random.default_rng([t, k, 9]) for k in range(3)]), G, greedy_hash)
        two = returns_of(frames.sample(16, [np.random.default_rng([t, k, 9]) for k in range(3)]), G, greedy_hash)
        for field in vars(one):
            assert np.array_equal(getattr(one, field), getattr(two, field)) or getattr(one, field) is None
    assert lost > 30   # the oldest transitions' stacks were often unavailable


def test_bytes_per_transition():
    frames = FrameReplayBuffer(3, 10_000, (4, 84, 84), (), np.int64, 3, 0.99)
    naive = ReplayBuffer(3, 10_000, (4, 84, 84), (), np.int64, 3, 0.99)
    stack = 4 * 84 * 84
    # one frame, since (uint8), action (int64), reward (float64), terminated, episode_end, behaviour probability
    # (float32); per seed the newest next_obs stack and the next since (int64), spread over the capacity
    assert frames.bytes_per_transition() == pytest.approx(84 * 84 + 1 + 8 + 8 + 1 + 1 + 4 + (stack + 8) / 10_000)
    assert frames.bytes_per_transition() <= 7100
    # ReplayBuffer stores obs and next_obs as float32: 4 x the 56 KB of two uint8 stacks
    assert naive.bytes_per_transition() == 2 * 4 * stack + 8 + 8 + 1 + 1 + 4
    assert 2 * stack + 18 == pytest.approx(56_000, rel=0.01)
    # a truncation's final frame is kept in the side table until its slot is written again
    small = FrameReplayBuffer(1, 5, (S, *HW), (), np.int64, 1, G)
    base = small.bytes_per_transition()
    reset = np.zeros((1, S, *HW), np.uint8)
    small.add(reset, [0], [0.0], reset + 0, [False], [True])
    assert small.bytes_per_transition() == pytest.approx(base + (6 * 7 + 8) / 5)
    for _ in range(5):
        small.add(reset, [0], [0.0], reset + 0, [False], [False])
    assert small.bytes_per_transition() == pytest.approx(base)


def roundtrip(chunk):
    """What save_checkpoint and the loader do: np.savez, then np.load into a dict of arrays."""
    data = io.BytesIO()
    np.savez(data, **chunk)
    data.seek(0)
    with np.load(data) as arrays:
        return {k: arrays[k] for k in arrays.files}


def checkpoint(buffer, listed):
    """save_checkpoint's bookkeeping for every seed: one chunk since the last one, obsolete ones dropped."""
    for k, chunks in enumerate(listed):
        chunk = roundtrip(buffer.chunk(int(chunks[-1]["end"]) if chunks else 0, k))
        chunks[:] = [*(c for c in chunks if not buffer.chunk_is_obsolete(int(c["end"]))), chunk]


def assert_same_buffers(one, two):
    valid = one.valid_slots()
    assert np.array_equal(valid, two.valid_slots())
    idx = np.tile(np.arange(one.capacity), (one.seeds, 1))
    for greedy_fn in (None, greedy_hash):
        a, b = returns(one, idx, greedy_fn), returns(two, idx, greedy_fn)
        for field in vars(a):
            if getattr(a, field) is not None:
                assert np.array_equal(getattr(a, field)[valid], getattr(b, field)[valid]), field
    assert np.array_equal(one.behaviour_prob, two.behaviour_prob, equal_nan=True)
    # tree_backup reads the behaviour probabilities too
    assert np.array_equal(traced(one, idx, "tree_backup").target[valid], traced(two, idx, "tree_backup").target[valid])
    a = returns_of(one.sample(32, [np.random.default_rng([4, k]) for k in range(one.seeds)]), one.gamma, greedy_hash)
    b = returns_of(two.sample(32, [np.random.default_rng([4, k]) for k in range(one.seeds)]), two.gamma, greedy_hash)
    for field in vars(a):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def test_chunks_round_trip_at_two_checkpoints():
    steps = stream(45, seed=2)
    _, frames = pair(60, 3)
    listed = [[] for _ in range(3)]
    add([frames], steps[:17])
    checkpoint(frames, listed)
    add([frames], steps[17:30])
    checkpoint(frames, listed)
    assert [int(c["start"]) for c in listed[0]] == [0, 17] and int(listed[0][-1]["end"]) == 30
    fresh = pair(60, 3)[1]
    fresh.load_chunks(frames.counters(), listed)
    assert_same_buffers(frames, fresh)
    add([frames, fresh], steps[30:])   # the restored buffer goes on from the same newest next_obs
    assert_same_buffers(frames, fresh)


def test_chunks_round_trip_after_wrap_around_with_obsolete_chunks_dropped():
    capacity = 17
    steps = stream(100, seed=4)
    _, frames = pair(capacity, 3)
    listed = [[] for _ in range(3)]
    dropped = False
    for t in range(0, 91, 7):
        add([frames], steps[t:t + 7])
        before = len(listed[0])
        checkpoint(frames, listed)
        dropped |= len(listed[0]) <= before
    assert dropped and int(listed[0][0]["start"]) > 0
    assert any(len(c["truncated_index"]) for chunks in listed for c in chunks)
    fresh = pair(capacity, 3)[1]
    fresh.load_chunks(frames.counters(), listed)
    assert (~fresh.valid_slots()).any()
    assert_same_buffers(frames, fresh)
    assert all(set(a) == set(b) for a, b in zip(frames.truncated_frames, fresh.truncated_frames, strict=True))
    add([frames, fresh], steps[91:])
    assert_same_buffers(frames, fresh)


def test_add_refuses_a_stream_whose_stacks_it_could_not_rebuild():
    frames = FrameReplayBuffer(1, 10, (S, *HW), (), np.int64, 1, G)
    steps = stream(3, seeds=1, seed=6)
    first = steps[0]
    assert not first["terminated"][0] and not first["truncated"][0]
    later = np.concatenate([first["next_obs"][:, 1:], first["obs"][:, :1]], axis=1)   # next_obs shifted once more
    with pytest.raises(ValueError, match="reset frame repeated"):   # an episode must start with a reset stack
        frames.add(first["next_obs"], [0], [0.0], later, [False], [False])
    add([frames], steps[:1])
    with pytest.raises(ValueError, match="does not continue"):
        frames.add(first["obs"], [0], [0.0], first["next_obs"], [False], [False])
    with pytest.raises(ValueError, match="shifted"):
        frames.add(first["next_obs"], [0], [0.0], first["next_obs"], [False], [False])
    with pytest.raises(ValueError, match="uint8"):
        frames.add(first["next_obs"].astype(np.float32), [0], [0.0], first["next_obs"], [False], [False])
    assert frames.total_added == 1
