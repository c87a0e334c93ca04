"""Goal probabilities from a collapsed fit (numpy + scipy only; no JAX needed).

For target (student i, week T, goal g) and each posterior draw of the population parameters, the
student's expected score eta = a_i + b_i (T - c) is exactly normal given the draw:

* seen student: (a_i, b_i) | y_i, draw ~ N(m_i, C_i) (collapsed.conditional_moments), so
  eta ~ N(x' m_i, x' C_i x) with x = (1, T - c);
* unseen student: (a, b) ~ N(beta, Sigma), eta ~ N(beta0 + beta1 (T - c), x' Sigma x).

p = mean over draws of Phi((mean - g) / sd)   (Rao-Blackwellized P(eta >= g)).

predictive=True gives the probability for the *observed* score of the target week instead: the gaussian
model's week score is eta + e, so each draw's variance gains the residual variance of a typical week of
the student: sigma^2 under the plain observation model, sigma^2 times the student's mean 1 / w under the
attempts model (:mod:`.observation`; an unseen student: sigma^2, an average row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtr

from .collapsed import conditional_moments
from .request import GrowthInputError, validate_targets
from .state import FitState

METHOD = "rao_blackwell"


def _normalize_targets(targets):
    if isinstance(targets, dict) and "targets" in targets:
        targets = targets["targets"]
    if isinstance(targets, (list, tuple)) and targets and isinstance(targets[0], (list, tuple)):
        targets = [{"student": t[0], "target_week": t[1], "goal": t[2]} for t in targets]
    targets = list(targets) if isinstance(targets, tuple) else targets
    return (targets, *validate_targets(targets))


def _prob(mean, var, goal):
    """Average over draws (axis 0) of P(N(mean, var) >= goal)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (mean - goal) / np.sqrt(var)
    p = np.where(var > 0, ndtr(z), (mean >= goal).astype(np.float64))
    return p.mean(axis=0)


def predict_prob(
    state: FitState, targets: Any, max_elements: int = 2_000_000, predictive: bool = False
) -> list[dict[str, Any]]:
    """Posterior probabilities that each target student's expected score at ``target_week`` is >= ``goal``
    (or, with ``predictive``, that the observed score of that week is).

    ``targets``: list of {"student", "target_week", "goal"} dicts (or (student, week, goal) tuples).
    Returns a list of {"student", "target_week", "goal", "p", "seen"} in the same order. Vectorized over
    draws and targets, in chunks of at most ``max_elements`` draw x target cells.
    """
    raw, students, weeks, goals = _normalize_targets(targets)
    weeks = np.asarray(weeks, dtype=np.float64)
    goals = np.asarray(goals, dtype=np.float64)
    idx = state.stats.lookup(students)
    seen = idx >= 0
    x = weeks - state.center
    dr = {k: np.asarray(v, dtype=np.float64)[:, None] for k, v in state.draws.items()}
    D = dr["beta0"].shape[0]
    if D == 0:
        raise GrowthInputError("the fit has no draws")
    chunk = max(1, max_elements // D)
    p = np.empty(len(students))
    noise = dr["sigma"] ** 2 if predictive else np.zeros_like(dr["sigma"])
    arrays = state.stats.arrays()
    noise_scale = state.stats.noise_scale

    for start in range(0, len(students), chunk):
        sl = slice(start, min(start + chunk, len(students)))
        xs, gs, ii, sn = x[sl], goals[sl], idx[sl], seen[sl]
        out = np.empty(xs.shape[0])
        if sn.any():
            sub = {k: v[ii[sn]] for k, v in arrays.items()}
            ma, mb, vaa, vab, vbb = conditional_moments(
                sub, dr["beta0"], dr["beta1"], dr["sd0"], dr["sd1"], dr["rho"], dr["sigma"]
            )
            xv = xs[sn]
            var = vaa + 2.0 * xv * vab + xv * xv * vbb + noise * noise_scale[ii[sn]]
            out[sn] = _prob(ma + mb * xv, var, gs[sn])
        if (~sn).any():
            xv = xs[~sn]
            mean = dr["beta0"] + dr["beta1"] * xv
            var = dr["sd0"] ** 2 + 2.0 * xv * dr["rho"] * dr["sd0"] * dr["sd1"] + xv * xv * dr["sd1"] ** 2
            out[~sn] = _prob(mean, var + noise, gs[~sn])
        p[sl] = out

    return [
        {"student": t["student"], "target_week": t["target_week"], "goal": t["goal"], "p": float(pi), "seen": bool(se)}
        for t, pi, se in zip(raw, p.tolist(), seen.tolist(), strict=True)
    ]
