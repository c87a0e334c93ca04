import datetime as dt

import dagster as dg

from seed_growth.assets.week import open_week, weekly_asset
from seed_growth.resources import GrowthSettingsResource, PostgresResource
from seed_growth.sql import schema as schema_sql
from seed_growth.sql import scores as scores_sql


@weekly_asset(deps=["attempt"], kinds={"postgres", "sql"})
def weekly_scores(
    context: dg.AssetExecutionContext, postgres: PostgresResource, growth_settings: GrowthSettingsResource
) -> dg.MaterializeResult:
    """Per student and week, the share of correct attempts over the LOOKBACK_WEEKS weeks ending with the
    partition's week (table weekly_scores; week 0 = the window's first Monday). Aggregated in SQL."""
    week = open_week(context, growth_settings)
    settings, window = week.settings, week.window
    with postgres.connect() as conn:
        schema_sql.apply_schema(conn)  # idempotent: a fresh database needs nothing else
        scores_sql.check_source(conn, settings.source)
        with conn.transaction():
            rows = scores_sql.replace_weekly_scores(conn, settings.source, window)
        overview = scores_sql.weekly_scores_overview(conn, window.as_of_week)
        preview = scores_sql.weekly_scores_preview(conn, window.as_of_week)
        students = scores_sql.count_students(conn, window.as_of_week)
    context.log.info(f"{rows} student-weeks of {students} students in {window.start} .. {window.end} (exclusive)")
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
        }
    )
