"""The code location's assets: the source it reads (attempt), the weekly graph
weekly_scores -> brms_posterior -> weekly_kpi_P, and the backtest p_calibration."""

from seed_growth.assets.attempt import attempt
from seed_growth.assets.brms_posterior import brms_posterior
from seed_growth.assets.p_calibration import p_calibration
from seed_growth.assets.weekly_kpi_p import weekly_kpi_P
from seed_growth.assets.weekly_scores import weekly_scores

__all__ = ["attempt", "brms_posterior", "p_calibration", "weekly_kpi_P", "weekly_scores"]
