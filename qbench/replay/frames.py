"""Replay for frame-stacked observations that stores every frame once.

The observations are uint8 stacks (S, H, W), frame -1 the newest, as gymnasium's
FrameStackObservation(env, S, padding_type="reset") makes them: at a reset the stack is the reset frame repeated S
times, and each step shifts in one new frame. Consecutive transitions of one episode share S-1 frames of obs and
S-1 of next_obs, so FrameReplayBuffer keeps, per seed and slot, only the newest frame of obs and rebuilds stacks
when sampling. Its public interface and its Window are those of ReplayBuffer (obs stacks come back as uint8).

What is stored, per seed and slot (global index g in slot g % capacity):
  frames[g]       the newest frame of obs_g (the stack's other frames are the newest frames of g-1, g-2, ...)
  since[g]        steps since the episode's first transition, capped at S (0: obs_g is a reset stack);
                  a life loss is no stack boundary, so it does not restart the count
  actions, rewards, terminated, episode_end, behaviour_prob   as in ReplayBuffer (episode_end: terminated or truncated, which
                  a life loss is, since the caller passes terminated for it: windows stop there)
and beside the ring, per seed:
  the newest transition's whole next_obs stack (its next frame is in no slot yet; the whole stack also lets add()
  check that the next obs continues it), the since value the next transition will get, and a side table of the
  final frames of truncated transitions {global index: frame}, pruned when that slot is written again.

The next_obs of transition g is obs_{g+1} shifted by one frame, whose newest frame is:
  frames[g+1]            when obs_{g+1} continues the episode (no boundary after g: not an episode end, or a life
                         loss, after which the env episode goes on and so does the stack);
  the newest next frame  when g is the newest transition;
  the side table's frame when g was truncated (time limit): the final state still has a value to bootstrap from;
  frames[g] repeated     when g terminated: its discount is 0, so the bootstrap state is multiplied by 0 and any
                         finite stack does; this one is made from frames of g's own episode.
"""

from __future__ import annotations

import numpy as np

from qbench.replay.buffer import Ring, Window, chunk_array


class FrameReplayBuffer(Ring):
    """ReplayBuffer for uint8 frame stacks obs_shape = (S, H, W), about H*W + 19 bytes per transition and seed.

    Stacks are rebuilt from the ring: position j of obs_g's stack (j = S-1 the newest) is the newest frame of
    transition g - min(S-1-j, since[g], S-1), so that frames before the episode's start are replaced by its first
    frame, which is what reset padding gives. Once the ring has wrapped, the oldest transitions of a partial
    episode (at most S-1 of them per seed) lack frames that were overwritten: sample() never draws them (see
    sample_indices), and valid_slots() says which slots can be gathered.
    """

    def __init__(self, seeds: int, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: type, n_step: int, gamma: float):
        if len(obs_shape) != 3:
            raise ValueError(f"FrameReplayBuffer stores frame stacks (S, H, W), not observations of shape {obs_shape}")
        stack, height, width = (int(d) for d in obs_shape)
        if not 1 <= stack <= 254:
            raise ValueError(f"the stack size must be in 1..254, not {stack}")
        if capacity < stack:
            raise ValueError(f"capacity {capacity} is smaller than the stack size {stack}: no stack could be rebuilt "
                             "once the ring wraps")
        super().__init__(seeds, capacity, (stack, height, width), action_shape, action_dtype, n_step, gamma)
        self.stack = stack
        self.frames = np.zeros((seeds, capacity, height, width), dtype=np.uint8)
        self.since = np.zeros((seeds, capacity), dtype=np.uint8)
        self.last_next_obs = np.zeros((seeds, *self.obs_shape), dtype=np.uint8)   # the newest next_obs stacks
        self.next_since = np.zeros(seeds, dtype=np.int64)   # since of the next transition; 0: it must be a reset
        self.truncated_frames: list[dict[int, np.ndarray]] = [{} for _ in range(seeds)]   # global index -> frame

    def bytes_per_transition(self) -> float:
        """Bytes held per transition and seed: every array's nbytes plus the side tables (frames and 8-byte keys),
        divided by the capacity and the number of seeds."""
        arrays = (self.frames, self.since, self.actions, self.rewards, self.terminated, self.episode_end,
                  self.behaviour_prob, self.last_next_obs, self.next_since)
        side = sum(frame.nbytes + 8 for table in self.truncated_frames for frame in table.values())
        return (sum(a.nbytes for a in arrays) + side) / self.capacity / self.seeds

    # ---- adding

    def add(self, obs, action, reward, next_obs, terminated, truncated, life_lost=None, live=None,
            behaviour_prob=None) -> None:
        """One transition per seed: each argument has the seed axis first; obs and next_obs are uint8 stacks
        (K, S, H, W). life_lost[k] (with terminated[k] True) marks a transition that counts as terminated for
        learning while the env episode continues: the next obs continues from this next_obs. Otherwise an episode
        end (terminated or truncated) is a stack boundary, and the next obs must be a reset stack.

        Raises ValueError when the stream is not one of frame stacks as described (the stored frames could not
        rebuild what was passed), before changing anything. live[k] False marks a seed masked out of its batch
        (diverged): its env no longer steps, its entries are placeholders and are not checked. behaviour_prob:
        mu(a_t | s_t), as in ReplayBuffer.add."""
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        shape = (self.seeds, *self.obs_shape)
        for name, a in (("obs", obs), ("next_obs", next_obs)):
            if a.dtype != np.uint8 or a.shape != shape:
                raise ValueError(f"{name} must be uint8 of shape {shape}, not {a.dtype} {a.shape}")
        terminated = np.broadcast_to(np.asarray(terminated, dtype=bool), (self.seeds,))
        truncated = np.broadcast_to(np.asarray(truncated, dtype=bool), (self.seeds,))
        life_lost = (np.zeros(self.seeds, dtype=bool) if life_lost is None
                     else np.broadcast_to(np.asarray(life_lost, dtype=bool), (self.seeds,)))
        self._check_stream(obs, next_obs, np.ones(self.seeds, dtype=bool) if live is None
                           else np.broadcast_to(np.asarray(live, dtype=bool), (self.seeds,)))

        i, g = self.pos, self.total_added
        episode_end = terminated | truncated
        self._store(action, reward, terminated, episode_end, behaviour_prob)
        self.frames[:, i] = obs[:, -1]
        self.since[:, i] = self.next_since
        for k, table in enumerate(self.truncated_frames):
            table.pop(g - self.capacity, None)   # slot i held transition g - capacity: its frame goes with it
            if truncated[k] and not terminated[k]:
                table[g] = next_obs[k, -1].copy()
        # a life loss continues the stack, unless the time limit also ended the env episode at that step
        continues = ~episode_end | (life_lost & ~truncated)
        self.next_since = np.where(continues, np.minimum(self.next_since + 1, self.stack), 0)
        self.last_next_obs[:] = next_obs
        self._advance()

    def _check_stream(self, obs: np.ndarray, next_obs: np.ndarray, live: np.ndarray) -> None:
        obs, next_obs, last_next = obs[live], next_obs[live], self.last_next_obs[live]
        if not np.array_equal(next_obs[:, :-1], obs[:, 1:]):
            raise ValueError("next_obs is not obs shifted by one frame: not a frame stack (S, H, W), frame -1 newest")
        reset = self.next_since[live] == 0
        padded = (obs == obs[:, -1:]).all(axis=(1, 2, 3))
        if (reset & ~padded).any():
            k = int(np.flatnonzero(live)[np.flatnonzero(reset & ~padded)[0]])
            raise ValueError(f"seed {k}: an episode's first obs must be its reset frame repeated (FrameStackObservation "
                             "with padding_type='reset'); pass life_lost for a life loss after which the env goes on")
        continued = (obs == last_next).all(axis=(1, 2, 3))
        if (~reset & ~continued).any():
            k = int(np.flatnonzero(live)[np.flatnonzero(~reset & ~continued)[0]])
            raise ValueError(f"seed {k}: obs does not continue the previous next_obs although that transition did "
                             "not end the env episode (a life_lost given where the env was reset?)")

    # ---- rebuilding stacks

    def _obs_at(self, slots: np.ndarray) -> np.ndarray:
        """The obs stacks of the transitions in slots (K, ...): (K, ..., S, H, W)."""
        since = self.since[self._index(slots), slots].astype(np.int64)
        back = np.minimum(self.stack - 1 - np.arange(self.stack), np.minimum(since, self.stack - 1)[..., None])
        return self.frames[self._index(slots, extra=1), (slots[..., None] - back) % self.capacity]

    def _next_obs_at(self, slots: np.ndarray) -> np.ndarray:
        """The next_obs stacks of the transitions in slots (K, ...): (K, ..., S, H, W). Exact for stored
        transitions whose obs stack is; any finite stacks for other slots."""
        rows = self._index(slots)
        cap, s = self.capacity, self.stack
        since = self.since[rows, slots].astype(np.int64)
        # positions 0 .. S-2 are the obs stack's newer frames (back >= 1: transition g's own frame or older)
        back = np.minimum(s - 1 - np.arange(s - 1), np.minimum(since + 1, s - 1)[..., None])
        stacks = np.empty((*slots.shape, *self.obs_shape), dtype=np.uint8)
        stacks[..., :-1, :, :] = self.frames[self._index(slots, extra=1), (slots[..., None] + 1 - back) % cap]
        # the newest frame: the following slot's when obs_{g+1} continues the stack, the newest next frame kept
        # for the newest transition, the side table's after a truncation, and g's own frame after a termination
        # (its discount is 0: the bootstrap state is multiplied by 0, so any finite stack does)
        following = (slots + 1) % cap
        newest = slots == (self.pos - 1) % cap
        boundary = ~newest & (self.since[rows, following] == 0)
        stacks[..., -1, :, :] = np.where(newest[..., None, None], self.last_next_obs[rows, -1],
                                         self.frames[rows, np.where(boundary, slots, following)])
        for at in zip(*np.nonzero(boundary & ~self.terminated[rows, slots]), strict=True):
            frame = self.truncated_frames[at[0]].get(self._global(int(slots[at])))
            if frame is not None:   # always, for a stored transition
                stacks[at][-1] = frame
        return stacks

    def _index(self, slots: np.ndarray, extra: int = 0) -> np.ndarray:
        """The seed index broadcast against slots (K, ...) with extra trailing axes."""
        return np.arange(self.seeds).reshape(self.seeds, *(1,) * (slots.ndim - 1 + extra))

    def _global(self, slot: int) -> int:
        """The global index of the transition in slot (one that is stored)."""
        return self.total_added - 1 - (self.pos - 1 - slot) % self.capacity

    # ---- which stacks can be rebuilt

    def _invalid_slots(self) -> list[np.ndarray]:
        """Per seed, the sorted slots whose stack lacks overwritten frames: only among the S-1 oldest transitions
        (a stack reaches at most S-1 back), and only those of an episode that began before the oldest one."""
        oldest = self.total_added - self.size
        first = np.arange(min(self.stack - 1, self.size))     # offsets from the oldest stored transition
        slots = (oldest + first) % self.capacity
        reach = np.minimum(self.since[:, slots], self.stack - 1)
        invalid = first[None, :] < reach                        # needs a frame older than the oldest stored one
        return [np.sort(slots[invalid[k]]) for k in range(self.seeds)]

    def valid_slots(self) -> np.ndarray:
        """(K, capacity) bool: the slot holds a transition whose stacks can be rebuilt (what sample draws from)."""
        valid = np.zeros((self.seeds, self.capacity), dtype=bool)
        valid[:, (self.total_added - self.size + np.arange(self.size)) % self.capacity] = True
        for k, slots in enumerate(self._invalid_slots()):
            valid[k, slots] = False
        return valid

    # ---- sampling

    def sample_indices(self, batch_size: int, rngs: list[np.random.Generator]) -> np.ndarray:
        """(K, B) slots, uniform over each seed's valid slots, seed k's from rngs[k] alone.

        Seed k draws u = rngs[k].integers(0, size - m_k, size=batch_size), m_k its number of invalid slots, and
        takes the u-th valid slot in slot order (u steps over each invalid slot at or below it, in increasing
        order). With no invalid slot, m_k = 0 and the slots are exactly ReplayBuffer.sample's."""
        rows = []
        for rng, invalid in zip(rngs, self._invalid_slots(), strict=True):
            u = rng.integers(0, self.size - len(invalid), size=batch_size)
            for slot in invalid:
                u += u >= slot
            rows.append(u)
        return np.stack(rows)

    def sample(self, batch_size: int, rngs: list[np.random.Generator], n: int | None = None) -> Window:
        """As ReplayBuffer.sample, over the valid slots (sample_indices). The windows' states are uint8 stacks
        (K, B, ..., S, H, W); a slot that is not valid gives finite but meaningless stacks."""
        return self.gather(self.sample_indices(batch_size, rngs), n)

    # ---- checkpoint chunks: the contract of ReplayBuffer's. A chunk [start, end) is obsolete once every one of
    # its slots has been written again, i.e. once total_added >= end + capacity; the frames a later chunk's
    # stacks need from before its start are in the chunks still listed, or were overwritten in the ring too.

    _ARRAYS = ("frames", "since", "actions", "rewards", "terminated", "episode_end", "behaviour_prob")

    def chunk(self, start: int, seed_index: int) -> dict:
        """Seed seed_index's transitions with global index in [start, total_added) still stored, as arrays (for
        np.savez): the ring's arrays, the side table's entries in the range (truncated_index, truncated_frames),
        and the seed's newest next_obs stack and next since value, as of the chunk's end."""
        first, slots = self._chunk_slots(start)
        table = self.truncated_frames[seed_index]
        kept = sorted(g for g in table if g >= first)
        return {"start": first, "end": self.total_added,
                **{k: getattr(self, k)[seed_index, slots] for k in self._ARRAYS},
                "truncated_index": np.array(kept, dtype=np.int64),
                "truncated_frames": (np.stack([table[g] for g in kept]) if kept
                                     else np.zeros((0, *self.obs_shape[1:]), dtype=np.uint8)),
                "last_next_obs": self.last_next_obs[seed_index].copy(),
                "next_since": np.int64(self.next_since[seed_index])}

    def load_chunks(self, counters: dict, chunks_per_seed: list[list[dict]]) -> None:
        """Rebuild every seed's ring from the shared counters and its chunks, oldest first (a later chunk
        overwrites slots, and its newest next_obs is the one kept)."""
        total_added = int(counters["total_added"])
        for seed_index, chunks in enumerate(chunks_per_seed):
            table = self.truncated_frames[seed_index] = {}
            for chunk in chunks:
                slots = np.arange(int(chunk["start"]), int(chunk["end"])) % self.capacity
                for k in self._ARRAYS:
                    getattr(self, k)[seed_index, slots] = chunk_array(chunk, k)
                for g, frame in zip(np.asarray(chunk["truncated_index"]).tolist(), chunk["truncated_frames"],
                                    strict=True):
                    if g >= total_added - self.capacity:   # the slot has not been written again
                        table[g] = np.array(frame, dtype=np.uint8)
                self.last_next_obs[seed_index] = chunk["last_next_obs"]
                self.next_since[seed_index] = int(chunk["next_since"])
        self.pos, self.size, self.total_added = int(counters["pos"]), int(counters["size"]), total_added
