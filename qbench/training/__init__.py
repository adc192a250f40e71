"""The engine: one training loop (loop.py, the algorithm on one screen) and, each in its own module, what it needs
beside the algorithm:

- build.py: the parts from a config (Q networks, maximisers, optimiser, replay buffer, trace correction, Learner)
- clock.py: env steps, gradient steps, the progress fraction schedules read and the current n
- seeding.py: the one derivation of every named random stream
- behaviour.py: the behaviour policy
- evaluation.py: greedy evaluation, the overestimation diagnostic, the distance to Q* on known dynamics
- bookkeeping.py: per-seed rows and counters, the divergence watch, the evaluation and checkpoint schedule, summaries
- checkpoint.py: checkpoint I/O
- rundir.py: training into run directories (run_batch, run_job), resuming from checkpoints

This package imports none of its modules here, so that a light module (seeding) can be imported without the rest.
qbench.engine re-exports the public names for code written before the package.
"""
