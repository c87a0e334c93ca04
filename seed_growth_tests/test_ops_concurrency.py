"""Issue 15 item 11: one partition is computed by one run at a time. Two command-line runs of the same
week started together: one runs, the other is refused with one clear line (exit 4); a run whose week is
being fitted elsewhere fails brms_posterior saying so instead of storing a second fit."""

import os
import subprocess
import sys

import psycopg

from seed_growth.assets.brms_posterior import fit_lock_name
from seed_growth.cli.run import EXIT_BUSY, run_lock_name
from seed_growth.sql.schema import advisory_lock
from seed_growth_tests.support.graph import UNREACHABLE, WEEK, load_cohort, run_graph


def test_an_advisory_lock_is_taken_by_one_session_only_and_released(clean_database):
    with (
        psycopg.connect(clean_database, autocommit=True) as first,
        psycopg.connect(clean_database, autocommit=True) as second,
    ):
        with advisory_lock(first, "seed_growth.test/lock") as taken:
            assert taken
            with advisory_lock(second, "seed_growth.test/lock") as also:
                assert not also
            with advisory_lock(second, "seed_growth.test/other") as other:
                assert other
        with advisory_lock(second, "seed_growth.test/lock") as now:
            assert now


def test_a_week_being_fitted_elsewhere_is_refused_not_fitted_twice(clean_database):
    load_cohort(clean_database, students=40, weeks=6)
    with (
        psycopg.connect(clean_database, autocommit=True) as other_run,
        advisory_lock(other_run, fit_lock_name(WEEK)) as taken,
    ):
        assert taken
        result = run_graph(clean_database, UNREACHABLE, raise_on_error=False, lookback_weeks=6)
    failures = {e.step_key: e.step_failure_data.error for e in result.get_step_failure_events()}
    error = failures["brms_posterior"]
    assert error is not None and f"week {WEEK} is being fitted by another run right now" in error.message
    with psycopg.connect(clean_database) as conn:
        assert conn.execute("SELECT count(*) FROM growth_brms_meta").fetchone() == (0,)


def _start_cli(url: str, plumber_url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKBACK", "BRMS_", "METRICS_", "GOAL_"))}
    env.pop("DAGSTER_HOME", None)
    env.update({"DATABASE_URL": url, "BRMS_PLUMBER_URL": plumber_url, "LOOKBACK_WEEKS": "8"})
    return subprocess.Popen(
        [sys.executable, "-m", "seed_growth.jobs.fit_bayesian_growth", "--week", WEEK.isoformat()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_cli_runs_of_one_week_started_together_one_is_refused(clean_database, plumber_url):
    load_cohort(clean_database, students=150, weeks=10)
    runs = [_start_cli(clean_database, plumber_url) for _ in range(2)]
    outcomes = []
    try:
        for run in runs:
            stdout, stderr = run.communicate(timeout=900)
            outcomes.append((run.returncode, stdout, stderr))
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, EXIT_BUSY], outcomes
    refused = next(stderr for code, _, stderr in outcomes if code == EXIT_BUSY)
    lock = run_lock_name("weekly_growth_job", WEEK.isoformat())
    assert refused.strip().splitlines() == [
        f"fit_bayesian_growth: weekly_growth_job {WEEK}: another run is computing it right now "
        f"(PostgreSQL advisory lock {lock!r}); not starting a second one"
    ]
    assert not any("Traceback" in stderr or "UniqueViolation" in stderr for _, _, stderr in outcomes)
    with psycopg.connect(clean_database) as conn:
        assert conn.execute("SELECT count(*) FROM growth_brms_meta").fetchone() == (1,)
