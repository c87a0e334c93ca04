"""Realistic, seeded demo attempts: students with their own level and weekly growth, a varying number of
attempts a week, missed weeks and late joiners. The generator returns the truth too, so calibration can
be judged against it.

    python -m seed_growth.demo_data --students 3000 --weeks 16 [--seed 7] [--append]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os

import numpy as np
import pandas as pd

from seed_growth.window import last_complete_week


@dataclasses.dataclass(frozen=True)
class DemoCohort:
    students: int = 3000
    weeks: int = 16
    last_week: dt.date | None = None  # Monday of the last simulated week; default the last complete week
    seed: int = 7
    level_mean: float = 0.55
    level_sd: float = 0.12
    slope_mean: float = 0.012  # accuracy gained per week
    slope_sd: float = 0.010
    level_slope_cor: float = -0.3  # strong students have less room to grow
    week_noise_sd: float = 0.05  # week-to-week wobble beyond binomial noise
    attempts_mean: float = 14.0
    missed_week_rate: float = 0.15
    late_joiner_rate: float = 0.2


@dataclasses.dataclass(frozen=True)
class DemoData:
    attempts: pd.DataFrame  # user_id, is_correct, attempted_at (UTC)
    truth: pd.DataFrame  # user_id, level (at the first week), slope, join_week
    weekly: pd.DataFrame  # user_id, week_start, n_attempts, n_correct, p_true
    first_week: dt.date


def simulate(cohort: DemoCohort = DemoCohort()) -> DemoData:
    rng = np.random.default_rng(cohort.seed)
    last = cohort.last_week or last_complete_week()
    first = last - dt.timedelta(weeks=cohort.weeks - 1)
    s, w = cohort.students, cohort.weeks

    cov = np.array([
        [cohort.level_sd**2, cohort.level_slope_cor * cohort.level_sd * cohort.slope_sd],
        [cohort.level_slope_cor * cohort.level_sd * cohort.slope_sd, cohort.slope_sd**2],
    ])
    level, slope = rng.multivariate_normal([cohort.level_mean, cohort.slope_mean], cov, size=s).T
    join = np.where(rng.random(s) < cohort.late_joiner_rate, rng.integers(1, max(2, w - 1), size=s), 0)
    activity = rng.gamma(4.0, cohort.attempts_mean / 4.0, size=s)  # students differ in how much they practise

    week = np.arange(w)
    active = (week[None, :] >= join[:, None]) & (rng.random((s, w)) >= cohort.missed_week_rate)
    p_true = np.clip(level[:, None] + slope[:, None] * week[None, :] + rng.normal(0, cohort.week_noise_sd, (s, w)), 0.02, 0.98)
    n = np.where(active, rng.poisson(activity[:, None], (s, w)) + 1, 0)
    correct = rng.binomial(n, p_true)

    ids = np.array([f"stu-{i:05d}" for i in range(s)])
    student_idx, week_idx = np.nonzero(n)
    weekly = pd.DataFrame({
        "user_id": ids[student_idx],
        "week_start": [first + dt.timedelta(weeks=int(k)) for k in week_idx],
        "n_attempts": n[student_idx, week_idx],
        "n_correct": correct[student_idx, week_idx],
        "p_true": p_true[student_idx, week_idx],
    })

    # one row per attempt: the first n_correct of a student-week are correct, times spread over the week
    counts = n[student_idx, week_idx]
    rows_student = np.repeat(student_idx, counts)
    rows_week = np.repeat(week_idx, counts)
    offset_in_cell = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    is_correct = offset_in_cell < np.repeat(correct[student_idx, week_idx], counts)
    start = pd.Timestamp(first, tz="UTC")
    seconds = rng.integers(0, 7 * 24 * 3600, size=counts.sum())
    attempted_at = start + pd.to_timedelta(rows_week * 7 * 24 * 3600 + seconds, unit="s")
    attempts = pd.DataFrame({"user_id": ids[rows_student], "is_correct": is_correct, "attempted_at": attempted_at})
    truth = pd.DataFrame({"user_id": ids, "level": level, "slope": slope, "join_week": join})
    return DemoData(attempts=attempts, truth=truth, weekly=weekly, first_week=first)


def load(database_url: str, cohort: DemoCohort, *, append: bool = False) -> DemoData:
    """Simulate and COPY into the demo ``attempt`` table (replacing its rows unless ``append``)."""
    import psycopg

    from seed_growth.sql import queries

    data = simulate(cohort)
    with psycopg.connect(database_url, autocommit=True) as conn:
        queries.apply_schema(conn, demo_source=True)
        with conn.transaction():
            if not append:
                queries.truncate_attempts(conn)
            queries.copy_attempts(conn, data.attempts)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=3000)
    parser.add_argument("--weeks", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--last-week", type=dt.date.fromisoformat, default=None, help="Monday of the last week")
    parser.add_argument("--append", action="store_true", help="keep the rows already in attempt")
    args = parser.parse_args(argv)
    url = os.environ.get("DATABASE_URL")
    if not url:
        parser.error("DATABASE_URL is not set")
    cohort = DemoCohort(students=args.students, weeks=args.weeks, seed=args.seed, last_week=args.last_week)
    data = load(url, cohort, append=args.append)
    last = data.first_week + dt.timedelta(weeks=cohort.weeks - 1)
    print(f"loaded {len(data.attempts):,} attempts of {cohort.students:,} students, weeks {data.first_week} .. {last}")


if __name__ == "__main__":
    main()
