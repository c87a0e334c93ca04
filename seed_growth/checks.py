"""Asset checks: what must hold before a week's numbers are trusted.

The checks are partitioned like their assets, so the UI records and shows a result per week. A check run
without a partition (the UI's "Execute all" on an asset's Checks tab, a run of the check alone) judges the
latest week its asset has written to the tables, and names that week in its metadata; with nothing written
yet it fails saying so. Such a run reports its result itself (see :func:`judge`): Dagster 1.13 cannot turn
a partitioned check's result into an evaluation in a run without a partition. Every result names its week
(``week``) and, where there is one, the fit (``fit_run_id``). The fit judged is the one brms_posterior's
latest materialization of the week produced (metadata ``fit_source`` says which, in words): a re-run whose
fit failed is judged as having no fit, even when an earlier run of the week stored a converged one.
"""

import datetime as dt
import warnings
from collections.abc import Callable, Iterator

import dagster as dg
import psycopg

from seed_growth.assets import brms_posterior, weekly_kpi_P, weekly_scores
from seed_growth.assets.week import WeekFit, week_fit
from seed_growth.growth.convergence import ConvergenceRules, convergence_problems
from seed_growth.partitions import weekly_partitions
from seed_growth.reporting import rounded
from seed_growth.resources import PostgresResource
from seed_growth.sql import kpi as kpi_sql
from seed_growth.sql import scores as scores_sql
from seed_growth.sql.schema import fetch_one

# Partitioned checks are a preview feature in Dagster 1.13 (chosen on purpose: results per week)
warnings.filterwarnings(
    "ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)

# The latest week each asset has written; used only when a check runs without a partition.
_LATEST_WEEK_SQL = {
    "weekly_scores": """SELECT greatest((SELECT max(as_of_week) FROM weekly_score_weeks),
                                        (SELECT max(as_of_week) FROM weekly_scores_rows))""",  # not the view's rows
    "brms_posterior": "SELECT max(as_of_week) FROM growth_brms_meta",
    "weekly_kpi_P": "SELECT max(week_start) FROM weekly_kpi WHERE kpis ? 'P'",
}


def judged_week(context: dg.AssetCheckExecutionContext, conn: psycopg.Connection, asset: str) -> dt.date | None:
    """The run's partition, or without one the latest week ``asset`` has written (None: nothing yet)."""
    if context.has_partition_key:
        return dt.date.fromisoformat(context.partition_key)
    week = fetch_one(conn, _LATEST_WEEK_SQL[asset])[0]
    context.log.info(f"no partition in this run: judging the latest week of {asset} in the tables, {week}")
    return week


def _how(context: dg.AssetCheckExecutionContext) -> str:
    return "the run's partition" if context.has_partition_key else "latest week in the tables (run without a partition)"


Judgement = Callable[[psycopg.Connection, dt.date, dict[str, str], dg.DagsterInstance], dg.AssetCheckResult]


# What a check yields (see judge). Dagster types an @asset_check function as returning an AssetCheckResult,
# but runs the check's op like any op, generators and these events included (_validate_event in
# dagster/_core/execution/plan/compute.py); hence the pyright ignore on each @dg.asset_check below.
CheckEvents = Iterator[dg.AssetCheckResult | dg.Output | dg.AssetCheckEvaluation]


def judge(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource, asset: str, judgement: Judgement
) -> CheckEvents:
    """Run ``judgement`` on the week to judge (see :func:`judged_week`), with the metadata naming it; fail
    saying so when ``asset`` has written no week yet.

    With the run's partition, the result goes to Dagster as an AssetCheckResult (recorded for that
    partition). Without one, Dagster 1.13 cannot convert an AssetCheckResult of a partitioned check whose
    asset has a materialization: ``AssetCheckResult.to_asset_check_evaluation`` looks up the target
    materialization through the check's input from its partitioned asset
    (``_get_unpartitioned_target_materialization_data`` -> ``DataVersionCache._fetch_input_asset_version_info``
    -> ``StepExecutionContext.asset_partitions_subset_for_input``), which reads ``partition_key_range`` and
    raises "Cannot access partition_key for a non-partitioned run" (dagster/_core/execution/context/system.py)
    after the check has run. So the result is reported as the check's output plus the AssetCheckEvaluation
    Dagster would have recorded for a run without a partition (no partition; the week in the metadata)."""
    result = _judge(context, postgres, asset, judgement)
    if context.has_partition_key:
        yield result
        return
    (spec,) = context.check_specs
    yield dg.Output(None)  # the @asset_check op's one output ("result"), as Dagster yields for a result
    yield dg.AssetCheckEvaluation(
        asset_key=spec.asset_key,
        check_name=spec.name,
        passed=result.passed,
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        blocking=spec.blocking,
    )


def _judge(
    context: dg.AssetCheckExecutionContext, postgres: PostgresResource, asset: str, judgement: Judgement
) -> dg.AssetCheckResult:
    with postgres.connect() as conn:
        as_of = judged_week(context, conn, asset)
        if as_of is None:
            problem = f"{asset} has written no week yet"
            return dg.AssetCheckResult(
                passed=False, metadata={"week": "none", "week_from": _how(context), "problems": problem}
            )
        return judgement(conn, as_of, {"week": str(as_of), "week_from": _how(context)}, context.instance)


def scores_judgement(
    conn: psycopg.Connection, as_of: dt.date, week: dict[str, str], instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    problems = scores_sql.weekly_scores_problems(conn, as_of)
    failures = [f"{k}={v}" for k, v in problems.items() if k != "rows" and v]
    if problems["rows"] == 0:
        failures.insert(0, "no rows: no attempts in the window")
    return dg.AssetCheckResult(
        passed=not failures, metadata={**week, **problems, "problems": "; ".join(failures) or "none"}
    )


def convergence_judgement(
    conn: psycopg.Connection, as_of: dt.date, week: dict[str, str], instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    return fit_judgement(week_fit(instance, conn, as_of), week)


def fit_judgement(chosen: WeekFit, week: dict[str, str]) -> dg.AssetCheckResult:
    """Whether the week's fit (see :func:`seed_growth.assets.week.week_fit`) exists and converged."""
    fit = chosen.fit
    if fit is None:
        return dg.AssetCheckResult(
            passed=False,
            metadata={**week, "fit_run_id": "none", "fit_source": chosen.source, "problems": chosen.source},
        )
    problems = convergence_problems(fit["diagnostics"], fit["chains"])
    rules = ConvergenceRules()
    diagnostics = fit["diagnostics"]
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            **week,
            "fit_run_id": fit["run_id"],
            "fit_source": chosen.source,
            "max_rhat": rounded(diagnostics["max_rhat"]),
            "min_ess_bulk": rounded(diagnostics["min_ess_bulk"]),
            "min_ess_tail": rounded(diagnostics["min_ess_tail"]),
            "divergent_transitions": int(diagnostics["divergent_transitions"]),
            "rules": (
                f"R-hat <= {rules.max_rhat}, ESS >= {rules.min_ess_per_chain:g}/chain, "
                f"divergences <= {rules.max_divergent}"
            ),
            "problems": "; ".join(problems) or "none",
        },
    )


def kpi_judgement(
    conn: psycopg.Connection, as_of: dt.date, week: dict[str, str], instance: dg.DagsterInstance
) -> dg.AssetCheckResult:
    coverage = kpi_sql.kpi_p_coverage(conn, as_of)
    methods = kpi_sql.kpi_p_methods(conn, as_of)
    chosen = week_fit(instance, conn, as_of)
    return dg.AssetCheckResult(
        passed=coverage["students"] > 0 and coverage["students_without_P"] == 0 and coverage["P_invalid"] == 0,
        metadata={
            **week,
            "fit_run_id": chosen.run_id,
            "fit_source": chosen.source,
            **coverage,
            "methods": str(methods),
        },
    )


@dg.asset_check(  # pyright: ignore[reportArgumentType] - yields its events: see CheckEvents
    asset=weekly_scores,
    partitions_def=weekly_partitions,
    blocking=True,
    description=(
        "Not empty, every score in [0, 1], one row per student and week (the table's primary key guarantees "
        "the last; it is counted only where no such key exists)."
    ),
)
def weekly_scores_valid(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> CheckEvents:
    yield from judge(context, postgres, "weekly_scores", scores_judgement)


@dg.asset_check(  # pyright: ignore[reportArgumentType] - yields its events: see CheckEvents
    asset=brms_posterior,
    partitions_def=weekly_partitions,
    description=(
        "The week's fit exists and converged: R-hat <= 1.01, bulk and tail ESS >= 100 per chain for the population "
        "parameters, no divergent transitions (Vehtari et al. 2021). Not blocking: when it fails, weekly_kpi_P "
        "still runs, from the normal approximation."
    ),
)
def brms_posterior_converged(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> CheckEvents:
    yield from judge(context, postgres, "brms_posterior", convergence_judgement)


@dg.asset_check(  # pyright: ignore[reportArgumentType] - yields its events: see CheckEvents
    asset=weekly_kpi_P,
    partitions_def=weekly_partitions,
    description="Every student of the week has exactly one P, and every P is in [0, 1].",
)
def weekly_kpi_P_valid(context: dg.AssetCheckExecutionContext, postgres: PostgresResource) -> CheckEvents:
    yield from judge(context, postgres, "weekly_kpi_P", kpi_judgement)
