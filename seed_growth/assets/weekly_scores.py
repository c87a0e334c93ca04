import datetime as dt

import dagster as dg
import pandas as pd

from seed_growth.assets.week import open_week, weekly_asset
from seed_growth.resources import GrowthSettingsResource, PostgresResource
from seed_growth.sql import kept_weeks as kept_sql
from seed_growth.sql import schema as schema_sql
from seed_growth.sql import scores as scores_sql


@weekly_asset(deps=["attempt"], kinds={"postgres", "sql"})
def weekly_scores(
    context: dg.AssetExecutionContext, postgres: PostgresResource, growth_settings: GrowthSettingsResource
) -> dg.MaterializeResult:
    """Per student and week, the share of correct attempts over the LOOKBACK_WEEKS weeks ending with the
    partition's week (view weekly_scores; week 0 = the window's first Monday). The partition reads the kept
    weekly counts of its window; only weeks not kept yet, the REAGGREGATE_RECENT_WEEKS most recent, and kept
    weeks whose source rows changed are aggregated from the source (in SQL)."""
    week = open_week(context, growth_settings)
    settings, window = week.settings, week.window
    with postgres.connect() as conn, postgres.connect() as aggregating:
        schema_sql.apply_schema(conn)  # idempotent: a fresh database needs nothing else
        scores_sql.check_source(conn, settings.source)
        extraction = kept_sql.extract_weekly_scores(
            conn,
            settings.source,
            window,
            recent_weeks=settings.reaggregate_recent_weeks,
            rebuild=settings.rebuild_kept_weeks,
            aggregating=aggregating,  # new weeks aggregated while the kept ones are checked and written
        )
        rows = extraction.rows
        overview = scores_sql.weekly_scores_overview(conn, window.as_of_week)
        preview = scores_sql.weekly_scores_preview(conn, window.as_of_week)
        students = scores_sql.count_students(conn, window.as_of_week)
    context.log.info(f"{rows} student-weeks of {students} students in {window.start} .. {window.end} (exclusive)")
    log_extraction(context, extraction)
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(rows),
            "students": dg.MetadataValue.int(students),
            "weeks_covered": dg.MetadataValue.int(len(overview)),
            "window": dg.MetadataValue.text(
                f"{window.start} .. {window.end - dt.timedelta(days=1)} ({window.lookback_weeks} weeks)"
            ),
            "source": dg.MetadataValue.text(f"{settings.source.relation} @ {postgres.display_url}"),
            "weeks": dg.MetadataValue.md(
                overview.to_markdown(index=False, floatfmt=".3f") if len(overview) else "_no attempts in the window_"
            ),
            "preview": dg.MetadataValue.md(
                preview.to_markdown(index=False, floatfmt=".3f") if len(preview) else "_empty_"
            ),
            "settings": dg.MetadataValue.json(settings.as_record()),
            **extraction_metadata(extraction),
        }
    )


def log_extraction(context: dg.AssetExecutionContext, extraction: kept_sql.Extraction) -> None:
    """One line for what was reused and aggregated; a warning per kept week found stale."""
    reused = extraction.weeks_with(kept_sql.REUSE)
    aggregated = extraction.weeks_with(kept_sql.AGGREGATE)
    context.log.info(
        f"kept weeks: {len(reused)} reused, {len(aggregated)} aggregated from the source "
        f"in {extraction.seconds:.2f} s ({extraction.detect_seconds:.2f} s detecting, "
        f"{extraction.aggregate_seconds:.2f} s aggregating, {extraction.assemble_seconds:.2f} s assembling)"
    )
    for plan in extraction.weeks_with(kept_sql.AGGREGATE, stale=True):
        context.log.warning(f"kept week {plan.week_start} re-aggregated: {plan.reason}")


def extraction_metadata(extraction: kept_sql.Extraction) -> dict[str, dg.MetadataValue]:
    """Which weeks were reused, aggregated, and re-aggregated because stale (with why), and the seconds."""

    def mondays(plans: list[kept_sql.WeekPlan]) -> dg.MetadataValue:
        return dg.MetadataValue.json([p.week_start.isoformat() for p in plans])

    plans = pd.DataFrame(
        [(p.week_start, p.action, p.reason) for p in extraction.weeks], columns=["week_start", "action", "reason"]
    )
    return {
        "weeks_reused": mondays(extraction.weeks_with(kept_sql.REUSE)),
        "weeks_aggregated": mondays(extraction.weeks_with(kept_sql.AGGREGATE, stale=False)),
        "weeks_stale": dg.MetadataValue.json(
            {p.week_start.isoformat(): p.reason for p in extraction.weeks_with(kept_sql.AGGREGATE, stale=True)}
        ),
        "kept_weeks": dg.MetadataValue.md(plans.to_markdown(index=False)),
        "extraction_seconds": dg.MetadataValue.json(
            {
                "detect": round(extraction.detect_seconds, 3),
                "aggregate": round(extraction.aggregate_seconds, 3),
                "assemble": round(extraction.assemble_seconds, 3),
                "total": round(extraction.seconds, 3),  # the parts overlap: aggregating runs on a second connection
            }
        ),
    }
