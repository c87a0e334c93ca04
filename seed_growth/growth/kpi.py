"""Which P a week gets, and the KPI objects written for it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from seed_growth.growth.convergence import convergence_problems


class InvalidProbabilities(ValueError):
    """P values that must not be written: the message says which and why."""


def why_not_bayesian(use_bayesian: bool, fit: Mapping[str, Any] | None, *, n_rows: int) -> str | None:
    """None when the week's posterior may give P; otherwise the reason it may not."""
    if not use_bayesian:
        return "METRICS_USE_BAYESIAN is false"
    if fit is None:
        return "no fit stored for this week (the service was unavailable or brms_posterior did not run)"
    problems = convergence_problems(fit["diagnostics"], fit["chains"])
    if problems:
        return f"fit {fit['run_id']} did not converge: " + "; ".join(problems)
    if fit["n_rows"] != n_rows:
        return f"fit {fit['run_id']} is of other data ({fit['n_rows']} rows; weekly_scores now has {n_rows})"
    return None


def validate_probabilities(probabilities: pd.DataFrame, expected_students: pd.Series) -> None:
    """Refuse P values that are missing, not finite, outside [0, 1], duplicated or for other students."""
    p = pd.to_numeric(probabilities["P"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        example = probabilities.loc[bad, ["student", "P"]].iloc[0].to_dict()
        raise InvalidProbabilities(f"{int(bad.sum())} P values are missing or outside [0, 1], e.g. {example}")
    duplicated = probabilities["student"].duplicated()
    if duplicated.any():
        raise InvalidProbabilities(f"students with more than one P, e.g. {probabilities.loc[duplicated, 'student'].iloc[0]!r}")
    expected, got = set(expected_students.astype(str)), set(probabilities["student"].astype(str))
    if expected != got:
        missing, extra = sorted(expected - got)[:3], sorted(got - expected)[:3]
        raise InvalidProbabilities(f"P is not one per student of weekly_scores: missing {missing}, unexpected {extra}")


def kpi_payloads(
    probabilities: pd.DataFrame, *, method: str, run_id: str | None, as_of_week: dt.date
) -> pd.DataFrame:
    """One ``kpis`` object per student: P and how it was obtained (merged into weekly_kpi.kpis)."""
    payloads = [
        {
            "P": float(p),
            "P_method": method,
            "P_goal": float(goal),
            "P_target_week_start": target.isoformat(),
            "P_run_id": run_id,
            "P_as_of_week": as_of_week.isoformat(),
        }
        for p, goal, target in zip(probabilities["P"], probabilities["goal"], probabilities["target_week_start"])
    ]
    return pd.DataFrame({"student": probabilities["student"].astype(str).to_numpy(), "kpis": payloads})
