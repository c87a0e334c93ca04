import dagster as dg
import numpy as np
import pandas as pd

from seed_growth.assets.week import open_scored_week, week_fit, weekly_asset
from seed_growth.growth.goals import goal_targets
from seed_growth.growth.kpi import estimate_p, kpi_payloads, validate_probabilities
from seed_growth.reporting import histogram_markdown, rounded
from seed_growth.resources import (
    GrowthSettingsResource,
    PlumberAuthError,
    PlumberError,
    PlumberResource,
    PostgresResource,
)
from seed_growth.sql import fits as fits_sql
from seed_growth.sql import kpi as kpi_sql
from seed_growth.sql import scores as scores_sql


@weekly_asset(deps=["brms_posterior"], kinds={"postgres"})
def weekly_kpi_P(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    plumber: PlumberResource,
    growth_settings: GrowthSettingsResource,
) -> dg.MaterializeResult:
    """Each student's probability P that their expected score reaches the goal (GOAL_SCORE at GOAL_HORIZON_WEEKS
    after the week, or their student_goal row), merged into weekly_kpi.kpis->'P' for week_start = the
    partition's Monday. From the posterior when METRICS_USE_BAYESIAN is true and the week's fit converged;
    otherwise from the normal approximation (empirical Bayes). The week's fit is the one brms_posterior's
    latest materialization of the week produced (none if that fit failed, whatever older fits are stored);
    metadata ``fit_source`` says which."""
    week = open_scored_week(context, postgres, growth_settings, scores_sql.read_week_students)
    settings, window, students = week.settings, week.window, week.scores.students
    as_of = window.as_of_week
    with postgres.connect() as conn:
        student_goals = kpi_sql.read_student_goals(conn)
        chosen = week_fit(context.instance, conn, as_of)
        fit = chosen.fit
    context.log.info(f"the week's fit: {chosen.source}")
    targets = goal_targets(
        students,
        window,
        goal_score=settings.goal_score,
        horizon_weeks=settings.goal_horizon_weeks,
        student_goals=student_goals,
    )

    def predict_prob(run_id: str, targets: pd.DataFrame) -> tuple[pd.Series, str]:
        try:
            answer = plumber.predict_prob(run_id, targets)
        except PlumberAuthError as exc:
            raise dg.Failure(str(exc)) from None  # configuration, not an outage: no fallback may hide it
        # one row per target, in the targets' order (the resource checks it)
        return pd.Series(answer.probabilities_frame()["p"].to_numpy(), index=targets.index), answer.method

    def read_scores() -> pd.DataFrame:  # the rows, for the normal approximation only
        with postgres.connect() as conn:
            return scores_sql.read_weekly_scores(conn, as_of)

    def read_fit_students(run_id: str) -> pd.DataFrame:  # when the service cannot be asked
        with postgres.connect() as conn:
            return fits_sql.read_student_posterior(conn, run_id)

    estimate = estimate_p(
        week.scores.n_rows,
        read_scores,
        targets,
        use_bayesian=settings.use_bayesian,
        fit=fit,
        read_fit_students=read_fit_students,
        predict_prob=predict_prob,
        service_errors=(PlumberError,),
        observation_model=settings.observation_model,
    )
    for warning in estimate.warnings:
        context.log.warning(warning)
    probabilities = targets.assign(P=estimate.p)
    validate_probabilities(probabilities, expected_students=students)
    payloads = kpi_payloads(probabilities, method=estimate.method, run_id=estimate.run_id, as_of_week=as_of)
    with postgres.connect() as conn, conn.transaction():
        written = kpi_sql.merge_kpis(conn, as_of, payloads.per_student, payloads.shared)

    p = probabilities["P"].to_numpy()
    return dg.MaterializeResult(
        metadata={
            "method": dg.MetadataValue.text(estimate.method),
            "fallback_reason": dg.MetadataValue.text(estimate.fallback_reason or "none"),
            "run_id": dg.MetadataValue.text(estimate.run_id or "none"),
            "fit_source": dg.MetadataValue.text(chosen.source),
            "students": dg.MetadataValue.int(written),
            "week_start": dg.MetadataValue.text(str(as_of)),
            "mean_P": dg.MetadataValue.float(rounded(float(p.mean()))),
            "median_P": dg.MetadataValue.float(rounded(float(np.median(p)))),
            "share_P_at_least_0.5": dg.MetadataValue.float(rounded(float((p >= 0.5).mean()))),
            "goals_from_student_goal": dg.MetadataValue.int(
                int((probabilities["goal_source"] == "student_goal").sum())
            ),
            "P_distribution": dg.MetadataValue.md(histogram_markdown(p)),
        }
    )
