"""The r-brms-plumber fitting service, as a Dagster resource wrapping an httpx client.

Fits take minutes, so the read timeout is long; connection errors and 5xx answers are retried with
exponential backoff (never 4xx: the request itself is wrong and would fail again), and every retry is
logged as a warning in the run. A 401 or 403 is a configuration error (BRMS_PLUMBER_TOKEN), raised as
:class:`PlumberAuthError`, which is not a :class:`PlumberError`: callers that fall back when the service is
down must not fall back on a wrong token. Every answer is validated against the contract
(docs/growth-api.md) before anyone uses it; every message is redacted of secrets.

Transport (issue 13): collapsed-engine fits and predict_prob send an Arrow IPC stream (settings in the
query string) and ask for one back, whose table is the per-student rows and whose schema metadata
``growth_response`` the rest of the answer; a service that refuses Arrow (415) is asked again in JSON.
Either way the per-student rows become one pandas frame, validated column by column, never an object per
student. ``transport='json'`` always sends JSON.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import tenacity
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from seed_growth.resources.redaction import redact

TOKEN_VARIABLE = "BRMS_PLUMBER_TOKEN"
# the start-up check's request: a route behind the token, with a body the service refuses (400/404)
TOKEN_CHECK_ENDPOINT = "/growth/predict_prob"
TOKEN_CHECK_BODY: dict[str, Any] = {"run_id": "seed-growth-token-check", "targets": []}

#: the Arrow IPC stream media type of the fast transport (/tmp/arrow-contract.md, docs/growth-api.md)
ARROW_STREAM = "application/vnd.apache.arrow.stream"
#: the schema metadata key of an Arrow answer holding the JSON of everything but its table
ARROW_METADATA_KEY = b"growth_response"


class PlumberError(RuntimeError):
    """The service answered with an error, or with a body that breaks the contract."""

    def __init__(self, endpoint: str, message: str, status: int | None = None):
        self.endpoint, self.status, self.message = endpoint, status, message
        where = f"{endpoint} answered {status}" if status is not None else endpoint
        super().__init__(redact(f"r-brms-plumber {where}: {message}"))


class PlumberUnavailable(PlumberError):
    """The service could not be reached (connection refused, timed out, or 5xx after retries)."""


class PlumberAuthError(RuntimeError):
    """The service refused the bearer token (401/403): BRMS_PLUMBER_TOKEN is unset or wrong. A
    configuration error, not an outage, so deliberately not a :class:`PlumberError`."""

    def __init__(self, endpoint: str, status: int, message: str, *, token_sent: bool):
        self.endpoint, self.status = endpoint, status
        what = "is wrong" if token_sent else "is not set, but the service requires one"
        super().__init__(redact(f"{TOKEN_VARIABLE} {what}: r-brms-plumber {endpoint} answered {status} ({message})"))


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Estimate(_Lenient):
    estimate: float
    error: float
    q2_5: float = Field(alias="q2.5")
    q97_5: float = Field(alias="q97.5")


class PosteriorSummary(_Lenient):
    Intercept: Estimate
    week: Estimate
    sd_Intercept: Estimate
    sd_week: Estimate
    cor_Intercept_week: Estimate
    sigma: Estimate | None = None


class Diagnostics(_Lenient):
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergent_transitions: int = Field(ge=0)
    max_treedepth_hits: int = Field(ge=0)
    sampling_seconds: float = Field(ge=0)
    compile_seconds: float = 0.0
    total_seconds: float | None = None
    parameters: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)  # the service's, e.g. too few draws for the cohort


class FitModel(_Lenient):
    formula: str
    family: str
    link: str
    iter: int
    chains: int
    week_center: float
    n_students: int
    n_rows: int


@dataclasses.dataclass(frozen=True)
class AnswerColumn:
    """A column of an answer's table and the values the contract allows in it."""

    name: str
    kind: Literal["text", "number", "integer", "bool"]
    low: float | None = None
    high: float | None = None
    missing: bool | None = None  # the value of a missing bool (None: required)

    def describe(self) -> str:
        what = {"text": "strings", "number": "finite numbers", "integer": "integers", "bool": "true or false"}
        bounds = [f">= {self.low:g}"] if self.low is not None else []
        bounds += [f"<= {self.high:g}"] if self.high is not None else []
        return " ".join([what[self.kind], *bounds])


#: /growth/fit's per-student summaries (JSON ``students``, or the Arrow answer's table)
STUDENT_COLUMNS = (
    AnswerColumn("student", "text"),
    AnswerColumn("intercept_mean", "number"),
    AnswerColumn("intercept_sd", "number", low=0),
    AnswerColumn("slope_mean", "number"),
    AnswerColumn("slope_sd", "number", low=0),
    AnswerColumn("cor", "number", low=-1, high=1),
    AnswerColumn("n_weeks", "integer", low=0),
)
#: /growth/predict_prob's probabilities, one per target in the targets' order
PROBABILITY_COLUMNS = (
    AnswerColumn("student", "text"),
    AnswerColumn("target_week", "number"),
    AnswerColumn("goal", "number"),
    AnswerColumn("p", "number", low=0, high=1),
    AnswerColumn("seen", "bool", missing=True),
)


class FitResponse(_Lenient):
    """A fit's metadata, validated field by field; its per-student summaries as one validated frame
    (a million students are not a million objects)."""

    run_id: str = Field(min_length=1)
    engine: str
    fitted_at: str | None = None
    model: FitModel
    posterior_summary: PosteriorSummary
    diagnostics: Diagnostics
    _students: pd.DataFrame = PrivateAttr()

    @classmethod
    def of(cls, metadata: Any, students: pd.DataFrame, endpoint: str) -> FitResponse:
        """The answer from its metadata and its per-student rows (JSON or Arrow), both validated."""
        fit = _validated(cls, metadata, endpoint)
        fit._students = _validated_frame(students, STUDENT_COLUMNS, "students", endpoint, unique="student")
        return fit

    def students_frame(self) -> pd.DataFrame:
        """Columns student, intercept_mean, intercept_sd, slope_mean, slope_sd, cor, n_weeks."""
        return self._students


class PredictResponse(_Lenient):
    run_id: str
    method: str = "posterior_draws"
    predictive: bool = False
    _probabilities: pd.DataFrame = PrivateAttr()

    @classmethod
    def of(cls, metadata: Any, probabilities: pd.DataFrame, endpoint: str) -> PredictResponse:
        answer = _validated(cls, metadata, endpoint)
        answer._probabilities = _validated_frame(probabilities, PROBABILITY_COLUMNS, "probabilities", endpoint)
        return answer

    def probabilities_frame(self) -> pd.DataFrame:
        """Columns student, target_week, goal, p, seen: one row per target, in the targets' order."""
        return self._probabilities


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code >= 500


def _is_auth_status(status: int) -> bool:
    return status in (401, 403)


def retry_warning(endpoint: str, exc: BaseException | None, attempt: int, max_attempts: int, wait_s: float) -> str:
    """The run's warning before a retry: what went wrong (status or connection error), which attempt."""
    if isinstance(exc, httpx.HTTPStatusError):
        what = f"answered {exc.response.status_code} ({_error_message(exc.response)})"
    else:
        what = f"could not be reached ({type(exc).__name__}: {exc})"
    return redact(
        f"r-brms-plumber {endpoint} {what} on attempt {attempt} of {max_attempts}; retrying in {wait_s:.1f} s"
    )


def _run_logger() -> logging.Logger:
    """The run's logger inside a Dagster run (its messages are events of the run), a plain one elsewhere."""
    return dg.get_dagster_logger("seed_growth.plumber")


class PlumberResource(dg.ConfigurableResource):
    """Client of r-brms-plumber (``BRMS_PLUMBER_URL``, optional bearer ``BRMS_PLUMBER_TOKEN``)."""

    base_url: str = Field(description="base URL of r-brms-plumber, e.g. http://127.0.0.1:8000")
    token: str | None = Field(
        default=None,
        description="bearer token the service expects; unset: BRMS_PLUMBER_TOKEN from the run's environment, if any",
    )
    connect_timeout_s: float = Field(default=10.0)
    read_timeout_s: float = Field(default=3600.0, description="a fit of a large cohort takes minutes")
    max_attempts: int = Field(default=4, ge=1, description="tries per call on connection errors and 5xx")
    backoff_initial_s: float = Field(default=2.0, ge=0)
    transport: Literal["arrow", "json"] = Field(
        default="arrow",
        description="'arrow': collapsed-engine fits and predict_prob go as Arrow IPC streams (JSON when the "
        "service answers 415); 'json': always JSON",
    )

    def _token(self) -> str | None:
        # read at run time (not an EnvVar field) because the token is optional and EnvVar must be set
        return self.token or os.environ.get(TOKEN_VARIABLE) or None

    def _client(self) -> httpx.Client:
        """A fresh client per call; tests of failure handling override this with a fake transport."""
        token = self._token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        timeout = httpx.Timeout(self.read_timeout_s, connect=self.connect_timeout_s)
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def _send(
        self,
        method: str,
        endpoint: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        content: bytes | list[bytes] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The service's successful answer to one request (a JSON body, or ``content`` with its
        Content-Type in ``headers``), after the retries; errors raised as PlumberError & co."""

        def warn(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait_s = state.next_action.sleep if state.next_action else 0.0
            _run_logger().warning(retry_warning(endpoint, exc, state.attempt_number, self.max_attempts, wait_s))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_exponential(multiplier=self.backoff_initial_s, max=60),
            before_sleep=warn,
            reraise=True,
        )
        try:
            with self._client() as client:
                for attempt in retrying:
                    with attempt:
                        response = client.request(
                            method, endpoint, json=json_body, content=content, params=params, headers=headers
                        )
                        response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            if _is_auth_status(status):
                message = _error_message(exc.response)
                raise PlumberAuthError(endpoint, status, message, token_sent=self._token() is not None) from None
            error = PlumberUnavailable if status >= 500 else PlumberError
            raise error(endpoint, _error_message(exc.response), status) from None
        except httpx.TransportError as exc:
            raise PlumberUnavailable(
                endpoint, f"cannot reach {self.base_url} after {self.max_attempts} tries: {exc!r}"
            ) from None
        return response

    def _call(self, method: str, endpoint: str, body: dict[str, Any] | None = None) -> Any:
        return _json_of(self._send(method, endpoint, json_body=body), endpoint)

    def _post_table(
        self,
        endpoint: str,
        table: pa.Table | None,
        params: Mapping[str, str],
        json_body: Callable[[], dict[str, Any]],
    ) -> httpx.Response:
        """POST ``table`` as an Arrow stream with the settings in the query string, asking for an Arrow
        answer; or the JSON body when ``table`` is None, or when the service refuses Arrow (415: a
        service older than the Arrow transport), then with a warning. ``json_body`` is built only then."""
        if table is not None:
            stream = _arrow_stream(table)
            headers = {"Content-Type": ARROW_STREAM, "Accept": ARROW_STREAM, "Content-Length": str(stream.size)}
            try:
                return self._send("POST", endpoint, content=_pieces(stream), params=params, headers=headers)
            except PlumberError as exc:
                if exc.status != 415:
                    raise
                _run_logger().warning(
                    redact(f"r-brms-plumber {endpoint} refused an Arrow body (415: {exc.message}); sending JSON")
                )
        return self._send("POST", endpoint, json_body=json_body())

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def check_token(self) -> None:
        """Raise :class:`PlumberAuthError` if the service refuses our bearer token (``/health`` does not
        need one, so this asks a route that does, with a body it refuses without side effects: any other
        4xx means the token was accepted); :class:`PlumberUnavailable` if it cannot be asked."""
        try:
            self._call("POST", TOKEN_CHECK_ENDPOINT, TOKEN_CHECK_BODY)
        except PlumberUnavailable:
            raise
        except PlumberError:
            return  # 400/404: past the token filter, the body was refused as intended

    def fit(
        self,
        scores: pd.DataFrame | pa.Table,
        *,
        iter: int,
        chains: int,
        family: str,
        engine: str,
        seed: int | None = None,
        observation_model: str | None = None,
    ) -> FitResponse:
        """Fit the growth model to ``scores`` (columns student, week, score, n_attempts; a frame or an Arrow
        table, which at a million students is a few hundred MB where a frame is gigabytes). The collapsed
        engine's data go as an Arrow stream (unless ``transport`` is 'json'); the brms engine's as columnar
        JSON (at 100k students a row per object triples the body). ``observation_model``: the gaussian
        model's ('attempts' or 'plain'; None: the service's default for the data)."""
        settings: dict[str, Any] = {
            "engine": engine,
            "family": family,
            "iter": iter,
            "chains": chains,
            **({"seed": seed} if seed is not None else {}),
            **({"observation_model": observation_model} if observation_model else {}),
        }

        rows = _fit_rows(scores)

        def json_body() -> dict[str, Any]:
            data = {name: rows.column(column).to_pylist() for name, column in _JSON_FIT_COLUMNS.items()}
            return {"data": data, "seed": seed, **settings}

        endpoint = "/growth/fit"
        table = _scores_table(rows) if self.transport == "arrow" and engine == "collapsed" else None
        response = self._post_table(endpoint, table, _query(settings), json_body)
        return FitResponse.of(*_answer(response, endpoint, "students"), endpoint)

    def predict_prob(self, run_id: str, targets: pd.DataFrame, *, predictive: bool = False) -> PredictResponse:
        """P(expected score at target_week >= goal) per row of ``targets`` (student, target_week, goal);
        with ``predictive``, P(observed score that week >= goal), given the week's attempts (column n).
        The answer's ``probabilities_frame()`` has one row per target, in the targets' order."""
        has_n = "n" in targets

        def json_body() -> dict[str, Any]:
            columns = ["student", "target_week", "goal"] + (["n"] if has_n else [])
            rows = targets[columns].to_dict(orient="records")
            body_targets = [
                {
                    "student": str(r["student"]),
                    "target_week": int(r["target_week"]),
                    "goal": float(r["goal"]),
                    **({"n": int(r["n"])} if has_n else {}),
                }
                for r in rows
            ]
            return {"run_id": run_id, "predictive": predictive, "targets": body_targets}

        endpoint = "/growth/predict_prob"
        table = _targets_table(targets) if self.transport == "arrow" else None
        params = _query({"run_id": run_id, "predictive": predictive})
        response = self._post_table(endpoint, table, params, json_body)
        answer = PredictResponse.of(*_answer(response, endpoint, "probabilities"), endpoint)
        _check_complete(answer.probabilities_frame(), targets["student"], endpoint)
        if bool(answer.predictive) != predictive:
            raise PlumberError(
                endpoint, f"asked for predictive={predictive} but the answer says predictive={answer.predictive}"
            )
        return answer


def _query(settings: Mapping[str, Any]) -> dict[str, str]:
    """Settings as query parameters (booleans as JSON spells them)."""
    return {k: json.dumps(v) if isinstance(v, bool) else str(v) for k, v in settings.items()}


#: the fit's columns as Arrow types (student ids as text, whatever they were)
_FIT_ROW_TYPES = {"student": pa.string(), "week": pa.int32(), "score": pa.float64(), "n_attempts": pa.int32()}
#: the JSON body's data field -> the column it is taken from
_JSON_FIT_COLUMNS = {"student": "student", "week": "week", "score": "score", "n": "n_attempts"}


def _fit_rows(scores: pd.DataFrame | pa.Table) -> pa.Table:
    """The fit's columns of ``scores`` as one Arrow table of ``_FIT_ROW_TYPES``."""
    if isinstance(scores, pd.DataFrame):
        columns = {"student": scores["student"].astype(str), **{k: scores[k] for k in list(_FIT_ROW_TYPES)[1:]}}
        return pa.table({k: pa.array(v, type=_FIT_ROW_TYPES[k]) for k, v in columns.items()})
    return pa.table({k: scores.column(k).cast(t) for k, t in _FIT_ROW_TYPES.items()})


def _scores_table(rows: pa.Table) -> pa.Table:
    """The fit's data as the Arrow body: student dictionary-encoded (12 weeks of one id cost one string),
    with one dictionary for the whole column (encoding Arrow's chunks one by one repeats it per chunk:
    gigabytes at a million students)."""
    students = rows.column("student").combine_chunks().dictionary_encode()  # int32 indices
    # one record batch: a table read from the database comes in hundreds of chunks, and a body of hundreds
    # of batches costs the engine copies its memory-mapped single batch does not (0.8 GB more at a million)
    return pa.table({"student": students, "week": rows.column("week").combine_chunks(),
                     "score": rows.column("score").combine_chunks(),
                     "n": rows.column("n_attempts").combine_chunks()})  # fmt: skip


def _targets_table(targets: pd.DataFrame) -> pa.Table:
    columns = {
        "student": pa.array(targets["student"].astype(str), type=pa.string()),
        "target_week": pa.array(targets["target_week"], type=pa.int32()),
        "goal": pa.array(targets["goal"], type=pa.float64()),
    }
    if "n" in targets:
        columns["n"] = pa.array(targets["n"], type=pa.int32())
    return pa.table(columns)


def _arrow_stream(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _pieces(buffer: pa.Buffer, size: int = 1 << 20) -> list[bytes]:
    """``buffer`` as a body in 1 MiB views of it: no copy of a body of hundreds of MB (as bytes, it
    would be copied whole once here and once more when the HTTP layer frames it), and a list can be
    sent again on a retry. The caller gives its Content-Length."""
    view = memoryview(buffer)
    # memoryviews are bytes-like: httpx writes them as they are
    return cast(list[bytes], [view[start : start + size] for start in range(0, len(view), size)])


def _json_of(response: httpx.Response, endpoint: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise PlumberError(endpoint, f"answered a body that is not JSON: {response.text[:200]!r}") from None


def _answer(response: httpx.Response, endpoint: str, rows_key: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """An answer's metadata (everything but its rows) and its rows as a frame, from an Arrow answer
    (the table, and the JSON of its schema metadata) or a JSON one (its ``rows_key`` list of objects),
    whichever the service sent."""
    if response.headers.get("content-type", "").split(";")[0].strip() == ARROW_STREAM:
        return _arrow_answer(response.content, endpoint)
    payload = _json_of(response, endpoint)
    if not isinstance(payload, dict):
        raise PlumberError(
            endpoint, f"answer breaks the contract at top level: not an object ({type(payload).__name__})"
        )
    metadata = {k: v for k, v in payload.items() if k != rows_key}
    rows = payload.get(rows_key)
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise PlumberError(endpoint, f"answer breaks the contract at {rows_key}: not a list of objects")
    return metadata, pd.DataFrame.from_records(rows)


def _arrow_answer(body: bytes, endpoint: str) -> tuple[dict[str, Any], pd.DataFrame]:
    try:
        with pa.ipc.open_stream(body) as reader:
            table = reader.read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise PlumberError(endpoint, f"answered a body that is not an Arrow IPC stream: {exc}") from None
    raw = (table.schema.metadata or {}).get(ARROW_METADATA_KEY)
    if raw is None:
        key = ARROW_METADATA_KEY.decode()
        raise PlumberError(endpoint, f"answer breaks the contract: the Arrow table has no {key!r} schema metadata")
    try:
        metadata = json.loads(raw)
    except ValueError:
        raise PlumberError(
            endpoint, f"answer breaks the contract: its growth_response metadata is not JSON: {raw[:200]!r}"
        ) from None
    if not isinstance(metadata, dict):
        raise PlumberError(endpoint, "answer breaks the contract: its growth_response metadata is not an object")
    # dictionary-encoded columns decoded first, so that every text column reaches pandas as strings
    decoded = [
        column.cast(column.type.value_type) if isinstance(column.type, pa.DictionaryType) else column
        for column in table.columns
    ]
    return metadata, pa.table(decoded, names=table.column_names).to_pandas()


def _validated(model: type[BaseModel], payload: Any, endpoint: str) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlumberError(
            endpoint,
            f"answer breaks the contract at {where or 'top level'}: {first['msg']} ({exc.error_count()} problems)",
        ) from None


def _validated_frame(
    frame: pd.DataFrame, columns: tuple[AnswerColumn, ...], where: str, endpoint: str, unique: str | None = None
) -> pd.DataFrame:
    """``frame``'s contract columns (in order, typed: str, float64, int64, bool), checked column by
    column at once, and no value of column ``unique`` twice; a PlumberError names the first bad column
    and how many rows break it."""
    checked: dict[str, Any] = {}
    for column in columns:
        if column.name not in frame:
            if column.missing is None:
                raise PlumberError(endpoint, f"answer breaks the contract at {where}: no column {column.name!r}")
            checked[column.name] = np.full(len(frame), column.missing)
            continue
        values, bad = _column_values(frame[column.name], column)
        if bad.any():
            example = frame[column.name][bad].iloc[0]
            raise PlumberError(
                endpoint,
                f"answer breaks the contract at {where}.{column.name}: {int(bad.sum())} of {len(frame)} rows are "
                f"not {column.describe()} (e.g. {example!r})",
            )
        checked[column.name] = values
    validated = pd.DataFrame(checked)
    if unique is not None and (duplicated := validated[unique].duplicated()).any():
        raise PlumberError(
            endpoint,
            f"answer breaks the contract at {where}.{unique}: {int(duplicated.sum())} repeated values, "
            f"e.g. {validated[unique][duplicated].iloc[0]!r}",
        )
    return validated


def _column_values(values: pd.Series, column: AnswerColumn) -> tuple[Any, np.ndarray]:
    """The column's values in their type, and which rows break the contract."""
    if column.kind == "text":
        if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
            return values.astype(str), values.isna().to_numpy()
        is_text = np.fromiter((type(v) is str for v in values), dtype=bool, count=len(values))
        return values.where(is_text).astype(str), ~is_text
    if column.kind == "bool":
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.to_numpy(dtype=bool), np.zeros(len(values), dtype=bool)
        missing = values.isna().to_numpy()
        is_bool = np.fromiter((isinstance(v, bool | np.bool_) for v in values), dtype=bool, count=len(values))
        return values.where(is_bool, column.missing).to_numpy(dtype=bool), ~(missing | is_bool)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(numbers)
        if column.low is not None:
            bad |= numbers < column.low
        if column.high is not None:
            bad |= numbers > column.high
        if column.kind == "integer":
            bad |= numbers != np.floor(numbers)
    return (numbers.astype(np.int64, copy=False) if column.kind == "integer" and not bad.any() else numbers), bad


def _check_complete(probabilities: pd.DataFrame, students: pd.Series, endpoint: str) -> None:
    """One probability per target, for the targets' students in the targets' order."""
    if len(probabilities) != len(students):
        raise PlumberError(endpoint, f"answered {len(probabilities)} probabilities for {len(students)} students")
    # compared as Arrow-backed strings: a million ids, no Python string per id
    asked = students.astype(str).reset_index(drop=True)
    answered = probabilities["student"].astype(str)
    wrong = (asked != answered).to_numpy(dtype=bool)
    if wrong.any():
        row = int(np.argmax(wrong))
        raise PlumberError(
            endpoint,
            f"answered {int(wrong.sum())} probabilities for other students than the targets' (in their order), "
            f"e.g. row {row}: {answered[row]!r} for {asked[row]!r}",
        )


def _error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(payload, dict) and "error" in payload:
        error = payload["error"]
        return error if isinstance(error, str) else str(error)
    return str(payload)[:300]
