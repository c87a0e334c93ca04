"""What the three weekly assets open with: the run's settings, the partition's week and its scores; and
which fit a week's P and convergence check judge."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import dagster as dg
import psycopg

from seed_growth.partitions import weekly_partitions
from seed_growth.resources import GrowthSettingsResource, PostgresResource
from seed_growth.settings import GrowthSettings
from seed_growth.sql import fits as fits_sql
from seed_growth.sql import scores as scores_sql
from seed_growth.window import ScoreWindow


@dataclasses.dataclass(frozen=True)
class Week:
    """A partition's settings and window."""

    settings: GrowthSettings
    window: ScoreWindow


#: what an asset reads of a partition's weekly_scores rows (all of them, the fit's columns, the students)
Scores = TypeVar("Scores")


@dataclasses.dataclass(frozen=True)
class ScoredWeek(Week, Generic[Scores]):
    """A partition whose weekly_scores rows exist: the window is the one they were scored with."""

    scores: Scores


def open_week(context: dg.AssetExecutionContext, growth_settings: GrowthSettingsResource) -> Week:
    """The run's settings (their warnings logged) and the partition's window at the configured lookback."""
    settings = growth_settings.resolve()
    for warning in settings.warnings:
        context.log.warning(warning)
    context.log.info("settings of this run: " + ", ".join(f"{k}={v}" for k, v in settings.as_record().items()))
    return Week(settings, ScoreWindow.from_partition_key(context.partition_key, settings.lookback_weeks))


def open_scored_week(
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    growth_settings: GrowthSettingsResource,
    read: Callable[[psycopg.Connection, dt.date], Scores],
) -> ScoredWeek[Scores]:
    """As :func:`open_week`, with what ``read`` takes of the partition's weekly_scores rows (an asset reads
    only what it needs: at a million students the rows are gigabytes) and the lookback they were scored
    with; fails the step when weekly_scores holds none for the week."""
    week = open_week(context, growth_settings)
    as_of = week.window.as_of_week
    with postgres.connect() as conn:
        lookback = scores_sql.weekly_scores_lookback(conn, as_of)
        if lookback is None:
            raise dg.Failure(f"weekly_scores holds no rows for {as_of}: materialize weekly_scores for this week first")
        scores = read(conn, as_of)
    return ScoredWeek(week.settings, ScoreWindow(as_of, lookback), scores)


def weekly_asset(*, deps: list[str], kinds: set[str]):
    """An asset of the weekly graph: partitioned by week, in group ``growth`` (the job's selection); its
    docstring is its description in the UI."""
    return dg.asset(partitions_def=weekly_partitions, group_name="growth", deps=deps, kinds=kinds)


#: brms_posterior's materialization metadata key naming the fit it produced (``none``: it produced none)
FIT_RUN_ID = "fit_run_id"
NO_FIT = "none"
BRMS_POSTERIOR = dg.AssetKey("brms_posterior")


@dataclasses.dataclass(frozen=True)
class RecordedFit:
    """What brms_posterior's latest materialization of a week says it produced."""

    fit_run_id: str | None  # None: that materialization produced no fit (the service could not fit)
    dagster_run_id: str


@dataclasses.dataclass(frozen=True)
class WeekFit:
    """The fit a week's P and convergence check judge (None: no fit), and which one it is, in words."""

    fit: dict[str, Any] | None
    source: str

    @property
    def run_id(self) -> str:
        return self.fit["run_id"] if self.fit else NO_FIT


def recorded_fit(instance: dg.DagsterInstance, week: dt.date) -> RecordedFit | None:
    """The fit brms_posterior's latest materialization of ``week`` produced, from its metadata (None:
    this instance has no materialization of the week)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=BRMS_POSTERIOR, asset_partitions=[week.isoformat()]), limit=1
    ).records
    if not records:
        return None
    materialization = records[0].asset_materialization
    metadata = materialization.metadata if materialization else {}
    # FIT_RUN_ID since it is recorded; earlier materializations named a fit by run_id (and none by omitting it)
    entry = metadata.get(FIT_RUN_ID) or metadata.get("run_id")
    value = str(entry.value) if entry is not None else NO_FIT
    return RecordedFit(None if value == NO_FIT else value, records[0].run_id)


def week_fit(instance: dg.DagsterInstance, conn: psycopg.Connection, week: dt.date) -> WeekFit:
    """The fit of brms_posterior's latest materialization of ``week``: a re-run whose fit failed has
    none, whatever earlier fits of the week are stored. Without a recorded materialization (the fit was
    made outside this Dagster instance), the latest fit stored for the week, saying so."""
    recorded = recorded_fit(instance, week)
    if recorded is None:
        fit = fits_sql.latest_fit(conn, week)
        name = f"fit {fit['run_id']}" if fit else "no fit"
        return WeekFit(
            fit,
            f"{name}: the latest stored for {week} (this Dagster instance has no materialization of "
            f"brms_posterior for {week})",
        )
    origin = f"brms_posterior's latest materialization of {week} (Dagster run {recorded.dagster_run_id})"
    if recorded.fit_run_id is None:
        return WeekFit(None, f"no fit: {origin} produced none (the service could not fit)")
    fit = fits_sql.fit_by_run_id(conn, recorded.fit_run_id)
    if fit is None:
        return WeekFit(None, f"no fit: fit {recorded.fit_run_id} of {origin} is no longer stored")
    return WeekFit(fit, f"fit {recorded.fit_run_id}, of {origin}")
