import dagster as dg
import numpy as np
import pandas as pd

from seed_growth.growth.calibration import (
    join_outcomes, observed_score_p, reliability_table, summarise_methods, week_noise_sd,
)
from seed_growth.growth.goals import goal_targets
from seed_growth.growth.normal_approx import fit_cohort, normal_approximation_p
from seed_growth.growth.probability import student_line_moments
from seed_growth.reporting import reliability_markdown
from seed_growth.resources import GrowthSettingsResource, PlumberError, PlumberResource, PostgresResource
from seed_growth.sql import queries
from seed_growth.window import ScoreWindow, last_complete_week

METHODS = ["P_bayesian", "P_normal"]


@dg.asset(
    group_name="calibration",
    deps=["weekly_kpi_P"],
    kinds={"postgres"},
    description=(
        "Backtest of P: for every past as-of week with a converged fit whose target week has passed, the "
        "probability given then (Bayesian and normal approximation) that the student's observed accuracy over "
        "the target week reaches the goal, given that week's attempt count, against whether it did. Brier "
        "score, log loss and reliability bins; tables p_calibration and p_calibration_bins."
    ),
)
def p_calibration(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    plumber: PlumberResource,
    growth_settings: GrowthSettingsResource,
) -> dg.MaterializeResult:
    settings = growth_settings.resolve()
    observed_until = last_complete_week()
    frames = []
    with postgres.connect() as conn:
        fits = queries.converged_fits(conn)
        student_goals = queries.read_student_goals(conn)
        for fit in fits:
            window = ScoreWindow(fit["as_of_week"], fit["lookback_weeks"])
            scores = queries.read_weekly_scores(conn, window.as_of_week)
            targets = goal_targets(scores["student"], window, goal_score=settings.goal_score,
                                   horizon_weeks=settings.goal_horizon_weeks, student_goals=student_goals)
            targets = targets[(targets["target_week_start"] <= observed_until) & (targets["target_week"] > window.as_of_index)]
            observed = queries.observed_week_scores(conn, settings.source, sorted(set(targets["target_week_start"])))
            week = join_outcomes(targets, observed)
            if week.empty or len(scores) != fit["n_rows"]:
                continue
            week["P_bayesian"] = _bayesian_observed_p(plumber, conn, fit, scores, week)
            cohort = fit_cohort(scores)
            normal = normal_approximation_p(scores, week, cohort)
            week["P_normal"] = observed_score_p(normal["expected_score"], normal["expected_score_sd"],
                                                week_noise_sd(scores, cohort.sigma), week["n"], week["goal"])
            frames.append(week.assign(as_of_week=window.as_of_week))
            context.log.info(f"as of {window.as_of_week}: {len(week)} students judged on their target week")
    if not frames:
        return dg.MaterializeResult(metadata={"as_of_weeks": 0, "note": "no past week with a converged fit and an observed target week yet"})

    backtest = pd.concat(frames, ignore_index=True)
    summary = summarise_methods(backtest, METHODS)
    reliability = pd.concat(
        [reliability_table(backtest[m], backtest["reached"]).assign(method=m) for m in METHODS], ignore_index=True
    )
    with postgres.connect() as conn, conn.transaction():
        queries.replace_calibration(conn, summary, reliability)
    overall = summary[summary["as_of_week"] == "overall"].set_index("method")
    return dg.MaterializeResult(
        metadata={
            "as_of_weeks": dg.MetadataValue.int(backtest["as_of_week"].nunique()),
            "student_weeks": dg.MetadataValue.int(len(backtest)),
            "brier_bayesian": dg.MetadataValue.float(float(overall.loc["P_bayesian", "brier"])),
            "brier_normal": dg.MetadataValue.float(float(overall.loc["P_normal", "brier"])),
            "log_loss_bayesian": dg.MetadataValue.float(float(overall.loc["P_bayesian", "log_loss"])),
            "log_loss_normal": dg.MetadataValue.float(float(overall.loc["P_normal", "log_loss"])),
            "scores": dg.MetadataValue.md(summary.to_markdown(index=False, floatfmt=".4f")),
            "reliability": dg.MetadataValue.md(reliability_markdown(reliability)),
        }
    )


def _bayesian_observed_p(plumber: PlumberResource, conn, fit: dict, scores: pd.DataFrame, week: pd.DataFrame) -> np.ndarray:
    """Pr(observed accuracy in the target week >= goal) from the fit. Gaussian: the posterior of each
    student's expected score (their stored summaries) through the same observation model as the normal
    approximation's, so the two differ only in that posterior. Binomial: the service's predictive
    probability, which counts the target week's attempts exactly."""
    summary = fit["posterior_summary"]
    if fit["family"] == "gaussian":
        mean, sd = student_line_moments(queries.read_student_posterior(conn, fit["run_id"]), week, population=summary)
        return observed_score_p(mean, sd, week_noise_sd(scores, summary["sigma"]["estimate"]), week["n"], week["goal"])
    try:
        answer = plumber.predict_prob(fit["run_id"], week, predictive=True)
    except PlumberError as exc:
        raise dg.Failure(f"fit {fit['run_id']} ({fit['family']}): its predictive P needs the service: {exc}") from exc
    by_student = {p.student: p.p for p in answer.probabilities}
    return week["student"].map(by_student).to_numpy(dtype=float)
