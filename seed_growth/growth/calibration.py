"""Does P mean what it says? Scores of probabilities against observed outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from growth_engine.predict import week_reaches_goal


def brier_score(p: ArrayLike, outcome: ArrayLike) -> float:
    p, outcome = np.asarray(p, dtype=float), np.asarray(outcome, dtype=float)
    return float(np.mean((p - outcome) ** 2))


def log_loss(p: ArrayLike, outcome: ArrayLike, eps: float = 1e-6) -> float:
    """Mean negative log-likelihood of the outcomes; P is clipped to [eps, 1 - eps] so one confident
    miss is costly but finite."""
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    outcome = np.asarray(outcome, dtype=float)
    return float(-np.mean(outcome * np.log(p) + (1 - outcome) * np.log1p(-p)))


def reliability_table(p: ArrayLike, outcome: ArrayLike, bins: int = 10) -> pd.DataFrame:
    """P in ``bins`` equal bins: mean P, observed rate, count, and the binomial standard error of the
    observed rate were P right (the yardstick for "within sampling error")."""
    p, outcome = np.asarray(p, dtype=float), np.asarray(outcome, dtype=float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        mean_p = float(p[mask].mean()) if count else np.nan
        rows.append(
            {
                "bin": f"[{b / bins:.1f}, {(b + 1) / bins:.1f}{']' if b == bins - 1 else ')'}",
                "mean_P": mean_p,
                "observed_rate": float(outcome[mask].mean()) if count else np.nan,
                "count": count,
                "se": float(np.sqrt(mean_p * (1 - mean_p) / count)) if count else np.nan,
            }
        )
    return pd.DataFrame(rows)


def week_noise_sd(scores: pd.DataFrame, sigma: float) -> float:
    """The week-to-week wobble of a student's accuracy, beyond the sampling noise of the week's attempts:
    the gaussian model's residual variance sigma^2 less the binomial variance s (1 - s) / n that the
    window's student-weeks carry on average (scores: score, n_attempts)."""
    s, n = scores["score"].to_numpy(dtype=float), scores["n_attempts"].to_numpy(dtype=float)
    binomial = float(np.mean(s * (1.0 - s) / n))
    return float(np.sqrt(max(sigma**2 - binomial, 0.0)))


def model_week_noise_sd(scores: pd.DataFrame, sigma: float, observation: Mapping[str, Any] | None) -> float:
    """The week-to-week wobble as the fit's observation model has it: under the attempts model its own
    estimate, sigma * sqrt(kappa / gbar) (growth_engine.observation); under the plain model the residual
    variance less the average binomial variance (:func:`week_noise_sd`), which mistakes the plain model's
    misfit of few-attempt weeks for wobble."""
    if observation and observation.get("name") == "attempts":
        return float(sigma * np.sqrt(observation["kappa"] / observation["gbar"]))
    return week_noise_sd(scores, sigma)


_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(40)  # quadrature against N(0, 1)
_WEIGHTS = _WEIGHTS / np.sqrt(2.0 * np.pi)


def observed_score_p(mean, sd, week_sd: float, n, goal) -> np.ndarray:
    """Pr(the target week's observed accuracy correct / n >= goal), the outcome a backtest can check.

    The expected score ~ N(mean, sd^2) (the posterior, or the normal approximation's); that week's
    accuracy q adds N(0, week_sd^2) (clipped to [0, 1]); correct ~ Binomial(n, q) exactly, so reaching the
    goal takes ceil(goal n) correct answers (4 of 5 reaches 0.8). Integrated over q by 40-point
    Gauss-Hermite quadrature. A gaussian model with one sigma for every student-week would treat a week
    of 5 attempts like one of 30."""
    mean, sd = np.atleast_1d(np.asarray(mean, dtype=float)), np.atleast_1d(np.asarray(sd, dtype=float))
    n, goal = np.atleast_1d(np.asarray(n, dtype=float)), np.atleast_1d(np.asarray(goal, dtype=float))
    if np.any(n < 1):
        raise ValueError("every target week needs at least one attempt to be judged")
    mean, sd, n, goal = np.broadcast_arrays(mean, sd, n, goal)
    spread = np.sqrt(np.square(sd) + week_sd**2)
    q = np.clip(mean[:, None] + spread[:, None] * _NODES[None, :], 0.0, 1.0)
    return week_reaches_goal(n[:, None], q, goal[:, None]) @ _WEIGHTS


def summarise_methods(frame: pd.DataFrame, methods: list[str], outcome: str = "reached") -> pd.DataFrame:
    """Brier score and log loss of each probability column in ``methods``, per as-of week and overall."""
    rows = []
    for as_of, group in [*frame.groupby("as_of_week"), ("overall", frame)]:
        for method in methods:
            rows.append(
                {
                    "as_of_week": str(as_of),
                    "method": method,
                    "students": len(group),
                    "brier": brier_score(group[method], group[outcome]),
                    "log_loss": log_loss(group[method], group[outcome]),
                    "mean_P": float(group[method].mean()),
                    "observed_rate": float(group[outcome].mean()),
                }
            )
    return pd.DataFrame(rows)


def join_outcomes(targets: pd.DataFrame, observed: pd.DataFrame) -> pd.DataFrame:
    """Targets (student, goal, target_week_start, ...) with the observed score of the target week
    (observed: student, target_week_start, n, correct). Students with no attempts that week are left
    out: there is nothing to judge them on."""
    joined = targets.merge(observed, on=["student", "target_week_start"], how="inner", validate="one_to_one")
    joined["observed_score"] = joined["correct"] / joined["n"]
    joined["reached"] = (joined["observed_score"] >= joined["goal"]).astype(float)
    return joined
