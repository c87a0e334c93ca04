"""Schemathesis against the real r-brms-plumber, from the service's own /openapi.json: a bounded run (a few
hundred requests, valid and invalid ones generated from the schemas) asserting no server error, answers that
match the documented schemas, status codes and content types, and a service that still answers /health
afterwards.

The service has ``BRMS_MAX_QUEUE=0`` so that a generated request valid enough for a fit is answered at once
with the documented 503 "queue full, retry later" (with Retry-After) instead of starting Stan: that 503 is
the only 5xx accepted."""

from __future__ import annotations

import collections

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, positive_data_acceptance
from schemathesis.core.result import Ok

from seed_growth_tests.support.plumber_service import validation_service

pytestmark = pytest.mark.service

TOKEN = "fuzz-token"
MAX_EXAMPLES = 100  # per operation and mode (positive, negative): a few hundred requests in all
ANSWERS: collections.Counter = collections.Counter()
ALL_HEALTH_CHECKS = list(HealthCheck.__members__.values())


@pytest.fixture(scope="module")
def fuzzed_service(tmp_path_factory):
    yield from validation_service(tmp_path_factory.mktemp("fuzz-fits"), TOKEN)


def is_queue_full(response) -> bool:
    """The documented 503 of a full queue (BRMS_MAX_QUEUE = 0 here), not a failure."""
    headers = {name.lower(): value for name, value in response.headers.items()}
    if response.status_code != 503 or not headers.get("retry-after"):
        return False
    try:
        return "BRMS_MAX_QUEUE" in response.json()["error"]
    except ValueError:
        return False


def fuzz_operation(operation, mode: GenerationMode, url: str) -> None:
    """MAX_EXAMPLES generated requests for one operation, each answer checked (schemathesis' pytest
    integration, ``from_fixture``, does not run under pytest 9, so hypothesis drives its strategies here)."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=ALL_HEALTH_CHECKS, database=None)
    def run(case):
        response = case.call_and_validate(
            base_url=url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            # not_a_server_error: replaced by the assertion below (the queue-full 503 is fine);
            # positive_data_acceptance: a schema cannot say "at least 2 students, one row per student and
            # week, columns of equal length", so some schema-valid bodies are rightly a 400
            excluded_checks=[not_a_server_error, positive_data_acceptance],
            timeout=60,
        )
        ANSWERS[(operation.label, mode.value, response.status_code)] += 1
        assert response.status_code < 500 or is_queue_full(response), (
            f"{case.method} {case.path} -> {response.status_code}: {response.text[:500]}"
        )

    run()


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_fuzzed_requests_get_documented_answers(fuzzed_service, mode):
    schema = schemathesis.openapi.from_url(f"{fuzzed_service.url}/openapi.json")
    labels = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is valid
        operation = result.ok()
        labels.append(operation.label)
        if mode is GenerationMode.NEGATIVE and len(operation.body) == 0:
            continue  # GET /health takes no input: nothing to make invalid
        fuzz_operation(operation, mode, fuzzed_service.url)
    assert sorted(labels) == ["GET /health", "POST /growth/fit", "POST /growth/predict_prob"]


def test_the_service_answers_after_fuzzing(fuzzed_service):
    health = httpx.get(f"{fuzzed_service.url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    total = sum(ANSWERS.values())
    print(f"\nfuzzed requests: {total}; answers: {dict(sorted(ANSWERS.items()))}")
    if total:  # the fuzzing items ran in this session (not deselected)
        assert total >= 100
    assert fuzzed_service.process.poll() is None
