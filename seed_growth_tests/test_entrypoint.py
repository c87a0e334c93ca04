"""`python -m seed_growth.jobs.fit_bayesian_growth`, the entry point for a plain CronJob."""

import os
import subprocess
import sys

import psycopg
import pytest

from seed_growth import demo_data
from seed_growth_tests.support.graph import UNREACHABLE, WEEK


def run_entrypoint(
    env_updates: dict[str, str], *args: str, module: str = "seed_growth.jobs.fit_bayesian_growth"
) -> subprocess.CompletedProcess:
    """The CronJob's command (its older module path unless ``module`` says otherwise)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKBACK", "BRMS_", "METRICS_", "GOAL_"))}
    env.pop("DAGSTER_HOME", None)  # an ephemeral instance: the test does not write to the developer's
    env.update(env_updates)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def test_bad_settings_exit_2(clean_database):
    result = run_entrypoint({"DATABASE_URL": clean_database, "BRMS_PLUMBER_URL": UNREACHABLE, "BRMS_N_CHAINS": "many"})
    assert result.returncode == 2
    assert "BRMS_CHAINS (or BRMS_N_CHAINS)='many' is not an integer" in result.stderr


@pytest.mark.parametrize(
    "module", ["seed_growth.cli.fit_bayesian_growth", "seed_growth.cli.backtest", "seed_growth.jobs.backtest"]
)
def test_every_entry_point_path_checks_settings_first(clean_database, module):
    result = run_entrypoint(
        {"DATABASE_URL": clean_database, "BRMS_PLUMBER_URL": UNREACHABLE, "BRMS_N_CHAINS": "many"}, module=module
    )
    assert result.returncode == 2
    assert "BRMS_CHAINS (or BRMS_N_CHAINS)='many' is not an integer" in result.stderr


def test_unreachable_database_exits_3_without_leaking_the_password():
    result = run_entrypoint(
        {"DATABASE_URL": "postgresql://someone:hunter2@127.0.0.1:1/nowhere", "BRMS_PLUMBER_URL": UNREACHABLE}
    )
    assert result.returncode == 3
    assert "cannot connect to the database at postgresql://someone:***@127.0.0.1:1/nowhere" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_unreachable_service_exits_3(clean_database):
    result = run_entrypoint({"DATABASE_URL": clean_database, "BRMS_PLUMBER_URL": UNREACHABLE})
    assert result.returncode == 3
    assert "/health" in result.stderr and "cannot reach http://127.0.0.1:9" in result.stderr


def test_not_a_monday_is_refused(clean_database):
    result = run_entrypoint({"DATABASE_URL": clean_database, "BRMS_PLUMBER_URL": UNREACHABLE}, "--week", "2026-11-17")
    assert result.returncode == 2 and "2026-11-17 is not a Monday" in result.stderr


@pytest.mark.service
def test_runs_the_graph_end_to_end_with_the_platform_variables(clean_database, plumber_url):
    demo_data.load(clean_database, demo_data.DemoCohort(students=120, weeks=14, last_week=WEEK, seed=5))
    result = run_entrypoint(
        {
            "DATABASE_URL": clean_database,
            "BRMS_PLUMBER_URL": plumber_url,
            "BRMS_LOOKBACK_WEEKS": "12",
            "BRMS_N_SAMPLES": "1000",
            "BRMS_N_CHAINS": "2",
            "BRMS_FAMILY": "gaussian",
        },
        "--week",
        WEEK.isoformat(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lookback 12" in result.stdout and "succeeded" in result.stdout
    with psycopg.connect(clean_database) as conn:
        lookback, chains = conn.execute("SELECT lookback_weeks, chains FROM growth_brms_meta").fetchone()
        with_p = conn.execute(
            "SELECT count(*) FROM weekly_kpi WHERE week_start = %s AND kpis ? 'P'", (WEEK,)
        ).fetchone()[0]
        students = conn.execute(
            "SELECT count(DISTINCT user_id) FROM weekly_scores WHERE as_of_week = %s", (WEEK,)
        ).fetchone()[0]
    assert (lookback, chains) == (12, 2) and with_p == students > 100
