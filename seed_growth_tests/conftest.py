"""Shared fixtures: a real PostgreSQL database per test session (created and dropped here), and the
real r-brms-plumber service (seed_growth_tests.plumber_fixture)."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from seed_growth.sql import queries

ADMIN_URL = os.environ.get("SEED_GROWTH_TEST_ADMIN_URL") or os.environ.get(
    "DATABASE_URL", "postgresql://seed_growth:seed_growth@127.0.0.1:5432/seed_growth"
)
PROJECT_TABLES = ["p_calibration", "p_calibration_bins", "weekly_kpi", "growth_student_posterior", "growth_brms_meta", "weekly_scores", "student_goal", "attempt"]


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def database_url() -> str:
    """A database of its own for this test session, dropped afterwards."""
    name = f"seed_growth_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.exit(f"the tests need PostgreSQL at SEED_GROWTH_TEST_ADMIN_URL ({ADMIN_URL}): {exc}", returncode=3)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield _with_database(ADMIN_URL, name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def clean_database(database_url: str) -> str:
    """The session database with the project's tables dropped and the schema applied afresh."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for table in PROJECT_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        queries.apply_schema(conn, demo_source=True)
    return database_url


@pytest.fixture
def conn(clean_database: str):
    with psycopg.connect(clean_database, autocommit=True) as connection:
        yield connection


@pytest.fixture
def growth_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with none of the project's settings, so tests set exactly what they mean."""
    for name in ("LOOKBACK_WEEKS", "BRMS_LOOKBACK_WEEKS", "BRMS_ITER", "BRMS_N_SAMPLES", "BRMS_CHAINS", "BRMS_N_CHAINS",
                 "BRMS_FAMILY", "BRMS_ENGINE", "METRICS_USE_BAYESIAN", "GOAL_SCORE", "GOAL_HORIZON_WEEKS",
                 "ATTEMPT_RELATION", "ATTEMPT_USER_COLUMN", "ATTEMPT_CORRECT_COLUMN", "ATTEMPT_TIME_COLUMN",
                 "BRMS_PLUMBER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# the real r-brms-plumber service, started once per session by the tests that need it
from seed_growth_tests.plumber_fixture import plumber_service, plumber_url  # noqa: E402, F401
