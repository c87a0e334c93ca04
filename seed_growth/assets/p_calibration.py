import datetime as dt
from collections.abc import Mapping
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import psycopg

from seed_growth.growth.backtest import GoalRule, run_backtest
from seed_growth.reporting import reliability_markdown, rounded
from seed_growth.resources import GrowthSettingsResource, PlumberError, PlumberResource, PostgresResource
from seed_growth.settings import SourceRelation
from seed_growth.sql import calibration as calibration_sql
from seed_growth.sql import fits as fits_sql
from seed_growth.sql import kpi as kpi_sql
from seed_growth.sql import scores as scores_sql
from seed_growth.window import last_complete_week


class DatabaseBacktestSource:
    """The backtest's reads: weekly_scores, the fits' per-student posteriors and the observed target
    weeks from the source relation, over one connection; binomial fits' predictive P from the service."""

    def __init__(self, conn: psycopg.Connection, source: SourceRelation, plumber: PlumberResource):
        self.conn, self.source, self.plumber = conn, source, plumber

    def weekly_scores(self, as_of_week: dt.date) -> pd.DataFrame:
        return scores_sql.read_weekly_scores(self.conn, as_of_week)

    def student_posterior(self, run_id: str) -> pd.DataFrame:
        return fits_sql.read_student_posterior(self.conn, run_id)

    def observed_weeks(self, mondays: list[dt.date]) -> pd.DataFrame:
        return calibration_sql.observed_week_scores(self.conn, self.source, mondays)

    def predictive_p(self, fit: Mapping[str, Any], week: pd.DataFrame) -> np.ndarray:
        try:
            answer = self.plumber.predict_prob(fit["run_id"], week, predictive=True)
        except PlumberError as exc:
            raise dg.Failure(
                f"fit {fit['run_id']} ({fit['family']}): its predictive P needs the service: {exc}"
            ) from exc
        return answer.probabilities_frame()["p"].to_numpy(dtype=float)  # in the order of week's rows


@dg.asset(
    group_name="calibration",
    deps=["weekly_scores", "brms_posterior", "attempt"],
    kinds={"postgres"},
    description=(
        "Backtest of P: for every past as-of week with a converged fit whose target week has passed, the "
        "probability given then (Bayesian and normal approximation) that the student's observed accuracy over "
        "the target week reaches the goal, given that week's attempt count, against whether it did. Reads the "
        "fits (growth_brms_meta, growth_student_posterior), weekly_scores and the target weeks' attempts. Brier "
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
    with postgres.connect() as conn:
        goals = GoalRule(settings.goal_score, settings.goal_horizon_weeks, kpi_sql.read_student_goals(conn))
        source = DatabaseBacktestSource(conn, settings.source, plumber)
        backtest = run_backtest(source, fits_sql.converged_fits(conn), goals, observed_until=last_complete_week())
    if backtest is None:
        return dg.MaterializeResult(
            metadata={"as_of_weeks": 0, "note": "no past week with a converged fit and an observed target week yet"}
        )
    judged = backtest.student_weeks.groupby("as_of_week").size()
    for as_of, students in judged.items():
        context.log.info(f"as of {as_of}: {students} students judged on their target week")
    with postgres.connect() as conn, conn.transaction():
        calibration_sql.replace_calibration(conn, backtest.summary, backtest.reliability)
    overall = backtest.summary[backtest.summary["as_of_week"] == "overall"].set_index("method")
    brier, log_loss = overall["brier"].to_dict(), overall["log_loss"].to_dict()
    return dg.MaterializeResult(
        metadata={
            "as_of_weeks": dg.MetadataValue.int(len(judged)),
            "student_weeks": dg.MetadataValue.int(len(backtest.student_weeks)),
            "brier_bayesian": dg.MetadataValue.float(rounded(brier["P_bayesian"])),
            "brier_normal": dg.MetadataValue.float(rounded(brier["P_normal"])),
            "log_loss_bayesian": dg.MetadataValue.float(rounded(log_loss["P_bayesian"])),
            "log_loss_normal": dg.MetadataValue.float(rounded(log_loss["P_normal"])),
            "scores": dg.MetadataValue.md(backtest.summary.to_markdown(index=False, floatfmt=".4f")),
            "reliability": dg.MetadataValue.md(reliability_markdown(backtest.reliability)),
        }
    )
