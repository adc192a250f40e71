"""Exact dynamic programming on small known MDPs (mdp.py), the known-dynamics model of an env named by id
(models.py), and divergence counterexamples, to check learners against."""
