"""The test suite's pytest plugin, registered once (the repository's conftest.py): a real PostgreSQL
database per test session (created and dropped here), the real r-brms-plumber service, and the
``service`` marker put on every test that needs that service, so ``pytest -m "not service"`` is the
fast tier."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from seed_growth.settings import SETTING_VARIABLES
from seed_growth.sql import schema as schema_sql
from seed_growth_tests.support.plumber_service import PlumberService

ADMIN_URL = os.environ.get("SEED_GROWTH_TEST_ADMIN_URL") or os.environ.get(
    "DATABASE_URL", "postgresql://seed_growth:seed_growth@127.0.0.1:5432/seed_growth"
)
PROJECT_TABLES = [
    "p_calibration",
    "p_calibration_bins",
    "weekly_kpi",
    "growth_student_posterior",
    "growth_brms_meta",
    "weekly_score_weeks",
    "weekly_scores_rows",
    "student_goal",
    "attempt",
    "weekly_attempt_counts",
    "weekly_attempt_weeks",
    "weekly_attempt_sources",
]


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


def reset_database(url: str) -> str:
    """Drop the project's tables in ``url`` and apply the schema afresh."""
    with psycopg.connect(url, autocommit=True) as conn:
        [kind] = conn.execute(
            "SELECT (SELECT relkind FROM pg_class WHERE oid = to_regclass('weekly_scores'))"
        ).fetchone() or [None]
        if kind is not None:  # the schema's view, or a table a test made in its place
            conn.execute(f"DROP {'VIEW' if kind == 'v' else 'TABLE'} weekly_scores CASCADE")
        for table in PROJECT_TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        conn.execute("DROP SEQUENCE IF EXISTS weekly_attempt_version_seq")
        schema_sql.apply_schema(conn, demo_source=True)
    return url


@pytest.fixture
def clean_database(database_url: str) -> str:
    """The session database with the project's tables dropped and the schema applied afresh."""
    return reset_database(database_url)


@pytest.fixture
def conn(clean_database: str):
    with psycopg.connect(clean_database, autocommit=True) as connection:
        yield connection


@pytest.fixture
def growth_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with none of the project's settings, so tests set exactly what they mean."""
    for name in (*SETTING_VARIABLES, "BRMS_PLUMBER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


SERVICE_FIXTURES = {"plumber_service", "plumber_url"}


@pytest.fixture(scope="session")
def plumber_service(tmp_path_factory: pytest.TempPathFactory):
    """The session's running r-brms-plumber (a PlumberService: url, restart(), log_tail()), started on
    first use. The deployment compiles gaussian at start-up too; binomial compiles on its first fit."""
    service = PlumberService(fits_dir=tmp_path_factory.mktemp("plumber-fits"), env={"BRMS_WARMUP_FAMILIES": "gaussian"})
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def plumber_url(plumber_service: PlumberService) -> str:
    """Base URL of the session's running r-brms-plumber."""
    return plumber_service.url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the service (directly or through another fixture) is marked ``service``."""
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.service)


@pytest.fixture(scope="session")
def dagster_ui(plumber_url: str, tmp_path_factory: pytest.TempPathFactory):
    """``dagster dev`` (webserver and daemon) on a free port, over a database of its own holding a demo
    cohort (seed_growth_tests.support.graph.load_cohort) and a fresh Dagster instance, with the session's
    fitting service: a DagsterUI (url, env, graphql(), run_cli()). Stopped, with its process group, at
    the end of the session."""
    from seed_growth_tests.support.graph import load_cohort
    from seed_growth_tests.support.ui import DagsterUI

    name = f"seed_growth_ui_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = reset_database(_with_database(ADMIN_URL, name))
    load_cohort(url)
    ui = DagsterUI(home=tmp_path_factory.mktemp("dagster-home"), database_url=url, plumber_url=plumber_url)
    try:
        ui.start()
        yield ui
    finally:
        ui.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
