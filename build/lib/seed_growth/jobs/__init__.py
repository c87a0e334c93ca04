"""The code location's jobs: the weekly growth graph and the backtest.

The modules beside this one, ``fit_bayesian_growth`` and ``backtest``, only keep the older command paths
(``python -m seed_growth.jobs.fit_bayesian_growth``, which the platform's CronJob calls) working; the
entry points live in :mod:`seed_growth.cli`.
"""

import dagster as dg

weekly_growth_job = dg.define_asset_job(
    name="weekly_growth_job",
    selection=dg.AssetSelection.groups("growth"),
    description="weekly_scores -> brms_posterior -> weekly_kpi_P, with their checks, for one week.",
)

calibration_job = dg.define_asset_job(
    name="calibration_job",
    selection=dg.AssetSelection.assets("p_calibration"),
    description="Backtest P against the observed target weeks of past as-of weeks (p_calibration).",
)
