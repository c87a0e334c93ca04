"""Issue 13: the plumber client over Arrow IPC (/tmp/arrow-contract.md), with a fake transport: what it
sends, how it reads Arrow and JSON answers into the same validated frames, the JSON fallback on 415, and
the answers it refuses."""

import json
import logging

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from seed_growth.resources.plumber import ARROW_STREAM, STUDENT_COLUMNS, PlumberError, _arrow_stream
from seed_growth_tests.test_plumber_resource import FIT, SCORES, fit, plumber

FIT_METADATA = {k: v for k, v in FIT.items() if k != "students"}
TARGETS = pd.DataFrame({"student": ["a", "b"], "target_week": [11, 11], "goal": [0.8, 0.75]})
PROBABILITIES = [
    {"student": "a", "target_week": 11, "goal": 0.8, "p": 0.4, "seen": True},
    {"student": "b", "target_week": 11, "goal": 0.75, "p": 0.9, "seen": False},
]
PREDICT_METADATA = {"run_id": "r1", "method": "rao_blackwell", "predictive": False}


def arrow_answer(rows: pa.Table | list[dict], metadata: dict | None, status: int = 200) -> httpx.Response:
    """The service's Arrow answer: the rows as a table, the rest as JSON in the schema metadata."""
    table = pa.Table.from_pylist(rows) if isinstance(rows, list) else rows
    if metadata is not None:
        table = table.replace_schema_metadata({"growth_response": json.dumps(metadata)})
    return httpx.Response(status, content=_arrow_stream(table).to_pybytes(), headers={"Content-Type": ARROW_STREAM})


def students_table(**changes) -> pa.Table:
    """FIT's students as the service's Arrow table (student dictionary-encoded, n_weeks int32), with
    columns replaced (a list) or dropped (None)."""
    table = pa.Table.from_pylist(FIT["students"])
    table = table.set_column(0, "student", table["student"].dictionary_encode())
    table = table.set_column(6, "n_weeks", table["n_weeks"].cast(pa.int32()))
    for name, values in changes.items():
        index = table.schema.get_field_index(name)
        table = table.remove_column(index) if values is None else table.set_column(index, name, pa.array(values))
    return table


def request_table(request: httpx.Request) -> pa.Table:
    with pa.ipc.open_stream(request.content) as reader:
        return reader.read_all()


def test_a_collapsed_fit_sends_an_arrow_stream_with_settings_in_the_query():
    client = plumber(arrow_answer(students_table(), FIT_METADATA))
    client.fit(SCORES, iter=1000, chains=2, family="gaussian", engine="collapsed", seed=7, observation_model="attempts")
    (request,) = client._requests
    assert request.headers["Content-Type"] == ARROW_STREAM and request.headers["Accept"] == ARROW_STREAM
    assert dict(request.url.params) == {
        "engine": "collapsed",
        "family": "gaussian",
        "iter": "1000",
        "chains": "2",
        "seed": "7",
        "observation_model": "attempts",
    }
    sent = request_table(request)
    assert sent.schema.names == ["student", "week", "score", "n"]
    assert sent.schema.types == [pa.dictionary(pa.int32(), pa.string()), pa.int32(), pa.float64(), pa.int32()]
    assert sent.to_pydict() == {
        "student": ["a", "a", "b"],
        "week": [0, 1, 0],
        "score": [0.5, 0.6, 0.4],
        "n": [10, 8, 5],
    }


@pytest.mark.parametrize("engine, transport", [("brms", "arrow"), ("collapsed", "json")])
def test_brms_fits_and_the_json_transport_send_json(engine, transport):
    client = plumber(httpx.Response(200, json=FIT), transport=transport)
    client.fit(SCORES, iter=1000, chains=2, family="gaussian", engine=engine, seed=1)
    (request,) = client._requests
    assert request.headers["Content-Type"] == "application/json" and not request.url.params
    assert json.loads(request.content)["data"]["student"] == ["a", "a", "b"]


def test_arrow_and_json_answers_give_the_same_validated_frame():
    from_arrow = fit(plumber(arrow_answer(students_table(), FIT_METADATA)))
    from_json = fit(plumber(httpx.Response(200, json=FIT), transport="json"))
    for answer in (from_arrow, from_json):
        assert answer.run_id == "r1" and answer.model.n_students == 2 and answer.posterior_summary.week.q97_5 == 0.014
    frame = from_arrow.students_frame()
    pd.testing.assert_frame_equal(frame, from_json.students_frame())
    assert list(frame.columns) == [column.name for column in STUDENT_COLUMNS] == list(FIT["students"][0])
    assert frame["student"].tolist() == ["a", "b"] and frame["n_weeks"].dtype == np.int64
    assert frame["cor"].tolist() == [-0.2, -0.2]


def test_a_service_refusing_arrow_is_asked_again_in_json_with_a_warning(caplog):
    refused = httpx.Response(415, json={"error": "Content-Type must be application/json"})
    client = plumber(refused, httpx.Response(200, json=FIT))
    with caplog.at_level(logging.WARNING):
        assert fit(client).students_frame()["student"].tolist() == ["a", "b"]
    arrow, retry = client._requests
    assert arrow.headers["Content-Type"] == ARROW_STREAM
    assert retry.headers["Content-Type"] == "application/json" and json.loads(retry.content)["engine"] == "collapsed"
    assert any(
        "/growth/fit refused an Arrow body (415: Content-Type must be application/json); sending JSON" in r.message
        for r in caplog.records
    )


def test_a_second_415_is_an_error_not_a_loop():
    refused = httpx.Response(415, json={"error": "unsupported"})
    client = plumber(refused, refused)
    with pytest.raises(PlumberError, match="answered 415: unsupported"):
        fit(client)
    assert len(client._requests) == 2


@pytest.mark.parametrize(
    "answer, message",
    [
        (arrow_answer(students_table(), None), "no 'growth_response' schema metadata"),
        (arrow_answer(students_table(cor=None), FIT_METADATA), "at students: no column 'cor'"),
        (
            arrow_answer(students_table(slope_mean=[0.01, float("nan")]), FIT_METADATA),
            r"students\.slope_mean: 1 of 2 rows are not finite numbers",
        ),
        (
            arrow_answer(students_table(intercept_sd=[-0.1, -0.2]), FIT_METADATA),
            r"students\.intercept_sd: 2 of 2 rows are not finite numbers >= 0",
        ),
        (
            arrow_answer(students_table(cor=[0.5, 1.5]), FIT_METADATA),
            r"students\.cor: 1 of 2 rows are not finite numbers >= -1 <= 1",
        ),
        (
            arrow_answer(students_table(n_weeks=[2.0, 2.5]), FIT_METADATA),
            r"students\.n_weeks: 1 of 2 rows are not integers >= 0",
        ),
        (
            arrow_answer(students_table(student=["a", None]), FIT_METADATA),
            r"students\.student: 1 of 2 rows are not strings",
        ),
        (
            arrow_answer(students_table(student=["a", "a"]), FIT_METADATA),
            r"students\.student: 1 repeated values, e\.g\. 'a'",
        ),
        (
            arrow_answer(students_table(), {**FIT_METADATA, "run_id": ""}),
            "breaks the contract at run_id",
        ),
        (
            arrow_answer(students_table(), {k: v for k, v in FIT_METADATA.items() if k != "diagnostics"}),
            "breaks the contract at diagnostics",
        ),
        (
            httpx.Response(200, content=b"not arrow", headers={"Content-Type": ARROW_STREAM}),
            "not an Arrow IPC stream",
        ),
        (
            httpx.Response(
                200,
                content=_arrow_stream(
                    students_table().replace_schema_metadata({"growth_response": "{oops"})
                ).to_pybytes(),
                headers={"Content-Type": ARROW_STREAM},
            ),
            "growth_response metadata is not JSON",
        ),
    ],
)
def test_arrow_answers_that_break_the_contract_are_refused_naming_what(answer, message):
    with pytest.raises(PlumberError, match=message):
        fit(plumber(answer))


def test_json_answers_are_validated_the_same_way():
    students = [FIT["students"][0], {**FIT["students"][1], "slope_sd": None}]
    with pytest.raises(PlumberError, match=r"students\.slope_sd: 1 of 2 rows are not finite numbers >= 0"):
        fit(plumber(httpx.Response(200, json={**FIT, "students": students})))
    with pytest.raises(PlumberError, match="at students: not a list of objects"):
        fit(plumber(httpx.Response(200, json={**FIT, "students": "all of them"})))


@pytest.mark.parametrize(
    "status, error",
    [(400, "week must be an integer in 0..520: row 3"), (413, "request body over 256 MB"), (404, "no such run")],
)
def test_errors_of_arrow_requests_are_json_and_carry_their_message(status, error):
    with pytest.raises(PlumberError, match=f"/growth/fit answered {status}: {error}"):
        fit(plumber(httpx.Response(status, json={"error": error, "status": status})))


def test_predict_prob_sends_arrow_and_reads_the_answer_in_the_targets_order():
    client = plumber(arrow_answer(PROBABILITIES, PREDICT_METADATA))
    answer = client.predict_prob("r1", TARGETS.assign(n=[10, 3]))
    (request,) = client._requests
    assert request.headers["Content-Type"] == ARROW_STREAM and request.headers["Accept"] == ARROW_STREAM
    assert dict(request.url.params) == {"run_id": "r1", "predictive": "false"}
    sent = request_table(request)
    assert sent.schema.names == ["student", "target_week", "goal", "n"]
    assert sent.to_pydict() == {"student": ["a", "b"], "target_week": [11, 11], "goal": [0.8, 0.75], "n": [10, 3]}
    assert answer.method == "rao_blackwell" and answer.run_id == "r1"
    frame = answer.probabilities_frame()
    assert frame.to_dict(orient="list") == {
        "student": ["a", "b"],
        "target_week": [11.0, 11.0],
        "goal": [0.8, 0.75],
        "p": [0.4, 0.9],
        "seen": [True, False],
    }
    json_frame = plumber(httpx.Response(200, json={**PREDICT_METADATA, "probabilities": PROBABILITIES})).predict_prob(
        "r1", TARGETS
    )
    pd.testing.assert_frame_equal(json_frame.probabilities_frame(), frame)


@pytest.mark.parametrize(
    "rows, metadata, message",
    [
        (PROBABILITIES[::-1], PREDICT_METADATA, r"2 probabilities for other students.*row 0: 'b' for 'a'"),
        (PROBABILITIES[:1], PREDICT_METADATA, "1 probabilities for 2 students"),
        ([PROBABILITIES[0], {**PROBABILITIES[1], "p": float("nan")}], PREDICT_METADATA, r"probabilities\.p: 1 of 2"),
        (PROBABILITIES, {**PREDICT_METADATA, "predictive": True}, "asked for predictive=False"),
    ],
)
def test_predict_answers_that_break_the_contract_are_refused(rows, metadata, message):
    with pytest.raises(PlumberError, match=message):
        plumber(arrow_answer(rows, metadata)).predict_prob("r1", TARGETS)


def test_seen_defaults_to_true_in_json_answers():
    rows = [{k: v for k, v in row.items() if k != "seen"} for row in PROBABILITIES]
    answer = plumber(httpx.Response(200, json={**PREDICT_METADATA, "probabilities": rows})).predict_prob("r1", TARGETS)
    assert answer.probabilities_frame()["seen"].tolist() == [True, True]


def test_check_token_stays_json():
    client = plumber(httpx.Response(400, json={"error": "targets must not be empty"}))
    client.check_token()
    assert client._requests[0].headers["Content-Type"] == "application/json"
