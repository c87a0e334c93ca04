"""The growth graph materialized in-process against real resources, on a seeded demo cohort."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from seed_growth import demo_data
from seed_growth.assets import brms_posterior, weekly_kpi_P, weekly_scores
from seed_growth.checks import brms_posterior_converged, weekly_kpi_P_valid, weekly_scores_valid
from seed_growth.resources import GrowthSettingsResource, PlumberResource, PostgresResource

WEEK = dt.date(2026, 11, 16)
ASSETS = [weekly_scores, brms_posterior, weekly_kpi_P]
CHECKS = [weekly_scores_valid, brms_posterior_converged, weekly_kpi_P_valid]
UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing listens


def load_cohort(url: str, students: int = 150, weeks: int = 10, seed: int = 3) -> demo_data.DemoData:
    return demo_data.load(url, demo_data.DemoCohort(students=students, weeks=weeks, last_week=WEEK, seed=seed))


def run_graph(
    url: str,
    plumber_url: str,
    *,
    raise_on_error: bool = True,
    instance: dg.DagsterInstance | None = None,
    **settings,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key=WEEK.isoformat(),
        resources={
            "postgres": PostgresResource(database_url=url),
            "plumber": PlumberResource(base_url=plumber_url, max_attempts=1, read_timeout_s=1800),
            "growth_settings": GrowthSettingsResource(**settings),
        },
        raise_on_error=raise_on_error,
        instance=instance,
    )


def check_results(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
