import datetime as dt

import dagster as dg
import numpy as np

from seed_growth.growth.goals import goal_targets
from seed_growth.growth.kpi import kpi_payloads, validate_probabilities, why_not_bayesian
from seed_growth.growth.normal_approx import normal_approximation_p
from seed_growth.growth.probability import p_from_student_summaries
from seed_growth.partitions import weekly_partitions
from seed_growth.reporting import histogram_markdown
from seed_growth.resources import GrowthSettingsResource, PlumberError, PlumberResource, PostgresResource
from seed_growth.sql import queries
from seed_growth.window import ScoreWindow


@dg.asset(
    partitions_def=weekly_partitions,
    group_name="growth",
    deps=["brms_posterior"],
    kinds={"postgres"},
    description=(
        "Each student's probability P that their expected score reaches the goal (GOAL_SCORE at "
        "GOAL_HORIZON_WEEKS after the week, or their student_goal row), merged into weekly_kpi.kpis->'P' for "
        "week_start = the partition's Monday. From the posterior when METRICS_USE_BAYESIAN is true and the "
        "week's fit converged; otherwise from the normal approximation (empirical Bayes)."
    ),
)
def weekly_kpi_P(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    plumber: PlumberResource,
    growth_settings: GrowthSettingsResource,
) -> dg.MaterializeResult:
    settings = growth_settings.resolve()
    as_of = dt.date.fromisoformat(context.partition_key)
    with postgres.connect() as conn:
        scores = queries.read_weekly_scores(conn, as_of)
        lookback = queries.weekly_scores_lookback(conn, as_of)
        student_goals = queries.read_student_goals(conn)
        fit = queries.latest_fit(conn, as_of)
        fit_students = queries.read_student_posterior(conn, fit["run_id"]) if fit else None
    if scores.empty:
        raise dg.Failure(f"weekly_scores holds no rows for {as_of}: nothing to score")
    window = ScoreWindow(as_of, lookback)
    targets = goal_targets(
        scores["student"], window, goal_score=settings.goal_score,
        horizon_weeks=settings.goal_horizon_weeks, student_goals=student_goals,
    )

    fallback_reason = why_not_bayesian(settings.use_bayesian, fit, n_rows=len(scores))
    run_id = None
    if fallback_reason is None:
        run_id = fit["run_id"]
        try:
            answer = plumber.predict_prob(run_id, targets)
            by_student = {p.student: p.p for p in answer.probabilities}
            p_values = targets["student"].map(by_student)
            method = f"bayesian_{answer.method}"
        except PlumberError as exc:
            context.log.warning(f"predict_prob unavailable ({exc}); using the stored per-student summaries of {run_id}")
            p_values = p_from_student_summaries(
                fit_students, targets, link=fit["model"].get("link", "identity"), population=fit["posterior_summary"]
            )
            method = "bayesian_summaries"
    else:
        context.log.warning(f"P from the normal approximation: {fallback_reason}")
        p_values = normal_approximation_p(scores, targets)["P"].to_numpy()
        method = "normal_approximation"

    probabilities = targets.assign(P=p_values)
    validate_probabilities(probabilities, expected_students=scores["student"])
    payloads = kpi_payloads(probabilities, method=method, run_id=run_id, as_of_week=as_of)
    with postgres.connect() as conn, conn.transaction():
        written = queries.merge_kpis(conn, as_of, payloads)

    p = probabilities["P"].to_numpy()
    return dg.MaterializeResult(
        metadata={
            "method": dg.MetadataValue.text(method),
            "fallback_reason": dg.MetadataValue.text(fallback_reason or "none"),
            "run_id": dg.MetadataValue.text(run_id or "none"),
            "students": dg.MetadataValue.int(written),
            "week_start": dg.MetadataValue.text(str(as_of)),
            "mean_P": dg.MetadataValue.float(float(p.mean())),
            "median_P": dg.MetadataValue.float(float(np.median(p))),
            "share_P_at_least_0.5": dg.MetadataValue.float(float((p >= 0.5).mean())),
            "goals_from_student_goal": dg.MetadataValue.int(int((probabilities["goal_source"] == "student_goal").sum())),
            "P_distribution": dg.MetadataValue.md(histogram_markdown(p)),
        }
    )

