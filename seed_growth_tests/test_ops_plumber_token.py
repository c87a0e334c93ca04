"""Issue 15 item 5 (a refused BRMS_PLUMBER_TOKEN is a configuration error, not an outage) and issue 14
item 9 (a retried 5xx is logged in the run). Failure handling with a fake transport; the run and the
command line against the real service, started with a token."""

import logging

import dagster as dg
import httpx
import pytest

from seed_growth.resources import PlumberAuthError, PlumberError, PlumberResource
from seed_growth_tests.support.graph import WEEK, check_results, load_cohort, run_graph
from seed_growth_tests.support.plumber_service import PlumberService
from seed_growth_tests.test_entrypoint import run_entrypoint
from seed_growth_tests.test_plumber_resource import FIT, fit, plumber

TOKEN = "right-token"


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_an_auth_error_not_an_outage(growth_env, status):
    growth_env.setenv("BRMS_PLUMBER_TOKEN", "wrong")
    client = plumber(httpx.Response(status, json={"error": "wrong bearer token"}), max_attempts=3)
    with pytest.raises(
        PlumberAuthError, match=f"BRMS_PLUMBER_TOKEN is wrong: r-brms-plumber /growth/fit answered {status}"
    ):
        fit(client)
    assert len(client._requests) == 1  # never retried
    assert not issubclass(PlumberAuthError, PlumberError)  # no fallback for service outages catches it


def test_a_missing_token_says_it_is_not_set(growth_env):
    client = plumber(httpx.Response(401, json={"error": "missing bearer token"}))
    with pytest.raises(PlumberAuthError, match="BRMS_PLUMBER_TOKEN is not set, but the service requires one"):
        fit(client)


def test_check_token_asks_a_route_behind_the_token(growth_env):
    accepted = plumber(httpx.Response(400, json={"error": "targets must not be empty"}))
    accepted.check_token()
    assert accepted._requests[0].url.path == "/growth/predict_prob"
    with pytest.raises(PlumberAuthError):
        plumber(httpx.Response(401, json={"error": "wrong bearer token"})).check_token()


SCRIPTED: list[httpx.Response] = []


class ScriptedPlumber(PlumberResource):
    """The real client over a module-level script of answers (Dagster copies resources, dropping state)."""

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, transport=httpx.MockTransport(lambda request: SCRIPTED.pop(0)))


def test_a_retried_5xx_is_logged_in_the_run_naming_status_and_attempt():
    SCRIPTED[:] = [httpx.Response(503, json={"error": "queue full"}), httpx.Response(200, json=FIT)]
    client = ScriptedPlumber(base_url="http://plumber.test", backoff_initial_s=0, max_attempts=3)

    @dg.asset
    def calls_the_service(plumber: PlumberResource) -> None:
        fit(plumber)

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([calls_the_service], resources={"plumber": client}, instance=instance)
    assert result.success
    logs = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level == logging.WARNING and "r-brms-plumber" in entry.user_message
    ]
    assert len(logs) == 1, logs
    assert "/growth/fit answered 503 (queue full) on attempt 1 of 3; retrying" in logs[0]


@pytest.fixture(scope="module")
def token_service(tmp_path_factory):
    """A fitting service that requires a bearer token (no model is compiled: no fit runs on it)."""
    service = PlumberService(
        fits_dir=tmp_path_factory.mktemp("token-fits"),
        env={"BRMS_PLUMBER_TOKEN": TOKEN, "BRMS_WARMUP_FAMILIES": ""},
    )
    service.start()
    yield service
    service.stop()


def test_cli_with_a_wrong_token_exits_2_in_one_line(clean_database, token_service):
    result = run_entrypoint(
        {"DATABASE_URL": clean_database, "BRMS_PLUMBER_URL": token_service.url, "BRMS_PLUMBER_TOKEN": "not-it-x9"},
        "--week",
        WEEK.isoformat(),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "BRMS_PLUMBER_TOKEN is wrong" in lines[0], result.stderr
    assert "not-it-x9" not in result.stdout + result.stderr
    assert "succeeded" not in result.stdout


def test_cli_without_a_token_exits_2(clean_database, token_service):
    result = run_entrypoint({"DATABASE_URL": clean_database, "BRMS_PLUMBER_URL": token_service.url})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "BRMS_PLUMBER_TOKEN is not set, but the service requires one" in result.stderr


def test_a_run_with_a_wrong_token_fails_naming_the_variable(clean_database, token_service, growth_env):
    growth_env.setenv("BRMS_PLUMBER_TOKEN", "wrong")
    load_cohort(clean_database, students=40, weeks=6)
    result = run_graph(clean_database, token_service.url, raise_on_error=False, lookback_weeks=6)
    assert not result.success
    failures = {e.step_key: e.step_failure_data.error for e in result.get_step_failure_events()}
    assert "brms_posterior" in failures, failures
    error = failures["brms_posterior"]
    assert error is not None and "BRMS_PLUMBER_TOKEN is wrong" in error.message
    assert "brms_posterior_converged" not in check_results(result)  # never judged: nothing fell back
