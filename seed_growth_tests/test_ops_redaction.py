"""Issue 15 item 9: no password or token is printed, whatever form the connection strings take."""

import pytest

from seed_growth.resources import DatabaseUnavailable, PlumberResource, PlumberUnavailable, PostgresResource, redact
from seed_growth_tests.test_entrypoint import run_entrypoint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://someone:hunter2@127.0.0.1:1/nowhere", "postgresql://someone:***@127.0.0.1:1/nowhere"),
        ("http://admin:hunter2@plumber:8000/growth/fit", "http://admin:***@plumber:8000/growth/fit"),
        ("postgresql://u:hun@ter2@h/db", "postgresql://u:***@h/db"),  # an unencoded @ in the password
        ("host=h port=1 user=u password=hunter2 dbname=x", "host=h port=1 user=u password=*** dbname=x"),
        ("host=h password = 'hunter 2' dbname=x", "host=h password = *** dbname=x"),
        ("host=h PASSWORD=hunter2", "host=h PASSWORD=***"),
        ("host=h sslpassword=hunter2", "host=h sslpassword=***"),
        (
            "postgresql://u@h/db?sslmode=require&password=hunter2&x=1",
            "postgresql://u@h/db?sslmode=require&password=***&x=1",
        ),
        ("at 'postgresql://u:hunter2@h/db': refused", "at 'postgresql://u:***@h/db': refused"),
        ("Authorization: Bearer hunter2", "Authorization: Bearer ***"),
        ("wrong bearer token", "wrong bearer token"),
        ("send 'Authorization: Bearer <BRMS_PLUMBER_TOKEN>'", "send 'Authorization: Bearer <BRMS_PLUMBER_TOKEN>'"),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),  # nothing secret: unchanged
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_redact_every_form(text, expected):
    assert redact(text) == expected
    assert "hunter" not in redact(text)


def test_a_key_value_database_url_is_not_printed_on_connection_errors():
    postgres = PostgresResource(database_url="host=127.0.0.1 port=1 user=someone password=hunter2 dbname=x")
    with pytest.raises(DatabaseUnavailable) as caught:
        with postgres.connect():
            pass
    assert "hunter2" not in str(caught.value) and "password=***" in str(caught.value)
    assert "hunter2" not in postgres.display_url


def test_a_plumber_url_with_a_password_is_not_printed_on_connection_errors():
    plumber = PlumberResource(base_url="http://admin:hunter2@127.0.0.1:9", max_attempts=1)
    with pytest.raises(PlumberUnavailable) as caught:
        plumber.health()
    assert "hunter2" not in str(caught.value) and "admin:***@127.0.0.1:9" in str(caught.value)


def test_cli_prints_no_key_value_database_password():
    result = run_entrypoint(
        {"DATABASE_URL": "host=127.0.0.1 port=1 user=someone password=hunter2 dbname=x", "BRMS_PLUMBER_URL": "x"}
    )
    assert result.returncode == 3, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert "password=***" in result.stderr


def test_cli_prints_no_plumber_url_password(clean_database):
    result = run_entrypoint({"DATABASE_URL": clean_database, "BRMS_PLUMBER_URL": "http://admin:hunter2@127.0.0.1:9"})
    assert result.returncode == 3, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert "http://admin:***@127.0.0.1:9" in result.stderr
