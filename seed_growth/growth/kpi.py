"""Which P a week gets, and the KPI objects written for it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from growth_engine.observation import DEFAULT_OBSERVATION_MODEL
from seed_growth.growth.convergence import convergence_problems
from seed_growth.growth.normal_approx import normal_approximation_p
from seed_growth.growth.probability import p_from_student_summaries

#: asks the fitting service for P: (run_id, targets) -> (P per row of targets, the service's method name)
PredictProb = Callable[[str, pd.DataFrame], tuple[pd.Series, str]]


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


@dataclasses.dataclass(frozen=True)
class WeekP:
    """P for each row of the targets, and how it was obtained."""

    p: np.ndarray
    method: str
    run_id: str | None
    fallback_reason: str | None
    warnings: tuple[str, ...] = ()


def estimate_p(
    n_rows: int,
    read_scores: Callable[[], pd.DataFrame],
    targets: pd.DataFrame,
    *,
    use_bayesian: bool,
    fit: Mapping[str, Any] | None,
    read_fit_students: Callable[[str], pd.DataFrame],
    predict_prob: PredictProb,
    service_errors: tuple[type[Exception], ...],
    observation_model: str = DEFAULT_OBSERVATION_MODEL,
) -> WeekP:
    """The week's P: the service's posterior P when the fit may be used; the fit's stored per-student
    summaries when the service cannot be asked (one of ``service_errors``); otherwise the normal
    approximation, from the week's rows (``read_scores``, called only then; ``n_rows``: how many there
    are, to tell a fit of other data). ``read_fit_students(run_id)``: a stored fit's per-student summaries,
    read only when the service cannot be asked."""
    reason = why_not_bayesian(use_bayesian, fit, n_rows=n_rows)
    if reason is not None or fit is None:
        p = normal_approximation_p(read_scores(), targets, observation_model=observation_model)["P"].to_numpy()
        return WeekP(p, "normal_approximation", None, reason, (f"P from the normal approximation: {reason}",))
    run_id = fit["run_id"]
    try:
        p, method = predict_prob(run_id, targets)
        return WeekP(p.to_numpy(dtype=float), f"bayesian_{method}", run_id, None)
    except service_errors as exc:
        warning = f"predict_prob unavailable ({exc}); using the stored per-student summaries of {run_id}"
    link, population = fit["model"].get("link", "identity"), fit["posterior_summary"]
    p = p_from_student_summaries(read_fit_students(run_id), targets, link=link, population=population)
    return WeekP(p.to_numpy(dtype=float), "bayesian_summaries", run_id, None, (warning,))


def validate_probabilities(probabilities: pd.DataFrame, expected_students: pd.Series) -> None:
    """Refuse P values that are missing, not finite, outside [0, 1], duplicated or for other students."""
    p = pd.to_numeric(probabilities["P"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(p) | (p < 0) | (p > 1)
    if bad.any():
        example = probabilities.loc[bad, ["student", "P"]].iloc[0].to_dict()
        raise InvalidProbabilities(f"{int(bad.sum())} P values are missing or outside [0, 1], e.g. {example}")
    # hashed by Arrow, not Python sets or pandas' object hashing: a million students in a fraction of a second
    got, expected = _text(probabilities["student"]), _arrow("unique", _text(expected_students))
    if _arrow("count_distinct", got).as_py() != len(got):
        counts = _arrow("value_counts", got)
        twice = _arrow("filter", counts.field("values"), _arrow("greater", counts.field("counts"), 1))
        raise InvalidProbabilities(f"students with more than one P, e.g. {twice[0].as_py()!r}")
    if len(expected) != len(got) or not _arrow("all", _is_in(got, expected)).as_py():
        missing = _arrow("filter", expected, _arrow("invert", _is_in(expected, got)))[:3].to_pylist()
        extra = _arrow("filter", got, _arrow("invert", _is_in(got, expected)))[:3].to_pylist()
        raise InvalidProbabilities(f"P is not one per student of weekly_scores: missing {missing}, unexpected {extra}")


def _arrow(function: str, *args: Any) -> Any:
    return pc.call_function(function, list(args))  # by name: Arrow's functions are generated, unknown to pyright


def _is_in(values: pa.Array, among: pa.Array) -> Any:
    return pc.call_function("is_in", [values], pc.SetLookupOptions(among))


def _text(students: pd.Series) -> pa.Array:
    return pa.array(students.astype(str), type=pa.large_string())


@dataclasses.dataclass(frozen=True)
class KpiPayloads:
    """The ``kpis`` objects merged into weekly_kpi: per student (column ``student`` and a column per key)
    and the keys every student shares, kept once rather than a million times."""

    per_student: pd.DataFrame
    shared: dict[str, Any]


def kpi_payloads(probabilities: pd.DataFrame, *, method: str, run_id: str | None, as_of_week: dt.date) -> KpiPayloads:
    """Each student's ``kpis`` object: P and how it was obtained, {"P", "P_method", "P_goal",
    "P_target_week_start", "P_run_id", "P_as_of_week"} (numbers, ISO dates as strings, run_id or null)."""
    per_student = pd.DataFrame(
        {
            "student": probabilities["student"].astype(str).to_numpy(),
            "P": probabilities["P"].to_numpy(dtype=float),
            "P_goal": probabilities["goal"].to_numpy(dtype=float),
            # a few distinct Mondays: rendered once each, not once per student
            "P_target_week_start": probabilities["target_week_start"]
            .map(_iso_dates(probabilities["target_week_start"]))
            .to_numpy(),
        }
    )
    shared = {"P_method": method, "P_run_id": run_id, "P_as_of_week": as_of_week.isoformat()}
    return KpiPayloads(per_student, shared)


def _iso_dates(dates: pd.Series) -> dict[dt.date, str]:
    return {day: day.isoformat() for day in dates.unique()}
