import dagster as dg
import numpy as np
import pandas as pd

from seed_growth.growth.calibration import join_outcomes, reliability_table, summarise_methods
from seed_growth.growth.goals import goal_targets
from seed_growth.growth.normal_approx import normal_approximation_p
from seed_growth.growth.probability import p_from_student_summaries
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
        "predictive P given then (Bayesian and normal approximation) against whether the student's observed "
        "accuracy over the target week reached the goal. Brier score, log loss and reliability bins; tables "
        "p_calibration and p_calibration_bins."
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
            week["P_bayesian"] = _bayesian_predictive(context, plumber, conn, fit, week)
            week["P_normal"] = normal_approximation_p(scores, week, predictive=True)["P"].to_numpy()
            frames.append(week.assign(as_of_week=window.as_of_week))
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


def _bayesian_predictive(context, plumber: PlumberResource, conn, fit: dict, week: pd.DataFrame) -> np.ndarray:
    """The service's predictive P for the fit; if it cannot answer, the same from the stored summaries."""
    try:
        answer = plumber.predict_prob(fit["run_id"], week, predictive=True)
        by_student = {p.student: p.p for p in answer.probabilities}
        return week["student"].map(by_student).to_numpy(dtype=float)
    except PlumberError as exc:
        context.log.warning(f"predict_prob unavailable for {fit['run_id']} ({exc}); using its stored summaries")
    sigma = fit["posterior_summary"].get("sigma", {}).get("estimate")
    if sigma is None:
        raise dg.Failure(f"fit {fit['run_id']} ({fit['family']}) has no sigma: a predictive P needs the service")
    summaries = queries.read_student_posterior(conn, fit["run_id"])
    return p_from_student_summaries(
        summaries, week, link="identity", population=fit["posterior_summary"], observation_sd=float(sigma)
    ).to_numpy()
