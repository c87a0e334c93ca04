import dagster as dg

# Monday keys; a partition's time window starts Monday 04:30 UTC so the schedule built from it fires
# Mondays 04:30 UTC (`30 4 * * 1`) for the week that has just ended. The data window itself is computed
# from the key's date in UTC (seed_growth.window), not from this time window.
weekly_partitions = dg.WeeklyPartitionsDefinition(
    start_date="2024-01-01", day_offset=1, hour_offset=4, minute_offset=30, timezone="UTC"
)
