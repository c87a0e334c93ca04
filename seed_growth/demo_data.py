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

from growth_engine import PoissonAttempts, simulate_cohort
from growth_engine.bayes_optimal import TruePopulation
from growth_engine.simulate import Simulation
from seed_growth.window import last_complete_week

DEMO_ACCURACY_BOUNDS = (0.02, 0.98)


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
    """Attempts from the growth model's simulator (``growth_engine.simulate_cohort``): binomial attempts on
    a true accuracy that follows each student's line plus a weekly wobble, clipped to [0.02, 0.98]."""
    rng = np.random.default_rng(cohort.seed)  # the cohort, then the attempts' times within their weeks
    last = cohort.last_week or last_complete_week()
    first = last - dt.timedelta(weeks=cohort.weeks - 1)
    sim = demo_simulation(cohort, rng)
    rows = sim.rows()
    weekly = pd.DataFrame({
        "user_id": rows["student"],
        "week_start": [first + dt.timedelta(weeks=int(k)) for k in rows["week"]],
        "n_attempts": rows["n"],
        "n_correct": rows["correct"],
        "p_true": rows["accuracy"],
    })  # fmt: skip
    attempts = _attempt_rows(rows, first, rng)
    truth = pd.DataFrame({"user_id": sim.ids, "level": sim.level, "slope": sim.slope, "join_week": sim.join_week})
    return DemoData(attempts=attempts, truth=truth, weekly=weekly, first_week=first)


def demo_simulation(cohort: DemoCohort, rng: np.random.Generator) -> Simulation:
    """The demo cohort's students and weeks (its week 0 is the first simulated week), drawn first from
    ``rng``, so that :func:`simulate` and a study of the truth see the same students."""
    return simulate_cohort(
        cohort.students, cohort.weeks, level=cohort.level_mean, slope=cohort.slope_mean, sd_level=cohort.level_sd,
        sd_slope=cohort.slope_sd, cor=cohort.level_slope_cor, family="binomial", wobble_sd=cohort.week_noise_sd,
        accuracy_bounds=DEMO_ACCURACY_BOUNDS, attempts=PoissonAttempts(mean=cohort.attempts_mean, shape=4.0),
        p_missing=cohort.missed_week_rate, keep_one_week=False, late_joiner_rate=cohort.late_joiner_rate,
        id_prefix="stu-", id_width=5, seed=rng,
    )  # fmt: skip


def demo_population(cohort: DemoCohort) -> TruePopulation:
    """The demo's generating model, as the Bayes-optimal P integrates over it (level at week 0)."""
    return TruePopulation(
        level=cohort.level_mean, slope=cohort.slope_mean, sd_level=cohort.level_sd, sd_slope=cohort.slope_sd,
        cor=cohort.level_slope_cor, wobble_sd=cohort.week_noise_sd, link="identity",
        accuracy_bounds=DEMO_ACCURACY_BOUNDS,
    )  # fmt: skip


def _attempt_rows(rows: dict[str, np.ndarray], first: dt.date, rng: np.random.Generator) -> pd.DataFrame:
    """One row per attempt: the first n_correct of a student-week are correct, times spread over the week."""
    counts = rows["n"]
    offset_in_cell = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    is_correct = offset_in_cell < np.repeat(rows["correct"], counts)
    start = pd.Timestamp(first, tz="UTC")
    seconds = rng.integers(0, 7 * 24 * 3600, size=counts.sum())
    attempted_at = start + pd.to_timedelta(np.repeat(rows["week"], counts) * 7 * 24 * 3600 + seconds, unit="s")
    return pd.DataFrame(
        {"user_id": np.repeat(rows["student"], counts), "is_correct": is_correct, "attempted_at": attempted_at}
    )


def load(database_url: str, cohort: DemoCohort, *, append: bool = False) -> DemoData:
    """Simulate and COPY into the demo ``attempt`` table (replacing its rows unless ``append``)."""
    import psycopg

    from seed_growth.sql import demo as demo_sql
    from seed_growth.sql import schema as schema_sql

    data = simulate(cohort)
    with psycopg.connect(database_url, autocommit=True) as conn:
        schema_sql.apply_schema(conn, demo_source=True)
        with conn.transaction():
            if not append:
                demo_sql.truncate_attempts(conn)
            demo_sql.copy_attempts(conn, data.attempts)
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
