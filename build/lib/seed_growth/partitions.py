"""The weekly partitions of the growth assets and their checks.

Keys are Mondays; a partition's time window starts Monday 04:30 UTC so the schedule built from it fires
Mondays 04:30 UTC (`30 4 * * 1`) for the week that has just ended. The data window itself is computed
from the key's date in UTC (seed_growth.window), not from this time window.

The first partition is ``SEED_GROWTH_FIRST_WEEK`` (a Monday, ISO date), read when the code location
loads: the partitions are the location's structure, so a bad value stops the load with a message naming
the variable (``dagster definitions validate`` and the UI's code-location error show it), rather than
silently showing other weeks.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping

import dagster as dg

from seed_growth.settings import SettingsError

FIRST_WEEK_VARIABLE = "SEED_GROWTH_FIRST_WEEK"
DEFAULT_FIRST_WEEK = dt.date(2026, 1, 5)


def first_week(environ: Mapping[str, str] | None = None) -> dt.date:
    """The first partition's Monday: ``SEED_GROWTH_FIRST_WEEK`` or :data:`DEFAULT_FIRST_WEEK`."""
    env = os.environ if environ is None else environ
    raw = (env.get(FIRST_WEEK_VARIABLE) or "").strip()
    if not raw:
        return DEFAULT_FIRST_WEEK
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(f"{FIRST_WEEK_VARIABLE}={raw!r} is not a date; expected a Monday as YYYY-MM-DD") from None
    if day.weekday() != 0:
        raise SettingsError(f"{FIRST_WEEK_VARIABLE}={raw!r} is a {day:%A}; expected a Monday as YYYY-MM-DD")
    return day


def weekly_partitions_from(start: dt.date) -> dg.WeeklyPartitionsDefinition:
    return dg.WeeklyPartitionsDefinition(
        start_date=start.isoformat(), day_offset=1, hour_offset=4, minute_offset=30, timezone="UTC"
    )


weekly_partitions = weekly_partitions_from(first_week())
