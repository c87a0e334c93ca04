"""Run the weekly graph once, for platforms that keep a plain CronJob:

    python -m seed_growth.jobs.fit_bayesian_growth [--week YYYY-MM-DD]

Materializes weekly_scores -> brms_posterior -> weekly_kpi_P (with their checks) for the last complete
week (or --week), reading every setting from the environment like the platform's old job
(BRMS_LOOKBACK_WEEKS, BRMS_N_SAMPLES, ...). The run is recorded in the Dagster instance at DAGSTER_HOME
when one is configured. Exit codes: 0 done; 1 the graph failed; 2 bad settings; 3 database or fitting
service unreachable.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

import dagster as dg

from seed_growth.resources import DatabaseUnavailable, PlumberError, PlumberResource, PostgresResource
from seed_growth.settings import GrowthSettings, SettingsError
from seed_growth.window import last_complete_week


def _monday(value: str) -> dt.date:
    day = dt.date.fromisoformat(value)
    if day.weekday() != 0:
        raise argparse.ArgumentTypeError(f"{value} is not a Monday")
    return day


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SettingsError(f"{name} is not set")
    return value


class Exit(Exception):
    """Stop with an exit code, having said why on stderr."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def prepare(prog: str) -> GrowthSettings:
    """Settings from the environment, and the database and fitting service reachable (exit 2 or 3 if not):
    fail fast, and say what is missing, before a run is recorded."""
    try:
        settings = GrowthSettings.from_env()
        postgres = PostgresResource(database_url=_required_env("DATABASE_URL"))
        plumber = PlumberResource(base_url=_required_env("BRMS_PLUMBER_URL"), max_attempts=2, backoff_initial_s=1.0)
    except SettingsError as exc:
        print(f"{prog}: bad settings: {exc}", file=sys.stderr)
        raise Exit(2) from exc
    for warning in settings.warnings:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    try:
        with postgres.connect() as conn:
            conn.execute("SELECT 1")
        plumber.health()
    except (DatabaseUnavailable, PlumberError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise Exit(3) from exc
    print(f"{prog}: lookback {settings.lookback_weeks}, family {settings.family}, engine {settings.fit_engine}, "
          f"iter {settings.iter}, chains {settings.chains}, db {postgres.display_url}")
    return settings


def run_job(prog: str, job_name: str, partition_key: str | None = None) -> bool:
    """Execute one of the code location's jobs in this process, recorded in the Dagster instance at
    DAGSTER_HOME when there is one; print its checks and failures."""
    from seed_growth.definitions import defs  # loading the definitions is the slow part

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    # step-level DEBUG events stay in the instance (and the UI); the terminal gets INFO and up
    log_level = os.environ.get("SEED_GROWTH_LOG_LEVEL", "INFO")
    result = defs.resolve_job_def(job_name).execute_in_process(
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        partition_key=partition_key, instance=instance, raise_on_error=False, tags={"seed_growth/trigger": prog},
    )
    for event in result.get_asset_check_evaluations():
        status = "passed" if event.passed else "FAILED"
        print(f"  check {event.asset_key.to_user_string()}:{event.check_name} {status}")
    for step in result.get_step_failure_events():
        print(f"  step {step.step_key} FAILED: {step.event_specific_data.error.message.strip()}", file=sys.stderr)
    label = f"{job_name} {partition_key}" if partition_key else job_name
    print(f"{prog}: {label}: run {result.run_id} {'succeeded' if result.success else 'FAILED'}")
    return result.success


def main(argv: list[str] | None = None) -> int:
    prog = "fit_bayesian_growth"
    parser = argparse.ArgumentParser(prog=f"python -m seed_growth.jobs.{prog}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--week", type=_monday, default=None, help="Monday of the as-of week (default: last complete week)")
    args = parser.parse_args(argv)
    week = args.week or last_complete_week()
    try:
        prepare(prog)
    except Exit as exc:
        return exc.code
    print(f"{prog}: week {week}")
    return 0 if run_job(prog, "weekly_growth_job", week.isoformat()) else 1


if __name__ == "__main__":
    sys.exit(main())
