"""The seed_growth code location: attempt (the platform's source) -> weekly_scores -> brms_posterior ->
weekly_kpi_P, and the backtest p_calibration, which reads the fits, weekly_scores and the attempts."""

import dagster as dg

from seed_growth.assets import attempt, brms_posterior, p_calibration, weekly_kpi_P, weekly_scores
from seed_growth.checks import brms_posterior_converged, weekly_kpi_P_valid, weekly_scores_valid
from seed_growth.jobs import calibration_job, weekly_growth_job
from seed_growth.resources import GrowthSettingsResource, PlumberResource, PostgresResource
from seed_growth.schedules import weekly_growth_schedule

defs = dg.Definitions(
    assets=[attempt, weekly_scores, brms_posterior, weekly_kpi_P, p_calibration],
    asset_checks=[weekly_scores_valid, brms_posterior_converged, weekly_kpi_P_valid],
    jobs=[weekly_growth_job, calibration_job],
    schedules=[weekly_growth_schedule],
    resources={
        "postgres": PostgresResource(database_url=dg.EnvVar("DATABASE_URL")),
        "plumber": PlumberResource(base_url=dg.EnvVar("BRMS_PLUMBER_URL")),
        # filled from the environment when the location loads: the launchpad shows the effective values
        "growth_settings": GrowthSettingsResource.from_env(),
    },
)
