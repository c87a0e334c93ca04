"""Arrow bodies through the real service (docs/growth-api.md, "Arrow bodies"): the same fit and the same P
as JSON, to the bit; settings in the query string, validated; errors as JSON; the engine process restarted
when it dies or runs past its timeout; an Arrow body over its own limit is a 413."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import time

import httpx
import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from growth_engine.predict import predict_columns
from growth_engine.state import load_state
from seed_growth_tests.support.plumber_service import PlumberService, post, service_with
from seed_growth_tests.support.simulation import simulate_growth

pytestmark = pytest.mark.service

ARROW = "application/vnd.apache.arrow.stream"


def arrow_bytes(columns: dict) -> bytes:
    table = pa.table(columns)
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def read_answer(response: httpx.Response) -> tuple[pa.Table, dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == ARROW
    table = ipc.open_stream(response.content).read_all()
    return table, json.loads(table.schema.metadata[b"growth_response"])


def send_arrow(url: str, path: str, columns: dict | bytes, params: dict, accept: str = ARROW) -> httpx.Response:
    content = columns if isinstance(columns, bytes) else arrow_bytes(columns)
    headers = {"Content-Type": ARROW, "Accept": accept}
    return httpx.post(f"{url}{path}", params=params, content=content, headers=headers, timeout=600)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return pd.DataFrame(simulate_growth(n_students=120, n_weeks=8, seed=31).data)


@pytest.fixture(scope="module")
def columns(rows: pd.DataFrame) -> dict:
    return {"student": pa.array(rows["student"]).dictionary_encode(), "week": pa.array(rows["week"], pa.int32()),
            "score": pa.array(rows["score"], pa.float64()), "n": pa.array(rows["n"], pa.int32())}  # fmt: skip


SETTINGS = {"engine": "collapsed", "iter": 600, "chains": 2, "seed": 17}


@pytest.fixture(scope="module")
def arrow_fit(plumber_url: str, columns: dict) -> tuple[pa.Table, dict]:
    return read_answer(send_arrow(plumber_url, "/growth/fit", columns, SETTINGS))


def test_an_arrow_fit_is_the_json_fit_to_the_bit(plumber_url, rows, arrow_fit):
    table, meta = arrow_fit
    body = {"data": {k: rows[k].tolist() for k in ("student", "week", "score", "n")}, **SETTINGS}
    answer = post(plumber_url, "/growth/fit", body)
    assert answer.status_code == 200, answer.text
    by_json = answer.json()
    assert meta["engine"] == "collapsed" and meta["run_id"] != by_json["run_id"]
    assert meta["posterior_summary"] == by_json["posterior_summary"]
    timings = {"laplace_seconds", "chain_compile_seconds", "compilation_cache"}
    for model in (meta["model"], by_json["model"]):
        model["engine_details"] = {k: v for k, v in model["engine_details"].items() if k not in timings}
    assert meta["model"] == by_json["model"]
    students = {s["student"]: s for s in by_json["students"]}
    assert table.num_rows == len(students) == 120
    for row in table.to_pylist():
        assert row == students[row["student"]]


def test_arrow_predictions_equal_the_engine_in_process(plumber_service, arrow_fit, rows):
    _, meta = arrow_fit
    students = [*rows["student"].unique()[:30], "never-seen"]
    targets = {"student": students, "target_week": np.full(31, 11.0), "goal": np.linspace(0.3, 0.9, 31)}
    for predictive in (False, True):
        params = {"run_id": meta["run_id"], "predictive": str(predictive).lower()}
        table, head = read_answer(send_arrow(plumber_service.url, "/growth/predict_prob", targets, params))
        assert head == {"run_id": meta["run_id"], "method": "rao_blackwell", "predictive": predictive}
        state = load_state(plumber_service.fits_dir / meta["run_id"] / "engine" / "state.npz")
        p, seen = predict_columns(state, students, targets["target_week"], targets["goal"], predictive=predictive)
        assert table.column("p").to_pylist() == p.tolist()  # to the bit
        assert table.column("student").to_pylist() == students and table.column("seen").to_pylist() == seen.tolist()
    one = {"run_id": meta["run_id"], "targets": [{"student": students[0], "target_week": 11, "goal": 0.3}]}
    as_json = post(plumber_service.url, "/growth/predict_prob", one)
    assert as_json.status_code == 200 and as_json.json()["probabilities"][0]["p"] == table.column("p")[0].as_py()


def test_json_answers_to_arrow_bodies_when_asked(plumber_url, columns):
    answer = send_arrow(plumber_url, "/growth/fit", columns, SETTINGS, accept="application/json")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    assert len(answer.json()["students"]) == 120


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"engine": "brms"}, 415, "send application/json for engine 'brms'"),
        ({"iter": "many"}, 400, "iter must be an integer"),
        ({"iter": "5"}, 400, "iter must be between 200 and 20000 (got 5)"),
        ({"chains": "2", "color": "red"}, 400, "unknown field in the query string: color"),
        ({"observation_model": "fancy"}, 400, "observation_model"),
        ({"family": "binomial"}, 400, "engine 'collapsed' fits only family 'gaussian'"),
    ],
)
def test_bad_query_settings_are_refused_before_fitting(plumber_url, columns, params, status, message):
    answer = send_arrow(plumber_url, "/growth/fit", columns, params)
    assert answer.status_code == status and message in answer.json()["error"], answer.text
    assert answer.headers["content-type"].startswith("application/json")


def test_bad_arrow_bodies_are_400_naming_the_problem(plumber_url, columns):
    junk = send_arrow(plumber_url, "/growth/fit", b"not arrow at all", {})
    assert junk.status_code == 400 and "not an Arrow IPC stream" in junk.json()["error"]
    no_score = send_arrow(plumber_url, "/growth/fit", {k: v for k, v in columns.items() if k != "score"}, {})
    assert no_score.status_code == 400 and "data.score is missing" in no_score.json()["error"]
    twice = {k: pa.concat_arrays([v, v]) for k, v in columns.items()}
    repeated = send_arrow(plumber_url, "/growth/fit", twice, {})
    assert repeated.status_code == 400 and "repeated (student, week) row" in repeated.json()["error"]


def test_other_content_types_and_misplaced_settings_are_refused(plumber_url, arrow_fit):
    csv = httpx.post(f"{plumber_url}/growth/fit", content=b"a,b", headers={"Content-Type": "text/csv"}, timeout=30)
    assert csv.status_code == 415 and ARROW in csv.json()["error"]
    query_with_json = httpx.post(f"{plumber_url}/growth/fit", params={"iter": 400}, json={"data": []}, timeout=30)
    assert query_with_json.status_code == 400 and "query string (iter)" in query_with_json.json()["error"]
    targets = {"student": ["a"], "target_week": [1.0], "goal": [0.5]}
    no_run = send_arrow(plumber_url, "/growth/predict_prob", targets, {})
    assert no_run.status_code == 400 and "run_id is missing" in no_run.json()["error"]
    unknown = send_arrow(plumber_url, "/growth/predict_prob", targets, {"run_id": "0" * 32})
    assert unknown.status_code == 404


def engine_process(service: PlumberService) -> psutil.Process:
    deadline = time.monotonic() + 120
    while True:
        for child in psutil.Process(service.process.pid).children(recursive=True):
            try:
                if "growth_engine" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                    return child
            except psutil.Error:
                pass
        assert time.monotonic() < deadline, "no engine process"
        time.sleep(0.5)


def test_a_killed_engine_is_started_again_and_the_next_fit_succeeds(plumber_service, columns):
    first = engine_process(plumber_service)
    os.kill(first.pid, signal.SIGKILL)
    answer = send_arrow(plumber_service.url, "/growth/fit", columns, SETTINGS)
    table, _ = read_answer(answer)
    assert table.num_rows == 120 and engine_process(plumber_service).pid != first.pid
    deadline = time.monotonic() + 30  # /health looks again every few seconds
    while "running" not in httpx.get(f"{plumber_service.url}/health", timeout=10).json()["engine_status"]["collapsed"]:
        assert time.monotonic() < deadline, "/health does not report the new engine"
        time.sleep(1)


@pytest.fixture(scope="module")
def limited_service(tmp_path_factory):
    """Engine timeout 4 s, Arrow bodies up to 1 MB."""
    fits_dir = tmp_path_factory.mktemp("limited-fits")
    yield from service_with(fits_dir, GROWTH_ENGINE_TIMEOUT_SECONDS="4", BRMS_MAX_ARROW_BODY_MB="1")


def test_a_fit_past_the_engine_timeout_is_500_and_the_engine_is_replaced(limited_service):
    data = pd.DataFrame(simulate_growth(n_students=300, n_weeks=10, seed=9).data)
    columns = {k: data[k].to_numpy() for k in ("student", "week", "score", "n")}
    first = engine_process(limited_service)
    answer = send_arrow(limited_service.url, "/growth/fit", columns, {"iter": 20000, "chains": 4})
    assert answer.status_code == 500 and "did not finish within 4 s" in answer.json()["error"], answer.text
    deadline = time.monotonic() + 60
    while engine_process(limited_service).pid == first.pid:
        assert time.monotonic() < deadline, "the timed-out engine was not replaced"
        time.sleep(1)
    assert not [f for f in os.listdir(limited_service.fits_dir) if not f.startswith(".")]  # nothing stored


def test_an_arrow_body_over_its_limit_is_413(limited_service):
    big = {"student": np.arange(100_000), "week": np.zeros(100_000), "score": np.zeros(100_000)}
    try:
        answer = send_arrow(limited_service.url, "/growth/fit", big, {})
        assert answer.status_code == 413 and "BRMS_MAX_ARROW_BODY_MB" in answer.json()["error"]
    except httpx.TransportError:
        pass  # closed while the client still sent; the exact check is below
    with socket.create_connection(("127.0.0.1", limited_service.port), timeout=10) as s:
        s.sendall(f"POST /growth/fit HTTP/1.1\r\nHost: x\r\nContent-Type: {ARROW}\r\n"
                  "Content-Length: 5000000\r\n\r\n".encode())  # fmt: skip
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
    head, _, payload = answer.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 413"), head
    assert json.loads(payload)["error"] == "request body too large: the limit is 1 MB (BRMS_MAX_ARROW_BODY_MB)"
