"""The growth model fitted to a cohort by maximum likelihood (numpy + scipy; no JAX).

Every student's line is integrated out exactly (:mod:`growth_engine.collapsed`: sufficient statistics and
2x2 algebra, linear in students), so the likelihood of the six population parameters is exact. Given the
estimates, each student's line has an exact normal conditional distribution, shrunk toward the cohort's
line as much as their own data are thin or noisy (:meth:`CohortFit.expected_score`). The uncertainty of
the six estimates themselves is left out (small next to a student's own beyond a few dozen students).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize

from .collapsed import conditional_moments, marginal_loglik_gradient
from .stats import StudentStats, student_stats

# bounds on the unconstrained parameters: log sds, atanh(rho); keeps the optimizer off degenerate edges
_LOG_SD = (-12.0, 2.0)
_ATANH_RHO = (-4.0, 4.0)

ArrayLike = Sequence[Any] | np.ndarray


@dataclasses.dataclass(frozen=True)
class CohortFit:
    """Maximum-likelihood population parameters (``beta0`` at the week centre) and the students' statistics."""

    beta0: float
    beta1: float
    sd0: float
    sd1: float
    rho: float
    sigma: float
    stats: StudentStats
    converged: bool
    message: str
    loglik: float
    observation: dict[str, Any] | None = None  # the observation model's record (Observation.describe())

    @property
    def params(self) -> tuple[float, float, float, float, float, float]:
        return self.beta0, self.beta1, self.sd0, self.sd1, self.rho, self.sigma

    @property
    def center(self) -> float:
        """The week centre c (``beta0`` and the levels of :meth:`conditional_moments` are at week c)."""
        return self.stats.center

    def conditional_moments(self, students: ArrayLike) -> tuple[np.ndarray, ...]:
        """Normal of each student's (level at the centre, slope) given the estimates: ``(ma, mb, vaa, vab,
        vbb)``. Raises KeyError naming the first student without scores in the cohort."""
        students = np.asarray(students)
        position = self.stats.lookup(students)
        if (position < 0).any():
            raise KeyError(f"student {students[position < 0][0]!r} has no scores in the cohort")
        return conditional_moments(self.stats.subset(position), *self.params)

    def expected_score(self, students: ArrayLike, week: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of each student's expected score (a point on their line) at ``week``."""
        ma, mb, vaa, vab, vbb = self.conditional_moments(students)
        x = np.asarray(week, dtype=float) - self.center
        mean = ma + mb * x
        sd = np.sqrt(np.maximum(vaa + 2.0 * x * vab + x * x * vbb, 0.0))
        return mean, sd


def fit_cohort_ml(
    student: ArrayLike,
    week: ArrayLike,
    score: ArrayLike,
    weight: ArrayLike | None = None,
    center: float | None = None,
    start: CohortFit | None = None,
) -> CohortFit:
    """Fit the population parameters to rows (student, week, score) by maximum likelihood (L-BFGS-B on
    (beta0, beta1, log sd0, log sd1, atanh rho, log sigma) with the exact gradient, per-row log-likelihood).
    ``weight``: the observation model's precision weights per row (:mod:`growth_engine.observation`;
    default 1); ``center``: the week centre (default the rows' mean week); ``start``: a fit to start the
    search from (a fit of nearly the same rows, such as the same rows under nearby weights: far fewer steps
    than from scratch)."""
    stats = student_stats(np.asarray(student), np.asarray(week), np.asarray(score), center=center, weight=weight)
    n_rows = float(stats.n_rows.sum())

    def negative_loglik(x: np.ndarray) -> tuple[float, np.ndarray]:
        beta0, beta1, log_sd0, log_sd1, atanh_rho, log_sigma = x
        value, gradient = marginal_loglik_gradient(
            stats, beta0, beta1, np.exp(log_sd0), np.exp(log_sd1), np.tanh(atanh_rho), np.exp(log_sigma)
        )
        return -value / n_rows, -gradient / n_rows  # per row: keeps the optimizer's tolerances meaningful at any size

    bounds = [(None, None), (None, None), _LOG_SD, _LOG_SD, _ATANH_RHO, _LOG_SD]
    x0 = _initial(stats) if start is None else _unconstrained(start, bounds)
    result = optimize.minimize(negative_loglik, x0, jac=True, method="L-BFGS-B", bounds=bounds)
    beta0, beta1, log_sd0, log_sd1, atanh_rho, log_sigma = result.x
    return CohortFit(
        beta0=float(beta0),
        beta1=float(beta1),
        sd0=float(np.exp(log_sd0)),
        sd1=float(np.exp(log_sd1)),
        rho=float(np.tanh(atanh_rho)),
        sigma=float(np.exp(log_sigma)),
        stats=stats,
        converged=bool(result.success),
        message=str(result.message),
        loglik=-float(result.fun) * n_rows,
    )


def _initial(stats: StudentStats) -> np.ndarray:
    """A start from the data: the weighted mean score, no slope, the spread of the students' means."""
    spread = float(np.std(stats.ybar)) or 0.1
    mean = float(np.average(stats.ybar, weights=stats.n))
    return np.array([mean, 0.0, np.log(spread), np.log(0.02), 0.0, np.log(0.1)])


def _unconstrained(fit: CohortFit, bounds: list[tuple[float | None, float | None]]) -> np.ndarray:
    """``fit``'s parameters on the optimizer's scale, inside its bounds."""
    x = np.array([fit.beta0, fit.beta1, np.log(fit.sd0), np.log(fit.sd1), np.arctanh(fit.rho), np.log(fit.sigma)])
    low = [-np.inf if b[0] is None else b[0] for b in bounds]
    high = [np.inf if b[1] is None else b[1] for b in bounds]
    return np.clip(x, low, high)
