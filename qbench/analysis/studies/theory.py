"""Theory: the learners checked against exact dynamic programming, and the classic divergence counterexamples.
Each table is empty when the results hold nothing for it; any results-derived one non-empty (``THEORY_TABLES``)
makes a Theory section, which brings the reference MDPs and the counterexamples with it:

- ``maximisation_bias``: per (task, variant, training episode) the fraction of runs that went left, with a
  Wilson interval (tasks recording ``left`` in episodes.csv); ``maximisation_bias_summary``: its peak and final;
- ``q_distance``: on known-dynamics tasks, max and mean |Q - Q*| and the greedy policy's exact value against
  V*, mean over seeds with CIs, per evaluation step;
- ``contraction``, ``contraction_curves``: exact Q-value iteration on those tasks at their runs' gamma, and on
  Gymnasium's toy text MDPs; the models come from ``qbench.theory.models`` (the report makes no env itself);
- ``divergence``, ``divergence_summary``: the Tsitsiklis-Van Roy and Baird counterexamples (only with a Theory
  section: they do not depend on the results).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from qbench.analysis.bootstrap import bootstrap_mean_over_seeds, row_generator
from qbench.analysis.display import ci, num, share, steps, table_of
from qbench.analysis.scoring import ScoredRuns, complete_runs
from qbench.analysis.study import Section, Study, Tables
from qbench.store import read_run_config
from qbench.theory import counterexamples
from qbench.theory.models import EnvUnavailable, known_mdp_of

if TYPE_CHECKING:
    from qbench.analysis.plots import Style
    from qbench.analysis.report import Report


def wilson_interval(successes, trials, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval of a binomial proportion (NaN where ``trials`` is 0): unlike p ± z se it stays
    inside [0, 1] and is not empty at 0 or n successes, which a left fraction near 5% over 1000 runs needs."""
    k, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    z = scipy_stats.norm.ppf(0.5 + confidence / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


MAXIMISATION_BIAS_COLUMNS = ["task", "variant", "episode", "left_fraction", "runs", "lower", "upper"]
FINAL_EPISODES = 100


def _with_left(episodes: pd.DataFrame) -> pd.DataFrame:
    """The episodes of complete runs of the tasks that record ``left``, as for every other statistic."""
    if "left" not in episodes.columns or episodes.empty:
        return episodes.iloc[0:0]
    rows = episodes[episodes["complete"].astype(bool)] if "complete" in episodes.columns else episodes
    rows = rows.assign(left=pd.to_numeric(rows["left"], errors="coerce")).dropna(subset=["left"])
    return rows


def _common_episodes(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the episodes that every run of their task has (the task's shortest run, in episodes)."""
    if rows.empty:
        return rows
    common = rows.groupby(["task", "run_dir"])["episode"].max().groupby(level="task").min()
    return rows[rows["episode"] <= rows["task"].map(common)]


def maximisation_bias_table(episodes: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per (task, variant, training episode), over the complete runs that recorded ``left`` in that episode
    (``runs``): the fraction that went left (``left_fraction``) with its Wilson score interval (``lower``,
    ``upper``); ``episodes`` is ``qbench.loading.load_episodes``'s frame.

    Only the episodes that every run of the task has (all variants alike): runs are given env steps, not
    episodes, and a run that goes right more often finishes more (shorter) episodes, so a late episode that
    few runs reach is a biased sample of them (runs that went right a lot)."""
    rows = _common_episodes(_with_left(episodes))
    if rows.empty:
        return pd.DataFrame(columns=MAXIMISATION_BIAS_COLUMNS)
    table = (rows.groupby(["task", "variant", "episode"], sort=True)["left"]
             .agg(left_fraction="mean", runs="size", successes="sum").reset_index())
    table["lower"], table["upper"] = wilson_interval(table["successes"], table["runs"], confidence)
    table["episode"] = table["episode"].astype(int)
    return table[MAXIMISATION_BIAS_COLUMNS]


MAXIMISATION_BIAS_SUMMARY_COLUMNS = ["task", "variant", "runs", "peak_left_fraction", "peak_episode",
                                     "final_left_fraction", "final_first_episode", "final_last_episode"]


def maximisation_bias_summary(episodes: pd.DataFrame, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (task, variant): the largest left fraction over episodes and the first episode it is reached at
    (from ``maximisation_bias_table``), and the left fraction over the last ``FINAL_EPISODES`` episodes that
    every one of its ``runs`` has (``final_first_episode`` to ``final_last_episode``), each run weighing the
    same. How much of it epsilon-greedy exploration forces is not known here (the report does not know
    epsilon)."""
    rows = _common_episodes(_with_left(episodes))
    if rows.empty:
        return pd.DataFrame(columns=MAXIMISATION_BIAS_SUMMARY_COLUMNS)
    table = maximisation_bias_table(episodes) if table is None else table
    out = []
    for (task, variant), group in rows.groupby(["task", "variant"], sort=True):
        per_episode = table[(table["task"] == task) & (table["variant"] == variant)]
        peak = per_episode.loc[per_episode["left_fraction"].idxmax()]
        last = int(group.groupby("run_dir")["episode"].max().min())
        first = max(1, last - FINAL_EPISODES + 1)
        window = group[(group["episode"] >= first) & (group["episode"] <= last)]
        out.append({"task": task, "variant": variant, "runs": int(group["run_dir"].nunique()),
                    "peak_left_fraction": float(peak["left_fraction"]), "peak_episode": int(peak["episode"]),
                    "final_left_fraction": float(window.groupby("run_dir")["left"].mean().mean()),
                    "final_first_episode": first, "final_last_episode": last})
    return pd.DataFrame(out, columns=MAXIMISATION_BIAS_SUMMARY_COLUMNS)


Q_DISTANCE_METRICS = ("q_error_max", "q_error_mean", "greedy_value", "optimal_value")
Q_DISTANCE_STATISTIC = "mean over seeds"


def q_distance_table(results: pd.DataFrame, finals: pd.DataFrame, *, seed: int = 0, reps: int = 2000,
                     confidence: float = 0.95) -> pd.DataFrame:
    """On tasks with known dynamics: per (task, variant, env_steps), over the complete runs that logged
    ``q_error_max`` at the steps all of them share, the mean over seeds (``statistic``) of ``q_error_max`` and
    ``q_error_mean`` (max and mean over the states the agent can be in of max_a |Q - Q*|), ``greedy_value``
    (the exact value of the learned Q's greedy policy from the initial states) and ``optimal_value`` (V*
    there), each with a percentile bootstrap CI over seeds (``<metric>_lower``, ``<metric>_upper``).

    The mean, not the IQM: these are exact distances of each seed's Q, not noisy returns, and a seed far from
    Q* is what the table is there to show."""
    columns = ["task", "variant", "env_steps", "statistic", "seeds"]
    columns += [f"{m}{part}" for m in Q_DISTANCE_METRICS for part in ("", "_lower", "_upper")]
    if "q_error_max" not in results.columns:
        return pd.DataFrame(columns=columns)
    logged = results[results["run_dir"].isin(set(complete_runs(finals)["run_dir"]))].dropna(subset=["q_error_max"])
    frames = []
    for (task, variant), group in logged.groupby(["task", "variant"], sort=True):
        errors = group.pivot_table(index="run_dir", columns="env_steps", values="q_error_max").dropna(axis=1)
        if errors.empty:
            continue
        frame = pd.DataFrame({"task": task, "variant": variant, "env_steps": errors.columns.astype(int),
                              "statistic": Q_DISTANCE_STATISTIC, "seeds": len(errors)})
        for metric in Q_DISTANCE_METRICS:
            if metric not in group.columns:
                frame[[metric, f"{metric}_lower", f"{metric}_upper"]] = math.nan
                continue
            # The runs and steps of q_error_max; a metric missing in any of them leaves that step NaN.
            wide = (group.drop_duplicates(["run_dir", "env_steps"], keep="last")
                    .pivot(index="run_dir", columns="env_steps", values=metric)
                    .reindex(index=errors.index, columns=errors.columns).to_numpy(float))
            point, lower, upper = bootstrap_mean_over_seeds(wide, row_generator(seed, "q_distance", task, variant,
                                                                              metric), reps, confidence)
            frame[metric], frame[f"{metric}_lower"], frame[f"{metric}_upper"] = point, lower, upper
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def known_dynamics_mdps(results: pd.DataFrame, finals: pd.DataFrame,
                        notes: list[str] | None = None) -> dict[str, tuple[Any, float]]:
    """The exact models of the tasks in ``results`` with known dynamics (their complete runs logged
    ``q_error_max``), each with the gamma its runs trained with, as ``qbench.theory.counterexamples``'s
    ``contraction_table`` takes them: task -> (KnownMDP, gamma), or 'task (gamma g)' per gamma where the runs
    of a task disagree. Each model is ``qbench.theory.models.known_mdp_of`` of config.json's env_id and env_kwargs;
    a task whose env cannot be made or modelled, or whose runs record no gamma, is said in ``notes``."""
    if "q_error_max" not in results.columns:
        return {}
    complete = set(complete_runs(finals)["run_dir"])
    logged = results[results["run_dir"].isin(complete)].dropna(subset=["q_error_max"])
    if logged.empty:
        return {}
    notes = notes if notes is not None else []
    mdps: dict[str, tuple[Any, float]] = {}
    for task, group in logged.groupby("task", sort=True):
        by_gamma: dict[float, dict[str, Any]] = {}
        for run_dir in sorted(set(group["run_dir"])):
            job = read_run_config(run_dir)
            gamma = (job.get("config") or {}).get("gamma") if isinstance(job.get("config"), dict) else None
            if isinstance(gamma, (int, float)) and not isinstance(gamma, bool):
                by_gamma.setdefault(float(gamma), job)
        if not by_gamma:
            notes.append(f"{task}: its runs' config.json record no gamma: no contraction table for it")
            continue
        for gamma, job in sorted(by_gamma.items()):
            name = task if len(by_gamma) == 1 else f"{task} (gamma {gamma:g})"
            try:
                mdp = known_mdp_of(job.get("env_id", task), job.get("env_kwargs"))
            except EnvUnavailable as exc:   # another Gymnasium version, or a package missing here
                notes.append(f"{name}: its env cannot be made here ({exc}): no contraction table for it")
                continue
            if mdp is None:
                notes.append(f"{name}: its env exposes no model (P and initial_state_distrib): no contraction "
                             "table for it")
                continue
            mdps[name] = (mdp, gamma)
    return mdps


# The toy text MDPs whose contraction every Theory section shows, whatever the results hold (value iteration on them
# takes well under a second).
REFERENCE_MDPS = ("FrozenLake-v1", "CliffWalking-v1", "Taxi-v4")
REFERENCE_GAMMAS = (0.9, 0.99)


def reference_mdps() -> dict[str, tuple[Any, float]]:
    """Gymnasium's toy text MDPs at gamma 0.9 and 0.99, named 'task (gamma g)'."""
    out: dict[str, tuple[Any, float]] = {}
    for env_id in REFERENCE_MDPS:
        mdp = known_mdp_of(env_id)
        for gamma in REFERENCE_GAMMAS:
            out[f"{env_id} (gamma {gamma:g})"] = (mdp, gamma)
    return out


CONTRACTION_COLUMNS = ["task", "gamma", "states", "actions", "sweeps", "first_error", "max_ratio", "mean_ratio",
                       "bound", "policy_iteration_steps", "policy_iteration_gap"]
CONTRACTION_CURVE_COLUMNS = ["task", "gamma", "sweep", "max_error", "ratio"]


def contraction_tables(mdps: dict[str, tuple[Any, float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``contraction_table`` and ``contraction_curves`` of ``qbench.theory.counterexamples`` for ``mdps``
    (empty without any)."""
    if not mdps:
        return pd.DataFrame(columns=CONTRACTION_COLUMNS), pd.DataFrame(columns=CONTRACTION_CURVE_COLUMNS)
    return counterexamples.contraction_table(mdps), counterexamples.contraction_curves(mdps)


DIVERGENCE_COLUMNS = ["example", "method", "iteration", "weight_norm", "analytical_norm"]
DIVERGENCE_SUMMARY_COLUMNS = ["example", "method", "iterations", "first_norm", "last_norm", "growth_factor",
                              "spectral_radius",
                              "analytical_growth_factor"]


def divergence_table() -> pd.DataFrame:
    """The weight norms of the divergence counterexamples (``qbench.theory.counterexamples``)."""
    return counterexamples.divergence_curves()


def _growth_factor(iterations: np.ndarray, norms: np.ndarray) -> float:
    """The geometric mean factor per iteration over the second half of the iterations: the early ones hold the
    modes that die out (Baird's first hundreds of iterations grow faster than its spectral radius)."""
    keep = np.isfinite(norms) & (norms > 0)
    if keep.sum() < 2:
        return math.nan
    it, nm = iterations[keep], norms[keep]
    middle = int(np.searchsorted(it, it[0] + (it[-1] - it[0]) / 2.0))
    middle = min(middle, len(it) - 2)
    span = it[-1] - it[middle]
    return float((nm[-1] / nm[middle]) ** (1.0 / span)) if span > 0 else math.nan


def divergence_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per (example, method): its iterations, the weight norm at the first and last, and the mean factor it
    grows by per iteration over the second half of them (below 1: it shrinks), measured and analytical (NaN
    where there is none)."""
    radii = counterexamples.spectral_radii() if not curves.empty else {}
    rows = []
    for (example, method), group in curves.groupby(["example", "method"], sort=False):
        group = group.sort_values("iteration")
        it = group["iteration"].to_numpy(float)
        norms = group["weight_norm"].to_numpy(float)
        rows.append({"example": example, "method": method, "iterations": int(it[-1]) if len(it) else 0,
                     "first_norm": float(norms[0]), "last_norm": float(norms[-1]),
                     "growth_factor": _growth_factor(it, norms),
                     "analytical_growth_factor": _growth_factor(it, group["analytical_norm"].to_numpy(float)),
                     "spectral_radius": radii.get((example, method), math.nan)})
    return pd.DataFrame(rows, columns=DIVERGENCE_SUMMARY_COLUMNS)


# Tables whose rows come from the results: any of them non-empty makes a Theory section, and brings the
# divergence counterexamples (which are the same for every results folder) with it.
THEORY_TABLES = ("maximisation_bias", "maximisation_bias_summary", "q_distance", "contraction",
                 "contraction_curves")


def has_theory(tables: dict[str, pd.DataFrame]) -> bool:
    return any(name in tables and not tables[name].empty for name in THEORY_TABLES)


def _reference_mdps_beside(mdps: dict[str, tuple[Any, float]]) -> dict[str, tuple[Any, float]]:
    """The reference MDPs, less those the results already hold at the same gamma."""
    return {name: (m, g) for name, (m, g) in reference_mdps().items()
            if not any(name.startswith(task + " ") and g == gamma for task, (_, gamma) in mdps.items())}


def theory_tables(scored: ScoredRuns, earlier: Mapping[str, pd.DataFrame]) -> tuple[Tables, list[str]]:
    notes: list[str] = []
    bias = maximisation_bias_table(scored.episodes, scored.confidence)
    tables = {"maximisation_bias": bias,
              "maximisation_bias_summary": maximisation_bias_summary(scored.episodes, bias),
              "q_distance": q_distance_table(scored.results, scored.finals, **scored.bootstrap)}
    mdps = known_dynamics_mdps(scored.results, scored.finals, notes)
    # The contraction tables have a row per model, so the results' own models make a Theory section as they would.
    shown = bool(mdps) or has_theory(tables)
    mdps = {**mdps, **_reference_mdps_beside(mdps)} if shown else mdps
    tables["contraction"], tables["contraction_curves"] = contraction_tables(mdps)
    tables["divergence"] = divergence_table() if shown else pd.DataFrame(columns=DIVERGENCE_COLUMNS)
    tables["divergence_summary"] = divergence_summary(tables["divergence"])
    return tables, notes



# --- the report's sections and figures ---------------------------------------------------------------------------

def maximisation_bias_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "variant": r.variant, "runs": r.runs,
                          "peak left fraction": f"{share(r.peak_left_fraction)} (episode {r.peak_episode})",
                          "final left fraction": f"{share(r.final_left_fraction)} (episodes "
                                                 f"{r.final_first_episode}–{r.final_last_episode})"}
                         for r in table_of(report, "maximisation_bias_summary").itertuples(index=False)])


def q_distance_display(report: Report) -> pd.DataFrame:
    table = table_of(report, "q_distance")
    if table.empty:
        return pd.DataFrame()
    last = table.sort_values("env_steps").groupby(["task", "variant"], sort=True).tail(1)
    return pd.DataFrame([{"task": r.task, "variant": r.variant, "env steps": steps(r.env_steps),
                          "max |Q − Q*| (CI)": ci(r.q_error_max, r.q_error_max_lower, r.q_error_max_upper),
                          "mean |Q − Q*| (CI)": ci(r.q_error_mean, r.q_error_mean_lower, r.q_error_mean_upper),
                          "greedy value (CI)": ci(r.greedy_value, r.greedy_value_lower, r.greedy_value_upper),
                          "optimal value V*": num(r.optimal_value), "seeds": r.seeds}
                         for r in last.sort_values(["task", "variant"]).itertuples(index=False)])


def contraction_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"task": r.task, "gamma": f"{r.gamma:g}", "states": r.states, "actions": r.actions,
                          "sweeps": r.sweeps, "first error": num(r.first_error),
                          "largest ratio": num(r.max_ratio, 4), "mean ratio": num(r.mean_ratio, 4),
                          "bound": num(r.bound, 4),
                          "policy iteration steps": r.policy_iteration_steps,
                          "max |Q*_PI − Q*_VI|": f"{r.policy_iteration_gap:.1e}"}
                         for r in table_of(report, "contraction").itertuples(index=False)])


def divergence_display(report: Report) -> pd.DataFrame:
    return pd.DataFrame([{"example": r.example, "method": r.method, "iterations": r.iterations,
                          "first weight norm": f"{r.first_norm:.3g}", "last weight norm": f"{r.last_norm:.3g}",
                          "growth per iteration": num(r.growth_factor, 4),
                          "analytical": num(r.analytical_growth_factor, 4),
                          "spectral radius": f"{r.spectral_radius:.8f}" if not math.isnan(r.spectral_radius)
                          else "–"}
                         for r in table_of(report, "divergence_summary").itertuples(index=False)])


def maximisation_bias_text(report: Report) -> str:
    pct = f"{report.confidence:.0%}"
    parts = [f"{r.task} / {r.variant}: the fraction of runs that go left peaks at {share(r.peak_left_fraction)} "
             f"(episode {r.peak_episode}) and is {share(r.final_left_fraction)} over episodes "
             f"{r.final_first_episode}–{r.final_last_episode} ({r.runs} runs)."
             for r in table_of(report, "maximisation_bias_summary").itertuples(index=False)]
    return (f"Fraction of the runs that went left in each training episode, with a {pct} Wilson score interval. "
            + " ".join(parts) + " Part of the left choices are forced by epsilon-greedy exploration whatever Q "
            "says (the report does not know each variant's epsilon; the dashed line is the 5% that Sutton and "
            "Barto's epsilon 0.1 forces over A's two actions, which qbench/MaximisationBias-v0 reproduces). Only "
            "the episodes every run of the task has are counted: a run that goes right more often finishes more, "
            "shorter episodes, so later episodes would sample such runs only.")


def contraction_text(report: Report) -> str:
    parts = []
    for r in table_of(report, "contraction").itertuples(index=False):
        within = "within" if r.max_ratio <= r.bound * (1 + 1e-9) else "above"
        parts.append(f"{r.task}: the largest error ratio between sweeps is {num(r.max_ratio, 4)} (mean "
                     f"{num(r.mean_ratio, 4)}) over {r.sweeps} sweeps, {within} the bound {num(r.bound, 4)} at "
                     f"gamma {r.gamma:g}.")
    table = table_of(report, "contraction")
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
    for r in table_of(report, "divergence_summary").itertuples(index=False):
        analytical = (f" (analytical {num(r.analytical_growth_factor, 4)})"
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
                     f"{num(r.growth_factor, 4)} per iteration{analytical}, from {r.first_norm:.3g} to "
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
    if not table_of(report, "maximisation_bias").empty:
        out.append(Section("Maximisation bias", maximisation_bias_text(report), maximisation_bias_display(report),
                           "maximisation_bias", level=3))
    if not table_of(report, "q_distance").empty:
        out.append(Section("Distance to Q*", "At the last evaluation step shared by the complete runs that logged "
                           "it: max and mean over the states the agent can be in of max_a |Q − Q*|, and the exact "
                           "value of the greedy policy of the learned Q from the initial states against V*; mean "
                           f"over seeds with a {pct} bootstrap CI over seeds.", q_distance_display(report),
                           "q_distance", level=3))
        out.append(Section("Greedy policy value", "The exact value of each variant's greedy policy from the initial "
                           "states against V* (dashed), mean over seeds.", figure="greedy_value", level=3))
    if not table_of(report, "contraction").empty:
        out.append(Section("Contraction of Q-value iteration", contraction_text(report), contraction_display(report),
                           "contraction", level=3))
    out.append(Section("Divergence counterexamples", divergence_text(report), divergence_display(report),
                       "divergence", level=3))
    return out


def theory_figures(report: Report, styles: dict[str, Style]) -> dict[str, Any]:
    # Imported here: matplotlib and seaborn are the optional ``report`` extra, which the tables do not need.
    from qbench.analysis.studies import plots_theory

    return plots_theory.figures(report, styles)


THEORY = Study("theory", ("maximisation_bias", "maximisation_bias_summary", "q_distance", "contraction",
                          "contraction_curves", "divergence", "divergence_summary"), theory_tables,
               sections={50: theory_sections}, figures=theory_figures)
