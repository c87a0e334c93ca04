"""The normal approximation of P, honest about its uncertainty (empirical Bayes).

A straight line fitted to one student's few noisy weeks and extrapolated is overconfident. Instead the
cohort's growth model (the same ``score ~ week + (week | student)``, gaussian) is fitted by maximum
likelihood with every student's line integrated out exactly (``growth_engine.collapsed``: sufficient
statistics and 2x2 algebra, linear in students). Given those population estimates each student's line
has an exact normal conditional distribution: shrunk toward the cohort's line as much as their own data
are thin or noisy. P is the probability, under that normal, that the expected score at the target week
reaches the goal. The only uncertainty left out is that of the six population estimates, small next to
a student's own once the cohort has more than a few dozen students.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from growth_engine.collapsed import conditional_moments, marginal_loglik
from growth_engine.stats import StudentStats, student_stats
from scipy import optimize

from seed_growth.growth.probability import prob_at_least

# bounds on the unconstrained parameters: log sds, atanh(rho); keeps the optimizer off degenerate edges
_LOG_SD = (-12.0, 2.0)
_ATANH_RHO = (-4.0, 4.0)


@dataclasses.dataclass(frozen=True)
class CohortFit:
    """Maximum-likelihood population parameters (``beta0`` at the week centre) and the statistics."""

    beta0: float
    beta1: float
    sd0: float
    sd1: float
    rho: float
    sigma: float
    stats: StudentStats
    converged: bool
    message: str

    @property
    def params(self) -> tuple[float, float, float, float, float, float]:
        return self.beta0, self.beta1, self.sd0, self.sd1, self.rho, self.sigma


def fit_cohort(scores: pd.DataFrame) -> CohortFit:
    """Fit the population parameters to ``scores`` (student, week, score) by maximum likelihood."""
    if scores.empty:
        raise ValueError("no scores to fit")
    stats = student_stats(scores["student"].astype(str).to_numpy(), scores["week"].to_numpy(), scores["score"].to_numpy())
    arrays = stats.arrays()
    n_rows = float(arrays["n"].sum())

    def negative_loglik(x: np.ndarray) -> float:
        beta0, beta1, log_sd0, log_sd1, atanh_rho, log_sigma = x
        value = marginal_loglik(arrays, beta0, beta1, np.exp(log_sd0), np.exp(log_sd1), np.tanh(atanh_rho), np.exp(log_sigma))
        return -float(value) / n_rows  # per row: keeps the optimizer's tolerances meaningful at any size

    spread = float(np.std(stats.ybar)) or 0.1
    start = np.array([float(np.average(stats.ybar, weights=stats.n)), 0.0, np.log(spread), np.log(0.02), 0.0, np.log(0.1)])
    bounds = [(None, None), (None, None), _LOG_SD, _LOG_SD, _ATANH_RHO, _LOG_SD]
    result = optimize.minimize(negative_loglik, start, method="L-BFGS-B", bounds=bounds)
    beta0, beta1, log_sd0, log_sd1, atanh_rho, log_sigma = result.x
    return CohortFit(
        beta0=float(beta0), beta1=float(beta1), sd0=float(np.exp(log_sd0)), sd1=float(np.exp(log_sd1)),
        rho=float(np.tanh(atanh_rho)), sigma=float(np.exp(log_sigma)), stats=stats,
        converged=bool(result.success), message=str(result.message),
    )


def normal_approximation_p(
    scores: pd.DataFrame, targets: pd.DataFrame, cohort: CohortFit | None = None
) -> pd.DataFrame:
    """P per row of ``targets`` (student, target_week, goal): Pr(expected score at target_week >= goal)
    under the student's shrunk line. Returns student, P, mean and sd of the expected score."""
    cohort = cohort or fit_cohort(scores)
    position = cohort.stats.lookup(targets["student"].astype(str).to_numpy())
    if (position < 0).any():
        unknown = targets["student"].to_numpy()[position < 0][0]
        raise KeyError(f"student {unknown!r} has no scores in the cohort")
    ma, mb, vaa, vab, vbb = conditional_moments(cohort.stats.subset(position).arrays(), *cohort.params)
    x = targets["target_week"].to_numpy(dtype=float) - cohort.stats.center
    mean = ma + mb * x
    sd = np.sqrt(np.maximum(vaa + 2.0 * x * vab + x * x * vbb, 0.0))
    p = prob_at_least(mean, sd, targets["goal"].to_numpy(dtype=float))
    return pd.DataFrame({"student": targets["student"].to_numpy(), "P": p, "expected_score": mean, "expected_score_sd": sd})
