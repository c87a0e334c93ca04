"""The weeks a partition covers.

Partition key K is a Monday (UTC); it stands for the week Monday K .. Sunday K+6, and its window is the
``lookback_weeks`` weeks that end with that week: ``[K - (lookback_weeks - 1) weeks, K + 1 week)``.
Week indices count from 0 at the window's first Monday, so the as-of week is ``lookback_weeks - 1``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt


@dataclasses.dataclass(frozen=True)
class ScoreWindow:
    as_of_week: dt.date
    lookback_weeks: int

    def __post_init__(self) -> None:
        if self.as_of_week.weekday() != 0:
            raise ValueError(f"as-of week {self.as_of_week} is not a Monday")
        if self.lookback_weeks < 1:
            raise ValueError(f"lookback_weeks must be >= 1, got {self.lookback_weeks}")

    @classmethod
    def from_partition_key(cls, partition_key: str, lookback_weeks: int) -> ScoreWindow:
        return cls(dt.date.fromisoformat(partition_key), lookback_weeks)

    @property
    def start(self) -> dt.date:
        return self.as_of_week - dt.timedelta(weeks=self.lookback_weeks - 1)

    @property
    def end(self) -> dt.date:
        """Exclusive end: the Monday after the as-of week."""
        return self.as_of_week + dt.timedelta(weeks=1)

    @property
    def start_utc(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(0), tzinfo=dt.UTC)

    @property
    def end_utc(self) -> dt.datetime:
        return dt.datetime.combine(self.end, dt.time(0), tzinfo=dt.UTC)

    @property
    def as_of_index(self) -> int:
        return self.lookback_weeks - 1

    def week_index(self, day: dt.date) -> int:
        """Index of the week containing ``day`` (negative before the window, may exceed it after)."""
        return (day - self.start).days // 7

    def monday_of(self, week_index: int) -> dt.date:
        return self.start + dt.timedelta(weeks=week_index)

    @property
    def mondays(self) -> list[dt.date]:
        """The Mondays of the window's weeks, oldest first."""
        return [self.monday_of(i) for i in range(self.lookback_weeks)]


def last_complete_week(now: dt.datetime | None = None) -> dt.date:
    """Monday of the last week that has fully ended (UTC): the week the Monday schedule scores."""
    now = now or dt.datetime.now(dt.UTC)
    this_monday = now.date() - dt.timedelta(days=now.weekday())
    return this_monday - dt.timedelta(weeks=1)
