"""Run the weekly graph once, for platforms that keep a plain CronJob:

    python -m seed_growth.cli.fit_bayesian_growth [--week YYYY-MM-DD] [--rebuild-kept-weeks]
    (the platform's CronJob calls it by its older path, python -m seed_growth.jobs.fit_bayesian_growth)

Materializes weekly_scores -> brms_posterior -> weekly_kpi_P (with their checks) for the last complete
week (or --week), reading every setting from the environment like the platform's old job
(BRMS_LOOKBACK_WEEKS, BRMS_N_SAMPLES, ...). The run is recorded in the Dagster instance at DAGSTER_HOME
when one is configured. One run of a week at a time: a second one started while the first runs is
refused. Exit codes: 0 done; 1 the graph failed; 2 bad settings (a variable, the source relation or its
columns, BRMS_PLUMBER_TOKEN refused by the service); 3 the database, the fitting service or Dagster's
storage (DAGSTER_PG_URL) unreachable; 4 another run is computing the week (nothing done).
"""

from __future__ import annotations

import sys

from seed_growth.cli.run import Exit, add_rebuild_flag, monday, parser_for, prepare, rebuild_config, run_job
from seed_growth.window import last_complete_week


def main(argv: list[str] | None = None) -> int:
    prog = "fit_bayesian_growth"
    parser = parser_for(prog, __doc__)
    parser.add_argument(
        "--week", type=monday, default=None, help="Monday of the as-of week (default: last complete week)"
    )
    add_rebuild_flag(parser)
    args = parser.parse_args(argv)
    week = args.week or last_complete_week()
    try:
        prepared = prepare(prog)
    except Exit as exc:
        return exc.code
    print(f"{prog}: week {week}")
    return run_job(prog, prepared, "weekly_growth_job", week.isoformat(), settings_config=rebuild_config(args))


if __name__ == "__main__":
    sys.exit(main())
