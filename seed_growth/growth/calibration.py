"""Does P mean what it says? Scores of probabilities against observed outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from seed_growth.growth.probability import prob_at_least


def brier_score(p: np.ndarray, outcome: np.ndarray) -> float:
    p, outcome = np.asarray(p, dtype=float), np.asarray(outcome, dtype=float)
    return float(np.mean((p - outcome) ** 2))


def log_loss(p: np.ndarray, outcome: np.ndarray, eps: float = 1e-6) -> float:
    """Mean negative log-likelihood of the outcomes; P is clipped to [eps, 1 - eps] so one confident
    miss is costly but finite."""
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    outcome = np.asarray(outcome, dtype=float)
    return float(-np.mean(outcome * np.log(p) + (1 - outcome) * np.log1p(-p)))


def reliability_table(p: np.ndarray, outcome: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """P in ``bins`` equal bins: mean P, observed rate, count, and the binomial standard error of the
    observed rate were P right (the yardstick for "within sampling error")."""
    p, outcome = np.asarray(p, dtype=float), np.asarray(outcome, dtype=float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        mean_p = float(p[mask].mean()) if count else np.nan
        rows.append({
            "bin": f"[{b / bins:.1f}, {(b + 1) / bins:.1f}{']' if b == bins - 1 else ')'}",
            "mean_P": mean_p,
            "observed_rate": float(outcome[mask].mean()) if count else np.nan,
            "count": count,
            "se": float(np.sqrt(mean_p * (1 - mean_p) / count)) if count else np.nan,
        })
    return pd.DataFrame(rows)


def predictive_p(mean: np.ndarray, sd: np.ndarray, observation_sd: float, goal: np.ndarray) -> np.ndarray:
    """Pr(observed score >= goal) for an expected score ~ N(mean, sd^2) observed with N(0, observation_sd^2)
    noise (the gaussian model's one-week observation)."""
    return prob_at_least(mean, np.sqrt(np.square(sd) + observation_sd**2), goal)


def summarise_methods(frame: pd.DataFrame, methods: list[str], outcome: str = "reached") -> pd.DataFrame:
    """Brier score and log loss of each probability column in ``methods``, per as-of week and overall."""
    rows = []
    for as_of, group in [*frame.groupby("as_of_week"), ("overall", frame)]:
        for method in methods:
            rows.append({
                "as_of_week": str(as_of),
                "method": method,
                "students": len(group),
                "brier": brier_score(group[method], group[outcome]),
                "log_loss": log_loss(group[method], group[outcome]),
                "mean_P": float(group[method].mean()),
                "observed_rate": float(group[outcome].mean()),
            })
    return pd.DataFrame(rows)


def join_outcomes(targets: pd.DataFrame, observed: pd.DataFrame) -> pd.DataFrame:
    """Targets (student, goal, target_week_start, ...) with the observed score of the target week
    (observed: student, target_week_start, n, correct). Students with no attempts that week are left
    out: there is nothing to judge them on."""
    joined = targets.merge(observed, on=["student", "target_week_start"], how="inner", validate="one_to_one")
    joined["observed_score"] = joined["correct"] / joined["n"]
    joined["reached"] = (joined["observed_score"] >= joined["goal"]).astype(float)
    return joined
