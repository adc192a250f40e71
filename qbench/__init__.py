"""qbench: a benchmark suite for Q-learning variants on Gymnasium.

``import qbench`` stays light (no torch, no pandas): ``qbench.load_results`` is loaded on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_results"]


def __getattr__(name: str) -> Any:
    if name == "load_results":
        from qbench.store import load_results
        return load_results
    raise AttributeError(f"module 'qbench' has no attribute {name!r}")
