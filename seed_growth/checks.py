"""Asset checks: what must hold before a week's numbers are trusted."""

import datetime as dt

import dagster as dg

from seed_growth.assets import brms_posterior, weekly_kpi_P, weekly_scores
from seed_growth.growth.convergence import ConvergenceRules, convergence_problems
from seed_growth.resources import PostgresResource
from seed_growth.sql import queries


@dg.asset_check(asset=weekly_scores, blocking=True, description="Not empty, every score in [0, 1], one row per student and week.")
def weekly_scores_valid(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    as_of = dt.date.fromisoformat(context.partition_key)
    with postgres.connect() as conn:
        problems = queries.weekly_scores_problems(conn, as_of)
    failures = [f"{k}={v}" for k, v in problems.items() if k != "rows" and v]
    if problems["rows"] == 0:
        failures.insert(0, "no rows: no attempts in the window")
    return dg.AssetCheckResult(
        passed=not failures,
        metadata={**problems, "problems": "; ".join(failures) or "none"},
    )


@dg.asset_check(
    asset=brms_posterior,
    description=(
        "The week's fit exists and converged: R-hat <= 1.01, bulk and tail ESS >= 100 per chain for the population "
        "parameters, no divergent transitions (Vehtari et al. 2021). Not blocking: when it fails, weekly_kpi_P "
        "still runs, from the normal approximation."
    ),
)
def brms_posterior_converged(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    as_of = dt.date.fromisoformat(context.partition_key)
    with postgres.connect() as conn:
        fit = queries.latest_fit(conn, as_of)
    if fit is None:
        return dg.AssetCheckResult(passed=False, metadata={"problems": f"no fit stored for {as_of}: the service did not fit"})
    problems = convergence_problems(fit["diagnostics"], fit["chains"])
    rules = ConvergenceRules()
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "run_id": fit["run_id"],
            "max_rhat": float(fit["diagnostics"]["max_rhat"]),
            "min_ess_bulk": float(fit["diagnostics"]["min_ess_bulk"]),
            "min_ess_tail": float(fit["diagnostics"]["min_ess_tail"]),
            "divergent_transitions": int(fit["diagnostics"]["divergent_transitions"]),
            "rules": f"R-hat <= {rules.max_rhat}, ESS >= {rules.min_ess_per_chain:g}/chain, divergences <= {rules.max_divergent}",
            "problems": "; ".join(problems) or "none",
        },
    )


@dg.asset_check(asset=weekly_kpi_P, description="Every student of the week has exactly one P, and every P is in [0, 1].")
def weekly_kpi_P_valid(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> dg.AssetCheckResult:
    as_of = dt.date.fromisoformat(context.partition_key)
    with postgres.connect() as conn:
        coverage = queries.kpi_p_coverage(conn, as_of)
        methods = queries.read_kpi_p(conn, as_of)["method"].value_counts().to_dict()
    return dg.AssetCheckResult(
        passed=coverage["students"] > 0 and coverage["students_without_P"] == 0 and coverage["P_invalid"] == 0,
        metadata={**coverage, "methods": str(methods)},
    )
