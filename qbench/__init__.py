"""qbench: a benchmark suite for Q-learning variants on Gymnasium."""

__version__ = "0.1.0"
