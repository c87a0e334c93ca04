"""What the three weekly assets open with: the run's settings, the partition's week and its scores."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pandas as pd

from seed_growth.partitions import weekly_partitions
from seed_growth.resources import GrowthSettingsResource, PostgresResource
from seed_growth.settings import GrowthSettings
from seed_growth.sql import scores as scores_sql
from seed_growth.window import ScoreWindow


@dataclasses.dataclass(frozen=True)
class Week:
    """A partition's settings and window."""

    settings: GrowthSettings
    window: ScoreWindow


@dataclasses.dataclass(frozen=True)
class ScoredWeek(Week):
    """A partition whose weekly_scores rows exist: the window is the one they were scored with."""

    scores: pd.DataFrame


def open_week(context: dg.AssetExecutionContext, growth_settings: GrowthSettingsResource) -> Week:
    """The run's settings (their warnings logged) and the partition's window at the configured lookback."""
    settings = growth_settings.resolve()
    for warning in settings.warnings:
        context.log.warning(warning)
    context.log.info("settings of this run: " + ", ".join(f"{k}={v}" for k, v in settings.as_record().items()))
    return Week(settings, ScoreWindow.from_partition_key(context.partition_key, settings.lookback_weeks))


def open_scored_week(
    context: dg.AssetExecutionContext, postgres: PostgresResource, growth_settings: GrowthSettingsResource
) -> ScoredWeek:
    """As :func:`open_week`, with the partition's weekly_scores rows and the lookback they were scored
    with; fails the step when weekly_scores holds none for the week."""
    week = open_week(context, growth_settings)
    as_of = week.window.as_of_week
    with postgres.connect() as conn:
        scores = scores_sql.read_weekly_scores(conn, as_of)
        lookback = scores_sql.weekly_scores_lookback(conn, as_of)
    if scores.empty or lookback is None:
        raise dg.Failure(f"weekly_scores holds no rows for {as_of}: materialize weekly_scores for this week first")
    return ScoredWeek(week.settings, ScoreWindow(as_of, lookback), scores)


def weekly_asset(*, deps: list[str], kinds: set[str]):
    """An asset of the weekly graph: partitioned by week, in group ``growth`` (the job's selection); its
    docstring is its description in the UI."""
    return dg.asset(partitions_def=weekly_partitions, group_name="growth", deps=deps, kinds=kinds)
