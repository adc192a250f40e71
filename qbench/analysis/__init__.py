"""Multi-seed statistics for qbench results (pure numpy/scipy; imports no torch, gymnasium or qbench code)."""
