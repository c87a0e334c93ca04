import datetime as dt

import dagster as dg
import pyarrow.compute as pc

from seed_growth.assets.week import FIT_RUN_ID, NO_FIT, open_scored_week, weekly_asset
from seed_growth.growth.convergence import convergence_problems
from seed_growth.reporting import growth_curve_markdown, observed_weekly_means, rounded
from seed_growth.resources import (
    GrowthSettingsResource,
    PlumberAuthError,
    PlumberError,
    PlumberResource,
    PostgresResource,
)
from seed_growth.sql import fits as fits_sql
from seed_growth.sql import schema as schema_sql
from seed_growth.sql import scores as scores_sql


def partition_seed(as_of_week: dt.date) -> int:
    """A fixed seed per week: re-running a partition reproduces its fit."""
    return int(as_of_week.strftime("%Y%m%d"))


def fit_lock_name(as_of_week: dt.date) -> str:
    """The advisory lock held while a week is fitted and stored: one fit of a week at a time, whichever
    way its run was started (the UI's queue, the command line, a test)."""
    return f"seed_growth.brms_posterior/{as_of_week.isoformat()}"


@weekly_asset(deps=["weekly_scores"], kinds={"r", "stan"})
def brms_posterior(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    plumber: PlumberResource,
    growth_settings: GrowthSettingsResource,
) -> dg.MaterializeResult:
    """Bayesian growth model score ~ week + (week | student) fitted by r-brms-plumber (POST /growth/fit); one row
    per fit in growth_brms_meta, per-student summaries in growth_student_posterior. The materialization names
    the fit it produced (metadata ``fit_run_id``), which the convergence check and weekly_kpi_P use. If the
    service cannot fit, nothing is stored, ``fit_run_id`` is ``none``, the convergence check fails and
    weekly_kpi_P falls back. A refused BRMS_PLUMBER_TOKEN fails the step (a configuration error)."""
    week = open_scored_week(context, postgres, growth_settings, scores_sql.read_fit_rows)
    settings, window, scores = week.settings, week.window, week.scores
    as_of, lookback = window.as_of_week, window.lookback_weeks
    weekly_means = observed_weekly_means(scores)
    engine = settings.fit_engine
    students = pc.call_function("count_distinct", [scores.column("student")]).as_py()
    context.log.info(
        f"fitting {students} students x {lookback} weeks: family={settings.family} engine={engine} "
        f"iter={settings.iter} chains={settings.chains} observation_model={settings.fit_observation_model}"
    )
    lock = fit_lock_name(as_of)
    with postgres.connect() as lock_conn, schema_sql.advisory_lock(lock_conn, lock) as locked:
        if not locked:
            raise dg.Failure(
                f"week {as_of} is being fitted by another run right now (PostgreSQL advisory lock {lock!r}); "
                "not fitting it twice at once: re-run this week when that run has finished"
            )
        try:
            fit = plumber.fit(
                scores,
                iter=settings.iter,
                chains=settings.chains,
                family=settings.family,
                engine=engine,
                seed=partition_seed(as_of),
                observation_model=settings.fit_observation_model if settings.family == "gaussian" else None,
            )
        except PlumberAuthError as exc:
            raise dg.Failure(str(exc)) from None  # configuration, not an outage: no fallback may hide it
        except PlumberError as exc:
            # Not raised: the KPI must still be computed this Monday (by the normal approximation); the
            # failed convergence check is what shows the missing fit in the UI.
            context.log.error(f"no posterior this week: {exc}")
            return dg.MaterializeResult(
                metadata={
                    "fit_status": dg.MetadataValue.text("unavailable"),
                    FIT_RUN_ID: dg.MetadataValue.text(NO_FIT),
                    "reason": dg.MetadataValue.text(str(exc)),
                    "settings": dg.MetadataValue.json(settings.as_record()),
                }
            )

        diagnostics = fit.diagnostics.model_dump()
        problems = convergence_problems(diagnostics, settings.chains)
        posterior_summary = fit.posterior_summary.model_dump(by_alias=True, exclude_none=True)
        row = {
            "run_id": fit.run_id,
            "fitted_at": fit.fitted_at or dt.datetime.now(dt.UTC),
            "as_of_week": as_of,
            "window_start": window.start,
            "lookback_weeks": lookback,
            "family": settings.family,
            "engine": fit.engine,
            "iter": settings.iter,
            "chains": settings.chains,
            "n_students": fit.model.n_students,
            "n_rows": fit.model.n_rows,
            "converged": not problems,
            "posterior_summary": posterior_summary,
            "diagnostics": diagnostics,
            "model": fit.model.model_dump(),
            "dagster_run_id": context.run.run_id,
        }
        students = fit.students_frame().rename(columns={"student": "user_id"})
        with postgres.connect() as conn, conn.transaction():
            fits_sql.insert_fit(conn, row, students)
    for warning in fit.diagnostics.warnings:
        context.log.warning(f"fit {fit.run_id}: the service warns: {warning}")
    for problem in problems:
        context.log.warning(f"fit {fit.run_id} did not converge: {problem}")

    week = fit.posterior_summary.week
    return dg.MaterializeResult(
        metadata={
            "fit_status": dg.MetadataValue.text("converged" if not problems else "not converged"),
            FIT_RUN_ID: dg.MetadataValue.text(fit.run_id),
            "run_id": dg.MetadataValue.text(fit.run_id),
            "engine": dg.MetadataValue.text(fit.engine),
            "family": dg.MetadataValue.text(settings.family),
            "students": dg.MetadataValue.int(fit.model.n_students),
            "population_slope_per_week": dg.MetadataValue.float(rounded(week.estimate)),
            "population_slope_95": dg.MetadataValue.text(f"[{week.q2_5:.4f}, {week.q97_5:.4f}]"),
            "max_rhat": dg.MetadataValue.float(rounded(fit.diagnostics.max_rhat)),
            "min_ess_bulk": dg.MetadataValue.float(rounded(fit.diagnostics.min_ess_bulk)),
            "min_ess_tail": dg.MetadataValue.float(rounded(fit.diagnostics.min_ess_tail)),
            "divergent_transitions": dg.MetadataValue.int(fit.diagnostics.divergent_transitions),
            "sampling_seconds": dg.MetadataValue.float(rounded(fit.diagnostics.sampling_seconds)),
            "convergence_problems": dg.MetadataValue.text("; ".join(problems) or "none"),
            "settings": dg.MetadataValue.json(settings.as_record()),
            "growth_curve": dg.MetadataValue.md(
                growth_curve_markdown(posterior_summary, fit.model.week_center, weekly_means, lookback)
            ),
        }
    )
