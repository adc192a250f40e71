"""The studies of the report, each a question it answers, in the order ``build_report`` computes them and lists
their notes (a study may read the tables of those before it: ``Study.needs``).

To add a study: a module here that defines its ``Study`` (its table names and the function computing them from
the scored runs, ``qbench.analysis.study``), and one line in ``STUDIES``; render.py shows a table once a section
there names it, and writes every table as CSV.
"""

from qbench.analysis.outcomes import OUTCOMES
from qbench.analysis.studies.core import CORE
from qbench.analysis.studies.corrections import CORRECTIONS
from qbench.analysis.studies.cost import COST
from qbench.analysis.studies.overestimation import OVERESTIMATION
from qbench.analysis.studies.theory import THEORY
from qbench.analysis.study import check_studies

STUDIES = (
    OUTCOMES,         # runs, diverged_runs, finals
    CORE,             # per_task, references, aggregate, improvement, profiles, curves, train_curves
    OVERESTIMATION,   # overestimation, overestimation_visited, overestimation_final
    COST,             # cost
    CORRECTIONS,      # nstep_corrections (from per_task)
    THEORY,           # maximisation_bias(_summary), q_distance, contraction(_curves), divergence(_summary)
)
check_studies(STUDIES)
