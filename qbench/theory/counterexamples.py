"""Divergence of bootstrapping with function approximation, as exact (expected, noise-free) iterations.

Tsitsiklis & Van Roy (1997) and Baird (1995) show that value iteration / TD, each a contraction with a
table, can blow up once values are tied together by shared weights: the deadly triad of bootstrapping,
function approximation and off-policy state weighting. The tabular twins here converge, for contrast.
Also the contraction check of exact Q-iteration on known MDPs, tabulated for a report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from qbench.theory.mdp import KnownMDP, policy_iteration, q_iteration

if TYPE_CHECKING:
    import pandas as pd

# Tsitsiklis & Van Roy: state 1 has feature 1, state 2 feature 2, and both move to state 2 with reward 0.
TVR_FEATURES = np.array([1.0, 2.0])

# Baird: state 6 is the lower state, the target policy's only destination.
BAIRD_STATES = 7
BAIRD_LOWER = 6
BAIRD_W0 = np.array([1.0, 1, 1, 1, 1, 1, 10, 1])


def tvr_growth_factor(gamma: float) -> float:
    """Per-iteration factor of the fitted weight: sum_s phi(s) * 2 gamma / sum_s phi(s)^2 = 6 gamma / 5."""
    return 6.0 * gamma / 5.0


def tvr_fitted_value_iteration(gamma: float, w0: float, iterations: int) -> np.ndarray:
    """Weights w_0..w_iterations of least-squares fitted value iteration on the two-state example."""
    design = TVR_FEATURES[:, None]
    out = np.empty(iterations + 1)
    out[0] = w = float(w0)
    for k in range(1, iterations + 1):
        # Both states bootstrap from state 2, whose value under the current fit is 2 w.
        targets = np.full(2, gamma * TVR_FEATURES[1] * w)
        w = float(np.linalg.lstsq(design, targets, rcond=None)[0][0])
        out[k] = w
    return out


def tvr_tabular_value_iteration(gamma: float, v0, iterations: int) -> np.ndarray:
    """Values (iterations + 1, 2) of the same backup with one free value per state: shrinks by gamma per sweep."""
    out = np.empty((iterations + 1, 2))
    out[0] = v = np.broadcast_to(np.asarray(v0, dtype=np.float64), (2,))
    for k in range(1, iterations + 1):
        v = np.full(2, gamma * v[1])
        out[k] = v
    return out


def baird_features(features: str = "baird") -> np.ndarray:
    """(7, 8) features of Baird's star: upper state i is 2 w_i + w_7, the lower state is w_6 + 2 w_7."""
    if features == "tabular":
        return np.eye(BAIRD_STATES)
    if features != "baird":
        raise ValueError(f"features must be 'baird' or 'tabular', got {features!r}")
    phi = np.zeros((BAIRD_STATES, 8))
    for i in range(BAIRD_LOWER):
        phi[i, i], phi[i, 7] = 2.0, 1.0
    phi[BAIRD_LOWER, 6], phi[BAIRD_LOWER, 7] = 1.0, 2.0
    return phi


def _baird_weighting(weighting: str) -> np.ndarray:
    if weighting == "uniform":
        # The behaviour policy (dashed 6/7 to a uniform upper state, solid 1/7 to the lower) visits all
        # seven states equally often.
        return np.full(BAIRD_STATES, 1.0 / BAIRD_STATES)
    if weighting == "on_policy":
        # The target policy always takes solid, so after the first step it only ever sits in state 6.
        return np.eye(BAIRD_STATES)[BAIRD_LOWER]
    raise ValueError(f"weighting must be 'uniform' or 'on_policy', got {weighting!r}")


def baird_update_matrix(gamma: float = 0.99, alpha: float = 0.01, weighting: str = "uniform",
                        features: str = "baird") -> np.ndarray:
    """M with w_{k+1} = M w_k for expected semi-gradient TD(0) towards the target policy's next state."""
    phi = baird_features(features)
    d = _baird_weighting(weighting)
    # TD error of every state: gamma v(lower) - v(s), a linear map of w; reward is 0 everywhere.
    td = gamma * np.outer(np.ones(BAIRD_STATES), phi[BAIRD_LOWER]) - phi
    return np.eye(phi.shape[1]) + alpha * phi.T @ (d[:, None] * td)


def baird_expected_td(gamma: float = 0.99, alpha: float = 0.01, iterations: int = 1000, w0=None,
                      weighting: str = "uniform", features: str = "baird") -> np.ndarray:
    """Weights (iterations + 1, n_weights) of expected off-policy semi-gradient TD(0) (S&B Fig. 11.2, right)."""
    phi = baird_features(features)
    d = _baird_weighting(weighting)
    if w0 is None:
        w0 = BAIRD_W0 if features == "baird" else np.r_[np.ones(BAIRD_STATES - 1), 10.0]
    w = np.asarray(w0, dtype=np.float64).copy()
    if w.shape != (phi.shape[1],):
        raise ValueError(f"w0 must have {phi.shape[1]} weights, got shape {w.shape}")
    out = np.empty((iterations + 1, w.size))
    out[0] = w
    for k in range(1, iterations + 1):
        v = phi @ w
        delta = gamma * v[BAIRD_LOWER] - v
        w = w + alpha * phi.T @ (d * delta)
        out[k] = w
    return out


def baird_growth_factor(gamma: float = 0.99, alpha: float = 0.01, weighting: str = "uniform",
                        features: str = "baird") -> float:
    """Spectral radius of the update map: the asymptotic per-iteration factor of ||w||."""
    return float(np.abs(np.linalg.eigvals(baird_update_matrix(gamma, alpha, weighting, features))).max())


def _dominant_mode_norms(matrix: np.ndarray, w0: np.ndarray, iterations: int) -> np.ndarray:
    """||part of M^k w0 along the eigenvalues of largest modulus||, k = 0..iterations: the asymptote of ||w_k||."""
    values, right = np.linalg.eig(matrix)
    left = np.linalg.inv(right)   # rows are the matching left eigenvectors, scaled so left @ right = I
    radius = np.abs(values).max()
    top = np.abs(values) >= radius * (1.0 - 1e-12)
    coeffs = left[top] @ w0
    steps = np.arange(iterations + 1)
    modes = (right[:, top] * coeffs)[None, :, :] * (values[top][None, None, :] ** steps[:, None, None])
    return np.linalg.norm(modes.sum(axis=-1).real, axis=1)


def divergence_curves(iterations: int = 1000, tvr_iterations: int = 50) -> pd.DataFrame:
    """Long-form weight norms per iteration for each counterexample and its convergent twin.

    ``analytical_norm`` is the closed form where there is one: (6 gamma / 5)^k |w0| for TvR, and for
    Baird's off-policy run the norm of the dominant eigen-mode of w0 under the update map, which is
    anchored at iteration 0 by projecting w0 (so it is not ||w0|| rho^k) and agrees with the iteration
    once the other modes have died out. It is nan for the convergent tabular and on-policy runs.
    """
    import pandas as pd

    frames = []

    def add(example, method, norms, analytical):
        frames.append(pd.DataFrame({"example": example, "method": method, "iteration": np.arange(len(norms)),
                                    "weight_norm": norms, "analytical_norm": analytical}))

    ks = np.arange(tvr_iterations + 1)
    for gamma in (0.9, 0.8):
        w = tvr_fitted_value_iteration(gamma, 1.0, tvr_iterations)
        add("tsitsiklis_van_roy", f"fitted_gamma_{gamma}", np.abs(w), tvr_growth_factor(gamma) ** ks)
    v = tvr_tabular_value_iteration(0.9, 1.0, tvr_iterations)
    add("tsitsiklis_van_roy", "tabular_gamma_0.9", np.linalg.norm(v, axis=1), np.full(ks.size, np.nan))

    w = baird_expected_td(iterations=iterations)
    add("baird", "off_policy_uniform", np.linalg.norm(w, axis=1),
        _dominant_mode_norms(baird_update_matrix(), BAIRD_W0, iterations))
    for method, kwargs in (("on_policy", {"weighting": "on_policy"}), ("tabular", {"features": "tabular"})):
        w = baird_expected_td(iterations=iterations, **kwargs)
        add("baird", method, np.linalg.norm(w, axis=1), np.full(iterations + 1, np.nan))
    return pd.concat(frames, ignore_index=True)


def spectral_radii() -> dict[tuple[str, str], float]:
    """(example, method) of divergence_curves -> the spectral radius of its iteration map, the factor by which the
    weight norm grows (> 1) or shrinks (< 1) per iteration in the long run, whatever it does at first: TvR's
    fitted map is 6 gamma / 5, its tabular one (v1, v2) -> (gamma v2, gamma v2) has eigenvalues 0 and gamma; Baird's
    from baird_update_matrix (on-policy: 1, the weights no update touches stay where they are)."""
    out = {("tsitsiklis_van_roy", f"fitted_gamma_{gamma}"): tvr_growth_factor(gamma) for gamma in (0.9, 0.8)}
    out[("tsitsiklis_van_roy", "tabular_gamma_0.9")] = 0.9
    out[("baird", "off_policy_uniform")] = baird_growth_factor()
    out[("baird", "on_policy")] = baird_growth_factor(weighting="on_policy")
    out[("baird", "tabular")] = baird_growth_factor(features="tabular")
    return out


# Below this error a sweep's change is within a few ulps of Q, and the ratio measures rounding.
RATIO_FLOOR = 1e-10


def contraction_table(mdps: dict[str, tuple[KnownMDP, float]]) -> pd.DataFrame:
    """One row per MDP: how fast exact Q-iteration's max-norm error shrinks, against the bound gamma; and policy
    iteration beside it: its improvement steps (the last changes nothing) and the largest gap between its Q* and
    value iteration's."""
    import pandas as pd

    rows = []
    for task, (mdp, gamma) in mdps.items():
        run = q_iteration(mdp, gamma)
        try:
            howard = policy_iteration(mdp, gamma)
            steps = howard.improvements
            gap = float(np.abs(np.where(mdp.valid, howard.q_star, 0.0) - np.where(mdp.valid, run.q_star, 0.0)).max())
        except (RuntimeError, np.linalg.LinAlgError):   # gamma 1 with a policy that never ends: no finite Q^pi
            steps, gap = -1, np.nan
        ratios = run.ratios[run.max_errors[:-1] > RATIO_FLOOR]
        rows.append({"task": task, "gamma": gamma, "states": mdp.n_states, "actions": mdp.n_actions,
                     "sweeps": run.sweeps, "first_error": float(run.max_errors[0]),
                     "max_ratio": float(ratios.max()) if ratios.size else np.nan,
                     "mean_ratio": float(ratios.mean()) if ratios.size else np.nan, "bound": gamma,
                     "policy_iteration_steps": steps, "policy_iteration_gap": gap})
    return pd.DataFrame(rows)


def contraction_curves(mdps: dict[str, tuple[KnownMDP, float]]) -> pd.DataFrame:
    """Long form: task, gamma, sweep, max_error, ratio (error over the previous sweep's; nan at sweep 0)."""
    import pandas as pd

    frames = []
    for task, (mdp, gamma) in mdps.items():
        run = q_iteration(mdp, gamma)
        frames.append(pd.DataFrame({"task": task, "gamma": gamma, "sweep": np.arange(run.sweeps + 1),
                                    "max_error": run.max_errors, "ratio": np.r_[np.nan, run.ratios]}))
    return pd.concat(frames, ignore_index=True)
