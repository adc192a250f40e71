"""The studies of the report, each a question it answers, in the order ``build_report`` computes them and lists
their notes (a study may read the tables of those before it: ``Study.needs``). Their sections are shown by the
place each declares (``Study.sections``), not in this order: ``qbench.analysis.study`` lists the places taken.

To add a study: a module here that defines its ``Study`` (``qbench.analysis.study``: its table names and the
function computing them from the scored runs, its sections, each with its title, text, display table and figure,
and its figures, drawn in a ``plots_<study>.py`` beside it), and one line in ``STUDIES``. render.py writes the
sections of every study and every table as CSV; plots.py draws nothing of a study's own.
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
