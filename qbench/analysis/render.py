"""Write a ``Report`` to files: Markdown (with PNG figures beside it), one self-contained HTML page (figures
embedded), LaTeX tables (booktabs) and CSV tables of plain numbers. Every file is written atomically."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from qbench.analysis.report import Report
from qbench.analysis.studies.theory import has_theory
from qbench.config import ConfigError
from qbench.store import atomic_write_bytes, atomic_write_text

FORMATS = ("md", "html", "tex", "csv")


@dataclass(frozen=True)
class Section:
    title: str
    text: str
    table: pd.DataFrame | None = None
    figure: str | None = None        # a key of Report.figures()
    level: int = 2                   # heading level: 3 under a section of level 2 (Theory's parts)
    # Without a table or figure a section is left out, unless it is a heading with text of its own (Theory).
    heading: bool = False


# --- numbers as a reader wants them --------------------------------------------------------------------------

def _num(x: float, digits: int | None = None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if digits is None:
        digits = 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    return f"{x:,.{digits}f}"


def _ci(point: float, lower: float, upper: float, digits: int | None = None) -> str:
    return f"{_num(point, digits)} [{_num(lower, digits)}, {_num(upper, digits)}]"


def _pm(mean: float, std: float) -> str:
    """mean ± std with the digits the mean needs, for both."""
    if std is None or math.isnan(std):
        return _num(mean)
    digits = 1 if abs(mean) >= 10 else 2 if abs(mean) >= 1 else 3
    return f"{_num(mean, digits)} ± {_num(std, digits)}"


def _steps(n: float) -> str:
    return "–" if n is None or (isinstance(n, float) and math.isnan(n)) else f"{int(n):,}"


def _steps_and_frames(env_steps: float, frames: float) -> str:
    """'100,000 (400,000 frames)' for ALE tasks, whose env steps are agent steps of several frames; else steps."""
    if math.isfinite(frames) and math.isfinite(env_steps) and frames != env_steps:
        return f"{_steps(env_steps)} ({_steps(frames)} frames)"
    return _steps(env_steps)


def _with_diverged(n: int, diverged: int, warned: int = 0) -> str:
    """'4', '4 (1 diverged)' or '4 (1 diverged, 2 flagged)': how many runs, how many of them diverged and how many
    the divergence watch flagged."""
    parts = [f"{int(diverged)} diverged"] if diverged else []
    if warned:
        parts.append(f"{int(warned)} flagged")
    return f"{int(n)} ({', '.join(parts)})" if parts else f"{int(n)}"


def per_task_display(report: Report) -> pd.DataFrame:
    pct = f"{report.confidence:.0%}"
    rows = []
    for r in report.tables["per_task"].itertuples(index=False):
        reference = "–"
        if r.reference_source:
            reference = (f"{_pm(r.reference_mean, r.reference_std)} at {_steps(r.reference_env_steps)} steps, "
                         f"{int(r.reference_runs)} run(s): {r.reference_source}")
        rows.append({"task": r.task, "variant": r.variant,
                     "seeds": _with_diverged(r.seeds, r.diverged, getattr(r, "warned", 0)),
                     "env steps": _steps_and_frames(r.env_steps, r.frames),
                     "final return mean ± std": _pm(r.mean, r.std),
                     f"IQM [{pct} CI]": _ci(r.iqm, r.iqm_lower, r.iqm_upper),
                     "mean return over training (AUC)": _num(r.auc_mean), "published reference": reference})
    return pd.DataFrame(rows)


def thresholds_display(report: Report) -> pd.DataFrame:
    rows = []
    finals = report.tables["finals"]
    for task, scoring in sorted(report.scoring.items()):
        for variant, threshold in sorted(scoring.thresholds.items()):
            runs = finals[(finals["task"] == task) & (finals["variant"] == variant) & finals["scored"]]
            if runs.empty:
                continue
            passing = int((runs["final_return"] >= threshold).sum())
            diverged = int((runs["status"] == "diverged").sum())
            rows.append({"task": task, "variant": variant, "threshold": f">= {threshold:g}",
                         "seeds at or above": f"{passing}/{len(runs)}"
                                              + (f" ({diverged} diverged)" if diverged else ""),
                         "final return per seed": " ".join(_num(v) for v in runs["final_return"])})
    return pd.DataFrame(rows)


def aggregate_display(report: Report) -> pd.DataFrame:
    table = report.tables["aggregate"]
    rows = []
    for variant, group in table.groupby("variant", sort=True):
        row = {"variant": variant, "tasks": int(group["tasks"].iloc[0]),
               "runs": _with_diverged(group["runs"].iloc[0], group["diverged"].iloc[0])}
        for r in group.itertuples(index=False):
            row[r.metric] = _ci(r.point, r.lower, r.upper, 3)
        rows.append(row)
    return pd.DataFrame(rows)


def improvement_display(report: Report) -> pd.DataFrame:
    table = report.tables["improvement"]
    if table.empty:
        return pd.DataFrame()
    names = sorted(set(table["x"]) | set(table["y"]))
    cells = {(r.x, r.y): f"{_ci(r.point, r.lower, r.upper, 2)} ({r.tasks})" for r in table.itertuples(index=False)}
    diverged = report.tables["finals"]
    diverged = diverged[diverged["scored"] & (diverged["status"] == "diverged")]["variant"].value_counts()

    def label(x: str) -> str:
        return f"{x} ({diverged[x]} diverged)" if diverged.get(x, 0) else x

    return pd.DataFrame([{"X \\ Y": label(x), **{y: cells.get((x, y), "–") for y in names}} for x in names])


def _overestimation_last(table: pd.DataFrame, q_column: str, measured_column: str, name: str,
                         q_label: str) -> pd.DataFrame:
    """The last evaluation step of each (task, variant) of an overestimation table, as display rows."""
    if table.empty:
        return pd.DataFrame()
    last = table.sort_values("env_steps").groupby(["task", "variant"], sort=True).tail(1)
    return pd.DataFrame([{"task": r["task"], "variant": r["variant"], "env steps": _steps(r["env_steps"]),
                          q_label: _num(r[q_column]), "measured discounted return": _num(r[measured_column]),
                          "overestimation (CI)": _ci(r[name], r[f"{name}_lower"], r[f"{name}_upper"]),
                          "seeds": r["seeds"]}
                         for _, r in last.sort_values(["task", "variant"]).iterrows()])


def overestimation_display(report: Report) -> pd.DataFrame:
    return _overestimation_last(report.tables["overestimation"], "q_start_mean", "discounted_return_mean",
                                "overestimation", "predicted Q(s0, a0)")


def _table(report: Report, name: str) -> pd.DataFrame:
    """A table of the report, empty when the report has none of that name (one built by older code, or by
    hand)."""
    return report.tables.get(name, pd.DataFrame())


def overestimation_visited_display(report: Report) -> pd.DataFrame:
    return _overestimation_last(_table(report, "overestimation_visited"), "q_visited_mean",
                                "discounted_return_visited_mean", "overestimation_visited",
                                "predicted Q along visited states")


def overestimation_final_display(report: Report) -> pd.DataFrame:
    pct = f"{report.confidence:.0%}"

    def cell(point, lower, upper, seeds):
        return f"{_ci(point, lower, upper)}, {int(seeds)} seeds" if seeds else "–"

    return pd.DataFrame([{"task": r.task, "variant": r.variant, "env steps": _steps(r.env_steps),
                          f"from s0: Q − return [{pct} CI]": cell(r.start_overestimation, r.start_lower,
                                                                 r.start_upper, r.start_seeds),
                          f"along visited states: Q − return [{pct} CI]": cell(
                              r.visited_overestimation, r.visited_lower, r.visited_upper, r.visited_seeds),
                          "visited states": _num(r.visited_states, 1)}
                         for r in _table(report, "overestimation_final").itertuples(index=False)])


def diverged_runs_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "variant": r.variant, "diverged": f"{r.diverged}/{r.runs}",
                          "NaN or inf loss": r.nan_or_inf, "Q beyond the divergence bound": r.bound}
                         for r in _table(report, "diverged_runs").itertuples(index=False)])


def _n_label(n_step: int, n_step_end: int) -> str:
    """'3', or '3→1' for an n that anneals from n_step to n_step_end."""
    return f"{int(n_step)}→{int(n_step_end)}" if n_step_end else f"{int(n_step)}"


def _correction_label(r) -> str:
    """'retrace (π ε=0.01)': the correction, with its target policy's epsilon when it is not greedy, and lambda
    and the importance-weight clip where they are not the defaults (1 and none)."""
    extra = []
    if r.is_target_eps > 0:
        extra.append(f"π ε={r.is_target_eps:g}")
    if r.trace_lambda != 1.0:
        extra.append(f"λ={r.trace_lambda:g}")
    if r.is_clip > 0:
        extra.append(f"clip={r.is_clip:g}")
    return f"{r.nstep_correction} ({', '.join(extra)})" if extra else r.nstep_correction


def _trace_cell(r) -> str:
    """The mean trace length, and how many of the runs logged it when not all did (older runs did not)."""
    if not r.trace_length_runs:
        return "–"
    logged = f" ({int(r.trace_length_runs)} of {int(r.runs)} runs)" if r.trace_length_runs < r.runs else ""
    return f"{_num(r.trace_length_steps_mean, 2)} of {int(max(r.n_step, r.n_step_end))}{logged}"


def nstep_corrections_display(report: Report) -> pd.DataFrame:
    pct = f"{report.confidence:.0%}"
    return pd.DataFrame([{"task": r.task, "n": _n_label(r.n_step, r.n_step_end), "correction": _correction_label(r),
                          "variant": r.variant, "runs": int(r.runs), "diverged": int(r.diverged),
                          f"final return IQM [{pct} CI]": _ci(r.iqm, r.iqm_lower, r.iqm_upper),
                          "mean return over training (AUC)": _num(r.auc_mean),
                          "trace length (env steps)": _trace_cell(r),
                          "Δ IQM vs ignore": _num(r.iqm_minus_ignore)}
                         for r in _table(report, "nstep_corrections").itertuples(index=False)])


NSTEP_CORRECTIONS_TEXT = (
    "An n-step target sums the rewards of up to n replayed steps, whose later actions came from an older, "
    "exploring behaviour policy μ; each correction weighs later step j by a trace C_j = c_1 ⋯ c_j (C_0 = 1). "
    "ignore: c = 1, the actions as they are; cut (Watkins): c = 1 up to the first later action that is not greedy "
    "under the online Q, 0 from there; importance_sampling: c = π/μ, truncated at clip where one is set; retrace: "
    "c = λ min(1, π/μ); tree_backup: c = λ π. π is the greedy target policy, or the ε-greedy one shown. Trace "
    "length: the env steps the target effectively used, out of n: the window length for ignore and cut (shorter "
    "at an episode's end, and where cut stops), sum_j C_j for the trace corrections; the mean over sampled "
    "windows and over each run's logged updates, then over runs (– for runs written before it was logged). Final "
    "IQM and AUC as in the per-task table; Δ IQM vs ignore: the final IQM minus that of the same task's ignore "
    "variant at the same n.")


def _share(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.1%}"


def maximisation_bias_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "variant": r.variant, "runs": r.runs,
                          "peak left fraction": f"{_share(r.peak_left_fraction)} (episode {r.peak_episode})",
                          "final left fraction": f"{_share(r.final_left_fraction)} (episodes "
                                                 f"{r.final_first_episode}–{r.final_last_episode})"}
                         for r in _table(report, "maximisation_bias_summary").itertuples(index=False)])


def q_distance_display(report: Report) -> pd.DataFrame:
    table = _table(report, "q_distance")
    if table.empty:
        return pd.DataFrame()
    last = table.sort_values("env_steps").groupby(["task", "variant"], sort=True).tail(1)
    return pd.DataFrame([{"task": r.task, "variant": r.variant, "env steps": _steps(r.env_steps),
                          "max |Q − Q*| (CI)": _ci(r.q_error_max, r.q_error_max_lower, r.q_error_max_upper),
                          "mean |Q − Q*| (CI)": _ci(r.q_error_mean, r.q_error_mean_lower, r.q_error_mean_upper),
                          "greedy value (CI)": _ci(r.greedy_value, r.greedy_value_lower, r.greedy_value_upper),
                          "optimal value V*": _num(r.optimal_value), "seeds": r.seeds}
                         for r in last.sort_values(["task", "variant"]).itertuples(index=False)])


def contraction_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "gamma": f"{r.gamma:g}", "states": r.states, "actions": r.actions,
                          "sweeps": r.sweeps, "first error": _num(r.first_error),
                          "largest ratio": _num(r.max_ratio, 4), "mean ratio": _num(r.mean_ratio, 4),
                          "bound": _num(r.bound, 4),
                          "policy iteration steps": r.policy_iteration_steps,
                          "max |Q*_PI − Q*_VI|": f"{r.policy_iteration_gap:.1e}"}
                         for r in _table(report, "contraction").itertuples(index=False)])


def divergence_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"example": r.example, "method": r.method, "iterations": r.iterations,
                          "first weight norm": f"{r.first_norm:.3g}", "last weight norm": f"{r.last_norm:.3g}",
                          "growth per iteration": _num(r.growth_factor, 4),
                          "analytical": _num(r.analytical_growth_factor, 4),
                          "spectral radius": f"{r.spectral_radius:.8f}" if not math.isnan(r.spectral_radius)
                          else "–"}
                         for r in _table(report, "divergence_summary").itertuples(index=False)])


def maximisation_bias_text(report: Report) -> str:
    pct = f"{report.confidence:.0%}"
    parts = [f"{r.task} / {r.variant}: the fraction of runs that go left peaks at {_share(r.peak_left_fraction)} "
             f"(episode {r.peak_episode}) and is {_share(r.final_left_fraction)} over episodes "
             f"{r.final_first_episode}–{r.final_last_episode} ({r.runs} runs)."
             for r in _table(report, "maximisation_bias_summary").itertuples(index=False)]
    return (f"Fraction of the runs that went left in each training episode, with a {pct} Wilson score interval. "
            + " ".join(parts) + " Part of the left choices are forced by epsilon-greedy exploration whatever Q "
            "says (the report does not know each variant's epsilon; the dashed line is the 5% that Sutton and "
            "Barto's epsilon 0.1 forces over A's two actions, which qbench/MaximisationBias-v0 reproduces). Only "
            "the episodes every run of the task has are counted: a run that goes right more often finishes more, "
            "shorter episodes, so later episodes would sample such runs only.")


def contraction_text(report: Report) -> str:
    parts = []
    for r in _table(report, "contraction").itertuples(index=False):
        within = "within" if r.max_ratio <= r.bound * (1 + 1e-9) else "above"
        parts.append(f"{r.task}: the largest error ratio between sweeps is {_num(r.max_ratio, 4)} (mean "
                     f"{_num(r.mean_ratio, 4)}) over {r.sweeps} sweeps, {within} the bound {_num(r.bound, 4)} at "
                     f"gamma {r.gamma:g}.")
    table = _table(report, "contraction")
    howard = ""
    if not table.empty:
        howard = (f" Policy iteration (exact evaluation, greedy improvement, from the lowest action everywhere) "
                  f"settles in {table['policy_iteration_steps'].min()}-{table['policy_iteration_steps'].max()} "
                  f"improvement steps, against {table['sweeps'].min()}-{table['sweeps'].max()} sweeps of value "
                  f"iteration, on the same Q* (largest gap {table['policy_iteration_gap'].max():.1e}).")
    return ("Q-value iteration from Q = 0 on each known-dynamics task at its runs' gamma: max over (s, a) of "
            "|Q_k − Q*| per sweep k; the Bellman optimality operator is a gamma-contraction in that norm. "
            + " ".join(parts) + howard)


def divergence_text(report: Report) -> str:
    parts = []
    for r in _table(report, "divergence_summary").itertuples(index=False):
        analytical = (f" (analytical {_num(r.analytical_growth_factor, 4)})"
                      if not math.isnan(r.analytical_growth_factor) else "")
        trend = "grows" if r.growth_factor > 1 else "shrinks"
        radius = r.spectral_radius
        fate = ("" if math.isnan(radius) else
                f"; the iteration map's spectral radius is {radius:.8f}, so in the long run it "
                + ("diverges" if radius > 1 + 1e-12 else "stays bounded" if radius > 1 - 1e-12 else "converges")
                + (" (the norm grows at first while the faster modes settle; the slowest decays by only that "
                   "factor per iteration)"
                   if radius < 1 - 1e-12 and r.growth_factor > 1 else ""))
        parts.append(f"{r.example} / {r.method}: the weight norm {trend} by a factor "
                     f"{_num(r.growth_factor, 4)} per iteration{analytical}, from {r.first_norm:.3g} to "
                     f"{r.last_norm:.3g} in {r.iterations} iterations{fate}.")
    return ("Textbook counterexamples, the same for every results folder: Tsitsiklis and Van Roy's fitted value "
            "iteration and Baird's counterexample, with the tabular case beside them; the weight norm per "
            "iteration (dashed: analytical), and its mean growth factor per iteration over the second half of the "
            "iterations. " + " ".join(parts))


def theory_sections(report: Report) -> list[Section]:
    """The Theory section and its parts, or nothing when no results-derived theory table has a row."""
    if not has_theory(report.tables):
        return []
    pct = f"{report.confidence:.0%}"
    out = [Section("Theory", "The learners checked against exact dynamic programming on the tasks whose dynamics "
                   "are known, and the classic cases where value-function approximation diverges.", heading=True)]
    if not _table(report, "maximisation_bias").empty:
        out.append(Section("Maximisation bias", maximisation_bias_text(report), maximisation_bias_display(report),
                           "maximisation_bias", level=3))
    if not _table(report, "q_distance").empty:
        out.append(Section("Distance to Q*", "At the last evaluation step shared by the complete runs that logged "
                           "it: max and mean over the states the agent can be in of max_a |Q − Q*|, and the exact "
                           "value of the greedy policy of the learned Q from the initial states against V*; mean "
                           f"over seeds with a {pct} bootstrap CI over seeds.", q_distance_display(report),
                           "q_distance", level=3))
        out.append(Section("Greedy policy value", "The exact value of each variant's greedy policy from the initial "
                           "states against V* (dashed), mean over seeds.", figure="greedy_value", level=3))
    if not _table(report, "contraction").empty:
        out.append(Section("Contraction of Q-value iteration", contraction_text(report), contraction_display(report),
                           "contraction", level=3))
    out.append(Section("Divergence counterexamples", divergence_text(report), divergence_display(report),
                       "divergence", level=3))
    return out


def cost_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "variant": r.variant, "runs": r.runs,
                          "wall s per run": _num(r.wall_s_mean), "wall s, all runs": _num(r.wall_s_total),
                          "env steps/s": _num(r.steps_per_s_mean, 0), "peak memory MiB": _num(r.peak_rss_mb_max, 0)}
                         for r in report.tables["cost"].itertuples(index=False)])


def references_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "algorithm": r.algo, "env id": r.env_id, "return": _pm(r.mean, r.std),
                          "env steps": _steps(r.env_steps), "runs": r.runs, "source": r.source, "notes": r.notes}
                         for r in report.tables["references"].itertuples(index=False)])


def _diverged_text(aggregate: pd.DataFrame) -> str:
    """'; diverged runs included: dqn 1 of 8' for the variants that have any, else ''."""
    per_variant = aggregate.drop_duplicates("variant")
    parts = [f"{r.variant} {r.diverged} of {r.runs}" for r in per_variant.itertuples(index=False) if r.diverged]
    return "; diverged runs included: " + ", ".join(parts) if parts else ""


def sections(report: Report) -> list[Section]:
    pct = f"{report.confidence:.0%}"
    out = [
        Section("Runs", "Run directories per (task, variant) by state. Complete runs enter the statistics at "
                "their final evaluation and diverged runs at their last evaluation before they diverged (the "
                "task's random score if that came before any evaluation): in_statistics counts both. Crashed, "
                "unfinished and damaged runs are left out, and named in the notes. warned: runs the divergence "
                "watch flagged (|Q| passed its warning level, 5 value scales by default) and let run on, "
                "whatever their state; they are counted in their state and in the statistics like every other "
                "run, and named in the notes.", report.tables["runs"]),
        Section("Diverged runs", "Diverged runs per (task, variant) by what stopped them: a NaN or inf loss, or Q "
                "beyond the engine's divergence bound (a multiple of r_max / (1 − gamma)).",
                diverged_runs_display(report)),
        Section("Final return per task",
                f"Final greedy evaluation return per run (a diverged run: its last evaluation before it "
                f"diverged, counted in seeds; flagged: runs among the seeds whose |Q| passed the divergence "
                f"warning level, counted like the others); IQM over seeds with a {pct} percentile bootstrap CI "
                f"({report.reps} resamples); AUC = mean evaluation return over training. The published reference "
                "is the same algorithm on the same environment where one exists.", per_task_display(report)),
    ]
    thresholds = thresholds_display(report)
    if not thresholds.empty:
        out.append(Section("Pass thresholds", "The suite's thresholds on the final evaluation return.", thresholds))
    out += [
        Section("Learning curves", "IQM over seeds of the evaluation return at each evaluation step; a diverged "
                "run is held at its last evaluation from the step it diverged. Thin dotted lines of the same "
                "colour, where the runs logged it: the training return as the MinAtar paper plots it, the mean of "
                "the last 100 training episodes (IQM over complete runs).", figure="learning_curves"),
        Section("Aggregate normalised scores",
                "Normalised score = (score − random) / (reference − random), with the suite's scores; "
                f"stratified bootstrap {pct} CIs (runs resampled within each task). Median: the median over "
                "tasks of the per-task mean score (rliable). Optimality gap: mean shortfall below 1, lower is "
                "better. Diverged runs count at their score.", aggregate_display(report), "aggregate_intervals"),
        Section("Performance profiles", "Fraction of runs whose normalised score exceeds τ"
                + _diverged_text(report.tables["aggregate"]) + ".",
                figure="performance_profiles"),
        Section("Probability of improvement",
                f"P(X > Y): the chance that a run of the row variant beats a run of the column variant on a task "
                f"(Mann-Whitney U / nm), averaged over the tasks both ran (in brackets), with a {pct} CI.",
                improvement_display(report), "probability_of_improvement"),
        Section("N-step corrections", NSTEP_CORRECTIONS_TEXT, nstep_corrections_display(report)),
        Section("Overestimation",
                "Q(s0, a0) predicted by the network at the first state of each evaluation episode against the "
                "discounted return then collected, at the last evaluation: each an IQM over seeds (robust to "
                "one seed whose Q runs away), the overestimation being the IQM of each seed's own difference, with "
                f"a {pct} bootstrap CI over seeds.",
                overestimation_display(report), "overestimation"),
        Section("Overestimation along visited states",
                "The network's Q(s_t, a_t) averaged over the states the greedy evaluation policy visited, against "
                "the discounted return collected from each of them, at the last evaluation: IQM over seeds, the "
                f"overestimation with a {pct} bootstrap CI over seeds.",
                overestimation_visited_display(report), "overestimation_visited"),
        Section("Overestimation at the last evaluation",
                "Per variant at the last evaluation step all its complete runs share: predicted Q minus the "
                f"measured discounted return, from s0 and along the visited states, IQM over seeds with a {pct} "
                "bootstrap CI over seeds: the row to compare variants on (dqn against double_dqn).",
                overestimation_final_display(report)),
        *theory_sections(report),
        Section("Cost", "Wall time and throughput of the complete runs; seeds trained side by side in one process "
                "share its wall time, so a run's wall time is its batch's divided by the seeds in it, and the "
                "total is the process time they took; env steps/s are each seed's own; peak memory is the "
                "largest resident set of the worker process (an upper bound when a worker ran several jobs).",
                cost_display(report)),
        Section("Published references", "From qbench/data/zoo_reference.csv; the budgets and protocols differ "
                "between sources (see notes).", references_display(report)),
    ]
    return out


# --- writers -----------------------------------------------------------------------------------------------------

def _markdown_table(table: pd.DataFrame) -> str:
    """A pipe table; ``|`` and line breaks inside cells would end a cell or a row, so they are escaped."""
    escape = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    cells = table.rename(columns=escape).map(escape)
    return cells.to_markdown(index=False, tablefmt="pipe", disable_numparse=True)    # keep our number formats


def _header_lines(report: Report) -> list[str]:
    return [f"Results: {report.source}",
            (f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; bootstrap seed {report.seed}, {report.reps} "
             f"resamples, {report.confidence:.0%} intervals.")]


def to_markdown(report: Report, figures: dict[str, str]) -> str:
    """``figures``: figure key -> relative path of its PNG."""
    lines = ["# qbench report", "", *(f"{line}  " for line in _header_lines(report)), ""]
    if report.notes:
        lines += ["**Notes**", "", *(f"- {n}" for n in report.notes), ""]
    for s in sections(report):
        has_table = s.table is not None and not s.table.empty
        if not has_table and (s.figure is None or s.figure not in figures) and not s.heading:
            continue
        lines += [f"{'#' * s.level} {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        if has_table:
            lines += [_markdown_table(s.table), ""]
        if s.figure in figures:
            lines += [f"![{s.title}]({figures[s.figure]})", ""]
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td { white-space: nowrap; }                    /* an interval or a task id on one line, */
td:last-child { white-space: normal; min-width: 12em; }   /* long text last (references) */
.wide { overflow-x: auto; }                    /* a table wider than the page scrolls */
th { background: #f0f3f7; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; }
.notes { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 1em; }
"""


def _html_table(table: pd.DataFrame) -> str:
    return (table.map(str).style.hide(axis="index").format(escape="html")
            .format_index(escape="html", axis=1).to_html(exclude_styles=True))


def to_html(report: Report, figures: dict[str, bytes]) -> str:
    """``figures``: figure key -> PNG bytes, embedded so that the page is one self-contained file."""
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'><title>qbench report</title>",
             f"<style>{STYLE}</style></head><body>", "<h1>qbench report</h1>",
             *(f"<p>{html.escape(line)}</p>" for line in _header_lines(report))]
    if report.notes:
        parts.append("<div class='notes'><strong>Notes</strong><ul>"
                     + "".join(f"<li>{html.escape(n)}</li>" for n in report.notes) + "</ul></div>")
    for s in sections(report):
        has_table = s.table is not None and not s.table.empty
        if not has_table and (s.figure is None or s.figure not in figures) and not s.heading:
            continue
        parts.append(f"<h{s.level}>{html.escape(s.title)}</h{s.level}>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        if has_table:
            parts.append(f"<div class='wide'>{_html_table(s.table)}</div>")
        if s.figure in figures:
            data = base64.b64encode(figures[s.figure]).decode()
            parts.append(f"<img alt='{html.escape(s.title)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


# After pandas' escape="latex" (& % $ # _ { } ~ ^ \\): characters that pdflatex cannot set from UTF-8 input, or
# that its default OT1 font encoding sets as other glyphs (< > | print as ¡ ¿ —).
_LATEX_TEXT = str.maketrans({"±": r"$\pm$", "–": "--", "−": "-", "τ": r"$\tau$", "<": r"\textless{}",
                             ">": r"\textgreater{}", "|": r"\textbar{}", "π": r"$\pi$",
                             "ε": r"$\varepsilon$", "λ": r"$\lambda$", "Δ": r"$\Delta$", "→": r"$\to$"})


def _latex_text(escaped: str) -> str:
    return escaped.replace(">=", r"$\geq$").translate(_LATEX_TEXT)


def _latex_table(title: str, table: pd.DataFrame) -> str:
    """A booktabs table (\\toprule, \\midrule, \\bottomrule), left-aligned columns, in a small font."""
    styler = (table.map(str).style.hide(axis="index").format(_latex_text, escape="latex")
              .format_index(_latex_text, escape="latex", axis=1))
    latex = styler.to_latex(hrules=True, position="ht", position_float="centering",   # text columns: "l"
                            caption=_latex_text(title))     # titles are our own plain words: nothing to escape
    return latex.replace("\\centering\n", "\\centering\n\\small\n", 1).rstrip("\n")


def to_latex(report: Report) -> str:
    """One booktabs table per section (needs \\usepackage{booktabs})."""
    out = ["% qbench report tables; needs \\usepackage{booktabs}", *(f"% {line}" for line in _header_lines(report))]
    out += ["\n" + _latex_table(s.title, s.table) for s in sections(report)
            if s.table is not None and not s.table.empty]
    return "\n".join(out) + "\n"


def _png(fig) -> bytes:
    # Imported here: matplotlib is the optional ``report`` extra, and only figures need it.
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def parse_formats(text: str) -> tuple[str, ...]:
    chosen = tuple(f.strip() for f in text.split(",") if f.strip())
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise ConfigError(f"unknown report format '{','.join(bad) or text}'; valid formats: {', '.join(FORMATS)} "
                          "(comma-separated)")
    return chosen


def write_report(report: Report, out: str | Path, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write the chosen formats under ``out``; return the paths written."""
    out = Path(out)
    written: list[Path] = []
    pngs: dict[str, bytes] = {}
    if "md" in formats or "html" in formats:
        pngs = {name: _png(fig) for name, fig in report.figures().items()}
    if "md" in formats:
        rel = {}
        for name, data in pngs.items():
            path = out / "figures" / f"{name}.png"
            atomic_write_bytes(path, data)
            written.append(path)
            rel[name] = f"figures/{name}.png"
        atomic_write_text(out / "report.md", to_markdown(report, rel))
        written.append(out / "report.md")
    if "html" in formats:
        atomic_write_text(out / "report.html", to_html(report, pngs))
        written.append(out / "report.html")
    if "tex" in formats:
        atomic_write_text(out / "tables.tex", to_latex(report))
        written.append(out / "tables.tex")
    if "csv" in formats:
        for name, table in report.tables.items():
            path = out / "csv" / f"{name}.csv"
            atomic_write_text(path, table.to_csv(index=False))
            written.append(path)
    return written
