"""Exact dynamic programming on small known MDPs, and divergence counterexamples, to check learners against."""
