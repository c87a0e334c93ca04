"""The backtest of P: for past as-of weeks whose target week has been observed, the probability given
then that the student's observed accuracy over the target week reaches the goal, against whether it did.

The loop reads through a :class:`BacktestSource` (the database and the fitting service in the asset, or
in-memory frames in tests), so this module holds the statistics and none of the I/O.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd

from seed_growth.growth.calibration import (
    join_outcomes,
    model_week_noise_sd,
    observed_score_p,
    reliability_table,
    summarise_methods,
)
from seed_growth.growth.goals import goal_targets
from seed_growth.growth.normal_approx import fit_cohort, normal_approximation_p
from seed_growth.growth.probability import student_line_moments
from seed_growth.window import ScoreWindow

METHODS = ["P_bayesian", "P_normal"]


class BacktestSource(Protocol):
    """What the backtest reads for one past as-of week."""

    def weekly_scores(self, as_of_week: dt.date) -> pd.DataFrame: ...

    def student_posterior(self, run_id: str) -> pd.DataFrame: ...

    def observed_weeks(self, mondays: list[dt.date]) -> pd.DataFrame: ...

    def predictive_p(self, fit: Mapping[str, Any], week: pd.DataFrame) -> np.ndarray:
        """The service's predictive P (binomial fits: it counts the target week's attempts exactly)."""
        ...


@dataclasses.dataclass(frozen=True)
class GoalRule:
    goal_score: float
    horizon_weeks: int
    student_goals: pd.DataFrame | None = None


@dataclasses.dataclass(frozen=True)
class Backtest:
    """Per student-week probabilities and outcomes, their scores per week and method, and reliability."""

    student_weeks: pd.DataFrame
    summary: pd.DataFrame
    reliability: pd.DataFrame


def backtest_weeks(last_observed: dt.date, horizon_weeks: int, count: int) -> list[dt.date]:
    """The ``count`` latest as-of weeks whose target week is at most ``last_observed``, oldest first."""
    newest = last_observed - dt.timedelta(weeks=horizon_weeks)
    return [newest - dt.timedelta(weeks=k) for k in reversed(range(count))]


def judge_week(
    source: BacktestSource, fit: Mapping[str, Any], goals: GoalRule, observed_until: dt.date
) -> pd.DataFrame | None:
    """Both methods' P for one fit's as-of week, joined with the observed target weeks; None when
    nothing of that week can be judged yet (or the fit is of other data than weekly_scores holds)."""
    window = ScoreWindow(fit["as_of_week"], fit["lookback_weeks"])
    scores = source.weekly_scores(window.as_of_week)
    targets = goal_targets(
        scores["student"],
        window,
        goal_score=goals.goal_score,
        horizon_weeks=goals.horizon_weeks,
        student_goals=goals.student_goals,
    )
    judged = (targets["target_week_start"] <= observed_until) & (targets["target_week"] > window.as_of_index)
    targets = targets[judged]
    week = join_outcomes(targets, source.observed_weeks(sorted(set(targets["target_week_start"]))))
    if week.empty or len(scores) != fit["n_rows"]:
        return None
    week["P_bayesian"] = bayesian_observed_p(source, fit, scores, week)
    cohort = fit_cohort(scores, fit_observation_model(fit))
    normal = normal_approximation_p(scores, week, cohort)
    week["P_normal"] = observed_score_p(
        normal["expected_score"],
        normal["expected_score_sd"],
        model_week_noise_sd(scores, cohort.sigma, cohort.observation),
        week["n"],
        week["goal"],
    )
    return week.assign(as_of_week=window.as_of_week)


def fit_observation_model(fit: Mapping[str, Any]) -> str:
    """The observation model a stored fit used ('plain' for fits made before there was a choice)."""
    return str((fit["model"].get("observation") or {}).get("name", "plain"))


def bayesian_observed_p(
    source: BacktestSource, fit: Mapping[str, Any], scores: pd.DataFrame, week: pd.DataFrame
) -> np.ndarray:
    """Pr(observed accuracy in the target week >= goal) from the fit. Gaussian: the posterior of each
    student's expected score (their stored summaries) through the same observation model as the normal
    approximation's, so the two differ only in that posterior. Binomial: the service's predictive
    probability, which counts the target week's attempts exactly."""
    if fit["family"] != "gaussian":
        return source.predictive_p(fit, week)
    summary = fit["posterior_summary"]
    mean, sd = student_line_moments(source.student_posterior(fit["run_id"]), week, population=summary)
    noise = model_week_noise_sd(scores, summary["sigma"]["estimate"], fit["model"].get("observation"))
    return observed_score_p(mean, sd, noise, week["n"], week["goal"])


def run_backtest(
    source: BacktestSource, fits: Iterable[Mapping[str, Any]], goals: GoalRule, observed_until: dt.date
) -> Backtest | None:
    """Judge every fit's as-of week that can be judged; None when none can."""
    frames = [week for fit in fits if (week := judge_week(source, fit, goals, observed_until)) is not None]
    if not frames:
        return None
    student_weeks = pd.concat(frames, ignore_index=True)
    reliability = pd.concat(
        [reliability_table(student_weeks[m], student_weeks["reached"]).assign(method=m) for m in METHODS],
        ignore_index=True,
    )
    return Backtest(student_weeks, summarise_methods(student_weeks, METHODS), reliability)
