"""Backtest P over past weeks (the README's run command does this on the demo data):

    python -m seed_growth.cli.backtest [--as-of-weeks N]

Materializes the weekly graph for the N most recent as-of weeks whose target week (GOAL_HORIZON_WEEKS
later) has already been observed, then p_calibration, and prints its Brier scores and log losses for the
Bayesian P and the normal approximation. Same settings, environment and exit codes as
fit_bayesian_growth.
"""

from __future__ import annotations

import os
import sys

import psycopg

from seed_growth.cli.run import Exit, parser_for, prepare, run_job
from seed_growth.growth.backtest import backtest_weeks
from seed_growth.sql import calibration as calibration_sql
from seed_growth.window import last_complete_week

PROG = "backtest"


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(PROG, __doc__)
    parser.add_argument("--as-of-weeks", type=int, default=4, help="how many past as-of weeks to fit (default 4)")
    args = parser.parse_args(argv)
    if args.as_of_weeks < 1:
        parser.error("--as-of-weeks must be at least 1")
    try:
        prepared = prepare(PROG)
    except Exit as exc:
        return exc.code

    codes = [
        run_job(PROG, prepared, "weekly_growth_job", week.isoformat())
        for week in backtest_weeks(last_complete_week(), prepared.settings.goal_horizon_weeks, args.as_of_weeks)
    ]
    codes.append(run_job(PROG, prepared, "calibration_job"))
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        summary = calibration_sql.read_calibration(conn)
    if not summary.empty:
        print(summary.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
