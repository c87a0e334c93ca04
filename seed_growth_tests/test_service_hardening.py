"""Hostile and absurd input against the real r-brms-plumber (issue 15): every bad value is a 400 naming the
field (never silently converted, never a 500 leaking the server's files), a large body does not hold up
/health, the OpenAPI document describes every route, unknown methods are 405, the bearer scheme is
case-insensitive and a full queue says when to retry.

The service here has a token and ``BRMS_MAX_QUEUE=0``: a request that passes validation is answered 503
(queue full) at once instead of starting a fit, so these tests (and the fuzzer) never wait for Stan."""

from __future__ import annotations

import json
import threading
import time

import httpx
import jsonschema
import psutil
import pytest

from seed_growth_tests.support.plumber_service import PlumberService, validation_service

pytestmark = pytest.mark.service

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OK_DATA = {"student": ["a", "b"], "week": [0, 1], "score": [0.5, 0.6]}
RUN_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def hardened(tmp_path_factory):
    """A service with a bearer token whose queue takes no fits (validation runs, fits never start)."""
    yield from validation_service(tmp_path_factory.mktemp("hardened-fits"), TOKEN)


def send(service: PlumberService, path: str, body=None, *, content: bytes | None = None, headers=None):
    return httpx.post(
        f"{service.url}{path}",
        json=body if content is None else None,
        content=content,
        headers={"Content-Type": "application/json", **AUTH, **(headers or {})},
        timeout=120,
    )


def assert_400_naming(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == 400 and field in body["error"], body
    assert "Warning" not in body["error"] and "/" not in body["error"], body  # no Python warnings, no paths


ABSURD_WEEKS = [1e308, 1e15, 1e9, 521, -1]


@pytest.mark.parametrize("week", ABSURD_WEEKS, ids=[str(w) for w in ABSURD_WEEKS])
def test_absurd_weeks_are_400_naming_data_week(hardened, week):
    for engine in ("brms", "collapsed"):
        data = {"student": ["a", "b", "c"], "week": [0, 1, week], "score": [0.5, 0.6, 0.7]}
        assert_400_naming(send(hardened, "/growth/fit", {"data": data, "engine": engine}), "data.week")
    rows = [{"student": "a", "week": 0, "score": 0.5}, {"student": "b", "week": week, "score": 0.5}]
    assert_400_naming(send(hardened, "/growth/fit", {"data": rows}), "data.week")


def test_a_non_finite_week_is_400(hardened):
    content = b'{"data": {"student": ["a", "b"], "week": [0, 1e999], "score": [0.5, 0.5]}}'
    assert_400_naming(send(hardened, "/growth/fit", content=content), "data.week")


@pytest.mark.parametrize("target_week", [1e308, 521, -1])
def test_absurd_target_weeks_are_400(hardened, target_week):
    targets = [{"student": "a", "target_week": target_week, "goal": 0.8}]
    assert_400_naming(send(hardened, "/growth/predict_prob", {"run_id": RUN_ID, "targets": targets}), "target_week")


def test_the_week_bounds_themselves_are_valid(hardened):
    data = {"student": ["a", "b"], "week": [0, 520], "score": [0.5, 0.6]}
    r = send(hardened, "/growth/fit", {"data": data})
    assert r.status_code == 503, r.text  # valid: it only finds the (zero-length) queue full
    targets = [{"student": "a", "target_week": 520, "goal": 0.8}]
    assert send(hardened, "/growth/predict_prob", {"run_id": RUN_ID, "targets": targets}).status_code == 404


REWRITTEN = [
    ("score true (columns)", {"data": {**OK_DATA, "score": [True, 0.6]}}, "data.score"),
    (
        "score true (rows)",
        {"data": [{"student": "a", "week": 0, "score": True}, {"student": "b", "week": 1, "score": 0.5}]},
        "data.score",
    ),
    ("week false", {"data": {**OK_DATA, "week": [0, False]}}, "data.week"),
    ("NUL in student", {"data": {**OK_DATA, "student": ["a\u0000b", "a"]}}, "data.student"),
    (
        "NUL in student (rows)",
        {"data": [{"student": "a", "week": 0, "score": 0.5}, {"student": "a\u0000b", "week": 1, "score": 0.5}]},
        "data.student",
    ),
    ("chains array", {"data": OK_DATA, "chains": [2]}, "chains"),
    ("iter boolean", {"data": OK_DATA, "iter": True}, "iter"),
    ("seed array", {"data": OK_DATA, "seed": [1]}, "seed"),
    (
        "duplicated row",
        {"data": {"student": ["a", "a", "b"], "week": [0, 0, 1], "score": [0.5, 0.5, 0.5]}},
        "data",
    ),
    ("object in a column", {"data": {**OK_DATA, "week": {}}}, "data.week"),
    (
        "object in a row",
        {"data": [{"student": "a", "week": {}, "score": 0.5}, {"student": "b", "week": 1, "score": 0.5}]},
        "data.week",
    ),
    ("array of arrays", {"data": {**OK_DATA, "score": [[0.5], [0.6]]}}, "data.score"),
]


@pytest.mark.parametrize("body,field", [(b, f) for _, b, f in REWRITTEN], ids=[i for i, _, _ in REWRITTEN])
def test_values_are_never_converted_silently(hardened, body, field):
    assert_400_naming(send(hardened, "/growth/fit", body), field)


def test_an_object_value_names_the_field_and_its_type(hardened):
    r = send(hardened, "/growth/fit", {"data": {**OK_DATA, "week": {}}})
    assert r.status_code == 400 and "data.week" in r.json()["error"] and "object" in r.json()["error"], r.text
    assert "equal lengths" not in r.json()["error"]


def test_duplicated_keys_are_400(hardened):
    body = json.dumps({"data": OK_DATA})[:-1] + ', "chains": 2, "chains": 3}'
    r = send(hardened, "/growth/fit", content=body.encode())
    assert r.status_code == 400 and "duplicated key 'chains'" in r.json()["error"], r.text
    row = b'{"data": [{"student": "a", "week": 0, "week": 5, "score": 0.5}, {"student": "b", "week": 1, "score": 0.5}]}'
    r = send(hardened, "/growth/fit", content=row)
    assert r.status_code == 400 and "duplicated key 'week' in data" in r.json()["error"], r.text


def test_a_run_id_with_nul_is_400_not_the_prefix_fit(hardened):
    targets = [{"student": "a", "target_week": 3, "goal": 0.8}]
    assert_400_naming(
        send(hardened, "/growth/predict_prob", {"run_id": RUN_ID + "\u0000x", "targets": targets}), "run_id"
    )


ATTEMPTS = [
    ("zero", {**OK_DATA, "n": [0, 5]}),
    ("too many", {**OK_DATA, "n": [100001, 5]}),
    ("fraction", {**OK_DATA, "n": [2.5, 5]}),
    ("null", {**OK_DATA, "n": [None, 5]}),
    ("boolean", {**OK_DATA, "n": [True, 5]}),
    ("short", {**OK_DATA, "n": [5]}),
]


@pytest.mark.parametrize("data", [d for _, d in ATTEMPTS], ids=[i for i, _ in ATTEMPTS])
def test_bad_attempts_are_400_naming_data_n(hardened, data):
    r = send(hardened, "/growth/fit", {"data": data})
    assert r.status_code == 400 and ("data.n" in r.json()["error"] or "n: 1" in r.json()["error"]), r.text


def test_attempts_on_some_rows_only_are_400(hardened):
    rows = [{"student": "a", "week": 0, "score": 0.5, "n": 4}, {"student": "b", "week": 1, "score": 0.5}]
    assert_400_naming(send(hardened, "/growth/fit", {"data": rows}), "data.n")


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_good_attempts_pass_validation(hardened, family):
    rows = [{"student": "a", "week": 0, "score": 0.5, "n": 1}, {"student": "b", "week": 1, "score": 0.5, "n": 100000}]
    for data in (rows, {**OK_DATA, "n": [1, 100000]}):
        r = send(hardened, "/growth/fit", {"data": data, "family": family})
        assert r.status_code == 503 and "BRMS_MAX_QUEUE" in r.json()["error"], r.text


def test_the_bearer_scheme_is_case_insensitive(hardened):
    targets = [{"student": "a", "target_week": 3, "goal": 0.8}]
    for scheme in ("Bearer", "bearer", "BEARER"):
        r = send(
            hardened,
            "/growth/predict_prob",
            {"run_id": RUN_ID, "targets": targets},
            headers={"Authorization": f"{scheme} {TOKEN}"},
        )
        assert r.status_code == 404, (scheme, r.text)  # past the token: the run is unknown
    for wrong in (f"Basic {TOKEN}", f"bearer {TOKEN}x", TOKEN):
        r = send(
            hardened, "/growth/predict_prob", {"run_id": RUN_ID, "targets": targets}, headers={"Authorization": wrong}
        )
        assert r.status_code == 401, (wrong, r.text)


def test_a_full_queue_says_when_to_retry(hardened):
    r = send(hardened, "/growth/fit", {"data": OK_DATA})
    assert r.status_code == 503 and r.json()["status"] == 503, r.text
    assert int(r.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("POST", "/health", "GET"),
        ("PUT", "/health", "GET"),
        ("DELETE", "/health", "GET"),
        ("OPTIONS", "/health", "GET"),
        ("PATCH", "/health", "GET"),
        ("GET", "/growth/fit", "POST"),
        ("PUT", "/growth/predict_prob", "POST"),
    ],
)
def test_other_methods_are_405_with_an_error_body(hardened, method, path, allowed):
    r = httpx.request(method, f"{hardened.url}{path}", headers=AUTH, timeout=30)
    assert r.status_code == 405, r.text
    assert r.headers["Allow"] == allowed
    assert r.json()["status"] == 405 and method in r.json()["error"]


def test_openapi_describes_bodies_responses_and_errors(hardened):
    spec = httpx.get(f"{hardened.url}/openapi.json", timeout=30).json()
    assert spec["openapi"].startswith("3.")
    operations = {(path, method): op for path, item in spec["paths"].items() for method, op in item.items()}
    assert set(operations) == {("/health", "get"), ("/growth/fit", "post"), ("/growth/predict_prob", "post")}
    for (path, method), op in operations.items():
        assert "200" in op["responses"], path
        for status, response in op["responses"].items():
            schema = response["content"]["application/json"]["schema"]
            if status != "200":
                assert schema == {"$ref": "#/components/schemas/Error"}, (path, status)
        if method == "post":
            assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"], path
            assert {"400", "401", "413", "500", "503"} <= set(op["responses"]), path
    # an actual error answer matches the documented error object
    error_schema = spec["components"]["schemas"]["Error"]
    jsonschema.validate(send(hardened, "/growth/fit", {"data": []}).json(), error_schema)
    assert error_schema["properties"]["status"]["type"] == "integer"


def _tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def test_a_large_body_does_not_block_health_and_memory_comes_back(hardened):
    """~50 MB (1.4 M rows of one student): /health answers within 1 s throughout; the service's process does
    not keep the body's memory (it is parsed in a separate process, replaced afterwards)."""
    rows = ",".join(['{"student":"s","week":1,"score":0.5}'] * 1_400_000)
    content = f'{{"data":[{rows}]}}'.encode()
    pid = hardened.process.pid
    main_before, tree_before = psutil.Process(pid).memory_info().rss, _tree_rss(pid)
    result: dict = {}
    poster = threading.Thread(target=lambda: result.update(r=send(hardened, "/growth/fit", content=content)))
    poster.start()
    slowest = 0.0
    while poster.is_alive():
        t0 = time.monotonic()
        assert httpx.get(f"{hardened.url}/health", timeout=10).status_code == 200
        slowest = max(slowest, time.monotonic() - t0)
        time.sleep(0.1)
    poster.join()
    assert result["r"].status_code == 400 and result["r"].json()["status"] == 400, result["r"].text
    assert slowest < 1.0, f"/health took {slowest:.2f} s while a 50 MB body was handled"
    time.sleep(5)  # the parser process is replaced, the service collects its garbage
    main_growth = psutil.Process(pid).memory_info().rss - main_before
    tree_growth = _tree_rss(pid) - tree_before
    print(
        f"\n/health slowest {slowest:.2f} s; memory growth: service {main_growth / 2**20:.0f} MB, "
        f"process tree {tree_growth / 2**20:.0f} MB"
    )
    assert main_growth < 200 * 2**20
    assert tree_growth < 400 * 2**20
