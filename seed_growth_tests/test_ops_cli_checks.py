"""Issue 15 item 8: the command line checks Dagster's storage (DAGSTER_PG_URL) and the source relation
before a run is recorded, and says what is wrong in one line naming the variable (exit 3 / 2)."""

import os
import shutil
import subprocess
import sys
import time
import uuid

import dagster as dg
import psycopg
import pytest

from seed_growth_tests.plugin import ADMIN_URL, _with_database
from seed_growth_tests.support.graph import UNREACHABLE
from seed_growth_tests.support.ui import REPO


def run_entrypoint(env_updates: dict[str, str], *args: str, drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The CronJob's command with the project's variables cleared, ``env_updates`` set, ``drop`` unset."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKBACK", "BRMS_", "METRICS_", "GOAL_"))}
    for name in ("DAGSTER_HOME", "DAGSTER_PG_URL", *drop):
        env.pop(name, None)
    env.update(env_updates)
    return subprocess.run(
        [sys.executable, "-m", "seed_growth.jobs.fit_bayesian_growth", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def dagster_home(tmp_path):
    """A DAGSTER_HOME holding the repository's dagster.yaml (PostgreSQL storage at DAGSTER_PG_URL)."""
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


@pytest.fixture
def dagster_storage_url():
    """A fresh PostgreSQL database for Dagster's storage, dropped afterwards."""
    name = f"seed_growth_dagster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(ADMIN_URL, name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_unreachable_dagster_storage_exits_3_naming_the_variable(clean_database, dagster_home):
    started = time.monotonic()
    result = run_entrypoint(
        {
            "DATABASE_URL": clean_database,
            "BRMS_PLUMBER_URL": UNREACHABLE,
            "DAGSTER_HOME": str(dagster_home),
            "DAGSTER_PG_URL": "postgresql://dagster:hunter2@127.0.0.1:1/dagster",
        }
    )
    assert result.returncode == 3, result.stdout + result.stderr
    line = _one_line(result.stderr)
    assert "DAGSTER_PG_URL=postgresql://dagster:***@127.0.0.1:1/dagster" in line
    assert "hunter2" not in result.stdout + result.stderr
    assert time.monotonic() - started < 60


def test_unset_dagster_storage_exits_2_naming_the_variable(clean_database, dagster_home):
    result = run_entrypoint(
        {"DATABASE_URL": clean_database, "BRMS_PLUMBER_URL": UNREACHABLE, "DAGSTER_HOME": str(dagster_home)},
        "--week",
        "2026-11-16",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "DAGSTER_PG_URL is not set (dagster.yaml reads it)" in _one_line(result.stderr)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ATTEMPT_RELATION", "no_such_view"),
        ("ATTEMPT_TIME_COLUMN", "no_such_column"),
        ("ATTEMPT_USER_COLUMN", "no_such_column"),
    ],
)
def test_a_missing_source_exits_2_before_a_run_is_recorded(
    clean_database, dagster_home, dagster_storage_url, variable, value
):
    result = run_entrypoint(
        {
            "DATABASE_URL": clean_database,
            "BRMS_PLUMBER_URL": UNREACHABLE,
            "DAGSTER_HOME": str(dagster_home),
            "DAGSTER_PG_URL": dagster_storage_url,
            variable: value,
        }
    )
    assert result.returncode == 2, result.stdout + result.stderr
    line = _one_line(result.stderr)
    assert variable in line and value in line and "Traceback" not in result.stderr
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": dagster_storage_url}}}) as instance:
        assert instance.get_runs_count() == 0
