"""Running suites: expand a suite into jobs, run them on local processes or Ray, record every outcome.

The engine never imports this package; this package calls the engine only through ``run_job`` in a worker.
"""

from qbench.runner.plan import expand, job_state, parse_only, parse_overrides, run_path
from qbench.runner.run import Outcome, Reporter, run_jobs

__all__ = ["Outcome", "Reporter", "expand", "job_state", "parse_only", "parse_overrides", "run_jobs",
           "run_path"]
