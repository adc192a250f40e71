"""qbench: a benchmark suite for Q-learning variants on Gymnasium.

``import qbench`` stays light (no torch, no pandas): ``qbench.load_results`` and
``qbench.load_episodes`` are loaded on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_episodes", "load_results"]


def __getattr__(name: str) -> Any:
    if name in ("load_results", "load_episodes"):
        from qbench import loading
        return getattr(loading, name)
    raise AttributeError(f"module 'qbench' has no attribute {name!r}")
