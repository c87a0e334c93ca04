import datetime as dt

import dagster as dg

from seed_growth.partitions import weekly_partitions
from seed_growth.resources import GrowthSettingsResource, PostgresResource
from seed_growth.sql import queries
from seed_growth.window import ScoreWindow


@dg.asset(
    partitions_def=weekly_partitions,
    group_name="growth",
    kinds={"postgres", "sql"},
    description=(
        "Per student and week, the share of correct attempts over the LOOKBACK_WEEKS weeks ending with the "
        "partition's week (table weekly_scores; week 0 = the window's first Monday). Aggregated in SQL."
    ),
)
def weekly_scores(
    context: dg.AssetExecutionContext, postgres: PostgresResource, growth_settings: GrowthSettingsResource
) -> dg.MaterializeResult:
    settings = growth_settings.resolve()
    for warning in settings.warnings:
        context.log.warning(warning)
    window = ScoreWindow.from_partition_key(context.partition_key, settings.lookback_weeks)
    with postgres.connect() as conn:
        queries.apply_schema(conn)  # idempotent: a fresh database needs nothing else
        queries.check_source(conn, settings.source)
        with conn.transaction():
            rows = queries.replace_weekly_scores(conn, settings.source, window)
        overview = queries.weekly_scores_overview(conn, window.as_of_week)
        preview = queries.weekly_scores_preview(conn, window.as_of_week)
        students = queries.count_students(conn, window.as_of_week)
    context.log.info(f"{rows} student-weeks of {students} students in {window.start} .. {window.end} (exclusive)")
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(rows),
            "students": dg.MetadataValue.int(students),
            "weeks_covered": dg.MetadataValue.int(len(overview)),
            "window": dg.MetadataValue.text(f"{window.start} .. {window.end - dt.timedelta(days=1)} ({window.lookback_weeks} weeks)"),
            "source": dg.MetadataValue.text(f"{settings.source.relation} @ {postgres.display_url}"),
            "weeks": dg.MetadataValue.md(overview.to_markdown(index=False, floatfmt=".3f") if len(overview) else "_no attempts in the window_"),
            "preview": dg.MetadataValue.md(preview.to_markdown(index=False, floatfmt=".3f") if len(preview) else "_empty_"),
        }
    )
