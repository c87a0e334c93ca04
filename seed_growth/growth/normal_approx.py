"""The normal approximation of P, honest about its uncertainty (empirical Bayes).

A straight line fitted to one student's few noisy weeks and extrapolated is overconfident. Instead the
cohort's growth model (the same ``score ~ week + (week | student)``, gaussian) is fitted by maximum
likelihood with every student's line integrated out exactly (``growth_engine.fit_cohort_ml``). Given those
population estimates each student's line has an exact normal conditional distribution: shrunk toward the
cohort's line as much as their own data are thin or noisy. P is the probability, under that normal, that
the expected score at the target week reaches the goal. The only uncertainty left out is that of the six
population estimates, small next to a student's own once the cohort has more than a few dozen students.
The rows are weighted by the same observation model as the Bayesian fit's (``growth_engine.observation``:
by default a week of few attempts counts for less).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from growth_engine import CohortFit, fit_cohort_ml
from growth_engine.observation import DEFAULT_OBSERVATION_MODEL, observation
from seed_growth.growth.probability import prob_at_least

__all__ = ["CohortFit", "fit_cohort", "normal_approximation_p"]


def fit_cohort(scores: pd.DataFrame, observation_model: str = DEFAULT_OBSERVATION_MODEL) -> CohortFit:
    """Fit the population parameters to ``scores`` (student, week, score, n_attempts) by maximum likelihood,
    under ``observation_model`` ('attempts' or 'plain')."""
    if scores.empty:
        raise ValueError("no scores to fit")
    if observation_model != "plain" and (scores["n_attempts"].isna().any() or (scores["n_attempts"] < 1).any()):
        raise ValueError("the attempts observation model needs n_attempts >= 1 on every row of weekly_scores")
    student = scores["student"].astype(str).to_numpy()
    week, score = scores["week"].to_numpy(dtype=float), scores["score"].to_numpy(dtype=float)
    attempts = scores["n_attempts"].to_numpy(dtype=float) if observation_model != "plain" else None
    model = observation(observation_model, student, week, score, attempts)
    fit = fit_cohort_ml(student, week, score, weight=model.weight)
    return dataclasses.replace(fit, observation=model.describe())


def normal_approximation_p(
    scores: pd.DataFrame,
    targets: pd.DataFrame,
    cohort: CohortFit | None = None,
    observation_model: str = DEFAULT_OBSERVATION_MODEL,
) -> pd.DataFrame:
    """P per row of ``targets`` (student, target_week, goal): Pr(expected score at target_week >= goal)
    under the student's shrunk line. Returns student, P, mean and sd of the expected score."""
    cohort = cohort or fit_cohort(scores, observation_model)
    students = targets["student"].to_numpy()
    mean, sd = cohort.expected_score(students, targets["target_week"].to_numpy(dtype=float))
    p = prob_at_least(mean, sd, targets["goal"].to_numpy(dtype=float))
    return pd.DataFrame({"student": students, "P": p, "expected_score": mean, "expected_score_sd": sd})
