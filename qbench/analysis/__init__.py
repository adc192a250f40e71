"""Multi-seed statistics and the report of qbench results. ``stats`` is pure numpy/scipy (it imports no torch,
gymnasium or other qbench code); the report (report.py over scoring.py, outcomes.py and studies/) reads run
directories through ``qbench.store`` and takes the models of known-dynamics tasks from ``qbench.theory``."""
