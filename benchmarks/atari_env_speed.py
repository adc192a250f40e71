"""Agent steps per second of the Atari environments of qbench/envs/atari.py, on this machine.

    python benchmarks/atari_env_speed.py [--game pong] [--steps 5000] [--num-envs 1,4] [--threads 0] [--repeats 3]

Random actions, the protocol's defaults (sticky actions 0.25, frame skip 4, 84x84 grayscale, 4 stacked frames),
no learner. An agent step is 4 emulator frames; a vector step of n envs counts n agent steps. Rows:

* wrapper chain: make_atari_env (gym.make(ALE/...-v5, frameskip=1) + AtariPreprocessing + FrameStackObservation),
  one env, reset() with a fresh seed when an episode ends.
* native xN: make_native_vector_env with N sub-envs (ale-py's C++ AtariVectorEnv with --threads worker threads,
  0 = min(N, cores), plus qbench's reset-frame padding), NEXT_STEP autoreset; --steps agent steps in all.

Each row is the best of --repeats timed runs after a warm-up of 200 steps (the median is printed beside it).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from qbench.envs.atari import AtariProtocol, make_atari_env, make_native_vector_env


def time_chain(game: str, steps: int, protocol: AtariProtocol, seed: int) -> float:
    env = make_atari_env(game, protocol)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    n = env.action_space.n
    episode = 0
    for _ in range(200):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(n)))
        if terminated or truncated:
            episode += 1
            env.reset(seed=seed + episode)
    actions = rng.integers(n, size=steps)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(int(a))
        if terminated or truncated:
            episode += 1
            env.reset(seed=seed + episode)
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def time_native(game: str, steps: int, num_envs: int, protocol: AtariProtocol, seed: int, threads: int) -> float:
    env = make_native_vector_env(game, num_envs, protocol, seed=seed, num_threads=threads)
    rng = np.random.default_rng(seed)
    env.reset()
    n = int(env.single_action_space.n)
    for _ in range(max(1, 200 // num_envs)):
        env.step(rng.integers(n, size=num_envs))
    rounds = max(1, steps // num_envs)
    actions = rng.integers(n, size=(rounds, num_envs))
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    elapsed = time.perf_counter() - start
    env.close()
    return rounds * num_envs / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="pong")
    parser.add_argument("--steps", type=int, default=5000, help="agent steps per timed run")
    parser.add_argument("--num-envs", default="1,4", help="comma-separated sub-env counts for the native rows")
    parser.add_argument("--threads", type=int, default=0, help="native worker threads (0: min(num_envs, cores))")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    protocol = AtariProtocol()

    rows = []
    rates = [time_chain(args.game, args.steps, protocol, args.seed + 1000 * r) for r in range(args.repeats)]
    rows.append(("wrapper chain", 1, rates))
    for num_envs in (int(x) for x in args.num_envs.split(",")):
        rates = [time_native(args.game, args.steps, num_envs, protocol, args.seed + 1000 * r, args.threads)
                 for r in range(args.repeats)]
        rows.append((f"native x{num_envs}", num_envs, rates))

    print(f"{args.game}, {args.steps} agent steps per run, best (median) of {args.repeats}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{'env':<16}{'envs':>5}{'agent steps/s':>16}{'(median)':>11}{'frames/s':>11}{'vs chain':>10}")
    base = max(rows[0][2])
    for name, num_envs, rates in rows:
        best = max(rates)
        print(f"{name:<16}{num_envs:>5}{best:>16,.0f}{np.median(rates):>11,.0f}"
              f"{best * protocol.frame_skip:>11,.0f}{best / base:>9.2f}x")


if __name__ == "__main__":
    main()
