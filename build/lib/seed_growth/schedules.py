import datetime as dt

import dagster as dg

from seed_growth.jobs import weekly_growth_job
from seed_growth.partitions import weekly_partitions

# The platform's CronJob ran with BRMS_LOOKBACK_WEEKS=12; the schedule keeps that. Runs launched by
# hand (UI, CLI) use the growth_settings config, whose launchpad default is LOOKBACK_WEEKS from the
# environment (default 8); the run records what it used (weekly_scores' metadata, `settings`).
SCHEDULED_LOOKBACK_WEEKS = 12


@dg.schedule(
    job=weekly_growth_job,
    cron_schedule=weekly_partitions.get_cron_schedule(),  # "30 4 * * 1"
    execution_timezone="UTC",
    description="Mondays 04:30 UTC: score, fit and publish P for the week that has just ended (12-week lookback).",
)
def weekly_growth_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    # the partition whose week has just ended: the one that held this moment a week ago
    now = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    a_week_ago = now - dt.timedelta(weeks=1)
    week = weekly_partitions.get_partition_key_for_timestamp(a_week_ago.timestamp())
    return dg.RunRequest(
        run_key=week,
        partition_key=week,
        run_config={"resources": {"growth_settings": {"config": {"lookback_weeks": SCHEDULED_LOOKBACK_WEEKS}}}},
        tags={"seed_growth/trigger": "weekly_schedule"},
    )
