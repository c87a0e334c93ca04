"""P from a normal posterior of each student's line: the fallback when the service cannot be asked.

A student's linear predictor at week T is a + b*T; with (a, b) summarised by means, sds and their
correlation it is approximately normal, and P = Pr(expected score >= goal) = Pr(eta_T >= link(goal)).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import special, stats


def link_threshold(goal: ArrayLike, link: str) -> np.ndarray:
    """The goal on the linear predictor's scale (logit for the binomial family)."""
    goal = np.asarray(goal, dtype=float)
    if link == "identity":
        return goal
    if link == "logit":
        with np.errstate(divide="ignore"):
            return special.logit(goal)
    raise ValueError(f"unknown link {link!r}")


def prob_at_least(mean: ArrayLike, sd: ArrayLike, threshold: ArrayLike) -> np.ndarray:
    """Pr(N(mean, sd^2) >= threshold); a zero sd gives 0 or 1."""
    mean, sd, threshold = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (mean, sd, threshold)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (threshold - mean) / sd
    p = stats.norm.sf(z)
    point = sd <= 0
    return np.where(point, (mean >= threshold).astype(float), p)


def line_at(intercept_mean, intercept_sd, slope_mean, slope_sd, cor, week) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of a + b*week for (a, b) with the given moments."""
    week = np.asarray(week, dtype=float)
    mean = np.asarray(intercept_mean) + np.asarray(slope_mean) * week
    var = (
        np.square(intercept_sd)
        + np.square(week * slope_sd)
        + 2.0 * week * np.asarray(cor) * np.asarray(intercept_sd) * np.asarray(slope_sd)
    )
    return mean, np.sqrt(np.maximum(var, 0.0))


def student_line_moments(
    summaries: pd.DataFrame, targets: pd.DataFrame, *, population: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd of each target's linear predictor at its target_week, from per-student summaries
    (student, intercept_mean, intercept_sd, slope_mean, slope_sd, cor). Students without a summary use
    ``population`` (a posterior_summary: population line plus the spread between students)."""
    merged = targets.merge(summaries, on="student", how="left", validate="many_to_one")
    missing = merged["intercept_mean"].isna()
    if missing.any():
        if population is None:
            raise KeyError(
                f"{int(missing.sum())} students have no posterior summary, "
                f"e.g. {merged.loc[missing, 'student'].iloc[0]!r}"
            )
        for column, value in population_moments(population).items():
            merged.loc[missing, column] = value
    mean, sd = line_at(
        merged["intercept_mean"],
        merged["intercept_sd"],
        merged["slope_mean"],
        merged["slope_sd"],
        merged["cor"],
        merged["target_week"],
    )
    return np.asarray(mean, dtype=float), np.asarray(sd, dtype=float)


def p_from_student_summaries(
    summaries: pd.DataFrame, targets: pd.DataFrame, *, link: str, population: dict | None = None
) -> pd.Series:
    """P per row of ``targets`` (student, target_week, goal) from per-student summaries (see
    student_line_moments)."""
    mean, sd = student_line_moments(summaries, targets, population=population)
    p = prob_at_least(mean, sd, link_threshold(targets["goal"], link))
    return pd.Series(p, index=targets.index, name="P")


def population_moments(posterior_summary: dict) -> dict[str, float]:
    """Moments of a new student's (intercept, slope): the population line's uncertainty plus the
    spread between students."""
    i, w = posterior_summary["Intercept"], posterior_summary["week"]
    sd0, sd1 = posterior_summary["sd_Intercept"]["estimate"], posterior_summary["sd_week"]["estimate"]
    rho = posterior_summary["cor_Intercept_week"]["estimate"]
    intercept_sd = float(np.hypot(i["error"], sd0))
    slope_sd = float(np.hypot(w["error"], sd1))
    return {
        "intercept_mean": i["estimate"],
        "intercept_sd": intercept_sd,
        "slope_mean": w["estimate"],
        "slope_sd": slope_sd,
        "cor": rho * sd0 * sd1 / (intercept_sd * slope_sd) if intercept_sd * slope_sd > 0 else 0.0,
    }
