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

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy.special import ndtr
from scipy.stats import binom

from .collapsed import conditional_moments
from .request import GrowthInputError, validate_targets
from .state import FitState, draw_subset

METHOD = "rao_blackwell"


#: draws x targets cells above which P averages over an evenly spaced subset of the draws (never fewer than
#: MIN_PREDICT_DRAWS): at a million targets the population posterior is so narrow that the subset changes P
#: by less than 1e-4 (BENCHMARKS.md), while the full set would cost minutes.
PREDICT_CELLS = 200_000_000
MIN_PREDICT_DRAWS = 200
#: draws x targets cells per block: small enough that a block's temporaries stay in the CPU's cache (at a
#: million targets 64k cells took 6 s where 2M took 10 s, BENCHMARKS.md)
PREDICT_CHUNK_CELLS = 65_536


def week_reaches_goal(n: Any, accuracy: Any, goal: Any) -> np.ndarray:
    """Pr(correct of n attempts at ``accuracy`` >= goal n): an observed week reaches the goal with
    ceil(goal n) correct answers (4 of 5 reaches 0.8). Broadcasts."""
    n = np.asarray(n, dtype=np.float64)
    return binom.sf(np.ceil(np.asarray(goal) * n - 1e-9) - 1, n, accuracy)


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


def prediction_draws(state: FitState, n_targets: int) -> dict[str, np.ndarray]:
    """The population draws P averages over: all of them, or an evenly spaced subset of at least
    ``MIN_PREDICT_DRAWS`` when draws x targets exceed ``PREDICT_CELLS``."""
    if state.n_draws == 0:
        raise GrowthInputError("the fit has no draws")
    chosen = draw_subset(state.draws, n_targets, PREDICT_CELLS, MIN_PREDICT_DRAWS)
    return {k: np.asarray(v, dtype=np.float64)[:, None] for k, v in chosen.items()}


def predict_columns(
    state: FitState,
    students: Any,
    weeks: Any,
    goals: Any,
    *,
    predictive: bool = False,
    max_elements: int = PREDICT_CHUNK_CELLS,
) -> tuple[np.ndarray, np.ndarray]:
    """``(p, seen)`` per target: the posterior probability that the student's expected score at week
    ``weeks[i]`` is >= ``goals[i]`` (with ``predictive``, that the observed score of that week is), and whether
    the fit saw the student. ``students``: anything :meth:`StudentStats.lookup` takes (an Arrow array, a numpy
    array, a list). Vectorized over draws and targets, in chunks of at most ``max_elements`` cells."""
    weeks = np.asarray(weeks, dtype=np.float64)
    goals = np.asarray(goals, dtype=np.float64)
    idx = state.stats.lookup(students)
    seen = idx >= 0
    x = weeks - state.center
    dr = prediction_draws(state, len(idx))
    chunk = max(1, max_elements // dr["beta0"].shape[0])
    p = np.empty(len(idx))
    noise = dr["sigma"] ** 2 if predictive else np.zeros_like(dr["sigma"])
    arrays = state.stats.arrays()
    noise_scale = state.stats.noise_scale

    def block(sl: slice) -> None:
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

    blocks = [slice(start, min(start + chunk, len(idx))) for start in range(0, len(idx), chunk)]
    # numpy's and scipy's loops release the GIL: blocks on every core (each block writes its own slice)
    with ThreadPoolExecutor(max_workers=min(len(blocks), os.cpu_count() or 1)) as pool:
        list(pool.map(block, blocks))
    return p, seen


def predict_prob(
    state: FitState, targets: Any, max_elements: int = PREDICT_CHUNK_CELLS, predictive: bool = False
) -> list[dict[str, Any]]:
    """Posterior probabilities that each target student's expected score at ``target_week`` is >= ``goal``
    (or, with ``predictive``, that the observed score of that week is): :func:`predict_columns` on
    ``targets``, a list of {"student", "target_week", "goal"} dicts (or (student, week, goal) tuples).
    Returns a list of {"student", "target_week", "goal", "p", "seen"} in the same order."""
    raw, students, weeks, goals = _normalize_targets(targets)
    p, seen = predict_columns(state, students, weeks, goals, predictive=predictive, max_elements=max_elements)
    return [
        {"student": t["student"], "target_week": t["target_week"], "goal": t["goal"], "p": float(pi), "seen": bool(se)}
        for t, pi, se in zip(raw, p.tolist(), seen.tolist(), strict=True)
    ]
